"""A trained model ready to score: load a checkpoint with what it was trained on, and score a batch.

Shared by scoring a manifest (`cemlib.inference.scoring`), one exam folder (`cemlib.inference.exam`), the
CAMs and the
notebooks; it needs no part of the training loop. Scores are malignant probabilities from
`cemlib.model.networks.malignant_probability` (view-level models: a breast's score is the mean of its CC and
MLO views).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cemlib.core.devices import inference_device
from cemlib.core.vocab import check_inputs, input_channels, inputs_for_channels, model_name
from cemlib.model import networks as models
from cemlib.model.checkpoints import load_checkpoint, model_from_checkpoint
from cemlib.pixels.settings import PreprocessSettings


@dataclass
class LoadedModel:
    """A checkpoint's network in evaluation mode, with its inputs, name and preprocessing settings."""

    path: Path
    model: nn.Module
    arch: models.Architecture
    inputs: str
    name: str
    settings: PreprocessSettings | None
    device: torch.device
    epoch: int | None = None

    @property
    def fusion(self) -> str:
        """The model's fusion (or "image" for a stage-1 classifier)."""
        return self.arch.fusion


def inputs_of(checkpoint: Mapping[str, Any], inputs: str | None, path: str | os.PathLike) -> str:
    """The inputs the checkpoint's model takes; a ValueError when `inputs` asks for something else."""
    channels = int(checkpoint["arch"]["in_channels"])
    native = str((checkpoint.get("meta") or {}).get("inputs") or inputs_for_channels(channels))
    if inputs is None:
        return native
    check_inputs(inputs)
    if input_channels(inputs) != channels:
        raise ValueError(
            f"{path}: the model takes {channels} channel(s) per view ({native}) but inputs={inputs!r} "
            f"gives {input_channels(inputs)}"
        )
    return inputs


def settings_of(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> PreprocessSettings:
    """The preprocessing settings recorded in a checkpoint (those of its training cache)."""
    preprocess = dict((checkpoint.get("meta") or {}).get("preprocess") or {})
    if not preprocess:
        raise ValueError(f"{path}: the checkpoint records no preprocessing settings (not made by cem train), "
                         "so the exam cannot be prepared the way the model was trained")
    settings = PreprocessSettings.from_profile({"preprocess": preprocess})
    size = [int(s) for s in checkpoint["arch"]["input_size"]]
    if list(settings.size) != size:
        raise ValueError(f"{path}: the checkpoint's preprocessing size {list(settings.size)} differs from "
                         f"its model's input size {size}")
    return settings


def load_for_inference(checkpoint: str | os.PathLike, inputs: str | None = None, device: str | None = None,
                       need_settings: bool = True) -> LoadedModel:
    """Load a stage-2 (or stage-1) checkpoint, verified, in evaluation mode on the chosen device."""
    state = load_checkpoint(checkpoint)
    inputs = inputs_of(state, inputs, checkpoint)
    settings = settings_of(state, checkpoint) if need_settings else None
    model = model_from_checkpoint(state, checkpoint)
    torch_device = inference_device(device)
    model.to(torch_device).eval()
    arch = models.Architecture.from_dict(state["arch"])
    epoch = state.get("epoch")
    return LoadedModel(Path(checkpoint), model, arch, inputs, model_name(arch.fusion, inputs),
                       settings, torch_device, int(epoch) if isinstance(epoch, int) else None)


def score_batch(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Patients x (B, 4, C, H, W) -> (per breast (B, 2), per view (B, 4) or None) malignant probabilities."""
    if isinstance(model, models.ImageClassifier):
        batch = x.shape[0]
        views = models.malignant_probability(model(x.flatten(0, 1))).view(batch, -1)
        return models.breast_from_views(views), views
    outputs = model(x)
    return models.malignant_probability(outputs), models.view_probability(outputs)
