"""`cem bench`: speed measured on this machine, never asserted in tests.

- preprocess: images/s of (a) raw DICOM decode, (b) decode + full preprocessing, (c) the cached
  patient-level loader, beside what smoke-profile training consumes;
- train: images/s and TFLOP/s of a training step (fp32 vs bf16, contiguous vs channels_last, optionally
  torch.compile; CPU and CUDA) beside a baseline written the way the authors' code runs;
- stats: DeLong test on 10,000 breasts, 2000-replicate bootstrap of the AUC on 1,000 breasts;
- exam: one exam through `cem predict STUDY` at 512 x 256 with the full-width model (maps included).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cemlib.profiles import add_override_option, load_profile, parse_overrides

TARGETS = ("preprocess", "train", "stats", "exam")


def bench_preprocess(profile: dict[str, Any], images: int = 200) -> dict[str, Any]:
    """(a) decode, (b) full preprocessing, (c) cached loader in one process and with train.workers workers."""
    from cemlib import data, imaging, training

    manifest, cache = training.prepare_data(profile)
    keys = ["patient_id", "side", "view"]
    by_energy = {e: manifest.images[manifest.images["energy"] == e] for e in ("LE", "DES")}
    joined = by_energy["LE"].merge(by_energy["DES"][[*keys, "path"]], on=keys, suffixes=("", "_des"))
    pairs = [(Path(manifest.root) / row.path, Path(manifest.root) / row.path_des, row.side)
             for row in joined.head(images // 2).itertuples()]
    pixels = imaging.benchmark_preprocess(pairs, training.preprocess_settings(profile))
    batch_size, workers = int(profile["train"]["batch_size"]), int(profile["train"].get("workers", 0))

    def loader(processes: int) -> dict[str, Any]:
        return data.benchmark_loader(manifest, cache, inputs="cem", split="train", batch_size=batch_size,
                                     workers=processes)

    result = {"pixels": pixels, "loader": loader(0)}
    if workers > 0:
        result["loader_workers"] = loader(workers)
    return result


def bench_train(profile: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Training-step throughput variants and the authors'-style baseline (options of benchmark_train)."""
    from cemlib import training

    return training.benchmark_train(profile, **options)


def bench_stats() -> dict[str, Any]:
    """DeLong and bootstrap timings."""
    from cemlib import stats

    return stats.benchmark_stats()


def run_benchmarks(
    profile_name: str,
    targets: tuple[str, ...],
    overrides: dict[str, Any] | None = None,
    train_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the chosen benchmarks; returns their results keyed by target."""
    profile = load_profile(profile_name, overrides)
    results: dict[str, Any] = {}
    for target in targets:
        if target == "preprocess":
            results[target] = bench_preprocess(profile)
        elif target == "train":
            results[target] = bench_train(profile, **(train_options or {}))
        elif target == "stats":
            results[target] = bench_stats()
        elif target == "exam":
            from cemlib import exam

            results[target] = exam.benchmark_exam()
    return results


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem bench`."""
    parser.add_argument("target", nargs="?", default="all", choices=(*TARGETS, "all"))
    parser.add_argument("--profile", default="smoke", help="profile name or YAML path")
    parser.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    add_override_option(parser, "data.synth.patients=16")
    train = parser.add_argument_group("train")
    train.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                       help="where to time the training step (default: the CPU, then CUDA when present)")
    train.add_argument("--steps", type=int, default=10, help="timed steps per variant (default 10)")
    train.add_argument("--warmup", type=int, default=2, help="untimed steps before them (default 2)")
    train.add_argument("--compile", action="store_true",
                       help="also time bf16 + channels_last under torch.compile (compilation in the warm-up)")


def run_cli(args: argparse.Namespace) -> int:
    """Run `cem bench` and print the results."""
    targets = TARGETS if args.target == "all" else (args.target,)
    train_options = {"devices": args.device, "steps": args.steps, "warmup": args.warmup,
                     "compiled": args.compile}
    results = run_benchmarks(args.profile, targets, parse_overrides(args.overrides), train_options)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.json_out:
        from cemlib.fileio import atomic_write_text

        atomic_write_text(args.json_out, text)
    return 0
