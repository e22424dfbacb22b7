"""The training loop of one stage: `fit` (SGD, MultiStepLR, early stopping, resumable, DDP-aware).

Both stages run `fit`: SGD (momentum 0.9, weight decay 5e-4), lr halved at the profile's milestones
(MultiStepLR, stepped once per epoch), early stopping on the validation loss with patience, the best
epoch kept. `last.pt` is written after every epoch with the model, optimiser, scheduler, RNG and
early-stopping state; a rerun with the same run directory resumes from it and ends with the same weights
and metrics as an uninterrupted run (data order and augmentation are keyed by (seed, epoch), not by how
many epochs this process has seen). `best.pt` holds the best epoch's weights and the `arch` dict. Every
checkpoint is written and verified by cemlib.model.checkpoints. Both, and settings.json beside log.csv, record
the settings that decide the weights (`training_settings` plus what the caller passes); a folder that
recorded other settings is neither reused nor resumed (SettingsChanged names each change).

That promise holds on the CPU; on CUDA the profile default is `deterministic: false` (cuDNN picks the
fastest, not always repeatable, kernels), and even `deterministic: true` leaves some CUDA kernels (max-pool
backward) without a deterministic version, so a resumed GPU run matches an uninterrupted one closely, not
bit for bit. With several processes (torchrun) each rank draws its share of every epoch, validation is
sharded and gathered so every rank takes the same early-stopping decision, and rank 0 alone writes
checkpoints and logs; each rank's random-number states travel in last.pt.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cemlib.core.devices import DistContext, choose_kernels, resolve_device, set_seed
from cemlib.core.fileio import atomic_write_text
from cemlib.core.settings import Settings, TrainSettings
from cemlib.data.datasets import make_loader, set_loader_epoch
from cemlib.model import networks as models
from cemlib.model.checkpoints import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from cemlib.training import tracking

STAGES = ("stage1", "stage2")
LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "val_auc", "lr", "seconds")
#: The readable record of a stage's settings, beside its log.csv.
SETTINGS_FILE = "settings.json"
#: Training settings that do not change the weights a stage ends with, so they never block a reuse. The
#: kernel choice does change the last bits, but a model trained on a GPU server must stay usable on a
#: laptop; it is recorded as context (with the device).
NOT_BINDING = ("deterministic", "workers", "progress", "check_every")
#: The key of the global batch: the loss of a step averages batch_size x processes samples.
GLOBAL_BATCH = "train.batch_size x processes"


class SettingsChanged(ValueError):
    """A stage folder trained under other settings than the profile asks for (reuse and resume refused)."""

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StageRun:
    """One training stage: which stage, the profile's training settings and the device it runs on.

    `train` is the profile's own TrainSettings with its open choices (seed, deterministic, check_every)
    resolved by `from_profile`; `fit` reads every value from it, so each setting has one type and one
    default (cemlib.core.settings.TrainSettings).
    """

    stage: str
    train: TrainSettings = field(default_factory=TrainSettings)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.epochs < 1:
            raise ValueError(f"{self.stage}: epochs must be at least 1, got {self.epochs}")
        if self.train.patience < 1:
            raise ValueError(f"{self.stage}: patience must be at least 1, got {self.train.patience}")
        for name in ("seed", "deterministic", "check_every"):
            if getattr(self.train, name) is None:
                raise ValueError(f"train.{name} is unresolved; build the stage with StageRun.from_profile "
                                 "or resolved_training")

    @property
    def epochs(self) -> int:
        """The epochs this stage may run (train.stage1_epochs or train.stage2_epochs)."""
        return getattr(self.train, f"{self.stage}_epochs")

    @property
    def seed(self) -> int:
        """The training seed (init, data order, augmentation)."""
        return self.train.seed

    @classmethod
    def from_profile(cls, profile: Settings, stage: str) -> StageRun:
        """The stage of a profile: its train section with seed, kernels and NaN checks resolved."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        return cls(stage, resolved_training(profile.train, profile.device, profile.seed), profile.device)


def resolved_training(train: TrainSettings, device: str = "cpu", seed: int = 0) -> TrainSettings:
    """`train` with its open choices made: the seed (else `seed`), deterministic kernels on the CPU only,
    NaN checks every step on the CPU and every 25 on a GPU (no sync per step)."""
    return replace(
        train,
        seed=seed if train.seed is None else train.seed,
        deterministic=(not device.startswith("cuda")) if train.deterministic is None else train.deterministic,
        check_every=(1 if device == "cpu" else 25) if train.check_every is None else train.check_every,
    )


