"""The two stages of the fusion network (Qian et al.) and `cem train`.

Stage 1 trains the CNN (ImageClassifier: view encoder + FC) alone on every training image (one LE/DES pair
per view); stage 2 fine-tunes that encoder inside the four-view fusion model. Both run
cemlib.training.loop.fit.

Run directory layout (one per model; a stage-1 folder can be reused by every fusion with the same inputs):
    RUN/stage1/last.pt  best.pt  log.csv  settings.json
    RUN/stage2/last.pt  best.pt  log.csv  settings.json

Settings bind to the stage they made. Each stage records (checkpoints' "settings", and settings.json) the
architecture, the inputs, the resolved augmentation, the preprocessing settings digest, the manifest digest
(cemlib.data.manifest.manifest_digest: images, labels, split), every training setting that changes the weights
(cemlib.training.loop.training_settings) and, for stage 2, the digest of the stage-1 weights it started
from. A finished stage is reused, and an interrupted one resumed, only when every one of them matches;
otherwise the run stops naming each change and the folder to delete (SettingsChanged, exit code 1).
Folder names come from cemlib.core.vocab.model_name (form "folder"): runs/<profile>/models/cem_mf_concat.

Multi-GPU / multi-node: launch with torchrun; WORLD_SIZE/RANK/LOCAL_RANK select DistributedDataParallel;
rank 0 prepares the data first while the others wait, and the run directory must be on a filesystem all
nodes share.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from cemlib.core.devices import DistContext, init_distributed, set_seed
from cemlib.core.fileio import folder_lock
from cemlib.core.settings import Settings
from cemlib.core.vocab import (
    FUSIONS,
    IMAGE_MODEL,
    INPUT_ENERGIES,
    PAPER_INPUT_SIZE,
    check_fusion,
    check_inputs,
    input_channels,
    model_name,
)
from cemlib.data import datasets as data
from cemlib.data.cache import TensorCache
from cemlib.data.manifest import Manifest, manifest_digest
from cemlib.model import networks as models
from cemlib.model.checkpoints import check_stage1_checkpoint, load_encoder, weights_digest
from cemlib.training.loop import (
    SETTINGS_FILE,
    FitResult,
    LossFn,
    SettingsChanged,
    StageRun,
    check_settings,
    fit,
    image_loss,
    loader_for,
    recorded_settings,
    training_settings,
)


def arch_from_profile(profile: Settings, fusion: str, inputs: str) -> models.Architecture:
    """The network's Architecture for a fusion and an inputs choice under a profile's model section."""
    check_choices(fusion, inputs)
    model = profile.model
    return models.Architecture(
        fusion=fusion,
        in_channels=input_channels(inputs),
        width=model.width,
        global_pool=model.global_pool,
        head=tuple(model.head),
        dropout=model.dropout,
        input_size=tuple(int(s) for s in profile.preprocess.size or PAPER_INPUT_SIZE),
        pool=model.pool,
        standardise=model.standardise,
    )


def check_choices(fusion: str, inputs: str) -> None:
    """Raise a ValueError for an unknown fusion or inputs name."""
    check_fusion(fusion)
    check_inputs(inputs)




def check_training_data(manifest: Manifest, inputs: str) -> None:
    """Raise a ValueError, before any training, when the manifest cannot train a model with `inputs`."""
    where = f"manifest of dataset {manifest.dataset!r} (root {manifest.root})"
    energies = set(manifest.images["energy"].astype(str)) if len(manifest.images) else set()
    missing = [e for e in INPUT_ENERGIES[inputs] if e not in energies]
    if missing:
        hint = "; train with --inputs le" if inputs == "cem" and "LE" in energies else ""
        raise ValueError(
            f"inputs {inputs!r} need {'+'.join(INPUT_ENERGIES[inputs])} images but the {where} has no "
            f"{'/'.join(missing)} images{hint}"
        )
    breasts = manifest.breasts
    train = breasts[breasts["split"] == "train"]
    labels = train["label"].astype(int)
    if train.empty:
        raise ValueError(f"the {where} has no training breasts (split 'train')")
    if int(labels.sum()) == 0 or int((labels == 0).sum()) == 0:
        kind = "malignant (positive)" if int(labels.sum()) == 0 else "benign (negative)"
        raise ValueError(f"the {where} has no {kind} training breasts; both classes are needed to train")
    if (breasts["split"] == "val").sum() == 0:
        raise ValueError(f"the {where} has no validation breasts (split 'val'); early stopping needs them")


def check_item_fits(dataset: Dataset, arch: models.Architecture, name: str) -> None:
    """Raise a ValueError when the dataset's tensors do not have the model's channels and size."""
    x = dataset[0]["x"]
    channels, size = int(x.shape[-3]), [int(s) for s in x.shape[-2:]]
    if channels != arch.in_channels:
        raise ValueError(
            f"{name}: the data has {channels} channel(s) per view but the model takes {arch.in_channels}"
        )
    if not arch.global_pool and size != list(arch.input_size):
        raise ValueError(
            f"{name}: images are {size[0]} x {size[1]} but the model's flatten head needs "
            f"{arch.input_size[0]} x {arch.input_size[1]}"
        )


def build_datasets(
    profile: Settings, manifest: Manifest, cache: TensorCache, inputs: str, stage: str, seed: int
) -> tuple[Dataset, Dataset]:
    """(train, val) datasets of a stage: images for stage 1, patients for stage 2; train is augmented."""
    cls = data.ImageDataset if stage == "stage1" else data.PatientDataset
    augment = data.Augment.from_profile(dict(profile))
    train_set = cls(manifest, cache, "train", inputs=inputs, augment=augment, seed=seed)
    val_set = cls(manifest, cache, "val", inputs=inputs, augment=None, seed=seed)
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"{stage}: empty dataset (train {len(train_set)}, val {len(val_set)} items)")
    return train_set, val_set


# ----------------------------------------------------------------------------------------------------------
# The two stages


@dataclass(frozen=True)
class StagePlan:
    """What one stage trains: its model, data and settings, checked before anything runs."""

    model: nn.Module
    loss_fn: LossFn
    train_set: Dataset
    val_set: Dataset
    config: StageRun
    run_dir: Path
    meta: dict[str, Any]
    #: What decides the weights besides the training settings: architecture, augmentation, input digests.
    settings: dict[str, Any] = field(default_factory=dict)

    def run(self, context: DistContext | None = None) -> FitResult:
        """Fit this stage (resuming from its run directory when a last.pt is there)."""
        context = context or DistContext()
        train_loader = loader_for(self.train_set, self.config, shuffle=True, context=context)
        val_loader = loader_for(self.val_set, self.config, shuffle=False, context=context)
        return fit(
            self.model, self.loss_fn, train_loader, val_loader, self.config, self.run_dir,
            meta=self.meta, settings=self.settings, context=context,
        )

    def check(self, context: DistContext | None = None, skip: tuple[str, ...] = ()) -> None:
        """Refuse, before anything trains, a stage folder that recorded other settings (SettingsChanged)."""
        wanted = {**self.settings, **training_settings(self.config, context)}
        check_settings(self.run_dir, wanted, recorded_settings(self.run_dir), skip)


def _meta(profile: Settings, manifest: Manifest, fusion: str, inputs: str) -> dict[str, Any]:
    """Plain-type facts stored in checkpoints: what the model takes and how its inputs were made."""
    preprocess = profile.preprocess.as_dict()
    return {
        "fusion": fusion,
        "inputs": inputs,
        "profile": profile.name,
        "dataset": str(manifest.dataset),
        "preprocess": preprocess,
    }


#: The stage-2 setting naming the stage-1 weights it started from (known once stage 1 has run).
STAGE1_DIGEST = "stage1.weights_digest"


def stage_settings(profile: Settings, arch: models.Architecture, inputs: str, manifest: Manifest,
                   cache: TensorCache) -> dict[str, Any]:
    """What decides a stage's weights besides the training settings: architecture, augmentation, inputs."""
    augment = data.Augment.from_profile(dict(profile))
    settings: dict[str, Any] = {"inputs": inputs}
    settings |= {f"model.{key}": value for key, value in arch.as_dict().items()}
    settings |= {f"augment.{key}": getattr(augment, key) for key in ("hflip", "vflip", "rotate", "per_view")}
    settings["preprocess.digest"] = cache.settings.digest()
    settings["data.manifest_digest"] = manifest_digest(manifest)
    return settings


