"""Torch datasets over the tensor cache (image level for stage 1, patient level for stage 2) and augmentation.

Inputs: ``"le"`` gives one channel (low energy), ``"cem"`` two (channel 0 LE, channel 1 DES).
Patient items hold the four views along axis 0 in ``VIEW_ORDER`` = (LCC, LMLO, RCC, RMLO) and the labels
as ``y = [label L, label R]``.

Augmentation (paper and authors' code): horizontal flip and vertical flip, each with p = 0.5, then a
rotation by an angle uniform in [-10, 10] degrees about the image centre (bilinear, zero fill: the
background is 0 after windowing). By default one transform is drawn per patient and applied to all four
views (the authors' choice); ``per_view=True`` draws one per view. The random numbers of item ``i`` in
epoch ``e`` come from a ``torch.Generator`` seeded from ``(seed, e, i)``, so an epoch is reproducible
whatever the number of loader workers or the order the items are fetched in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from cemlib.core.views import SIDES, VIEW_ORDER, VIEWS
from cemlib.core.vocab import INPUT_ENERGIES, check_inputs
from cemlib.data.cache import CacheError, Entry, TensorCache, entry_label
from cemlib.data.manifest import Manifest

KNOWN_SPLITS = ("train", "val", "test", "external")


def seed_for(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed mixing (seed, epoch, index) so nearby triples give unrelated streams."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF])
    return int(state.generate_state(1, dtype=np.uint64)[0] & np.uint64(0x7FFFFFFFFFFFFFFF))


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """CPU torch.Generator for one item of one epoch."""
    return torch.Generator().manual_seed(seed_for(seed, epoch, index))


# ---------------------------------------------------------------------------------------------------
# Augmentation


@dataclass(frozen=True)
class AugmentParams:
    """Drawn transforms, one per image: flip flags and rotation angles (degrees, counter-clockwise)."""

    hflip: torch.Tensor  # bool (N,)
    vflip: torch.Tensor  # bool (N,)
    angle: torch.Tensor  # float32 (N,)


def rotation_theta(angles_deg: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """affine_grid matrices (N, 2, 3) rotating images counter-clockwise about their centre.

    The grid is in normalised coordinates, where x spans W pixels and y spans H: the off-diagonal
    terms carry the aspect ratio so that the rotation is rigid in pixel space, not a shear.
    """
    radians = angles_deg.to(torch.float32) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    row_x = torch.stack([cos, -sin * (height / width), zero], dim=-1)
    row_y = torch.stack([sin * (width / height), cos, zero], dim=-1)
    return torch.stack([row_x, row_y], dim=-2)


def rotate_images(x: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    """Rotate each image of (N, C, H, W) by its own angle (bilinear, zero fill); angle 0 is exact identity."""
    angles = angles_deg.to(device=x.device, dtype=torch.float32)
    moving = angles != 0
    if not bool(moving.any()):
        return x
    height, width = x.shape[-2:]
    theta = rotation_theta(angles, height, width).to(x.dtype if x.is_floating_point() else torch.float32)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    rotated = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if bool(moving.all()):  # the usual case; a full-size select would cost a third of the rotation
        return rotated
    return torch.where(moving.view(-1, 1, 1, 1), rotated, x)


def flip_images(x: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor) -> torch.Tensor:
    """Flip each image of (N, C, H, W) left-right and/or up-down by its own flags (exact copies)."""
    if x.shape[0] == 1:  # one image (or one folded patient): plain flips, no masked select
        dims = [d for d, flag in ((-1, hflip), (-2, vflip)) if bool(flag.reshape(-1)[0])]
        return x.flip(dims) if dims else x
    hflip = hflip.to(x.device).view(-1, 1, 1, 1)
    vflip = vflip.to(x.device).view(-1, 1, 1, 1)
    x = torch.where(hflip, x.flip(-1), x)
    return torch.where(vflip, x.flip(-2), x)


class Augment:
    """Random flips (p each) and rotation (uniform in [-rotate, rotate] degrees) for a patient's views."""

    def __init__(self, hflip: float = 0.5, vflip: float = 0.5, rotate: float = 10.0, per_view: bool = False):
        for name, p in (("hflip", hflip), ("vflip", vflip)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"Augment: {name} probability must be in [0, 1], got {p}")
        if rotate < 0:
            raise ValueError(f"Augment: rotate must be a non-negative angle in degrees, got {rotate}")
        self.hflip, self.vflip, self.rotate = float(hflip), float(vflip), float(rotate)
        self.per_view = bool(per_view)

    def __repr__(self) -> str:
        return (f"Augment(hflip={self.hflip}, vflip={self.vflip}, rotate={self.rotate}, "
                f"per_view={self.per_view})")

    @classmethod
    def from_profile(cls, profile: dict[str, Any]) -> Augment:
        """Augment from a profile's optional `augment` section (defaults: the paper's settings)."""
        section = dict(profile.get("augment") or {})
        return cls(**{k: section[k] for k in ("hflip", "vflip", "rotate", "per_view") if k in section})

    def sample(self, n: int, generator: torch.Generator) -> AugmentParams:
        """Draw n transforms; always consumes 3n numbers in a fixed order, whatever the probabilities."""
        u_h = torch.rand(n, generator=generator)
        u_v = torch.rand(n, generator=generator)
        u_a = torch.rand(n, generator=generator)
        angle = (u_a * 2.0 - 1.0) * self.rotate if self.rotate > 0 else torch.zeros(n)
        return AugmentParams(hflip=u_h < self.hflip, vflip=u_v < self.vflip, angle=angle.to(torch.float32))

    def apply(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Apply drawn transforms to (N, C, H, W), one per image (flips first, then the rotation)."""
        return rotate_images(flip_images(x, params.hflip, params.vflip), params.angle)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment one item: (C, H, W) an image, or (V, C, H, W) the views of one patient."""
        if x.dim() == 3:
            return self.apply(x.unsqueeze(0), self.sample(1, generator)).squeeze(0)
        if x.dim() != 4:
            raise ValueError(f"Augment expects (C, H, W) or (V, C, H, W), got shape {tuple(x.shape)}")
        if self.per_view:
            return self.apply(x, self.sample(x.shape[0], generator))
        # one transform for all views: fold the views into channels, one grid serves them all
        folded = x.reshape(1, -1, *x.shape[-2:])
        return self.apply(folded, self.sample(1, generator)).reshape(x.shape)

    def batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch on its device: (B, C, H, W) images or (B, V, C, H, W) patients.

        Draws on the CPU generator (so GPU and CPU runs draw the same transforms), then flips with
        torch.where and rotates the whole batch with one affine_grid/grid_sample call.
        """
        if x.dim() == 4:
            return self.apply(x, self.sample(x.shape[0], generator))
        if x.dim() != 5:
            raise ValueError(f"Augment.batch expects (B, C, H, W) or (B, V, C, H, W), got {tuple(x.shape)}")
        batch, views = x.shape[:2]
        if self.per_view:
            flat = x.reshape(batch * views, *x.shape[2:])
            return self.apply(flat, self.sample(batch * views, generator)).reshape(x.shape)
        folded = x.reshape(batch, -1, *x.shape[-2:])
        return self.apply(folded, self.sample(batch, generator)).reshape(x.shape)


# ---------------------------------------------------------------------------------------------------
# Datasets


def _check_inputs(inputs: str, manifest: Manifest) -> tuple[str, ...]:
    """Channel names of an input kind; a clear error when the manifest lacks them (FFDM has no DES)."""
    check_inputs(inputs)
    channels = INPUT_ENERGIES[inputs]
    if "DES" in channels and not (manifest.images["energy"] == "DES").any():
        raise ValueError(
            f"dataset {manifest.dataset!r} has no DES (recombined) images, only low energy "
            f"(FFDM?): use inputs='le'"
        )
    return channels


def _splits(split: str | Sequence[str] | None) -> set[str] | None:
    if split is None:
        return None
    return {split} if isinstance(split, str) else set(split)


class _CachedViews(Dataset):
    """Shared set-up: which patients are served, their entries in the cache, labels and the epoch."""

    def __init__(self, manifest: Manifest, cache: TensorCache, split: str | Sequence[str] | None,
                 inputs: str, augment: Augment | None, seed: int, return_masks: bool):
        self.manifest, self.cache, self.inputs = manifest, cache, inputs
        self.augment, self.seed, self.return_masks = augment, int(seed), return_masks
        self.epoch = 0
        wanted = _check_inputs(inputs, manifest)
        entries = {(e.patient_id, e.side, e.view): e for e in cache.attach(manifest)}
        breasts = manifest.breasts.assign(patient_id=manifest.breasts["patient_id"].astype(str))
        splits = _splits(split)
        if splits is not None:
            unknown = splits - set(KNOWN_SPLITS)
            if unknown:
                raise ValueError(f"unknown split(s) {sorted(unknown)}; expected some of {KNOWN_SPLITS}")
            breasts = breasts[breasts["split"].isin(splits)]
        self.excluded = self._excluded_patients(manifest, cache)
        breasts = breasts[~breasts["patient_id"].isin(self.excluded)]
        triples = zip(breasts["patient_id"], breasts["side"], breasts["label"], strict=True)
        self.labels: dict[tuple[str, str], int] = {(p, s): int(y) for p, s, y in triples}
        self.patients: list[str] = sorted(set(breasts["patient_id"]))
        self.entries = self._patient_entries(entries)
        missing = cache.missing(e for views in self.entries.values() for e in views.values())
        if missing:
            first = missing[0]
            raise CacheError(
                f"{len(missing)} view(s) of {manifest.dataset!r} are not in the cache {cache.folder} "
                f"(first: {entry_label(first)}): "
                f"run `cem preprocess`"
            )
        self._check_des(wanted)
        self.channels = wanted

    @staticmethod
    def _excluded_patients(manifest: Manifest, cache: TensorCache) -> set[str]:
        """Patients excluded in the manifest or whose views failed preprocessing."""
        failed = cache.failures(manifest)
        return set(manifest.excluded_patients()) | set(failed["patient_id"].astype(str))

    def _patient_entries(self, entries: dict[tuple[str, str, str], Entry]) -> dict[str, dict[str, Entry]]:
        """Each served patient's four entries keyed by view name; a missing view is an error."""
        out: dict[str, dict[str, Entry]] = {}
        for patient_id in self.patients:
            views = {}
            for side in SIDES:
                for view in VIEWS:
                    entry = entries.get((patient_id, side, view))
                    if entry is None:
                        raise ValueError(
                            f"dataset {self.manifest.dataset!r}: patient {patient_id} has no {side} {view} "
                            f"image in the manifest but is not excluded; rebuild the manifest"
                        )
                    views[side + view] = entry
            out[patient_id] = views
        return out

    def _check_des(self, wanted: tuple[str, ...]) -> None:
        """With inputs 'cem', every served view needs its DES image (stored as channel 1)."""
        if "DES" in wanted:
            lacking = [e for views in self.entries.values() for e in views.values() if e.des_path is None]
            if lacking:
                first = lacking[0]
                raise ValueError(
                    f"inputs='cem' needs a DES image for every view; {len(lacking)} view(s) of "
                    f"{self.manifest.dataset!r} have none "
                    f"(first: {first.patient_id} {first.side} {first.view})"
                )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation (and, with make_loader, shuffle order) is drawn."""
        self.epoch = int(epoch)

    def _load(self, entry: Entry) -> tuple[np.ndarray, np.ndarray | None]:
        """(C, H, W) input channels and (H, W) mask (zeros when the view has no lesion mask).

        Stays in numpy: tiny torch ops per view cost more in thread-pool overhead than the read itself.
        """
        stack = self.cache.read(entry)
        x = stack[: len(self.channels)]  # stored channel order: LE, DES, mask
        if not self.return_masks:
            return x, None
        if "mask" in entry.channels:
            return x, stack[entry.channels.index("mask")]
        return x, np.zeros(stack.shape[-2:], dtype=stack.dtype)

    def _resolve(self, index: int | tuple[int, int]) -> tuple[int, int]:
        """(epoch, index) from a plain index (uses the dataset's epoch) or an (epoch, index) pair."""
        if isinstance(index, tuple):
            return int(index[0]), int(index[1])
        return self.epoch, int(index)

    def _augment(self, x: torch.Tensor, mask: torch.Tensor | None, epoch: int, index: int
                 ) -> tuple[torch.Tensor, Any]:
        """Apply the item's transform to x and, identically, to its mask."""
        if self.augment is None:
            return x, mask
        generator = item_generator(self.seed, epoch, index)
        if mask is None:
            return self.augment(x, generator), None
        joint = self.augment(torch.cat([x, mask.unsqueeze(-3)], dim=-3), generator)
        return joint[..., :-1, :, :], joint[..., -1, :, :]


class ImageDataset(_CachedViews):
    """Stage 1: every LE(/DES) image of a split, one item per view: x (C, H, W), y its breast's label."""

    def __init__(self, manifest: Manifest, cache: TensorCache, split: str | Sequence[str] | None = None,
                 inputs: str = "cem", augment: Augment | None = None, seed: int = 0,
                 return_masks: bool = False):
        super().__init__(manifest, cache, split, inputs, augment, seed, return_masks)
        self.items: list[tuple[str, str, str]] = [
            (p, s, v) for p in self.patients for s in SIDES for v in VIEWS
        ]

    def __len__(self) -> int:
        return len(self.items)

    def labels_array(self) -> np.ndarray:
        """Labels of all items in order (for class weights or a balanced sampler)."""
        return np.array([self.labels[(p, s)] for p, s, _ in self.items], dtype=np.int64)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = self._resolve(index)
        patient_id, side, view = self.items[index]
        x_np, mask_np = self._load(self.entries[patient_id][side + view])
        x = torch.from_numpy(np.ascontiguousarray(x_np))
        mask = torch.from_numpy(mask_np) if mask_np is not None else None
        x, mask = self._augment(x, mask, epoch, index)
        item = {"x": x.contiguous(), "y": torch.tensor(self.labels[(patient_id, side)], dtype=torch.int64),
                "patient_id": patient_id, "side": side, "view": view}
        if mask is not None:
            item["mask"] = mask.contiguous()
        return item


class PatientDataset(_CachedViews):
    """Stage 2: one item per patient: x (4, C, H, W) in VIEW_ORDER, y (2,) = [label L, label R]."""

    def __init__(self, manifest: Manifest, cache: TensorCache, split: str | Sequence[str] | None = None,
                 inputs: str = "cem", augment: Augment | None = None, seed: int = 0,
                 return_masks: bool = False):
        super().__init__(manifest, cache, split, inputs, augment, seed, return_masks)

    def __len__(self) -> int:
        return len(self.patients)

    def labels_array(self) -> np.ndarray:
        """(N, 2) labels [L, R] of all patients in order."""
        return np.array([[self.labels[(p, s)] for s in SIDES] for p in self.patients], dtype=np.int64)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = self._resolve(index)
        patient_id = self.patients[index]
        loaded = [self._load(self.entries[patient_id][name]) for name in VIEW_ORDER]
        x = torch.from_numpy(np.stack([image for image, _ in loaded]))
        mask = torch.from_numpy(np.stack([m for _, m in loaded])) if self.return_masks else None
        x, mask = self._augment(x, mask, epoch, index)
        y = torch.tensor([self.labels[(patient_id, side)] for side in SIDES], dtype=torch.int64)
        item = {"x": x.contiguous(), "y": y, "patient_id": patient_id}
        if mask is not None:
            item["mask"] = mask.contiguous()
        return item


# ---------------------------------------------------------------------------------------------------
# Loading


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed python/numpy from torch's per-worker seed and use one thread per worker."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)  # noqa: NPY002 -- third-party code may draw from the legacy global state
    random.seed(worker_seed)
    torch.set_num_threads(1)


class ShardSampler(Sampler[int]):
    """Every world_size-th index starting at rank, in order: a padding-free evaluation shard."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0, workers: int = 0,
                pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """THE DataLoader of the kit (training, validation, prediction, `cem bench preprocess`).

    Its order depends only on (seed, epoch): shuffled shards for training (DistributedSampler, also for
    one process), the fixed order split into shards for evaluation. Call `set_loader_epoch` before each
    epoch so that a resumed run sees the same batches and augmentations as an uninterrupted one.
    """
    sampler: Sampler[int]
    if shuffle:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    else:
        sampler = ShardSampler(len(dataset), rank, world_size)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=seed_worker if workers > 0 else None,
        persistent_workers=False,
    )


def set_loader_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Key a make_loader loader's shuffling, worker seeds and its dataset's augmentation to (seed, epoch)."""
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 1_000_003 + epoch)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)


def patient_table(dataset: ImageDataset | PatientDataset) -> pd.DataFrame:
    """The patients a dataset serves with their per-breast labels (for checks and reports)."""
    rows = [
        {"patient_id": p, "side": s, "label": dataset.labels[(p, s)]} for p in dataset.patients for s in SIDES
    ]
    return pd.DataFrame(rows, columns=["patient_id", "side", "label"])


def channel_statistics(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of every pixel of a dataset's images (float64 sums)."""
    total = squares = None
    count = 0
    for index in range(len(dataset)):
        x = dataset[index]["x"].double()
        x = x.reshape(-1, *x.shape[-3:]) if x.ndim > 3 else x[None]
        sums, sq = x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3))
        total, squares = (sums, sq) if total is None else (total + sums, squares + sq)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if total is None:
        raise ValueError("no images to measure the input statistics on")
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()
