"""Two-stage training of the fusion network (Qian et al.): `cem train`.

Stage 1 trains the CNN (ImageClassifier: view encoder + FC) alone on every training image (one LE/DES pair
per view); stage 2 fine-tunes that encoder inside the four-view fusion model. Both stages run the same
loop, `fit`: SGD (momentum 0.9, weight decay 5e-4), lr halved at the profile's milestones (MultiStepLR,
stepped once per epoch), early stopping on the validation loss with patience, the best epoch kept.

Run directory layout (one per model; a stage-1 folder can be reused by every fusion with the same inputs):
    RUN/stage1/last.pt  best.pt  log.csv
    RUN/stage2/last.pt  best.pt  log.csv
`last.pt` is written atomically after every epoch with the model, optimiser, scheduler, RNG and
early-stopping state; a rerun with the same run directory resumes from it and ends with the same weights
and metrics as an uninterrupted run (data order and augmentation are keyed by (seed, epoch), not by how
many epochs this process has seen). `best.pt` holds the best epoch's weights and the `arch` dict.
That promise holds on the CPU; on CUDA the profile default is `deterministic: false` (cuDNN picks the
fastest, not always repeatable, kernels), and even `deterministic: true` leaves some CUDA kernels (max-pool
backward) without a deterministic version, so a resumed GPU run matches an uninterrupted one closely, not
bit for bit.

Multi-GPU / multi-node: launch with torchrun; WORLD_SIZE/RANK/LOCAL_RANK select DistributedDataParallel,
each rank draws its share of every epoch (DistributedSampler), validation is sharded and gathered so every
rank takes the same early-stopping decision, and rank 0 alone writes checkpoints and logs (the run
directory must be on a filesystem all nodes share). Each rank draws its own dropout masks (seed + rank) and
its random-number states travel in last.pt, so a resumed run continues every rank where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import timedelta
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
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm.auto import tqdm

from cemlib import models, tracking
from cemlib.fileio import atomic_path, atomic_write_text
from cemlib.profiles import add_override_option, load_profile, parse_overrides
from cemlib.views import VIEW_ORDER

#: How long the other ranks wait while rank 0 writes the cohort and fills the cache (tens of minutes at
#: paper size, longer than the 10 minutes NCCL allows a collective); training collectives keep the default.
DATA_WAIT_TIMEOUT = timedelta(hours=3)
#: inputs name -> number of channels per view (cem: LE in channel 0, DES in channel 1).
INPUT_CHANNELS = {"cem": 2, "le": 1}
#: energies each inputs choice needs in the manifest.
INPUT_ENERGIES = {"cem": ("LE", "DES"), "le": ("LE",)}
STAGES = ("stage1", "stage2")
CHECKPOINT_FORMAT = 1
LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "val_auc", "lr", "seconds")

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class FitConfig:
    """Everything `fit` needs besides the model and data; `from_profile` reads a profile's train section."""

    stage: str
    epochs: int
    batch_size: int = 8
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (10, 30, 40)
    gamma: float = 0.5
    patience: int = 5
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    workers: int = 0
    deterministic: bool = True
    progress: bool = True
    #: check the loss for NaN/inf every this many steps (1 on a CPU; more on a GPU: no sync per step).
    check_every: int = 1

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.epochs < 1:
            raise ValueError(f"{self.stage}: epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"{self.stage}: batch_size must be at least 1, got {self.batch_size}")
        if self.patience < 1:
            raise ValueError(f"{self.stage}: patience must be at least 1, got {self.patience}")

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any], stage: str, **changes: Any) -> FitConfig:
        """The stage's settings from a profile: train.{stage}_epochs, batch_size, lr, milestones, ..."""
        section = dict(profile.get("train") or {})
        key = f"{stage}_epochs"
        if key not in section:
            raise ValueError(f"profile {profile.get('name', '?')!r} has no train.{key}")
        device = str(profile.get("device", "cpu"))
        values: dict[str, Any] = {
            "stage": stage,
            "epochs": int(section[key]),
            "seed": int(profile.get("seed", 0)),
            "device": device,
            "deterministic": bool(section.get("deterministic", not device.startswith("cuda"))),
            "check_every": int(section.get("check_every", 1 if device == "cpu" else 25)),
        }
        known = {f.name for f in fields(cls)}
        for name in known - {"stage", "epochs", "seed", "device", "deterministic", "check_every"}:
            if name in section:
                values[name] = section[name]
        values["milestones"] = tuple(int(m) for m in values.get("milestones", cls.milestones))
        values.update(changes)
        return cls(**values)


