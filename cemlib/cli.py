"""The `cem` command: one verb per pipeline step, each a thin shell over the library.

Every verb lives in the module that does the work, which exposes `configure_parser(parser)` and
`run_cli(args) -> int`; only the chosen verb's module is imported, so `cem synth` never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import re
import sys

from cemlib import __version__
from cemlib.core.environment import git_commit
from cemlib.core.outputs import describe_write_failure
from cemlib.core.resources import clone_root
from cemlib.core.settings import SettingsError, describe_variant, did_you_mean, load_profile, parse_overrides

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


def version_text() -> str:
    """'cem 0.1.0 (git 1eae5811c2d3)': the version, and the commit of a checkout or of an installed package.

    From a checkout the commit is git's (', modified' when tracked files changed); an installed package
    gives the commit pip recorded when it was installed from a git URL, else says it has none.
    """
    root = clone_root()
    if root is not None:
        commit = git_commit(root)
        if commit is None:
            return f"cem {__version__} (source tree without git history)"
        sha, _, dirty = commit.partition("-")
        return f"cem {__version__} (git {sha[:12]}{', modified' if dirty else ''})"
    try:
        record = json.loads(importlib.metadata.distribution("cemlib").read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        record = {}
    sha = (record.get("vcs_info") or {}).get("commit_id")
    return f"cem {__version__} (installed package, git {sha[:12]})" if sha else \
        f"cem {__version__} (installed package; no git commit recorded)"


class VersionAction(argparse.Action):
    """`cem --version`: print version_text() (git is asked only then) and exit."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def help_text(action: argparse.Action) -> str:
    """An option's help with its default: '(default: X)' added unless the help states it already.

    Flags (off unless given) and options without a default value say nothing more.
    """
    text = action.help or ""
    default = action.default
    if (action.nargs == 0 or "default" in text.lower() or default is None or default == []
            or default is argparse.SUPPRESS):
        return text
    shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)
    return f"{text} (default: {shown.replace('%', '%%')})"


class DefaultsFormatter(argparse.HelpFormatter):
    """Help whose every option states its default (see help_text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return help_text(action)


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose 'invalid choice' errors suggest the closest choice."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if found:
            choices = re.findall(r"'([^']*)'", found.group(2))
            message = message[:found.start()] + f"invalid choice: '{found.group(1)}'" + \
                did_you_mean(found.group(1), choices) + f" (choose from {', '.join(choices)})"
        super().error(message)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; the sub-parser of `verb` (if given) is fully configured."""
    parser = Parser(prog="cem", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=VersionAction, help="print the version and git commit, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        child = sub.add_parser(name, help=summary, description=summary)
        if name == verb:
            module = importlib.import_module(f"{COMMANDS_PACKAGE}.{name}")
            module.configure_parser(child)
            child.set_defaults(_run=module.run_cli)
    return parser


def announce_variant(args: argparse.Namespace) -> None:
    """On stderr, first: where a verb run with --set writes when its settings differ from the profile file
    (`cem reproduce` says it itself, with its --replicates; `cem preprocess --manifest` reads no profile)."""
    if not getattr(args, "overrides", None) or args.command == "reproduce":
        return
    profile = getattr(args, "profile", None)
    if profile is None and (args.command != "preprocess" or getattr(args, "manifest", None)):
        return
    workdir = getattr(args, "workdir", None)
    settings = load_profile(profile or "smoke", parse_overrides(args.overrides), workdir)
    if (line := describe_variant(settings)) is not None:
        print(f"cem {args.command}: {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cem` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(verb if verb in COMMANDS else None)
    if verb is not None and verb not in COMMANDS and argv[0] == verb:
        parser.error(f"unknown command '{verb}'{did_you_mean(verb, list(COMMANDS))} "
                     f"(choose from {', '.join(COMMANDS)})")
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        announce_variant(args)
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
