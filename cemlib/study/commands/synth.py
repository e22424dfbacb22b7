"""`cem synth`: write the internal synthetic cohort or a replica of an external release."""

from __future__ import annotations

import argparse

from cemlib.core.outputs import check_output_file, check_output_folder
from cemlib.core.settings import non_negative_int
from cemlib.synthetic import cddcesm, inbreast
from cemlib.synthetic.cohort import DEFAULT_PATIENTS
from cemlib.synthetic.ge import write_cohort
from cemlib.synthetic.qc import write_qc_sheet

REPLICA_WRITERS = {"cddcesm": cddcesm.write_replica, "inbreast": inbreast.write_replica}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem synth`."""
    parser.add_argument("--out", default="data/synthetic", help="output folder (default: data/synthetic)")
    parser.add_argument("--patients", type=int, default=DEFAULT_PATIENTS,
                        help=f"number of patients (default: {DEFAULT_PATIENTS})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--scale", type=float, default=0.08,
                        help="resolution relative to 3062 x 2394 at 0.1 mm (default: 0.08)")
    parser.add_argument("--workers", type=non_negative_int, default=None,
                        help="processes (default: CPU count up to 8; 0 = serial)")
    parser.add_argument("--no-images", action="store_true",
                        help="write labels.csv and lesions.csv only, without rendering pixels (ge format)")
    parser.add_argument("--qc-sheet", metavar="PNG", default=None,
                        help="write the phantom's QC sheet (an exam per density and finding kind) and stop "
                             "(default: none, the cohort is written)")
    parser.add_argument("--format", choices=("ge", "cddcesm", "inbreast"), default="ge",
                        help="ge: GE DICOM layout; cddcesm / inbreast: replicas of the public datasets")


def run_cli(args: argparse.Namespace) -> int:
    """Run `cem synth`."""
    if args.patients < 1:
        raise ValueError(f"--patients must be at least 1, got {args.patients}")
    check_output_file(args.qc_sheet) if args.qc_sheet else check_output_folder(args.out)
    if args.qc_sheet:
        print(f"wrote {write_qc_sheet(args.qc_sheet, seed=args.seed)}")
        return 0
    if args.format == "ge":
        root = write_cohort(args.out, args.patients, args.seed, args.scale, args.workers,
                            images=not args.no_images)
    elif args.no_images:
        raise ValueError("--no-images applies to the internal cohort (--format ge) only")
    else:
        root = REPLICA_WRITERS[args.format](args.out, args.patients, args.seed, args.scale, args.workers)
    print(f"wrote {args.patients} synthetic patients ({args.format}) to {root}")
    return 0
