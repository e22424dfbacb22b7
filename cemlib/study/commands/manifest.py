"""`cem manifest`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cemlib.core.fileio import remove_stale_temporaries
from cemlib.core.outputs import check_output_folder
from cemlib.core.settings import non_negative_int
from cemlib.data.freshness import verify
from cemlib.data.manifest import DEFAULT_RATIOS, PRIVATE_NAMES, Manifest, describe
from cemlib.data.sources import ADAPTERS, build


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem manifest`."""
    parser.add_argument("target", nargs="?",
                        help="dataset folder (layout auto-detected), or a layout name "
                             "(ge, mfmodel, cddcesm, inbreast) used with --root (default: none; give it "
                             "unless --verify)")
    parser.add_argument("--root", help="dataset folder when TARGET names the layout (default: TARGET itself)")
    parser.add_argument("--out", help="manifest folder to write (default: DATASET/manifest)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient-level split (default 0)")
    parser.add_argument("--split", nargs=3, type=float, default=list(DEFAULT_RATIOS),
                        metavar=("TRAIN", "VAL", "TEST"), help="split ratios (default 0.7 0.1 0.2)")
    parser.add_argument("--dataset", help="dataset name written into the tables (default: from the layout)")
    parser.add_argument("--workers", type=non_negative_int, default=None,
                        help="threads for reading files (default: CPU cores + 2, at most 8)")
    parser.add_argument("--verify", metavar="MANIFEST_DIR",
                        help="check the files of an existing manifest against its sha256 column (the full "
                             "check; every use of a manifest runs a sampled one; default: build a manifest "
                             "instead)")
    parser.add_argument("--no-view-check", action="store_true",
                        help="keep views whose pixels seem to contradict their CC/MLO tag (the check is "
                             "calibrated on synthetic images only)")


def run_cli(args: argparse.Namespace) -> int:
    """Run `cem manifest`: scan and write a manifest, or verify one; 1 when verification fails."""
    if args.verify:
        return _run_verify(Path(args.verify), args.workers)
    if not args.target:
        raise ValueError("give a dataset folder (cem manifest DIR), a layout with --root, or --verify DIR")
    if args.target in ADAPTERS:
        if not args.root:
            raise ValueError(f"layout {args.target!r} needs --root DATASET_DIR")
        layout, root = args.target, Path(args.root)
    elif args.root:
        raise ValueError(f"unknown layout {args.target!r}; expected one of {sorted(ADAPTERS)}")
    else:
        layout, root = None, Path(args.target)
    out = check_output_folder(args.out if args.out else root / "manifest")
    for folder in (out, out / Path(PRIVATE_NAMES).parent):  # what a killed earlier run left
        remove_stale_temporaries(folder)
    manifest, layout = build(root, layout, args.seed, args.split, args.workers, args.dataset,
                             check_views=not args.no_view_check)
    manifest.save(out)
    print(f"layout {layout} at {manifest.root}")
    print(describe(manifest))
    print(f"wrote {out}/: images.csv, breasts.csv, exclusions.csv, manifest.json")
    return 0


def _run_verify(folder: Path, workers: int | None) -> int:
    """Print the images of a manifest that changed or vanished; 0 when all match.

    Images are named by dataset, pseudonymous patient id, side, view and energy: a path may hold a
    patient's name (a manifest written before paths were pseudonymised stores the on-disk names)."""
    manifest = Manifest.load(folder)
    problems = verify(manifest, workers)
    if problems.empty:
        print(f"all {len(manifest.images)} files of {folder} match their sha256")
        return 0
    print(f"{len(problems)} of {len(manifest.images)} files differ from {folder} (root {manifest.root}):")
    named = problems.merge(manifest.images.drop(columns=["sha256"]), on="path", how="left")
    for row in named.itertuples():
        print(f"  {row.status}: {row.dataset}/{row.patient_id} {row.side} {row.view} {row.energy}")
    return 1
