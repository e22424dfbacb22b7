"""A run whose settings differ from its profile file keeps its own folders: exploring never touches the study.

`cem reproduce --set data.synth.patients=40`, or notebook 00 run with `overrides = {...}`, computes
something other than the profile's committed study, so it must not write into that study's folders. The
settings that differ from the file (overrides that repeat the file's value do not count) are hashed into a
short tag, and each output folder the changes can affect gets the tag as a suffix:
`reports/smoke` -> `reports/smoke-3fa9c1`, `runs/smoke` -> `runs/smoke-3fa9c1`, and so on. The same
overrides give the same tag, so a rerun (or `cem check` with the same `--set`) finds the run again.

Which folders a change affects:
- runs and reports: every change, except `replicates` and `des_window_ablation`, which fork the report
  only (the extra seeds train in runs/<profile>/replicates/<k>, replicate 0 is the study's own run; the
  other DES rule's models in runs/<profile>/des_window-<rule>);
- the internal cohort's manifest (data.manifest): a change of `data.*` or of `seed` (the split); its
  folder (data.root, when synthetic) only for a change of the cohort itself (`data.synth.*`,
  `data.dataset`): a real dataset's folder, or a cohort split anew, is only read;
- an external replica (external.<name>.root when synthetic): a change of `external.<name>.*`, or of
  `data.synth.*`, whose values a replica inherits;
- the tensor cache (preprocess.cache): a change of the data, of a replica or of `preprocess.*`.
Folders a change cannot affect are shared and only read (a training change reuses the study's cohort
and cache). A path set explicitly (`--set runs=runs/mine`) is used as given, and settings that change
how fast, not what, is computed (NEUTRAL_KEYS) fork nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Settings that change only how a run is computed, never its results: they fork no folder.
NEUTRAL_KEYS = frozenset({"preprocess.workers", "train.workers", "train.progress"})
#: The output folders that every change forks.
RUN_FOLDERS = ("runs", "reports")
#: Settings that add to a run without changing what it already trained: they fork the report only
#: (replicate k >= 1 trains in runs/<profile>/replicates/<k>, replicate 0 is the study's own run; another
#: DES window rule's models train in runs/<profile>/des_window-<rule>).
REPORT_ONLY_KEYS = frozenset({"replicates", "des_window_ablation"})
_EXTERNAL_ROOT = re.compile(r"external\.([^.]+)\.root")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'data': {'synth': {'patients': 40}}} -> {'data.synth.patients': 40} (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_path(key: str, path_keys: frozenset[str] | set[str]) -> bool:
    """Whether a dotted key holds a folder (data.root, runs, external.<name>.root, ...)."""
    return key in path_keys or bool(_EXTERNAL_ROOT.fullmatch(key))


def changes(base: Mapping[str, Any], new: Mapping[str, Any], path_keys: frozenset[str] | set[str]
            ) -> tuple[dict[str, Any], set[str]]:
    """(the settings that differ and fork folders: key -> new value, the path keys set explicitly)."""
    flat_base, flat_new = flatten(base), flatten(new)
    differ = {key for key in set(flat_base) | set(flat_new) if flat_base.get(key) != flat_new.get(key)}
    explicit = {key for key in differ if is_path(key, path_keys)}
    changed = {key: flat_new.get(key) for key in sorted(differ - explicit - NEUTRAL_KEYS)}
    return changed, explicit


def tag_of(changed: Mapping[str, Any]) -> str:
    """Six hex digits of the changed settings (same changes, same tag)."""
    text = json.dumps(dict(changed), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def _forked_keys(new: Mapping[str, Any], changed: Mapping[str, Any]) -> list[str]:
    """The output folders (dotted keys) the changed settings can affect (see the module docstring)."""
    data = any(key.startswith("data.") or key == "seed" for key in changed)
    cohort = any(key.startswith(("data.synth", "data.dataset")) for key in changed)
    inherited = any(key.startswith("data.synth") for key in changed)
    keys = ["reports"] if set(changed) <= REPORT_ONLY_KEYS else list(RUN_FOLDERS)
    if data:
        keys.append("data.manifest")
    if cohort and (new.get("data") or {}).get("dataset", "synthetic") == "synthetic":
        keys.append("data.root")
    replicas = False
    for name, spec in (new.get("external") or {}).items():
        if (spec or {}).get("synth") is not None and (
                inherited or any(key.startswith(f"external.{name}.") for key in changed)):
            keys.append(f"external.{name}.root")
            replicas = True
    if data or replicas or any(key.startswith("preprocess.") for key in changed):
        keys.append("preprocess.cache")
    return keys


def fork(base: Mapping[str, Any], new: Mapping[str, Any], path_keys: frozenset[str] | set[str]
         ) -> tuple[dict[str, Any], str | None]:
    """`new` (a profile tree with absolute paths) with its affected output folders renamed, and the tag;
    (a copy of `new`, None) when no setting that counts differs from `base`, the profile file's tree."""
    changed, explicit = changes(base, new, path_keys)
    tree = copy.deepcopy(dict(new))
    if not changed:
        return tree, None
    tag = tag_of(changed)
    flat = flatten(new)
    # A folder inside a dataset folder of the profile (the cohort's manifest) moves with that folder.
    containers = sorted((Path(v) for k, v in flatten(base).items()
                         if k == "data.root" or _EXTERNAL_ROOT.fullmatch(k)), key=lambda p: len(p.parts))
    for key in _forked_keys(new, changed):
        value = flat.get(key)
        if key in explicit or not value:
            continue
        path = Path(value)
        outer = next((c for c in containers if path != c and path.is_relative_to(c)), None)
        moved = (outer.with_name(f"{outer.name}-{tag}") / path.relative_to(outer) if outer is not None
                 else path.with_name(f"{path.name}-{tag}"))
        _set(tree, key, str(moved))
    return tree, tag


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node[key]
    node[leaf] = value