def training_settings(config: StageRun, context: DistContext | None = None) -> dict[str, Any]:
    """The settings of a stage that decide its weights, by profile key (train.lr, train.seed, ...)."""
    context = context or DistContext()
    other_stage = next(s for s in STAGES if s != config.stage)
    skipped = {*NOT_BINDING, f"{other_stage}_epochs", "batch_size"}
    settings = {f"train.{f.name}": getattr(config.train, f.name) for f in fields(config.train)
                if f.name not in skipped}
    settings[GLOBAL_BATCH] = config.train.batch_size * context.world_size
    return plain_settings(settings)


def plain_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as JSON gives them back (tuples as lists): recorded and requested values compare equal."""
    return json.loads(json.dumps(dict(settings), sort_keys=True))


def recorded_settings(run_dir: Path) -> dict[str, Any] | None:
    """The settings recorded in a stage folder's last.pt (None when it has no last.pt)."""
    last_path = run_dir / "last.pt"
    return load_checkpoint(last_path).get("settings", {}) if last_path.exists() else None


def check_settings(run_dir: Path, wanted: Mapping[str, Any], recorded: Mapping[str, Any] | None,
                   skip: tuple[str, ...] = ()) -> None:
    """SettingsChanged naming each setting in which a stage folder's record differs from `wanted`."""
    if recorded is None:
        return
    if not recorded:
        raise SettingsChanged(f"{run_dir}: trained before checkpoints recorded their settings, so it cannot "
                              "be told whether this profile made it; delete the folder to retrain")
    missing = "(not recorded)"
    changed = [(key, recorded.get(key, missing), value) for key, value in plain_settings(wanted).items()
               if key not in skip and recorded.get(key, missing) != value]
    if not changed:
        return
    if len(changed) == 1:
        key, old, new = changed[0]
        said = f"trained with {key}={_shown(old)}, the profile asks {_shown(new)}"
    else:
        said = "trained with " + ", ".join(f"{key}={_shown(old)} (the profile asks {_shown(new)})"
                                           for key, old, new in changed)
    raise SettingsChanged(f"{run_dir}: {said}; delete the folder to retrain")


def _shown(value: Any) -> str:
    """A setting's value as a user writes it (--set style)."""
    return json.dumps(value) if isinstance(value, list | dict | bool) or value is None else str(value)


def loader_for(dataset: Dataset, config: StageRun, shuffle: bool, context: DistContext | None = None
               ) -> DataLoader:
    """The kit's loader (cemlib.data.datasets.make_loader) with a stage's batch size, seed, workers, shard."""
    context = context or DistContext()
    return make_loader(dataset, config.train.batch_size, shuffle=shuffle, seed=config.seed,
                       workers=config.train.workers, pin_memory=config.device.startswith("cuda"),
                       rank=context.rank, world_size=context.world_size)


