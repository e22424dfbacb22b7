"""`cem reproduce`."""

from __future__ import annotations

import argparse
import sys
import time

from cemlib.core.fileio import remove_stale_temporaries
from cemlib.core.outputs import check_output_folder
from cemlib.core.settings import add_override_option, load_profile, parse_overrides
from cemlib.study.pipeline import (
    STEPS,
    StepFailed,
    export_finished_report,
    resolve_steps,
    run_pipeline,
    steps_help,
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem reproduce`."""
    parser.add_argument("--profile", default="smoke", help="profile name (smoke, paper, ...) or YAML path")
    parser.add_argument("--force", action="store_true", help="rerun every step, even unchanged ones")
    parser.add_argument("--steps", nargs="+", type=_steps, metavar="STEP",
                        help=f"run only these notebooks, by number, name or range: --steps 2,3 or 02 "
                        f"training or 2-4 ({steps_help()}; default: all, skipping unchanged ones)")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML/PDF report export")
    parser.add_argument("--workdir", help="folder for data, runs and reports (default: the clone's root, or "
                        "the current folder when cemlib is installed)")
    parser.add_argument("--report-only", action="store_true",
                        help="only export the HTML/PDF report from the executed notebooks (all finished)")
    parser.add_argument("--replicates", type=_positive_int, metavar="N",
                        help="train every model under N training seeds (the profile key replicates; "
                        "default: the profile's, 1)")
    add_override_option(parser)


def _steps(text: str) -> tuple[str, ...]:
    """An argparse type: the steps one word names (see pipeline.resolve_steps)."""
    try:
        return resolve_steps([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_cli(args: argparse.Namespace) -> int:
    """Run `cem reproduce`."""
    overrides = parse_overrides(args.overrides)
    if args.replicates is not None:
        overrides["replicates"] = args.replicates
    written = load_profile(args.profile, overrides, args.workdir)
    for folder in () if args.report_only else (written.data.manifest, written.preprocess.cache):
        check_output_folder(folder)
    for folder in (written.reports,) if args.report_only else (written.runs, written.reports):
        remove_stale_temporaries(check_output_folder(folder), recursive=True)  # a killed run's leftovers
    if args.report_only:
        for path in export_finished_report(written).values():
            print(f"report: {path}", flush=True)
        return 0
    steps = resolve_steps([step for named in args.steps for step in named]) if args.steps else STEPS
    started = time.perf_counter()
    try:
        run_pipeline(args.profile, steps, force=args.force, report=not args.no_report,
                     overrides=overrides, workdir=args.workdir)
    except StepFailed as exc:
        print(f"cem reproduce: {exc}", file=sys.stderr)
        return 1
    print(f"cem reproduce: finished in {time.perf_counter() - started:.0f} s", flush=True)
    return 0