@dataclass(frozen=True)
class DistContext:
    """This process's place in a (torchrun) process group; world_size 1 means a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and progress bars."""
        return self.rank == 0


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK); a no-op for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def resolve_device(name: str, context: DistContext) -> torch.device:
    """torch.device for a profile's `device` ("cpu", "cuda", "cuda:1"); a clear error when CUDA is absent."""
    if name.startswith("cuda"):
        if name != "cuda" and context.enabled:
            raise ValueError(
                f"device {name!r} names one GPU, but {context.world_size} processes train together; "
                "use device 'cuda' (each process takes the GPU of its LOCAL_RANK)"
            )
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"the profile asks for device {name!r} but no CUDA GPU is available; "
                "use --set device=cpu to train on the CPU"
            )
        return torch.device("cuda", context.local_rank) if name == "cuda" else torch.device(name)
    if name != "cpu":
        raise ValueError(f"unknown device {name!r}; expected 'cpu' or 'cuda'")
    return torch.device("cpu")


def inference_device(name: str | None = None) -> torch.device:
    """Where to score: the device named (checked as for training), else CUDA when present, else the CPU."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return resolve_device(name, DistContext())


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; deterministic kernels where torch has them, else the fastest ones."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- libraries may draw from the legacy global RNG
    torch.manual_seed(seed)
    choose_kernels(deterministic)


def choose_kernels(deterministic: bool) -> None:
    """Deterministic kernels where torch has them, or the fastest ones (cuDNN autotuning)."""
    if deterministic:  # cuBLAS repeats its results only with a fixed workspace, read at its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # Inputs have one fixed size, so cuDNN may time its convolution algorithms once and keep the fastest;
    # that choice can differ between runs, hence only when results need not repeat.
    torch.backends.cudnn.benchmark = not deterministic


def arch_from_profile(profile: Mapping[str, Any], fusion: str, inputs: str) -> dict[str, Any]:
    """The model's arch dict (see cemlib.models) for a fusion and an inputs choice under a profile."""
    check_choices(fusion, inputs)
    model = dict(profile.get("model") or {})
    size = (profile.get("preprocess") or {}).get("size", models.PAPER_INPUT_SIZE)
    return {
        "fusion": fusion,
        "in_channels": INPUT_CHANNELS[inputs],
        "width": float(model.get("width", 1.0)),
        "global_pool": bool(model.get("global_pool", False)),
        "head": [int(h) for h in model.get("head", models.PAPER_HEAD)],
        "dropout": float(model.get("dropout", 0.5)),
        "input_size": [int(s) for s in size],
    }


def check_choices(fusion: str, inputs: str) -> None:
    """Raise a ValueError for an unknown fusion or inputs name."""
    if fusion not in (*models.FUSIONS, models.IMAGE_MODEL):
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {models.FUSIONS}")
    if inputs not in INPUT_CHANNELS:
        raise ValueError(f"unknown inputs {inputs!r}; expected one of {tuple(INPUT_CHANNELS)}")


# ----------------------------------------------------------------------------------------------------------
# Data


class ShardSampler(Sampler[int]):
    """Every world_size-th index starting at rank, in order: a padding-free evaluation shard."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(
    dataset: Dataset, config: FitConfig, shuffle: bool, context: DistContext | None = None
) -> DataLoader:
    """A DataLoader whose order depends only on (seed, epoch): shuffled shards for training, fixed for eval.

    Training uses DistributedSampler (also for one process), re-seeded by `fit` at each epoch through
    set_epoch, so that a resumed run sees the same batches as an uninterrupted one.
    """
    context = context or DistContext()
    sampler: Sampler[int]
    if shuffle:
        sampler = DistributedSampler(
            dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=config.seed
        )
    else:
        sampler = ShardSampler(len(dataset), context.rank, context.world_size)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=config.device.startswith("cuda"),
        generator=torch.Generator().manual_seed(config.seed),
        worker_init_fn=_seed_worker if config.workers > 0 else None,
        persistent_workers=False,
    )


def _seed_worker(worker_id: int) -> None:
    """Loader workers: python/numpy seeded from torch's per-worker seed, one thread each."""
    from cemlib.data import seed_worker

    seed_worker(worker_id)


def _set_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Key the loader's shuffling, worker seeds and the dataset's augmentation to (seed, epoch)."""
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 1_000_003 + epoch)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)


def image_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Stage-1 loss: cross-entropy of (B, 2) logits against (B,) labels."""
    return F.cross_entropy(logits, y.long())


def malignant_scores(outputs: Any) -> torch.Tensor:
    """Flat malignant probabilities: per breast (L, R per patient) (fusion), per image (logits)."""
    if isinstance(outputs, Mapping):
        return models.malignancy_scores(outputs).reshape(-1)
    return torch.softmax(outputs.float(), dim=-1)[:, 1]


def _to_float(outputs: Any) -> Any:
    """Outputs of an autocast forward in float32, so losses and scores are computed at full precision."""
    if isinstance(outputs, Mapping):
        return {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in outputs.items()}
    return outputs.float()


def _batch_to(
    batch: Mapping[str, Any], device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, ...]:
    """(x, y) of a batch on the device; 4-D image batches in channels_last when asked."""
    x = batch["x"].to(device, non_blocking=True)
    y = batch["y"].to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


# ----------------------------------------------------------------------------------------------------------
# Checkpoints


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