def image_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Stage-1 loss: cross-entropy of (B, 2) logits against (B,) labels."""
    return F.cross_entropy(logits, y.long())


def to_float32(outputs: Any) -> Any:
    """Outputs of an autocast forward in float32, so losses and scores are computed at full precision."""
    if isinstance(outputs, Mapping):
        return {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in outputs.items()}
    return outputs.float()


def batch_to(
    batch: Mapping[str, Any], device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, ...]:
    """(x, y) of a batch on the device; 4-D image batches in channels_last when asked."""
    x = batch["x"].to(device, non_blocking=True)
    y = batch["y"].to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y




def _rng_state(device: torch.device) -> dict[str, Any]:
    """Python, numpy, torch (and `device`'s CUDA) RNG states as tensors and plain types (weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, py_state, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": [int(v) for v in py_state], "gauss": gauss},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: Mapping[str, Any], device: torch.device) -> None:
    """Inverse of _rng_state."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            np_state["kind"],
            np_state["keys"].cpu().numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and device.type == "cuda":
        cuda_state = state["cuda"]
        if isinstance(cuda_state, list | tuple):  # earlier checkpoints: one state per visible GPU
            cuda_state = cuda_state[min(device.index or 0, len(cuda_state) - 1)]
        torch.cuda.set_rng_state(cuda_state.cpu(), device)


def _rng_states_by_rank(device: torch.device, context: DistContext) -> list[dict[str, Any]]:
    """Every rank's RNG states, rank order (a collective: all ranks call it)."""
    state = _rng_state(device)
    if not context.enabled:
        return [state]
    states: list[Any] = [None] * context.world_size
    dist.all_gather_object(states, state)
    return states


def _own_rng_state(checkpoint: Mapping[str, Any], context: DistContext) -> Mapping[str, Any]:
    """This rank's RNG states from a last.pt (rank 0's when it was written by fewer processes)."""
    by_rank = checkpoint.get("rng_by_rank") or [checkpoint["rng"]]
    return by_rank[context.rank] if context.rank < len(by_rank) else checkpoint["rng"]




@dataclass
class FitResult:
    """Where the stage's checkpoints are and how it went."""

    best_checkpoint: Path
    last_checkpoint: Path
    log: Path
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False


@dataclass
class EarlyStopping:
    """Validation-loss bookkeeping: the best loss so far, its epoch, and epochs since it improved."""

    patience: int
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False

    def update(self, loss: float, epoch: int) -> bool:
        """Record an epoch's validation loss; True when it is a new best."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            return True
        self.bad_epochs += 1
        self.stopped = self.bad_epochs >= self.patience
        return False

    def state(self) -> dict[str, Any]:
        """Plain-type state for the checkpoint."""
        return asdict(self)


def stopping_note(config: StageRun, stopper: EarlyStopping, epochs_run: int) -> str:
    """One line saying how a stage ended: early stopping or the epoch limit, and the epoch kept."""
    kept = f"keeping epoch {stopper.best_epoch} (validation loss {stopper.best_loss:.4f})"
    if stopper.stopped:
        return (f"{config.stage}: early stopping after epoch {epochs_run}, the validation loss did not "
                f"improve for {stopper.patience} epochs; {kept}")
    return f"{config.stage}: ran all {epochs_run} of {config.epochs} epochs; {kept}"


def raise_if_nonfinite(
    losses: list[torch.Tensor], first_step: int, stage: str, epoch: int, context: DistContext | None = None
) -> None:
    """RuntimeError naming stage, epoch and step of the first NaN/infinite loss among `losses`.

    With several processes every rank checks every rank's losses (a collective), so all of them stop
    together instead of the others waiting in the next gradient all-reduce.
    """
    values = torch.stack(losses).float()
    local = (~torch.isfinite(values)).to(torch.int32)
    anywhere = local.clone()
    if context is not None and context.enabled:
        dist.all_reduce(anywhere, op=dist.ReduceOp.MAX)
    local, steps = local.cpu(), anywhere.cpu().nonzero()
    if len(steps):
        index = int(steps[0, 0])
        value = values[index].item() if local[index] else "not finite in another process"
        raise RuntimeError(
            f"{stage}: the training loss became {value} at epoch {epoch}, step "
            f"{first_step + index + 1}; training stopped (lower the learning rate, check the inputs for "
            "NaN values, or turn off mixed precision)"
        )


def _train_one_epoch(
    step_model: nn.Module,
    loss_fn: LossFn,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    config: StageRun,
    device: torch.device,
    epoch: int,
    context: DistContext,
) -> float:
    """One pass over the training data; returns the mean training loss over every rank's samples."""
    step_model.train()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    pending: list[torch.Tensor] = []
    first_pending = 0
    bar = tqdm(
        loader,
        desc=f"{config.stage} epoch {epoch}/{config.epochs}",
        leave=False,
        disable=not (config.train.progress and context.is_main),
        dynamic_ncols=True,
    )
    for step, batch in enumerate(bar):
        x, y = batch_to(batch, device, config.train.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.train.amp):
            outputs = step_model(x)
        loss = loss_fn(to_float32(outputs), y)
        if not pending:
            first_pending = step
        pending.append(loss.detach())
        if len(pending) >= config.train.check_every:
            raise_if_nonfinite(pending, first_pending, config.stage, epoch, context)
            bar.set_postfix(loss=f"{pending[-1].item():.4f}", refresh=False)
            pending = []
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * len(y)
        count += len(y)
    if pending:
        raise_if_nonfinite(pending, first_pending, config.stage, epoch, context)
    if context.enabled:
        sums = torch.stack([total, count])
        dist.all_reduce(sums)
        total, count = sums[0], sums[1]
    return float(total / count) if count > 0 else math.nan


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, NaN when only one class is present (early epochs of a tiny validation set)."""
    if len(np.unique(labels)) < 2:
        return math.nan
    return float(roc_auc_score(labels, scores))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    loader: DataLoader,
    config: StageRun,
    device: torch.device,
    context: DistContext | None = None,
) -> dict[str, float]:
    """Validation loss (per-sample mean of loss_fn) and AUC (per breast in stage 2, per image in stage 1)."""
    context = context or DistContext()
    model.eval()
    loss_sum, n = 0.0, 0
    scores: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for batch in loader:
        x, y = batch_to(batch, device, config.train.channels_last)
        # Full precision: bf16 logits would quantise the scores (ties in the AUC) and the stopping loss.
        outputs = model(x)
        loss_sum += float(loss_fn(outputs, y)) * len(y)
        n += len(y)
        scores.append(models.malignant_probability(outputs).reshape(-1).cpu().numpy())
        labels.append(y.reshape(-1).cpu().numpy())
    part = (
        loss_sum,
        n,
        np.concatenate(scores) if scores else np.zeros(0),
        np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
    )
    parts = [part]
    if context.enabled:
        parts = [None] * context.world_size  # type: ignore[list-item]
        dist.all_gather_object(parts, part)
    loss_total = sum(p[0] for p in parts)
    count = sum(p[1] for p in parts)
    all_scores = np.concatenate([p[2] for p in parts])
    all_labels = np.concatenate([p[3] for p in parts])
    loss = loss_total / count if count else math.nan
    if not math.isfinite(loss):
        raise RuntimeError(f"{config.stage}: the validation loss is {loss}; training stopped")
    return {"loss": loss, "auc": _auc(all_labels, all_scores), "n": float(count)}


def _broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's batch-norm statistics (DDP syncs gradients, not the running buffers)."""
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def _write_log(history: Sequence[Mapping[str, float]], path: Path) -> None:
    """The per-epoch CSV log (epoch, train_loss, val_loss, val_auc, lr, seconds), rewritten atomically."""
    frame = pd.DataFrame(list(history), columns=list(LOG_COLUMNS))
    atomic_write_text(path, frame.to_csv(index=False))


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train_loader: DataLoader,
    val_loader: DataLoader,
    config: StageRun,
    run_dir: str | os.PathLike,
    *,
    meta: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    context: DistContext | None = None,
) -> FitResult:
    """Train `model` for one stage, resuming from RUN/last.pt when present; return where the best epoch is.

    The model ends holding the best epoch's weights. `meta` (plain types) is stored in every checkpoint
    beside the arch dict, e.g. the inputs and preprocessing settings `cem predict` needs. `settings` (the
    architecture, data and input digests; `training_settings(config)` is added here) are recorded in every
    checkpoint and in settings.json: a finished stage is reused, and an interrupted one resumed, only when
    they match what RUN/last.pt recorded; otherwise SettingsChanged names each difference.
    """
    context = context or DistContext()
    run_dir = Path(run_dir)
    last_path, best_path, log_path = run_dir / "last.pt", run_dir / "best.pt", run_dir / "log.csv"
    device = resolve_device(config.device, context)
    arch = models.arch_of(model)
    if context.is_main:
        remove_stale_temporaries(run_dir)
    resume = load_checkpoint(last_path) if last_path.exists() else None
    wanted = plain_settings({**(settings or {}), **training_settings(config, context)})
    if resume is not None:
        _check_resumable(resume, arch, config, last_path)
        check_settings(run_dir, wanted, resume.get("settings", {}))
    if resume is not None and _stage_done(resume, config):
        return _finished_result(resume, model, run_dir)
    if resume is None:
        set_seed(config.seed + context.rank, config.train.deterministic)
    else:
        choose_kernels(config.train.deterministic)

    model.to(device)
    if config.train.channels_last:
        model.to(memory_format=torch.channels_last)
    train = config.train
    optimizer = make_sgd(model, train.lr, train.momentum, train.weight_decay, device)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(train.milestones), train.gamma)
    stopper = EarlyStopping(train.patience)
    history: list[dict[str, float]] = []
    if resume is not None:
        stopper, history = _resume_into(resume, model, optimizer, scheduler, config)
        _restore_rng(_own_rng_state(resume, context), device)
    start_epoch = len(history)

    step_model: nn.Module = model
    if context.enabled:
        step_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.train.compile:
        step_model = torch.compile(step_model)

    payload_base = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "stage": config.stage,
        "meta": dict(meta or {}),
        "config": {"stage": config.stage, "device": config.device, **asdict(config.train)},
        "settings": wanted,
        "context": _context_of(config, context),
    }
    if context.is_main:
        _write_settings(run_dir / SETTINGS_FILE, wanted, payload_base["context"])
    epochs = tqdm(
        range(start_epoch, config.epochs),
        desc=config.stage,
        initial=start_epoch,
        total=config.epochs,
        disable=not (config.train.progress and context.is_main),
        dynamic_ncols=True,
    )
    for epoch_index in epochs:
        epoch = epoch_index + 1
        started = time.perf_counter()
        set_loader_epoch(train_loader, config.seed, epoch_index)
        train_loss = _train_one_epoch(
            step_model, loss_fn, train_loader, optimizer, config, device, epoch, context
        )
        if context.enabled:
            _broadcast_buffers(model)
        val = evaluate(model, loss_fn, val_loader, config, device, context)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        improved = stopper.update(val["loss"], epoch)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_auc": val["auc"],
            "lr": lr,
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        epochs.set_postfix(val_loss=f"{val['loss']:.4f}", val_auc=f"{val['auc']:.3f}", refresh=False)
        rng_by_rank = _rng_states_by_rank(device, context)
        if context.is_main:
            state = model.state_dict()
            if improved:
                save_checkpoint({**payload_base, "model": state, "epoch": epoch, "metrics": row}, best_path)
            training_state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_by_rank[0],
                "rng_by_rank": rng_by_rank,
                "early_stopping": stopper.state(),
                "history": history,
                "finished": stopper.stopped or epoch >= config.epochs,
            }
            save_checkpoint({**payload_base, "model": state, "epoch": epoch, **training_state}, last_path)
            _write_log(history, log_path)
            tracking.epoch_logged(run_dir, row, config.epochs)
        if context.enabled:
            dist.barrier()
        if stopper.stopped:
            break
    epochs.close()
    if context.is_main and config.train.progress:
        tqdm.write(stopping_note(config, stopper, len(history)))
    best = load_checkpoint(best_path, map_location=device)
    model.load_state_dict(best["model"])
    return FitResult(
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        log=log_path,
        history=history,
        best_epoch=stopper.best_epoch,
        best_val_loss=stopper.best_loss,
        stopped_early=stopper.stopped,
    )


