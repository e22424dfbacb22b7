"""Data preparation: a profile's datasets on disk, scanned, split and cached, ready to train or score.

One code path serves the internal cohort (the profile's `data` section) and every external validation
set (`external.<name>`): when the profile asks for synthetic data and none is there, the cohort or the
replica is written (cemlib.synthetic, the replica writers); an existing one must match the profile;
the folder is scanned by its source adapter into a manifest (split at patient level, or marked
external); then the tensor cache is filled, and images that fail preprocessing exclude their patients
with the reason (kept with the cache of those settings, never written into the manifest). Missing
synthetic settings of an external replica fall back to the internal cohort's, which fall back to
SYNTH_DEFAULTS: one set of defaults.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cemlib import synthetic
from cemlib.core.devices import DistContext, wait_for_rank0
from cemlib.core.settings import PreprocessSettingsSection, Settings
from cemlib.data import manifest as manifest_mod
from cemlib.data.cache import FillResult, TensorCache, apply_exclusions
from cemlib.data.manifest import Manifest
from cemlib.data.sources import load_or_build
from cemlib.pixels.settings import PreprocessSettings
from cemlib.synthetic import cddcesm as cddcesm_replica
from cemlib.synthetic import inbreast as inbreast_replica

INTERNAL = "internal"
#: Synthetic data settings used when a profile leaves one out (patients, scale, seed).
SYNTH_DEFAULTS: dict[str, Any] = {"patients": synthetic.DEFAULT_PATIENTS, "scale": 0.08, "seed": 0}
#: How each external dataset's replica is written and recognised.
REPLICA_WRITERS: dict[str, Callable[..., Path]] = {"cddcesm": cddcesm_replica.write_replica,
                                                   "inbreast": inbreast_replica.write_replica}
REPLICA_MARKERS = {"cddcesm": cddcesm_replica.REPLICA_FILE, "inbreast": inbreast_replica.REPLICA_FILE}
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
    preprocess: PreprocessSettingsSection  # the profile's, with the dataset's overrides
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
    settings = {"patients": int(merged["patients"]), "scale": float(merged["scale"]),
                "seed": int(merged["seed"])}
    if merged.get("control"):  # only when set, so cohorts written before the choice still match
        settings["control"] = True
    return settings


#: Processes writing synthetic data and filling the cache when the profile sets no preprocess.workers.
DEFAULT_PREP_WORKERS = 2


def prep_workers(profile: Settings, workers: int | None = None) -> int:
    """Processes for writing synthetic data and filling the cache (preprocess.workers)."""
    if workers is not None:
        return workers
    return profile.preprocess.workers if profile.preprocess.workers is not None else DEFAULT_PREP_WORKERS


def preprocess_settings(profile: Settings) -> PreprocessSettings:
    """The cache's PreprocessSettings for a profile (its preprocess section)."""
    return PreprocessSettings.from_profile(profile)


def external_manifest_dir(profile: Settings, name: str) -> Path:
    """Where an external dataset's manifest is written (beside the runs, never inside a release)."""
    return Path(_required(profile.runs, profile, "runs")) / "manifests" / name


def _required(value: Any, profile: Settings, key: str) -> Any:
    """A setting the step cannot do without; a ValueError naming it when the profile leaves it out."""
    if value is None or value == "":
        raise ValueError(f"profile {profile.name!r} has no {key}")
    return value


def plan_dataset(profile: Settings, name: str = INTERNAL) -> DatasetPlan:
    """The DatasetPlan of the internal cohort or of external dataset `name`, from the profile."""
    data = profile.data
    if name == INTERNAL:
        root = _required(data.root, profile, "data.root")
        manifest_dir = _required(data.manifest, profile, "data.manifest")
        layout = "ge" if data.dataset == "synthetic" else (None if data.dataset == "auto" else data.dataset)
        synth = synth_settings(data.synth) if data.dataset == "synthetic" else None
        return DatasetPlan(INTERNAL, Path(root), Path(manifest_dir), layout, synth, profile.preprocess,
                           profile.seed, tuple(data.split))
    if name not in REPLICA_WRITERS:
        raise ValueError(f"unknown external dataset {name!r}; expected one of {sorted(REPLICA_WRITERS)}")
    spec = profile.external.get(name)
    root = _required(spec.root if spec is not None else None, profile, f"external.{name}.root")
    synth = synth_settings(spec.synth, data.synth) if spec.synth is not None else None
    if synth is not None:
        synth.pop("control", None)  # the replicas stay as the releases are: the control is internal only
    # A detector encodes grey levels its own way: external.<name>.preprocess overrides the window for it.
    preprocess = dataclasses.replace(profile.preprocess, **dict(spec.preprocess or {}))
    return DatasetPlan(name, Path(root), external_manifest_dir(profile, name), name, synth, preprocess,
                       profile.seed, manifest_mod.DEFAULT_RATIOS)


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
    check_manifest(plan)
    return load_or_build(plan.manifest_dir, plan.root, plan.layout, plan.seed, plan.ratios)