def save_checkpoint(payload: Mapping[str, Any], path: Path) -> Path:
    """torch.save through a temporary file renamed into place: readers never see half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A cemlib checkpoint read with torch.load(weights_only=True); clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which one
        raise ValueError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, Mapping) or "arch" not in checkpoint or "model" not in checkpoint:
        raise ValueError(f"{path}: not a cemlib checkpoint (it needs 'arch' and 'model' entries)")
    return dict(checkpoint)


def model_from_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike = "checkpoint") -> nn.Module:
    """Rebuild the network stored in a checkpoint dict and load its weights (errors name `path`)."""
    try:
        model = models.model_from_arch(checkpoint["arch"])
        models.load_model_state(model, checkpoint["model"])
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return model


def check_stage1_checkpoint(path: str | os.PathLike, arch: Mapping[str, Any]) -> dict[str, Any]:
    """Load a stage-1 checkpoint and make sure its encoder fits `arch` (raises a ValueError naming both)."""
    checkpoint = load_checkpoint(path)
    try:
        models.check_arch(checkpoint["arch"], arch, encoder_only=True)
    except ValueError as err:
        raise ValueError(f"stage-1 checkpoint {path} does not fit this model: {err}") from err
    return checkpoint


# ----------------------------------------------------------------------------------------------------------
# The loop


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
class _EarlyStopping:
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


def _raise_if_nonfinite(
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
    config: FitConfig,
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
        disable=not (config.progress and context.is_main),
        dynamic_ncols=True,
    )
    for step, batch in enumerate(bar):
        x, y = _batch_to(batch, device, config.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
            outputs = step_model(x)
        loss = loss_fn(_to_float(outputs), y)
        if not pending:
            first_pending = step
        pending.append(loss.detach())
        if len(pending) >= config.check_every:
            _raise_if_nonfinite(pending, first_pending, config.stage, epoch, context)
            bar.set_postfix(loss=f"{pending[-1].item():.4f}", refresh=False)
            pending = []
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * len(y)
        count += len(y)
    if pending:
        _raise_if_nonfinite(pending, first_pending, config.stage, epoch, context)
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
    config: FitConfig,
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
        x, y = _batch_to(batch, device, config.channels_last)
        # Full precision: bf16 logits would quantise the scores (ties in the AUC) and the stopping loss.
        outputs = model(x)
        loss_sum += float(loss_fn(outputs, y)) * len(y)
        n += len(y)
        scores.append(malignant_scores(outputs).cpu().numpy())
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
    config: FitConfig,
    run_dir: str | os.PathLike,
    *,
    meta: Mapping[str, Any] | None = None,
    context: DistContext | None = None,
) -> FitResult:
    """Train `model` for one stage, resuming from RUN/last.pt when present; return where the best epoch is.

    The model ends holding the best epoch's weights. `meta` (plain types) is stored in every checkpoint
    beside the arch dict, e.g. the inputs and preprocessing settings `cem predict` needs.
    """
    context = context or DistContext()
    run_dir = Path(run_dir)
    last_path, best_path, log_path = run_dir / "last.pt", run_dir / "best.pt", run_dir / "log.csv"
    device = resolve_device(config.device, context)
    arch = models.arch_of(model)
    resume = load_checkpoint(last_path) if last_path.exists() else None
    if resume is not None:
        _check_resumable(resume, arch, config, last_path)
    if resume is not None and _stage_done(resume, config):
        return _finished_result(resume, model, run_dir)
    if resume is None:
        set_seed(config.seed + context.rank, config.deterministic)
    else:
        choose_kernels(config.deterministic)

    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_sgd(model, config.lr, config.momentum, config.weight_decay, device)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.gamma)
    stopper = _EarlyStopping(config.patience)
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
    if config.compile:
        step_model = torch.compile(step_model)

    payload_base = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "stage": config.stage,
        "meta": dict(meta or {}),
        "config": {**asdict(config), "milestones": list(config.milestones)},
    }
    epochs = tqdm(
        range(start_epoch, config.epochs),
        desc=config.stage,
        initial=start_epoch,
        total=config.epochs,
        disable=not (config.progress and context.is_main),
        dynamic_ncols=True,
    )
    for epoch_index in epochs:
        epoch = epoch_index + 1
        started = time.perf_counter()
        _set_epoch(train_loader, config.seed, epoch_index)
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
    config: FitConfig,
) -> tuple[_EarlyStopping, list[dict[str, float]]]:
    """Put a last.pt's weights, optimiser and scheduler back; return its early stopping and history."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    stopper = _EarlyStopping(**checkpoint["early_stopping"])
    stopper.patience, stopper.stopped = config.patience, False
    history = [dict(row) for row in checkpoint["history"]]
    if len(history) != int(checkpoint["epoch"]):
        raise ValueError(f"checkpoint of epoch {checkpoint['epoch']} holds {len(history)} log rows")
    return stopper, history


