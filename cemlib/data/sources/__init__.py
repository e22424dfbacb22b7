"""Source adapters: one module per on-disk layout, each reading a dataset folder into a Manifest.

Every adapter module exposes `detect(root) -> bool`, `scan(root, ...) -> Manifest` (through
cemlib.data.manifest.assemble), `view_from_name(path)` (what one of its file names says about an image:
side, view, energy and the patient key the name carries) and its `DISPLAY_NAME`. Adapters are imported
only when used (a registry of module names), so a layout whose module is not installed does not break the
others. The DICOM header checks the DICOM layouts share live in `cemlib.data.sources.dicom`. This module
also builds a split manifest from a folder (`build`, `load_or_build`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from cemlib.core.views import NamedView
from cemlib.data.manifest import (
    DEFAULT_RATIOS,
    Manifest,
    mark_external,
    normalise_ratios,
    split_patients,
)
from cemlib.data.sources.dicom import (
    Candidate,
    ImageRejected,
    check_candidates,
    check_mg_header,
    dicom_files,
    rel,
)

__all__ = ["ADAPTERS", "EXTERNAL", "Candidate", "ImageRejected", "build", "check_candidates",
           "check_mg_header", "detect_layout", "dicom_files", "display_name", "load_adapter",
           "load_or_build", "rel", "scan", "view_from_name"]

#: layout name -> module implementing it.
ADAPTERS: dict[str, str] = {
    "ge": "cemlib.data.sources.ge",
    "mfmodel": "cemlib.data.sources.mfmodel",
    "cddcesm": "cemlib.data.sources.cddcesm",
    "inbreast": "cemlib.data.sources.inbreast",
}
#: Layouts of external validation sets: their breasts get split 'external' instead of train/val/test.
EXTERNAL = frozenset({"cddcesm", "inbreast"})


def load_adapter(name: str) -> ModuleType:
    """The adapter module of a layout; ValueError for an unknown name or one not installed."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown layout {name!r}; expected one of {sorted(ADAPTERS)}")
    try:
        return importlib.import_module(ADAPTERS[name])
    except ModuleNotFoundError as exc:
        if exc.name != ADAPTERS[name]:
            raise
        raise ValueError(f"the {name!r} layout adapter ({ADAPTERS[name]}) is not available") from exc


def available_adapters() -> dict[str, ModuleType]:
    """Adapters whose modules can be imported, in ADAPTERS order."""
    found = {}
    for name in ADAPTERS:
        try:
            found[name] = load_adapter(name)
        except ValueError:
            continue
    return found


def view_from_name(path: str | Path) -> tuple[str, NamedView] | str | None:
    """(layout, view) of the first layout (ADAPTERS order) whose file names `path`'s follows, a reason to
    leave the file out, or None when the name is of no known layout."""
    for name, module in available_adapters().items():
        found = module.view_from_name(Path(path))
        if found is not None:
            return found if isinstance(found, str) else (name, found)
    return None


def display_name(layout: str) -> str:
    """A layout's name as shown to users (e.g. 'MF_MODEL')."""
    return load_adapter(layout).DISPLAY_NAME


def detect_layout(root: str | Path) -> str:
    """Name of the first layout (in ADAPTERS order) whose adapter recognises `root`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    adapters = available_adapters()
    for name, module in adapters.items():
        if module.detect(root):
            return name
    raise ValueError(f"{root}: no known dataset layout recognised (tried {', '.join(adapters)}); "
                     "name the layout explicitly: cem manifest LAYOUT --root DIR")


def scan(root: str | Path, layout: str | None = None, **options) -> Manifest:
    """Scan `root` with the named layout's adapter (auto-detected when None)."""
    layout = layout or detect_layout(root)
    return load_adapter(layout).scan(Path(root), **options)


# ------------------------------------------------------------------------------- a split manifest

def build(root: str | Path, layout: str | None = None, seed: int = 0,
          ratios: Sequence[float] = DEFAULT_RATIOS, workers: int | None = None,
          dataset: str | None = None, check_views: bool = True) -> tuple[Manifest, str]:
    """Scan a dataset folder (layout auto-detected when None) and split it; returns (manifest, layout).

    ``check_views=False`` keeps views whose pixels seem to contradict their tags (manifest.assemble)."""
    root = Path(root)
    ratios = normalise_ratios(ratios)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    layout = layout or detect_layout(root)
    options = {"workers": workers} | ({"dataset": dataset} if dataset else {})
    if not check_views:
        options["check_views"] = False
    manifest = scan(root, layout, **options)
    if layout in EXTERNAL:
        manifest.breasts = mark_external(manifest.breasts)
        manifest.split_seed, manifest.split_ratios = None, None
    else:
        manifest.breasts = split_patients(manifest.breasts, ratios, seed)
        manifest.split_seed, manifest.split_ratios = seed, tuple(ratios)
    return manifest, layout


def load_or_build(folder: str | Path, root: str | Path, layout: str | None = None, seed: int = 0,
                  ratios: Sequence[float] = DEFAULT_RATIOS) -> Manifest:
    """The manifest saved in `folder`; scans `root` (see build) and saves it there first when missing."""
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        built, _ = build(root, layout, seed=seed, ratios=ratios)
        built.save(folder)
    return Manifest.load(folder)