def plan_stage1(
    profile: Settings, inputs: str, run_dir: str | os.PathLike, manifest: Manifest, cache: TensorCache
) -> StagePlan:
    """Stage 1: the ImageClassifier on every training image, checked against the data."""
    config = StageRun.from_profile(profile, "stage1")
    check_training_data(manifest, inputs)
    arch = arch_from_profile(profile, IMAGE_MODEL, inputs)
    train_set, val_set = build_datasets(profile, manifest, cache, inputs, "stage1", config.seed)
    check_item_fits(train_set, arch, "stage 1 training images")
    set_seed(config.seed, config.train.deterministic)
    model = models.build_image_classifier(**arch.encoder_options(), pretrained=_pretrained(profile))
    if arch.standardise:
        model.encoder.set_input_statistics(*data.channel_statistics(
            data.ImageDataset(manifest, cache, "train", inputs=inputs, augment=None)))
    settings = stage_settings(profile, arch, inputs, manifest, cache)
    settings["model.pretrained"] = _pretrained(profile)
    return StagePlan(
        model, image_loss, train_set, val_set, config, Path(run_dir),
        _meta(profile, manifest, IMAGE_MODEL, inputs), settings,
    )


def plan_stage2(
    profile: Settings,
    fusion: str,
    inputs: str,
    run_dir: str | os.PathLike,
    manifest: Manifest,
    cache: TensorCache,
    stage1_checkpoint: str | os.PathLike | None,
) -> StagePlan:
    """Stage 2: the fusion model, its encoder (and for "none" its classifier) taken from stage 1."""
    config = StageRun.from_profile(profile, "stage2")
    check_training_data(manifest, inputs)
    arch = arch_from_profile(profile, fusion, inputs)
    stage1 = check_stage1_checkpoint(stage1_checkpoint, arch) if stage1_checkpoint is not None else None
    train_set, val_set = build_datasets(profile, manifest, cache, inputs, "stage2", config.seed)
    check_item_fits(train_set, arch, "stage 2 training exams")
    set_seed(config.seed, config.train.deterministic)
    model = models.model_from_arch(arch)
    meta = _meta(profile, manifest, fusion, inputs)
    meta["stage1"] = str(stage1_checkpoint) if stage1_checkpoint is not None else ""
    settings = stage_settings(profile, arch, inputs, manifest, cache)
    settings[STAGE1_DIGEST] = weights_digest(stage1) if stage1 is not None else None
    return StagePlan(model, models.fusion_loss, train_set, val_set, config, Path(run_dir), meta, settings)