def _check_resumable(
    checkpoint: Mapping[str, Any], arch: Mapping[str, Any], config: FitConfig, path: Path
) -> None:
    """A last.pt may only resume the same stage of the same architecture."""
    if checkpoint.get("stage") != config.stage or "optimizer" not in checkpoint:
        raise ValueError(f"{path}: not a {config.stage} training checkpoint; use another run directory")
    try:
        models.check_arch(checkpoint["arch"], arch)
    except ValueError as err:
        raise ValueError(f"{path}: cannot resume, {err}; use another run directory") from err


def _stage_done(checkpoint: Mapping[str, Any], config: FitConfig) -> bool:
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


# ----------------------------------------------------------------------------------------------------------
# Data preparation shared by `cem train`, `cem predict` and the notebooks


def preprocess_settings(profile: Mapping[str, Any]):
    """The cache's PreprocessSettings for a profile (its preprocess section)."""
    from cemlib.imaging import PreprocessSettings

    return PreprocessSettings.from_profile(dict(profile))


def prepare_data(profile: Mapping[str, Any], workers: int | None = None, progress: bool = True):
    """The profile's manifest and filled tensor cache, running the earlier steps when they are missing.

    Missing synthetic cohort -> cemlib.synthetic.write_cohort; missing manifest -> the source adapter scan
    and the patient-level split (cemlib.manifest.build); then the cache is filled (a no-op when complete)
    and images that fail preprocessing exclude their patients, with the reason, in the saved manifest.
    Returns (Manifest, TensorCache).
    """
    workers = _prep_workers(profile, workers)
    manifest = prepare_manifest(profile, workers)
    cache, _ = fill_cache(profile, manifest, Path(profile["data"]["manifest"]), workers, progress)
    return manifest, cache


def fill_cache(profile: Mapping[str, Any], manifest: Any, manifest_dir: str | os.PathLike,
               workers: int | None = None, progress: bool = True):
    """Fill the profile's tensor cache for `manifest`; images that fail exclude their patients (saved).

    Returns (TensorCache, FillResult).
    """
    from cemlib.cache import TensorCache, apply_exclusions

    cache_dir = (profile.get("preprocess") or {}).get("cache")
    if not cache_dir:
        raise ValueError(f"profile {profile.get('name', '?')!r} has no preprocess.cache")
    cache = TensorCache(cache_dir, preprocess_settings(profile))
    result = cache.fill(manifest, workers=_prep_workers(profile, workers), progress=progress)
    if apply_exclusions(manifest, result.exclusions):
        manifest.save(Path(manifest_dir))
    return cache, result


def _prep_workers(profile: Mapping[str, Any], workers: int | None) -> int:
    """Processes for writing the cohort and filling the cache (preprocess.workers, default 2)."""
    return workers if workers is not None else int((profile.get("preprocess") or {}).get("workers", 2))


def prepare_manifest(profile: Mapping[str, Any], workers: int | None = None):
    """The profile's Manifest; writes the synthetic cohort and scans + splits the dataset when missing."""
    from cemlib import manifest as manifest_mod

    data = dict(profile.get("data") or {})
    for key in ("root", "manifest"):
        if not data.get(key):
            raise ValueError(f"profile {profile.get('name', '?')!r} has no data.{key}")
    root, manifest_dir = Path(data["root"]), Path(data["manifest"])
    workers = _prep_workers(profile, workers)
    dataset = str(data.get("dataset", "synthetic"))
    synth = dict(data.get("synth") or {})
    if dataset == "synthetic":
        _check_synthetic_cohort(root, synth, manifest_dir)
    if not (manifest_dir / "manifest.json").is_file():
        if dataset == "synthetic" and not (root / "labels.csv").is_file():
            _write_synthetic_cohort(root, synth, workers)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {root} (set data.root in the profile)")
    layout = "ge" if dataset == "synthetic" else (None if dataset == "auto" else dataset)
    ratios = tuple(float(r) for r in data.get("split", manifest_mod.DEFAULT_RATIOS))
    return manifest_mod.load_or_build(manifest_dir, root, layout, int(profile.get("seed", 0)), ratios)


def _synth_settings(synth: Mapping[str, Any]) -> dict[str, Any]:
    """patients, scale and seed of a profile's data.synth section, with the generator's defaults."""
    from cemlib import synthetic

    return {
        "patients": int(synth.get("patients", synthetic.DEFAULT_PATIENTS)),
        "scale": float(synth.get("scale", 0.08)),
        "seed": int(synth.get("seed", 0)),
    }


def _check_synthetic_cohort(root: Path, synth: Mapping[str, Any], manifest_dir: Path) -> None:
    """A cohort already at `root` must be the one the profile describes, by today's generator."""
    from cemlib import synthetic

    synthetic.check_generated(root, "cohort.json", _synth_settings(synth), manifest_dir)


def _write_synthetic_cohort(root: Path, synth: Mapping[str, Any], workers: int) -> None:
    """Write the embedded synthetic cohort the profile describes (data.synth: patients, scale, seed)."""
    from cemlib import synthetic

    synthetic.write_cohort(root, **_synth_settings(synth), workers=workers)


