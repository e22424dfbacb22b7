"""The `cem` command: one verb per pipeline step, each a thin shell over the library.

Every verb lives in the module that does the work, which exposes `configure_parser(parser)` and
`run_cli(args) -> int`; only the chosen verb's module is imported, so `cem synth` never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cemlib.core.outputs import describe_write_failure
from cemlib.core.settings import SettingsError

#: Where each verb's module lives: cemlib/study/commands/<verb>.py.
COMMANDS_PACKAGE = "cemlib.study.commands"
#: verb -> one-line help, in pipeline order.
COMMANDS: dict[str, str] = {
    "synth": "write a synthetic CEM cohort (GE DICOM layout or an external replica)",
    "manifest": "scan a dataset folder into the images/breasts/exclusions tables",
    "preprocess": "fill the preprocessed tensor cache for a manifest",
    "train": "train stage 1 (CNN) and stage 2 (fusion) for one model",
    "predict": "score breasts from a checkpoint (a manifest or one exam folder)",
    "tables": "regenerate the paper's tables and figures from predictions",
    "reproduce": "run the study notebooks end to end with papermill",
    "check": "compare a run's metrics with the replicated reference of its profile",
    "bench": "measure speed: preprocess, train, stats, exam",
}


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; the sub-parser of `verb` (if given) is fully configured."""
    parser = argparse.ArgumentParser(prog="cem", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        if name == verb:
            module = importlib.import_module(f"{COMMANDS_PACKAGE}.{name}")
            module.configure_parser(child)
            child.set_defaults(_run=module.run_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cem` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(verb if verb in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return int(args._run(args) or 0)
    except SettingsError as exc:  # a usage error, as argparse's own: exit code 2
        print(f"cem {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing input, or a write that failed: read-only, full disk, no permission
        print(f"cem {args.command}: error: {describe_write_failure(exc)}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError) as exc:
        # A failed atomic write names its file (torch's full-disk error does not): say path and cause.
        message = describe_write_failure(exc) if getattr(exc, "filename", None) else exc
        print(f"cem {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