def check_manifest(plan: DatasetPlan) -> None:
    """Raise a ValueError when a saved manifest was scanned from another folder or split otherwise."""
    path = plan.manifest_dir / "manifest.json"
    if not path.is_file():
        return
    recorded = json.loads(path.read_text())
    wanted: dict[str, Any] = {_root_key(plan): str(plan.root.resolve())}
    saved = manifest_mod.manifest_root(plan.manifest_dir)  # a relative root: from the manifest folder
    found: dict[str, Any] = {_root_key(plan): str(saved.resolve())}
    if recorded.get("split_seed") is not None:  # internal data (an external set is not split)
        ratios = manifest_mod.normalise_ratios(plan.ratios)
        wanted |= {"seed": plan.seed, "data.split": [float(r) for r in ratios]}
        found |= {"seed": recorded.get("split_seed"),
                  "data.split": [float(r) for r in recorded.get("split_ratios") or []]}
    changed = [f"{key} {found[key]!r} (the profile asks {value!r})" for key, value in wanted.items()
               if found[key] != value]
    if changed:
        raise ValueError(f"{plan.manifest_dir}: manifest made with {', '.join(changed)}; delete the folder "
                         "to scan and split the dataset again")


def _has_data(plan: DatasetPlan) -> bool:
    """Whether the dataset folder already holds data (the internal cohort: its labels.csv).

    A folder a killed writer left incomplete holds none: it is written again (the writers clear it).
    """
    if synthetic.interrupted(plan.root):
        return False
    if plan.name == INTERNAL:
        return (plan.root / "labels.csv").is_file()
    return plan.root.exists()


def _root_key(plan: DatasetPlan) -> str:
    return "data.root" if plan.name == INTERNAL else f"external.{plan.name}.root"


def fill_cache(profile: Settings, manifest: Manifest, workers: int | None = None, progress: bool = True
               ) -> tuple[TensorCache, FillResult]:
    """Fill the profile's tensor cache for `manifest`; images that fail exclude their patients in memory.

    The manifest folder is never rewritten: the failures stay with the cache of these settings (the
    datasets apply them again when they load). Returns (TensorCache, FillResult).
    """
    cache_dir = _required(profile.preprocess.cache, profile, "preprocess.cache")
    cache = TensorCache(cache_dir, preprocess_settings(profile))
    result = cache.fill(manifest, workers=prep_workers(profile, workers), progress=progress)
    apply_exclusions(manifest, result.exclusions)
    return cache, result


def prepare_manifest(profile: Settings, workers: int | None = None, name: str = INTERNAL
                     ) -> Manifest:
    """A dataset's Manifest (the internal cohort by default), writing and scanning it when missing."""
    return ensure_manifest(plan_dataset(profile, name), prep_workers(profile, workers))


def prepare_data(profile: Settings, workers: int | None = None, progress: bool = True,
                 name: str = INTERNAL) -> tuple[Manifest, TensorCache]:
    """(Manifest, filled TensorCache) of the internal cohort or of external dataset `name`."""
    plan = plan_dataset(profile, name)
    workers = prep_workers(profile, workers)
    manifest = ensure_manifest(plan, workers)
    profile = dataclasses.replace(profile, preprocess=plan.preprocess)
    cache, _ = fill_cache(profile, manifest, workers, progress)
    return manifest, cache


def data_for(profile: Settings, manifest: Manifest | None, cache: TensorCache | None,
             context: DistContext) -> tuple[Manifest, TensorCache]:
    """Given data, or the profile's (prepared by rank 0 first when several processes train together)."""
    if manifest is not None and cache is not None:
        return manifest, cache
    if manifest is not None or cache is not None:
        raise ValueError("give both manifest and cache, or neither (the profile's data is used)")
    if context.enabled and not context.is_main:
        wait_for_rank0()
        return prepare_data(profile, progress=False)
    prepared = prepare_data(profile)
    if context.enabled:
        wait_for_rank0()
    return prepared