def check_training_data(manifest: Any, inputs: str) -> None:
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


def check_item_fits(dataset: Dataset, arch: Mapping[str, Any], name: str) -> None:
    """Raise a ValueError when the dataset's tensors do not have the model's channels and size."""
    x = dataset[0]["x"]
    channels, size = int(x.shape[-3]), [int(s) for s in x.shape[-2:]]
    if channels != int(arch["in_channels"]):
        raise ValueError(
            f"{name}: the data has {channels} channel(s) per view but the model takes {arch['in_channels']}"
        )
    if not arch["global_pool"] and size != list(arch["input_size"]):
        raise ValueError(
            f"{name}: images are {size[0]} x {size[1]} but the model's flatten head needs "
            f"{arch['input_size'][0]} x {arch['input_size'][1]}"
        )


def build_datasets(
    profile: Mapping[str, Any], manifest: Any, cache: Any, inputs: str, stage: str, seed: int
) -> tuple[Dataset, Dataset]:
    """(train, val) datasets of a stage: images for stage 1, patients for stage 2; train is augmented."""
    from cemlib import data

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
    config: FitConfig
    run_dir: Path
    meta: dict[str, Any]

    def run(self, context: DistContext | None = None) -> FitResult:
        """Fit this stage (resuming from its run directory when a last.pt is there)."""
        context = context or DistContext()
        train_loader = make_loader(self.train_set, self.config, shuffle=True, context=context)
        val_loader = make_loader(self.val_set, self.config, shuffle=False, context=context)
        return fit(
            self.model, self.loss_fn, train_loader, val_loader, self.config, self.run_dir,
            meta=self.meta, context=context,
        )


def _meta(profile: Mapping[str, Any], manifest: Any, fusion: str, inputs: str) -> dict[str, Any]:
    """Plain-type facts stored in checkpoints: what the model takes and how its inputs were made."""
    section = profile.get("preprocess") or {}
    preprocess = {k: (list(v) if isinstance(v, tuple) else v) for k, v in section.items()}
    return {
        "fusion": fusion,
        "inputs": inputs,
        "profile": str(profile.get("name", "")),
        "dataset": str(manifest.dataset),
        "preprocess": preprocess,
    }


def plan_stage1(
    profile: Mapping[str, Any], inputs: str, run_dir: str | os.PathLike, manifest: Any, cache: Any
) -> StagePlan:
    """Stage 1: the ImageClassifier on every training image, checked against the data."""
    config = FitConfig.from_profile(profile, "stage1")
    check_training_data(manifest, inputs)
    arch = arch_from_profile(profile, models.IMAGE_MODEL, inputs)
    train_set, val_set = build_datasets(profile, manifest, cache, inputs, "stage1", config.seed)
    check_item_fits(train_set, arch, "stage 1 training images")
    set_seed(config.seed, config.deterministic)
    model = models.build_image_classifier(**_encoder_kwargs(arch), pretrained=_pretrained(profile))
    return StagePlan(
        model, image_loss, train_set, val_set, config, Path(run_dir),
        _meta(profile, manifest, models.IMAGE_MODEL, inputs),
    )


def plan_stage2(
    profile: Mapping[str, Any],
    fusion: str,
    inputs: str,
    run_dir: str | os.PathLike,
    manifest: Any,
    cache: Any,
    stage1_checkpoint: str | os.PathLike | None,
) -> StagePlan:
    """Stage 2: the fusion model, its encoder (and for "none" its classifier) taken from stage 1."""
    config = FitConfig.from_profile(profile, "stage2")
    check_training_data(manifest, inputs)
    arch = arch_from_profile(profile, fusion, inputs)
    if stage1_checkpoint is not None:
        check_stage1_checkpoint(stage1_checkpoint, arch)
    train_set, val_set = build_datasets(profile, manifest, cache, inputs, "stage2", config.seed)
    check_item_fits(train_set, arch, "stage 2 training exams")
    set_seed(config.seed, config.deterministic)
    model = models.build_model(**arch, pretrained=None)
    meta = _meta(profile, manifest, fusion, inputs)
    meta["stage1"] = str(stage1_checkpoint) if stage1_checkpoint is not None else ""
    return StagePlan(model, models.fusion_loss, train_set, val_set, config, Path(run_dir), meta)


def _encoder_kwargs(arch: Mapping[str, Any]) -> dict[str, Any]:
    """build_encoder's keyword arguments from an arch dict."""
    return {k: arch[k] for k in ("in_channels", "width", "global_pool", "head", "dropout", "input_size")}


def _pretrained(profile: Mapping[str, Any]) -> str | None:
    """The profile's model.pretrained (a local state-dict path or "imagenet"), or None."""
    value = (profile.get("model") or {}).get("pretrained")
    return str(value) if value else None


