"""`cem tables`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cemlib.core.fileio import remove_stale_temporaries
from cemlib.core.outputs import check_output_folder
from cemlib.results import stats
from cemlib.results.build import write_all
from cemlib.results.claims import load_reference
from cemlib.results.tables import check_coverage, load_breasts, load_predictions


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem tables`."""
    parser.add_argument("--predictions", required=True, type=Path, help="per-breast predictions CSV")
    parser.add_argument(
        "--manifest",
        action="append",
        type=Path,
        default=[],
        help="manifest folder (its breasts.csv); repeat for external datasets (default: none, the tables "
        "of the cohort are left out)",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for tables and figures")
    parser.add_argument("--split", default="test", help="internal split to evaluate (default: test)")
    parser.add_argument(
        "--threshold",
        default="0.5",
        help="malignant-probability threshold, or 'youden' (chosen on the val split)",
    )
    parser.add_argument(
        "--ci-method",
        default="clopper-pearson",
        choices=stats.CI_METHODS,
        help="binomial CI for ACC/SEN/SPE/PPV/NPV",
    )
    parser.add_argument("--level", type=float, default=0.95, help="confidence level")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="evaluate although some manifest breasts have no prediction (e.g. left out by preprocessing)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="paper reference values (default: data_manifest/paper_reference.csv)",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run `cem tables`."""
    remove_stale_temporaries(check_output_folder(args.out))
    predictions = load_predictions(args.predictions)
    breasts = load_breasts(args.manifest) if args.manifest else None
    if breasts is not None:
        missing = check_coverage(predictions, breasts, str(args.predictions), args.allow_missing)
        if missing:
            print(f"{missing} manifest breast row(s) have no prediction; evaluated without them")
    reference = load_reference(args.reference) if args.reference else None
    threshold = args.threshold if args.threshold == "youden" else stats.choose_threshold(args.threshold)
    written = write_all(
        predictions, breasts, args.out, args.split, threshold, args.level, args.ci_method, reference
    )
    for name in sorted(written):
        print(written[name])
    return 0
