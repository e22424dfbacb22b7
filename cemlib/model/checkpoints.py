"""Checkpoint files: every read and write of a model on disk, each file verified by its content digest.

A checkpoint is a dict saved with torch.save (read back with weights_only=True) holding at least
"arch" (see cemlib.model.networks) and "model" (the state dict); training adds its optimiser, scheduler,
RNG and
early-stopping state. Every file written here carries "digest": the sha256 of its content (tensors'
bytes, dtypes and shapes, and every plain value, walked in a fixed order). Loading recomputes it, so a
file damaged on disk (a flipped byte in a tensor) is refused with its path and what to do, by training
(resume), prediction, CAMs and the notebooks alike. Writes are atomic (temporary file renamed into
place); a temporary file left by a killed save is removed by `remove_stale_temporaries`.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cemlib.core.fileio import atomic_path
from cemlib.model import networks as models

#: 2: every checkpoint carries a content digest (1: before digests; read with a warning).
CHECKPOINT_FORMAT = 2
DIGEST_KEY = "digest"
#: What a damaged or unreadable checkpoint asks of its user.
DAMAGED_ADVICE = "delete it to retrain that stage (or restore it from a copy)"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: missing pieces, unreadable, or damaged."""


def content_digest(payload: Mapping[str, Any]) -> str:
    """sha256 over a checkpoint's content (the digest entry itself left out), in a fixed walk order."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    """Add one value to the digest: tensors by dtype, shape and bytes; containers item by item."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}:".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        digest.update(b"{")
        for key in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            _feed(digest, key)
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, list | tuple):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(_scalar_text(value).encode() + b";")


def _scalar_text(value: Any) -> str:
    """A plain value as text that survives a save/load round trip unchanged."""
    if value is None or isinstance(value, bool | np.bool_):
        return f"b{value}"
    if isinstance(value, int | np.integer):
        return f"i{int(value)}"
    if isinstance(value, float | np.floating):
        number = float(value)
        return "fnan" if math.isnan(number) else f"f{number.hex()}"
    return f"s{value}"


def save_checkpoint(payload: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """torch.save with its content digest, through a temporary file renamed into place."""
    path = Path(path)
    content = dict(payload)
    content.setdefault("format", CHECKPOINT_FORMAT)
    content[DIGEST_KEY] = content_digest(content)
    with atomic_path(path) as tmp:
        torch.save(content, tmp)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Any checkpoint dict (weights_only), its digest verified; errors name the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated, damaged or foreign file: say which one and what to do
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err}); the file is "
                              f"damaged or not a checkpoint: {DAMAGED_ADVICE}") from err
    if not isinstance(checkpoint, Mapping) or "arch" not in checkpoint:
        raise CheckpointError(f"{path}: not a cemlib checkpoint (no 'arch' entry)")
    verify_digest(checkpoint, path)
    return dict(checkpoint)


def verify_digest(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose content no longer matches the digest it was saved with."""
    stored = checkpoint.get(DIGEST_KEY)
    if stored is None:
        warnings.warn(f"{path}: written before checkpoints carried a digest; it is not verified",
                      stacklevel=3)
        return
    if content_digest(checkpoint) != stored:
        raise CheckpointError(f"{path}: damaged checkpoint (its content does not match the digest it was "
                              f"saved with); {DAMAGED_ADVICE}")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A model checkpoint ('arch' and 'model' entries), read and verified."""
    checkpoint = read_checkpoint(path, map_location)
    if "model" not in checkpoint:
        raise CheckpointError(f"{path}: not a cemlib checkpoint (it needs 'arch' and 'model' entries)")
    return checkpoint


def weights_digest(checkpoint: Mapping[str, Any] | str | os.PathLike) -> str:
    """16-hex digest of a checkpoint's weights alone (a loaded dict or a file): the same weights give the
    same digest whenever they were saved."""
    loaded = checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint(checkpoint)
    return content_digest({"model": loaded["model"]})[:16]


def checkpoint_digest(path: str | os.PathLike) -> str:
    """The content digest a checkpoint was saved with, read without loading its tensors (memory-mapped).

    A file written before checkpoints carried a digest gets its content digest computed instead.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # as read_checkpoint: name the file and what to do
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err}); the file is "
                              f"damaged or not a checkpoint: {DAMAGED_ADVICE}") from err
    stored = checkpoint.get(DIGEST_KEY) if isinstance(checkpoint, Mapping) else None
    return str(stored) if stored is not None else content_digest(read_checkpoint(path))


def model_from_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike = "checkpoint") -> nn.Module:
    """Rebuild the network stored in a checkpoint dict and load its weights (errors name `path`)."""
    try:
        model = models.model_from_arch(checkpoint["arch"])
        models.load_model_state(model, checkpoint["model"])
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return model


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The network stored in a checkpoint file, weights loaded."""
    return model_from_checkpoint(load_checkpoint(path, map_location), path)


def save_model(model: nn.Module, path: str | os.PathLike, **extra: Any) -> Path:
    """Write {"arch", "model": state dict, **extra} as a checkpoint; read it back with load_model."""
    return save_checkpoint({"arch": models.arch_of(model), "model": model.state_dict(), **extra}, path)


def save_encoder(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the encoder (and single-image classifier, if any) for the next training stage."""
    return save_checkpoint(models.encoder_checkpoint(model), path)


def load_encoder(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Put the encoder of a checkpoint file (stage 1, a save_encoder file or a full model) into `model`."""
    checkpoint = read_checkpoint(path)
    return models.load_encoder(model, checkpoint, where=str(path))


def check_stage1_checkpoint(path: str | os.PathLike, arch: Mapping[str, Any]) -> dict[str, Any]:
    """Load a stage-1 checkpoint and make sure its encoder fits `arch` (raises a ValueError naming both)."""
    checkpoint = load_checkpoint(path)
    try:
        models.check_arch(checkpoint["arch"], arch, encoder_only=True)
    except ValueError as err:
        raise ValueError(f"stage-1 checkpoint {path} does not fit this model: {err}") from err
    return checkpoint


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files a killed save left in `folder` (.best.pt.*.tmp, .last.pt.*.tmp)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(folder.glob(".*.pt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