def train_stage1(
    profile: Mapping[str, Any],
    inputs: str,
    run_dir: str | os.PathLike,
    manifest: Any = None,
    cache: Any = None,
) -> Path:
    """Train (or resume, or reuse when finished) stage 1 in `run_dir`; returns its best checkpoint."""
    check_choices(models.IMAGE_MODEL, inputs)
    context = init_distributed(str(profile.get("device", "cpu")))
    manifest, cache = _data(profile, manifest, cache, context)
    plan = plan_stage1(profile, inputs, run_dir, manifest, cache)
    return plan.run(context).best_checkpoint


def train(
    profile: Mapping[str, Any],
    fusion: str,
    inputs: str,
    run_dir: str | os.PathLike,
    stage1_checkpoint: str | os.PathLike | None = None,
    manifest: Any = None,
    cache: Any = None,
) -> Path:
    """Both stages of one model into RUN/stage1 and RUN/stage2; returns the best stage-2 checkpoint.

    With `stage1_checkpoint` (e.g. a stage 1 shared by the four fusions of one inputs type) stage 1 is
    skipped. Every check (names, channels, labels, checkpoint architecture) runs before any training.
    """
    check_choices(fusion, inputs)
    if fusion == models.IMAGE_MODEL:
        raise ValueError(f"fusion must be one of {models.FUSIONS}")
    run_dir = Path(run_dir)
    context = init_distributed(str(profile.get("device", "cpu")))
    manifest, cache = _data(profile, manifest, cache, context)
    stage2 = plan_stage2(profile, fusion, inputs, run_dir / "stage2", manifest, cache, stage1_checkpoint)
    if stage1_checkpoint is None:
        stage1 = plan_stage1(profile, inputs, run_dir / "stage1", manifest, cache)
        stage1_checkpoint = stage1.run(context).best_checkpoint
        stage2.meta["stage1"] = str(stage1_checkpoint)
    _load_stage1(stage2.model, stage1_checkpoint)
    return stage2.run(context).best_checkpoint


def stage1_dir(profile: Mapping[str, Any], inputs: str) -> Path:
    """runs/<profile>/models/<inputs>_stage1: the stage-1 CNN shared by the fusions of one input type."""
    return Path(profile["runs"]) / "models" / f"{inputs}_stage1"


def fusion_dir(profile: Mapping[str, Any], fusion: str, inputs: str) -> Path:
    """runs/<profile>/models/<inputs>_<fusion>: one fusion model (its stage 2 in ./stage2)."""
    return Path(profile["runs"]) / "models" / f"{inputs}_{fusion}"


def train_with_shared_stage1(profile: Mapping[str, Any], fusion: str, inputs: str, manifest: Any = None,
                             cache: Any = None) -> Path:
    """Train (or resume, or reuse) one model in the study layout; returns its best stage-2 checkpoint.

    Stage 1 lives in models/<inputs>_stage1 and is shared by the four fusions of that input type;
    stage 2 lives in models/<inputs>_<fusion>/stage2. `cem train` and the notebooks both use it.
    """
    context = init_distributed(str(profile.get("device", "cpu")))
    manifest, cache = _data(profile, manifest, cache, context)
    stage1 = train_stage1(profile, inputs, stage1_dir(profile, inputs), manifest, cache)
    return train(profile, fusion, inputs, fusion_dir(profile, fusion, inputs), stage1, manifest, cache)


def _load_stage1(model: nn.Module, checkpoint: str | os.PathLike) -> None:
    """Put a stage-1 encoder (and, for fusion "none", its classifier) into a fusion model."""
    models.load_encoder(model, checkpoint)


def _data(profile: Mapping[str, Any], manifest: Any, cache: Any, context: DistContext) -> tuple[Any, Any]:
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


def wait_for_rank0(timeout: timedelta = DATA_WAIT_TIMEOUT) -> None:
    """A barrier with a long timeout, on a CPU (gloo) group of its own; every rank calls it."""
    group = dist.new_group(backend="gloo", timeout=timeout)
    try:
        dist.barrier(group=group)
    finally:
        dist.destroy_process_group(group)


# ----------------------------------------------------------------------------------------------------------
# Speed: `cem bench train`


@dataclass(frozen=True)
class BenchVariant:
    """One way of running the training step: precision, memory layout, compiled or eager."""

    amp: bool = False
    channels_last: bool = False
    compiled: bool = False
    fused: bool | None = None  # fused SGD; None = on CUDA only, as in training

    @property
    def precision(self) -> str:
        """"bf16" (autocast) or "fp32"."""
        return "bf16" if self.amp else "fp32"


#: The variants every `cem bench train` measures; a compiled bf16 + channels_last one is added on request.
BENCH_VARIANTS = tuple(BenchVariant(amp, cl) for amp in (False, True) for cl in (False, True))


@dataclass(frozen=True)
class StepTiming:
    """Wall-clock seconds of the warm-up steps (compilation included) and of the timed steps."""

    warmup_seconds: float
    seconds: float
    peak_memory_bytes: int | None


