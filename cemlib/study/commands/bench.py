"""`cem bench`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cemlib.core.fileio import atomic_write_text, remove_stale_temporaries, temporaries_of
from cemlib.core.outputs import check_output_file
from cemlib.core.settings import add_override_option, parse_overrides
from cemlib.study.bench import COMPILE_MODES, TARGETS, run_benchmarks


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem bench`."""
    parser.add_argument("target", nargs="?", default="all", choices=(*TARGETS, "all"), help="what to time")
    parser.add_argument("--profile", default="smoke", help="profile name or YAML path")
    parser.add_argument("--json", dest="json_out",
                        help="also write the results to this JSON file (default: printed only)")
    add_override_option(parser, "data.synth.patients=16")
    train = parser.add_argument_group("train")
    train.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                       help="where to time the training step (default: the CPU, then CUDA when present)")
    train.add_argument("--steps", type=int, default=10, help="timed steps per variant (default 10)")
    train.add_argument("--warmup", type=int, default=2, help="untimed steps before them (default 2)")
    train.add_argument("--compile", action="store_true",
                       help="also time bf16 + channels_last under torch.compile (compilation in the warm-up)")
    train.add_argument("--compile-modes", nargs="+", choices=COMPILE_MODES, default=[], metavar="MODE",
                       help="also time bf16 + channels_last compiled in each torch.compile mode: "
                            f"{', '.join(COMPILE_MODES)} (reduce-overhead = CUDA graphs; CUDA-graph modes "
                            "are skipped on the CPU with the reason)")
    train.add_argument("--host-sync", action="store_true",
                       help="also time bf16 + channels_last reading the loss back every step (.item())")
    train.add_argument("--deterministic", action="store_true",
                       help="also time bf16 + channels_last with deterministic kernels (train.deterministic)")
    train.add_argument("--torch-profile", metavar="DIR",
                       help="write a one-step torch.profiler summary (top kernels, time per kind) of bf16 + "
                            "channels_last, eager and compiled, into DIR (default: none)")


def train_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of `cem bench train` as keyword arguments of benchmark_train."""
    return {"devices": args.device, "steps": args.steps, "warmup": args.warmup, "compiled": args.compile,
            "compile_modes": tuple(args.compile_modes), "host_sync": args.host_sync,
            "deterministic": args.deterministic, "torch_profile": args.torch_profile}


def run_cli(args: argparse.Namespace) -> int:
    """Run `cem bench` and print the results."""
    if args.json_out:
        remove_stale_temporaries(check_output_file(args.json_out).parent, temporaries_of(args.json_out))
    targets = TARGETS if args.target == "all" else (args.target,)
    results = run_benchmarks(args.profile, targets, parse_overrides(args.overrides), train_options(args))
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.json_out:
        atomic_write_text(args.json_out, text)
    return 0
