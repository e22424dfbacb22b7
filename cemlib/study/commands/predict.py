"""`cem predict`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cemlib.core.fileio import atomic_write_text, remove_stale_temporaries, temporaries_of
from cemlib.core.outputs import check_output_file, check_output_folder
from cemlib.core.settings import non_negative_int
from cemlib.core.vocab import INPUTS
from cemlib.data.cache import TensorCache, apply_exclusions
from cemlib.data.manifest import Manifest
from cemlib.inference.exam import predict_exam
from cemlib.inference.exam_files import REPORT_DIR
from cemlib.inference.exam_report import summary_lines, write_report
from cemlib.inference.predict import settings_of
from cemlib.inference.scoring import predict_tables
from cemlib.model.checkpoints import load_checkpoint


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem predict`."""
    parser.add_argument("study", nargs="?", metavar="STUDY_DIR",
                        help="one exam folder to score (instead of --manifest): its 8 CEM images, or 4 FFDM "
                             "images for an LE model; prints each breast's probability and writes a report "
                             "(default: none, --manifest is scored)")
    parser.add_argument("--checkpoint", required=True, help="a best.pt written by `cem train`")
    parser.add_argument("--manifest",
                        help="manifest folder whose patients are scored (default: none, STUDY_DIR is scored)")
    parser.add_argument("--out", help="with --manifest: per-breast CSV to write (default: print the table); "
                                      "with STUDY_DIR: report folder (default: cem_report_<exam pseudonym> "
                                      "in the current folder, never inside the exam)")
    parser.add_argument("--no-cams", action="store_true",
                        help="with STUDY_DIR: skip the Grad-CAM++ maps (scores and report only)")
    parser.add_argument("--split",
                        help="score only this split (train, val, test, external; default: every split)")
    parser.add_argument("--cache", help="tensor cache folder (default: the one the model was trained with)")
    parser.add_argument("--inputs", choices=INPUTS, help="the model's inputs (default: its own)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=16, help="patients scored together")
    parser.add_argument("--workers", type=non_negative_int, default=2, help="processes filling the cache")


def _cache_for(checkpoint: Mapping[str, Any], cache_dir: str | None, path: str):
    """The TensorCache with the preprocessing settings recorded in the checkpoint."""
    settings = settings_of(checkpoint, path)
    folder = cache_dir or (checkpoint.get("meta") or {}).get("preprocess", {}).get("cache")
    if not folder:
        raise ValueError("give --cache: the checkpoint names no cache folder")
    return TensorCache(folder, settings)


def _image_table_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_images{out.suffix or '.csv'}")


def run_cli(args: argparse.Namespace) -> int:
    """Score a manifest's breasts and write (or print) the per-breast and per-image tables."""
    if args.study:
        return run_study_cli(args)
    if not args.manifest:
        raise ValueError("give --manifest DIR (the patients to score)")
    if args.out:  # the breast table and the image table beside it, before anything is scored
        for table in (Path(args.out), _image_table_path(Path(args.out))):
            remove_stale_temporaries(check_output_file(table).parent, temporaries_of(table))
    state = load_checkpoint(args.checkpoint)
    manifest = Manifest.load(args.manifest)
    cache = _cache_for(state, args.cache, args.checkpoint)
    filled = cache.fill(manifest, workers=args.workers)
    for row in filled.exclusions.itertuples():
        print(f"excluded {row.dataset}/{row.patient_id}: {row.reason}")
    apply_exclusions(manifest, filled.exclusions)
    result = predict_tables(
        args.checkpoint, manifest, cache, args.split, args.inputs,
        batch_size=args.batch_size, device=args.device,
    )
    if not args.out:
        print(result.breasts.to_string(index=False))
        return 0
    out = Path(args.out)
    atomic_write_text(out, result.breasts.to_csv(index=False))
    print(f"wrote {len(result.breasts)} breast scores ({result.model}) to {out}")
    if result.images is not None:
        image_out = _image_table_path(out)
        atomic_write_text(image_out, result.images.to_csv(index=False))
        print(f"wrote {len(result.images)} image scores to {image_out}")
    return 0


def _report_dir(label: str, out: str | None) -> Path:
    """Where one exam's report goes: --out, else cem_report_<pseudonym> in the current folder."""
    return Path(out) if out else Path.cwd() / f"{REPORT_DIR}_{label}"


def run_study_cli(args: argparse.Namespace) -> int:
    """`cem predict STUDY --checkpoint C [--out DIR]`: print the scores, write the overlays and report."""
    if getattr(args, "manifest", None):
        raise ValueError("give either STUDY_DIR (one exam) or --manifest, not both")
    study = Path(args.study)
    given = check_output_folder(Path(args.out)) if args.out else None
    result = predict_exam(study, args.checkpoint, inputs=args.inputs, device=args.device,
                          cams=not getattr(args, "no_cams", False), exclude=[given] if given else [])
    out = check_output_folder(_report_dir(result.exam.label(), args.out))
    remove_stale_temporaries(out)
    for line in summary_lines(result):
        print(line)
    mark = time.perf_counter()
    written = write_report(result, out)
    result.timings["report_s"] = time.perf_counter() - mark
    for path in written.values():
        print(f"wrote {path}")
    print("time: " + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.2f} s" for k, v in result.timings.items()))
    return 0
