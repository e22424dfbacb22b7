"""Predictions from a trained checkpoint: per-breast (and per-image) malignancy scores, `cem predict`.

The per-breast table has one row per breast of the scored patients: dataset, patient_id, side, label,
score (probability of malignancy in [0, 1]), model
(cemlib.core.vocab.model_name, e.g. "CEM mf_concat"), split, plus
fusion and inputs. It is the input of the statistics and tables.

How a breast gets its score:
- mf_average / mf_concat: the fusion head's per-breast malignant probability (for mf_average that is
  already the mean of the CC-pair and MLO-pair probabilities).
- none / left_right, and a stage-1 image classifier: each view is scored on its own (none) or with the
  contralateral breast's same view (left_right); the breast score is the MEAN of its CC and MLO
  malignant probabilities, score = (p_CC + p_MLO) / 2. These models also give the per-image table
  (dataset, patient_id, side, view, label, score, model, split), one row per view.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from cemlib.core.progress import track
from cemlib.core.views import SIDES, VIEW_ORDER
from cemlib.core.vocab import IMAGE_MODEL
from cemlib.data.cache import TensorCache
from cemlib.data.datasets import PatientDataset, make_loader
from cemlib.data.manifest import Manifest
from cemlib.inference.predict import load_for_inference, score_batch
from cemlib.model.networks import Architecture

BREAST_COLUMNS = ("dataset", "patient_id", "side", "label", "score", "model", "split", "fusion", "inputs")
IMAGE_COLUMNS = ("dataset", "patient_id", "side", "view", "label", "score", "model", "split")
#: Fusions whose views are scored one by one (and so also get a per-image table).
PER_IMAGE_FUSIONS = ("none", "left_right", IMAGE_MODEL)


@dataclass
class Predictions:
    """Scores of one model on one manifest: per breast, and per image for none / left_right."""

    breasts: pd.DataFrame
    images: pd.DataFrame | None
    model: str


def _check_cache_fits(arch: Architecture, cache: TensorCache, path: str | os.PathLike) -> None:
    """The cache's image size must be the one the model was trained at."""
    size = [int(s) for s in cache.settings.size]
    if size != list(arch.input_size):
        raise ValueError(
            f"{path}: the model was trained on {arch.input_size[0]} x {arch.input_size[1]} images but "
            f"the cache {cache.cache_dir} holds {size[0]} x {size[1]}; use the training run's preprocessing"
        )


def _check_split(manifest: Manifest, split: str | None) -> None:
    """A ValueError when the chosen split holds no breasts (rather than an empty table)."""
    present = sorted(set(manifest.breasts["split"].astype(str)))
    if split is not None and split not in present:
        raise ValueError(
            f"no breasts in split {split!r} of dataset {manifest.dataset!r}; splits present: {present}"
        )
    if not present:
        raise ValueError(f"dataset {manifest.dataset!r} has no breasts to score")


@torch.no_grad()
def predict_tables(
    checkpoint: str | os.PathLike,
    manifest: Manifest,
    cache: TensorCache,
    split: str | None = None,
    inputs: str | None = None,
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = True,
) -> Predictions:
    """Score every patient of `manifest` (or of one split) with a stage-2 (or stage-1) checkpoint."""
    loaded = load_for_inference(checkpoint, inputs, device, need_settings=False)
    inputs, fusion, name = loaded.inputs, loaded.fusion, loaded.name
    _check_cache_fits(loaded.arch, cache, checkpoint)
    _check_split(manifest, split)
    dataset = PatientDataset(manifest, cache, split, inputs=inputs, augment=None)
    loader = make_loader(dataset, batch_size, shuffle=False, pin_memory=False)
    patients: list[str] = []
    breast_probs: list[np.ndarray] = []
    image_probs: list[np.ndarray] = []
    scored = f"scoring {name} on {manifest.dataset}" + (f" {split}" if split else "")
    for batch in track(loader, desc=scored, unit="batch", disable=not progress, leave=False):
        breast, views = score_batch(loaded.model, batch["x"].to(loaded.device))
        patients += [str(p) for p in batch["patient_id"]]
        breast_probs.append(breast.cpu().numpy())
        if views is not None:
            image_probs.append(views.cpu().numpy())
    per_breast = np.concatenate(breast_probs) if patients else np.zeros((0, len(SIDES)))
    per_image = None
    if fusion in PER_IMAGE_FUSIONS:
        per_image = np.concatenate(image_probs) if patients else np.zeros((0, len(VIEW_ORDER)))
    breasts = _breast_table(manifest, patients, per_breast, name, fusion, inputs)
    images = _image_table(manifest, patients, per_image, name) if per_image is not None else None
    return Predictions(breasts=breasts, images=images, model=name)


def predict(
    checkpoint: str | os.PathLike,
    manifest: Manifest,
    cache: TensorCache,
    split: str | None = None,
    inputs: str | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Per-breast scores table (columns BREAST_COLUMNS); predict_tables also gives the per-image table."""
    return predict_tables(checkpoint, manifest, cache, split, inputs, **options).breasts


def _breast_info(manifest: Manifest) -> dict[tuple[str, str], tuple[str, int, str]]:
    """(patient_id, side) -> (dataset, label, split) from the manifest's breasts table."""
    b = manifest.breasts
    return {
        (str(p), str(s)): (str(d), int(y), str(sp))
        for d, p, s, y, sp in zip(
            b["dataset"], b["patient_id"], b["side"], b["label"], b["split"], strict=True
        )
    }


def _breast_table(
    manifest: Manifest, patients: list[str], probs: np.ndarray, name: str, fusion: str, inputs: str
) -> pd.DataFrame:
    """One row per breast of the scored patients."""
    info = _breast_info(manifest)
    rows = []
    for patient, pair in zip(patients, probs, strict=True):
        for k, side in enumerate(SIDES):
            dataset, label, split = info[(patient, side)]
            rows.append((dataset, patient, side, label, float(pair[k]), name, split, fusion, inputs))
    return pd.DataFrame(rows, columns=list(BREAST_COLUMNS))


def _image_table(manifest: Manifest, patients: list[str], probs: np.ndarray, name: str) -> pd.DataFrame:
    """One row per view of the scored patients, views in VIEW_ORDER."""
    info = _breast_info(manifest)
    rows = []
    for patient, views in zip(patients, probs, strict=True):
        for k, key in enumerate(VIEW_ORDER):
            side, view = key[0], key[1:]
            dataset, label, split = info[(patient, side)]
            rows.append((dataset, patient, side, view, label, float(views[k]), name, split))
    return pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))
