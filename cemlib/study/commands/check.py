"""`cem check`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cemlib.core.settings import add_override_option, load_profile, parse_overrides
from cemlib.results.check import (
    MIN_REFERENCE_REPLICATES,
    compare,
    failed,
    format_comparison,
    make_reference,
    read_reference,
    reference_path,
    run_metrics,
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem check`."""
    parser.add_argument("--profile", default="smoke", help="profile name (smoke, paper) or YAML path")
    parser.add_argument("--run", type=Path, help="a reports folder to check (its tables/; default: the "
                        "profile's reports folder)")
    parser.add_argument("--reference", type=Path, help="reference file (default: the kit's "
                        "data_manifest/reference_<profile>.csv)")
    parser.add_argument("--make-reference", action="store_true", help="write the run's replicates.csv "
                        "(from `cem reproduce --replicates N`) as the reference instead of checking")
    parser.add_argument("--min-replicates", type=int, default=MIN_REFERENCE_REPLICATES,
                        help=f"with --make-reference: the fewest replicates accepted "
                        f"(default {MIN_REFERENCE_REPLICATES})")
    parser.add_argument("--workdir", help="folder holding the run's data, runs and reports")
    add_override_option(parser)


def run_cli(args: argparse.Namespace) -> int:
    """Run `cem check`: 0 when every headline metric lies inside its band, 1 otherwise."""
    profile = load_profile(args.profile, parse_overrides(args.overrides), args.workdir)
    tables = Path(args.run if args.run is not None else profile.reports) / "tables"
    reference = args.reference if args.reference is not None else reference_path(profile.name)
    if args.make_reference:
        summary = make_reference(tables, reference, args.min_replicates)
        print(f"cem check: wrote {reference} ({len(summary)} metrics, "
              f"{int(summary['n'].min())} to {int(summary['n'].max())} replicates)")
        return 0
    comparison = compare(run_metrics(tables), read_reference(reference))
    print(f"{tables} against {reference}")
    print(format_comparison(comparison))
    bad = failed(comparison)
    if bad.empty:
        print(f"cem check: all {int(comparison['headline'].sum())} headline metrics within their bands")
        return 0
    print(f"cem check: {len(bad)} of {int(comparison['headline'].sum())} headline metrics outside their "
          "bands or missing")
    return 1