def _pretrained(profile: Settings) -> str | None:
    """The profile's model.pretrained (a local state-dict path or "imagenet"), or None."""
    return profile.model.pretrained or None


def train_stage1(
    profile: Settings,
    inputs: str,
    run_dir: str | os.PathLike,
    *,
    manifest: Manifest,
    cache: TensorCache,
) -> Path:
    """Train (or resume, or reuse when finished) stage 1 in `run_dir`; returns its best checkpoint."""
    check_choices(IMAGE_MODEL, inputs)
    context = init_distributed(profile.device)
    with stage_locks(context, Path(run_dir)):
        plan = plan_stage1(profile, inputs, run_dir, manifest, cache)
        return plan.run(context).best_checkpoint


def train(
    profile: Settings,
    fusion: str,
    inputs: str,
    run_dir: str | os.PathLike,
    stage1_checkpoint: str | os.PathLike | None = None,
    *,
    manifest: Manifest,
    cache: TensorCache,
) -> Path:
    """Both stages of one model into RUN/stage1 and RUN/stage2; returns the best stage-2 checkpoint.

    With `stage1_checkpoint` (e.g. a stage 1 shared by the four fusions of one inputs type) stage 1 is
    skipped. Every check (names, channels, labels, checkpoint architecture) runs before any training.
    """
    check_choices(fusion, inputs)
    if fusion == IMAGE_MODEL:
        raise ValueError(f"fusion must be one of {FUSIONS}")
    run_dir = Path(run_dir)
    context = init_distributed(profile.device)
    folders = [run_dir / "stage2"] if stage1_checkpoint is not None else [run_dir / "stage1",
                                                                          run_dir / "stage2"]
    with stage_locks(context, *folders):  # held from the checks to the last epoch of both stages
        stage2 = plan_stage2(profile, fusion, inputs, run_dir / "stage2", manifest, cache, stage1_checkpoint)
        if stage1_checkpoint is None:
            stage1 = plan_stage1(profile, inputs, run_dir / "stage1", manifest, cache)
            stage1.check(context)
            stage2.check(context, skip=(STAGE1_DIGEST,))  # both refused before either trains
            stage1_checkpoint = stage1.run(context).best_checkpoint
            stage2.meta["stage1"] = str(stage1_checkpoint)
            stage2.settings[STAGE1_DIGEST] = weights_digest(stage1_checkpoint)
        load_stage1(stage2.model, stage1_checkpoint)
        return stage2.run(context).best_checkpoint


