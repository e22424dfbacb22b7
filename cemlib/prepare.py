"""Data preparation: a profile's datasets on disk, scanned, split and cached, ready to train or score.

One code path serves the internal cohort (the profile's `data` section) and every external validation
set (`external.<name>`): when the profile asks for synthetic data and none is there, the cohort or the
replica is written (cemlib.synthetic, the replica writers); an existing one must match the profile;
the folder is scanned by its source adapter into a manifest (split at patient level, or marked
external); then the tensor cache is filled, and images that fail preprocessing exclude their patients
with the reason, saved in the manifest. Missing synthetic settings of an external replica fall back to
the internal cohort's, which fall back to SYNTH_DEFAULTS: one set of defaults.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cemlib import manifest as manifest_mod
from cemlib import synthetic
from cemlib.cache import FillResult, TensorCache, apply_exclusions
from cemlib.imaging import PreprocessSettings
from cemlib.manifest import Manifest
from cemlib.sources import cddcesm, inbreast, load_or_build

INTERNAL = "internal"
#: Synthetic data settings used when a profile leaves one out (patients, scale, seed).
SYNTH_DEFAULTS: dict[str, Any] = {"patients": synthetic.DEFAULT_PATIENTS, "scale": 0.08, "seed": 0}
#: How each external dataset's replica is written and recognised.
REPLICA_WRITERS: dict[str, Callable[..., Path]] = {"cddcesm": cddcesm.write_replica,
                                                   "inbreast": inbreast.write_replica}
REPLICA_MARKERS = {"cddcesm": cddcesm.REPLICA_FILE, "inbreast": inbreast.REPLICA_FILE}
#: Readable dataset names for messages and tables.
DATASET_NAMES = {"inbreast": "INbreast", "cddcesm": "CDD-CESM", INTERNAL: "internal"}


@dataclass(frozen=True)
class DatasetPlan:
    """Where one dataset of a profile lives and how it is made when synthetic."""

    name: str  # "internal" or an external dataset's name
    root: Path
    manifest_dir: Path
    layout: str | None  # adapter layout; None = detect
    synth: dict[str, Any] | None  # patients, scale, seed when the data is synthetic
    preprocess: dict[str, Any]  # the profile's preprocess section with the dataset's overrides
    seed: int
    ratios: tuple[float, ...]

    @property
    def marker(self) -> str:
        """The file that marks a generated dataset (and records its settings)."""
        return "cohort.json" if self.name == INTERNAL else REPLICA_MARKERS[self.name]


def synth_settings(section: Mapping[str, Any] | None, fallback: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """patients, scale and seed of a synth section; missing ones from `fallback`, then SYNTH_DEFAULTS."""
    merged = {**SYNTH_DEFAULTS, **(fallback or {}), **(section or {})}
    return {"patients": int(merged["patients"]), "scale": float(merged["scale"]),
            "seed": int(merged["seed"])}


def prep_workers(profile: Mapping[str, Any], workers: int | None = None) -> int:
    """Processes for writing synthetic data and filling the cache (preprocess.workers, default 2)."""
    return workers if workers is not None else int((profile.get("preprocess") or {}).get("workers", 2))


def preprocess_settings(profile: Mapping[str, Any]) -> PreprocessSettings:
    """The cache's PreprocessSettings for a profile (its preprocess section)."""
    return PreprocessSettings.from_profile(dict(profile))


def external_manifest_dir(profile: Mapping[str, Any], name: str) -> Path:
    """Where an external dataset's manifest is written (beside the runs, never inside a release)."""
    return Path(profile["runs"]) / "manifests" / name