def _timed_steps(
    arch: Mapping[str, Any],
    batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    variant: BenchVariant,
    steps: int,
    warmup: int,
) -> StepTiming:
    """Time `steps` SGD steps of a fresh fusion model (after `warmup` untimed ones)."""
    set_seed(0, deterministic=False)
    model = models.build_model(**arch).to(device)
    if variant.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    step_model = torch.compile(model) if variant.compiled else model
    optimizer = make_sgd(model, 1e-3, 0.9, 5e-4, device, fused=variant.fused)

    def step(index: int) -> None:
        x, y = batches(index)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.amp):
            outputs = step_model(x)
        loss = models.fusion_loss(_to_float(outputs), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for index in range(warmup):
        step(index)
    _synchronize(device)
    warmed = time.perf_counter()
    for index in range(steps):
        step(warmup + index)
    _synchronize(device)
    ended = time.perf_counter()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return StepTiming(warmed - started, ended - warmed, peak)


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock times are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _authors_batches(manifest: Any, settings: Any, inputs: str, batch_size: int):
    """Batches made the authors' way: every step decodes the DICOMs and preprocesses them again."""
    from cemlib.imaging import preprocess_pair, read_pixels

    images = manifest.images
    breasts = manifest.breasts
    patients = sorted(breasts.loc[breasts["split"] == "train", "patient_id"].astype(str).unique())
    labels = {(str(p), s): int(y) for p, s, y in zip(breasts["patient_id"], breasts["side"], breasts["label"],
                                                      strict=True)}
    paths: dict[tuple[str, str, str, str], Path] = {}
    for _, row in images.iterrows():
        paths[(str(row["patient_id"]), row["side"], row["view"], row["energy"])] = manifest.image_path(row)

    def view_tensor(patient: str, key: str) -> torch.Tensor:
        side, view = key[0], key[1:]
        le = read_pixels(paths[(patient, side, view, "LE")])
        des = read_pixels(paths[(patient, side, view, "DES")]) if inputs == "cem" else None
        le01, des01 = preprocess_pair(le, des, side, settings)
        planes = [le01] if des01 is None else [le01, des01]
        return torch.from_numpy(np.stack(planes).astype(np.float32))

    def batch(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = [patients[(index * batch_size + k) % len(patients)] for k in range(batch_size)]
        x = torch.stack([torch.stack([view_tensor(p, key) for key in VIEW_ORDER]) for p in chosen])
        y = torch.tensor([[labels[(p, "L")], labels[(p, "R")]] for p in chosen], dtype=torch.int64)
        return x, y

    return batch


def bench_devices(requested: str | Sequence[str] | None = None) -> list[str]:
    """Devices to benchmark: "all" (default) = the CPU, then CUDA when present; or the ones named."""
    if requested is None or requested == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [requested] if isinstance(requested, str) else list(requested)


def benchmark_train(
    profile: Mapping[str, Any],
    fusion: str = "mf_concat",
    inputs: str = "cem",
    steps: int = 10,
    warmup: int = 2,
    baseline: bool = True,
    devices: str | Sequence[str] | None = None,
    manifest: Any = None,
    cache: Any = None,
    compiled: bool = False,
) -> dict[str, Any]:
    """Training images/s (one image = one view through the encoder) at the profile's size and batch.

    Variants: fp32 vs bf16 autocast x contiguous vs channels_last (plus bf16 + channels_last under
    torch.compile when `compiled`), on the CPU and on CUDA when present, stepping on a batch already in
    memory (read from the tensor cache). Every row gives the model arithmetic it sustains (TFLOP/s, from
    `models.training_flops_per_image`) and, on CUDA, the peak memory. Baseline, in the same run: the way
    the authors' code trains (fp32, contiguous, batch 2, every image decoded from DICOM and preprocessed
    at every step). `speedup` = best variant / baseline on the baseline's device.
    """
    from cemlib import data

    check_choices(fusion, inputs)
    manifest, cache = _data(profile, manifest, cache, DistContext())
    arch = arch_from_profile(profile, fusion, inputs)
    flops = models.training_flops_per_image(arch)
    batch_size = int((profile.get("train") or {}).get("batch_size", 8))
    dataset = data.PatientDataset(manifest, cache, "train", inputs=inputs, augment=None)
    items = [dataset[i % len(dataset)] for i in range(batch_size)]
    x = torch.stack([item["x"] for item in items])
    y = torch.stack([item["y"] for item in items])
    devices = bench_devices(devices)
    variants = BENCH_VARIANTS + ((BenchVariant(True, True, True),) if compiled else ())
    rows: list[dict[str, Any]] = []
    with _kernel_choice_restored():
        for name in devices:
            device = resolve_device(name, DistContext())
            resident = (x.to(device), y.to(device))
            for variant in variants:
                timing = _timed_steps(arch, lambda _i, r=resident: r, device, variant, steps, warmup)
                rows.append(_bench_row(device, variant, batch_size, steps, timing, flops,
                                       "cached batch in memory"))
        if baseline:
            device = resolve_device(devices[-1], DistContext())
            batches = _authors_batches(manifest, preprocess_settings(profile), inputs, 2)
            authors = BenchVariant(fused=False)
            timing = _timed_steps(arch, batches, device, authors, steps, min(warmup, 1))
            base = _bench_row(device, authors, 2, steps, timing, flops,
                              "authors' way: DICOM decoded every step")
    result: dict[str, Any] = {
        "what": "training step images/s (one image = one view through the shared encoder)",
        "fusion": fusion,
        "inputs": inputs,
        "size": list(arch["input_size"]),
        "width": arch["width"],
        "flop_per_image": flops,
        "gflop_per_image": round(flops / 1e9, 3),
        "threads": torch.get_num_threads(),
        "cuda": _cuda_description(devices),
        "torch": torch.__version__,
        "rows": rows,
    }
    if baseline:
        best = max((r for r in rows if r["device"] == base["device"]), key=lambda r: r["images_per_s"])
        rows.append(base)
        result["baseline_images_per_s"] = base["images_per_s"]
        shown = ("device", "precision", "channels_last", "compiled", "images_per_s", "tflop_per_s")
        result["best"] = {k: best[k] for k in shown}
        result["speedup"] = round(best["images_per_s"] / base["images_per_s"], 2)
    return result


@contextlib.contextmanager
def _kernel_choice_restored() -> Iterator[None]:
    """Put back the process's deterministic-kernel and cuDNN-autotuning settings the timings change."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    autotune = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = autotune


def _cuda_description(devices: Sequence[str]) -> dict[str, Any] | None:
    """The GPU benchmarked and whether its "fp32" rows may use TF32 (torch's defaults: convolutions yes)."""
    if not any(name.startswith("cuda") for name in devices):
        return None
    return {
        "name": torch.cuda.get_device_name(),
        "tf32_convolutions": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }


def _bench_row(
    device: torch.device,
    variant: BenchVariant,
    batch: int,
    steps: int,
    timing: StepTiming,
    flops_per_image: int,
    data: str,
) -> dict[str, Any]:
    """One benchmark line."""
    images_per_s = steps * batch * len(VIEW_ORDER) / timing.seconds
    peak = timing.peak_memory_bytes
    return {
        "device": device.type,
        "precision": variant.precision,
        "channels_last": variant.channels_last,
        "compiled": variant.compiled,
        "fused_sgd": uses_fused_sgd(device, variant.fused),
        "batch": batch,
        "data": data,
        "steps": steps,
        "seconds": round(timing.seconds, 3),
        "warmup_seconds": round(timing.warmup_seconds, 3),
        "images_per_s": round(images_per_s, 1),
        "tflop_per_s": round(images_per_s * flops_per_image / 1e12, 4),
        "peak_memory_gib": None if peak is None else round(peak / 2**30, 2),
    }


# ----------------------------------------------------------------------------------------------------------
# CLI: cem train


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem train`."""
    parser.add_argument("--profile", default="smoke", help="profile name or YAML file (default: smoke)")
    parser.add_argument("--fusion", choices=models.FUSIONS, default="mf_concat", help="fusion type")
    parser.add_argument("--inputs", choices=tuple(INPUT_CHANNELS), default="cem",
                        help="cem = LE + DES (2 channels), le = low energy only")
    parser.add_argument("--run-dir", help="run folder (default: runs/<profile>/models/<inputs>_<fusion>, "
                        "with stage 1 shared in models/<inputs>_stage1)")
    parser.add_argument("--stage1", metavar="CKPT",
                        help="reuse this stage-1 checkpoint (same inputs, encoder) instead of training one")
    parser.add_argument("--stage1-only", action="store_true", help="train stage 1 only (into RUN/stage1)")
    add_override_option(parser)


def run_cli(args: argparse.Namespace) -> int:
    """Train one model; print where its best checkpoint and log are."""
    profile = load_profile(args.profile, parse_overrides(args.overrides))
    run_dir = Path(args.run_dir) if args.run_dir else None
    try:
        if args.stage1_only:
            folder = run_dir / "stage1" if run_dir else stage1_dir(profile, args.inputs)
            best = train_stage1(profile, args.inputs, folder)
        elif run_dir is None and args.stage1 is None:
            best = train_with_shared_stage1(profile, args.fusion, args.inputs)
        else:
            run_dir = run_dir or fusion_dir(profile, args.fusion, args.inputs)
            best = train(profile, args.fusion, args.inputs, run_dir, args.stage1)
        if not dist.is_initialized() or dist.get_rank() == 0:
            checkpoint = load_checkpoint(best)
            metrics = checkpoint.get("metrics", {})
            print(f"best {checkpoint['stage']} checkpoint: {best}")
            print(
                f"  epoch {checkpoint['epoch']}: val_loss {metrics.get('val_loss', math.nan):.4f}, "
                f"val_auc {metrics.get('val_auc', math.nan):.3f}"
            )
            print(f"  log: {best.parent / 'log.csv'}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