def _context_of(config: StageRun, context: DistContext) -> dict[str, Any]:
    """What a stage ran on, recorded beside its settings but never compared (it may move between machines)."""
    return {"device": config.device, "deterministic": config.train.deterministic,
            "processes": context.world_size, "torch": str(torch.__version__)}


def _write_settings(path: Path, settings: Mapping[str, Any], context: Mapping[str, Any]) -> None:
    """settings.json: the settings a stage's checkpoints record, readable without torch."""
    record = {"settings": dict(settings), "context (recorded, not compared)": dict(context)}
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def uses_fused_sgd(device: torch.device, fused: bool | None = None) -> bool:
    """Whether SGD runs fused: as asked, else on CUDA (there the 288M-parameter update is memory-bound)."""
    return device.type == "cuda" if fused is None else fused


def make_sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float, device: torch.device,
             fused: bool | None = None) -> torch.optim.SGD:
    """The paper's SGD, fused into one kernel where `uses_fused_sgd` says so."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                           fused=uses_fused_sgd(device, fused) or None)


def _resume_into(
    checkpoint: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: StageRun,
) -> tuple[EarlyStopping, list[dict[str, float]]]:
    """Put a last.pt's weights, optimiser and scheduler back; return its early stopping and history."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    stopper = EarlyStopping(**checkpoint["early_stopping"])
    stopper.patience, stopper.stopped = config.train.patience, False
    history = [dict(row) for row in checkpoint["history"]]
    if len(history) != int(checkpoint["epoch"]):
        raise ValueError(f"checkpoint of epoch {checkpoint['epoch']} holds {len(history)} log rows")
    return stopper, history


