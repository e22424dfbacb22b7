"""Study profiles: one YAML file per scale (smoke on a CPU, paper on a GPU) holding every setting."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import yaml

PROFILE_DIR = Path(__file__).resolve().parent.parent / "notebooks" / "profiles"

#: Keys whose values are paths; relative ones resolve against the project root.
PATH_KEYS = {("data", "root"), ("data", "manifest"), ("preprocess", "cache"), ("reports",), ("runs",)}


def project_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding pyproject.toml (else `start` itself)."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").exists():
            return folder
    return start


def profile_path(name_or_path: str | Path) -> Path:
    """Resolve a profile name ('smoke', 'paper') or a YAML path to an existing file."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"}:
        if not candidate.exists():
            raise FileNotFoundError(f"profile file not found: {candidate}")
        return candidate.resolve()
    named = PROFILE_DIR / f"{name_or_path}.yaml"
    if not named.exists():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"unknown profile {name_or_path!r}; known profiles: {known}")
    return named


def load_profile(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a profile as a dict, apply dotted-key overrides, and make its paths absolute."""
    path = profile_path(name_or_path)
    with open(path) as fh:
        profile = yaml.safe_load(fh)
    if not isinstance(profile, dict):
        raise ValueError(f"{path}: a profile must be a YAML mapping")
    # Copies of the override values: a later "a.b.c" override must not write into the caller's "a.b" dict.
    for dotted, value in copy.deepcopy(overrides or {}).items():
        set_dotted(profile, dotted, value)
    root = project_root(path.parent)
    _resolve_paths(profile, root)
    for sub in (profile.get("external") or {}).values():
        if isinstance(sub, dict) and sub.get("root"):
            sub["root"] = str((root / sub["root"]).resolve())
    profile["_source"] = str(path)
    profile["_root"] = str(root)
    return profile


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set tree['a']['b'] = value for dotted = 'a.b', creating sections as needed."""
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _resolve_paths(profile: dict[str, Any], root: Path) -> None:
    for keys in PATH_KEYS:
        node: Any = profile
        for key in keys[:-1]:
            node = node.get(key, {})
        value = node.get(keys[-1]) if isinstance(node, dict) else None
        if value:
            node[keys[-1]] = str((root / value).resolve())


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """['train.stage2_epochs=2', 'device=cpu'] -> {dotted key: YAML-typed value} (the CLIs' --set)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE (e.g. train.stage2_epochs=2), got {pair!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def add_override_option(parser: argparse.ArgumentParser, example: str = "train.stage2_epochs=2") -> None:
    """The repeatable `--set KEY=VALUE` profile override shared by the CLIs (parsed into args.overrides)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a profile value, e.g. --set {example} (repeatable)")