@contextlib.contextmanager
def stage_locks(context: DistContext, *folders: Path) -> Iterator[None]:
    """Hold the stage folders for this run; a second `cem train` into them is refused (FolderInUse).

    Under torchrun only rank 0 writes the folders, so it alone takes the locks.
    """
    with contextlib.ExitStack() as stack:
        if context.is_main:
            for folder in folders:
                stack.enter_context(folder_lock(folder, "cem train"))
        yield


def stage1_dir(profile: Settings, inputs: str) -> Path:
    """runs/<profile>/models/<inputs>_stage1: the stage-1 CNN shared by the fusions of one input type."""
    return runs_dir(profile) / "models" / model_name("stage1", inputs, form="folder")


def fusion_dir(profile: Settings, fusion: str, inputs: str) -> Path:
    """runs/<profile>/models/<inputs>_<fusion>: one fusion model (its stage 2 in ./stage2)."""
    return runs_dir(profile) / "models" / model_name(fusion, inputs, form="folder")


def runs_dir(profile: Settings) -> Path:
    """The profile's runs folder (checkpoints, logs, predictions)."""
    if not profile.runs:
        raise ValueError(f"profile {profile.name!r} has no runs folder")
    return Path(profile.runs)


def train_with_shared_stage1(profile: Settings, fusion: str, inputs: str, manifest: Manifest,
                             cache: TensorCache) -> Path:
    """Train (or resume, or reuse) one model in the study layout; returns its best stage-2 checkpoint.

    Stage 1 lives in models/<inputs>_stage1 and is shared by the four fusions of that input type;
    stage 2 lives in models/<inputs>_<fusion>/stage2. `cem train` and the notebooks both use it.
    """
    folders = [fusion_dir(profile, fusion, inputs) for fusion in FUSIONS]
    trained = [folder for folder in folders if _has_trained(folder / "stage2")]
    try:
        stage1 = train_stage1(profile, inputs, stage1_dir(profile, inputs), manifest=manifest, cache=cache)
    except SettingsChanged as exc:  # retraining stage 1 outdates every fusion trained from it: say so at once
        if not trained:
            raise
        raise SettingsChanged(f"{exc}, and with it the fusion folders trained from it: "
                              + ", ".join(map(str, trained))) from exc
    stale = trained_from_another_stage1(profile, inputs, stage1)
    if stale:
        raise SettingsChanged(f"{stage1_dir(profile, inputs)} holds another stage 1 than these were trained "
                              "from: " + ", ".join(map(str, stale)) + "; delete them to retrain")
    return train(profile, fusion, inputs, fusion_dir(profile, fusion, inputs), stage1, manifest=manifest,
                 cache=cache)


def _has_trained(stage_dir: Path) -> bool:
    """Whether a stage folder holds a trained epoch and its settings record."""
    return (stage_dir / SETTINGS_FILE).is_file() and (stage_dir / "last.pt").is_file()


def trained_from_another_stage1(profile: Settings, inputs: str, stage1_checkpoint: str | os.PathLike
                                ) -> list[Path]:
    """Stage-2 folders of this input type that started from other stage-1 weights than these.

    Read from each folder's settings.json (written before its first epoch), not its checkpoints: a
    paper-size last.pt is gigabytes.
    """
    digest = weights_digest(stage1_checkpoint)
    stale = []
    for fusion in FUSIONS:
        record = fusion_dir(profile, fusion, inputs) / "stage2" / SETTINGS_FILE
        if not _has_trained(record.parent):
            continue
        recorded = json.loads(record.read_text()).get("settings", {})
        if recorded.get(STAGE1_DIGEST) not in (None, digest):
            stale.append(record.parent)
    return stale


def load_stage1(model: nn.Module, checkpoint: str | os.PathLike) -> None:
    """Put a stage-1 encoder (and, for fusion "none", its classifier) into a fusion model."""
    load_encoder(model, checkpoint)
