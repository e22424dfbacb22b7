"""`cem check`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cemlib.core.settings import add_override_option, load_profile, parse_overrides
from cemlib.results.check import (
    MIN_REFERENCE_REPLICATES,
    compare,
    format_comparison,
    make_reference,
    promised,
    read_reference,
    reference_path,
    reference_problems,
    run_metrics,
    run_sizes,
    verdict_summary,
)
from cemlib.study import window_rules


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
    parser.add_argument("--workdir", help="folder holding the run's data, runs and reports (default: the "
                        "clone's root, or the current folder when cemlib is installed)")
    add_override_option(parser)


def run_cli(args: argparse.Namespace) -> int:
    """Run `cem check`: 0 when every informative headline metric lies inside its band, 1 otherwise.

    It also exits 1 when the reference was made for another profile or lacks a headline metric the run
    has, when fewer headline metrics are informative than the reference promises, or when none is.
    """
    profile = load_profile(args.profile, parse_overrides(args.overrides), args.workdir)
    tables = Path(args.run if args.run is not None else profile.reports) / "tables"
    reference = args.reference if args.reference is not None else reference_path(profile.name)
    if args.make_reference:
        summary = make_reference(tables, reference, args.min_replicates, profile.name)
        print(f"cem check: wrote {reference} ({len(summary)} metrics, "
              f"{int(summary['n'].min())} to {int(summary['n'].max())} replicates)")
        kept = window_rules.keep_as_reference(tables, profile.name) if args.reference is None else None
        if kept is not None:
            print(f"cem check: wrote {kept} (the run's DES window rule comparison)")
        return 0
    run, expected = run_metrics(tables), read_reference(reference)
    print(f"{tables} against {reference}")
    problems = reference_problems(run, expected, profile.name)
    if problems:
        for problem in problems:
            print(f"cem check: {problem}")
        print(f"cem check: refused {reference} (make one for this profile: `cem check --make-reference`)")
        return 1
    comparison = compare(run, expected, run_sizes(tables))
    print(format_comparison(comparison))
    passed, line = verdict_summary(comparison, promised(expected))
    print(f"cem check: {line}")
    return 0 if passed else 1