def plan_dataset(profile: Mapping[str, Any], name: str = INTERNAL) -> DatasetPlan:
    """The DatasetPlan of the internal cohort or of external dataset `name`, from the profile."""
    data = dict(profile.get("data") or {})
    preprocess = dict(profile.get("preprocess") or {})
    seed = int(profile.get("seed", 0))
    if name == INTERNAL:
        for key in ("root", "manifest"):
            if not data.get(key):
                raise ValueError(f"profile {profile.get('name', '?')!r} has no data.{key}")
        dataset = str(data.get("dataset", "synthetic"))
        ratios = tuple(float(r) for r in data.get("split", manifest_mod.DEFAULT_RATIOS))
        layout = "ge" if dataset == "synthetic" else (None if dataset == "auto" else dataset)
        synth = synth_settings(data.get("synth")) if dataset == "synthetic" else None
        return DatasetPlan(INTERNAL, Path(data["root"]), Path(data["manifest"]), layout, synth, preprocess,
                           seed, ratios)
    if name not in REPLICA_WRITERS:
        raise ValueError(f"unknown external dataset {name!r}; expected one of {sorted(REPLICA_WRITERS)}")
    spec = dict((profile.get("external") or {}).get(name) or {})
    if not spec.get("root"):
        raise ValueError(f"profile {profile.get('name', '?')!r} has no external.{name}.root")
    synth = synth_settings(spec["synth"], data.get("synth")) if spec.get("synth") else None
    # A detector encodes grey levels its own way: external.<name>.preprocess overrides the window for it.
    preprocess = {**preprocess, **(spec.get("preprocess") or {})}
    return DatasetPlan(name, Path(spec["root"]), external_manifest_dir(profile, name), name, synth,
                       preprocess, seed, manifest_mod.DEFAULT_RATIOS)


def write_synthetic(plan: DatasetPlan, workers: int) -> None:
    """Write the synthetic cohort or replica a plan describes."""
    assert plan.synth is not None
    if plan.name == INTERNAL:
        synthetic.write_cohort(plan.root, **plan.synth, workers=workers)
    else:
        REPLICA_WRITERS[plan.name](plan.root, **plan.synth, workers=workers)


def ensure_manifest(plan: DatasetPlan, workers: int) -> Manifest:
    """The plan's manifest; writes its synthetic data and scans (and splits) the folder when missing."""
    if plan.synth is not None:
        synthetic.check_generated(plan.root, plan.marker, plan.synth, plan.manifest_dir)
        if not _has_data(plan):
            write_synthetic(plan, workers)
    if not (plan.manifest_dir / "manifest.json").is_file() and not plan.root.is_dir():
        raise FileNotFoundError(f"{DATASET_NAMES.get(plan.name, plan.name)} dataset folder not found: "
                                f"{plan.root} (set {_root_key(plan)} in the profile)")
    return load_or_build(plan.manifest_dir, plan.root, plan.layout, plan.seed, plan.ratios)


def _has_data(plan: DatasetPlan) -> bool:
    """Whether the dataset folder already holds data (the internal cohort: its labels.csv)."""
    if plan.name == INTERNAL:
        return (plan.root / "labels.csv").is_file()
    return plan.root.exists()


def _root_key(plan: DatasetPlan) -> str:
    return "data.root" if plan.name == INTERNAL else f"external.{plan.name}.root"


def fill_cache(profile: Mapping[str, Any], manifest: Manifest, manifest_dir: str | os.PathLike,
               workers: int | None = None, progress: bool = True) -> tuple[TensorCache, FillResult]:
    """Fill the profile's tensor cache for `manifest`; images that fail exclude their patients (saved).

    Returns (TensorCache, FillResult).
    """
    cache_dir = (profile.get("preprocess") or {}).get("cache")
    if not cache_dir:
        raise ValueError(f"profile {profile.get('name', '?')!r} has no preprocess.cache")
    cache = TensorCache(cache_dir, preprocess_settings(profile))
    result = cache.fill(manifest, workers=prep_workers(profile, workers), progress=progress)
    if apply_exclusions(manifest, result.exclusions):
        manifest.save(Path(manifest_dir))
    return cache, result


def prepare_manifest(profile: Mapping[str, Any], workers: int | None = None, name: str = INTERNAL
                     ) -> Manifest:
    """A dataset's Manifest (the internal cohort by default), writing and scanning it when missing."""
    return ensure_manifest(plan_dataset(profile, name), prep_workers(profile, workers))


def prepare_data(profile: Mapping[str, Any], workers: int | None = None, progress: bool = True,
                 name: str = INTERNAL) -> tuple[Manifest, TensorCache]:
    """(Manifest, filled TensorCache) of the internal cohort or of external dataset `name`."""
    plan = plan_dataset(profile, name)
    workers = prep_workers(profile, workers)
    manifest = ensure_manifest(plan, workers)
    cache, _ = fill_cache({**profile, "preprocess": plan.preprocess}, manifest, plan.manifest_dir, workers,
                          progress)
    return manifest, cache