def _check_resumable(
    checkpoint: Mapping[str, Any], arch: Mapping[str, Any], config: StageRun, path: Path
) -> None:
    """A last.pt may only resume the same stage of the same architecture."""
    if checkpoint.get("stage") != config.stage or "optimizer" not in checkpoint:
        raise ValueError(f"{path}: not a {config.stage} training checkpoint; use another run directory")
    try:
        models.check_arch(checkpoint["arch"], arch)
    except ValueError as err:
        raise ValueError(f"{path}: cannot resume, {err}; use another run directory") from err


def _stage_done(checkpoint: Mapping[str, Any], config: StageRun) -> bool:
    """True when the checkpointed run stopped early or already reached the configured number of epochs."""
    return bool(checkpoint["early_stopping"]["stopped"]) or int(checkpoint["epoch"]) >= config.epochs


def _finished_result(checkpoint: Mapping[str, Any], model: nn.Module, run_dir: Path) -> FitResult:
    """A stage already completed in `run_dir`: load its best weights and report it without training."""
    best_path = run_dir / "best.pt"
    best = load_checkpoint(best_path)
    model.load_state_dict(best["model"])
    stop = checkpoint["early_stopping"]
    return FitResult(
        best_checkpoint=best_path,
        last_checkpoint=run_dir / "last.pt",
        log=run_dir / "log.csv",
        history=[dict(r) for r in checkpoint["history"]],
        best_epoch=int(stop["best_epoch"]),
        best_val_loss=float(stop["best_loss"]),
        stopped_early=bool(stop["stopped"]),
    )


