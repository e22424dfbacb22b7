"""One exam from a folder, scored: its views (cemlib.inference.exam_files) preprocessed in memory, both
breasts scored and, from the same forward pass, each view's Grad-CAM++ map.

Views are preprocessed with the settings stored in the checkpoint (those its training cache used), stacked
in VIEW_ORDER as x (4, C, H, W) and scored by the model: each breast's malignancy probability, called
malignant at 0.5 or above, and for none/left_right (and stage-1 image models) each view's probability; the
breast's is then the mean of its CC and MLO views, exactly as cemlib.inference.scoring scores a manifest.
Grad-CAM++ maps come from cemlib.inference.cams. `cem predict STUDY` prints `exam_report.summary_lines`
and writes `exam_report.write_report`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cemlib.core.views import SIDES, VIEW_ORDER
from cemlib.data.cache import expected_raw_range
from cemlib.inference.cams import explain_exam, image_cams
from cemlib.inference.exam_files import ExamFile, ExamFiles, find_exam, select_views
from cemlib.inference.predict import LoadedModel, load_for_inference
from cemlib.model import networks as models
from cemlib.pixels.imaging import exam_des_bounds, preprocess_pair, read_pixels
from cemlib.pixels.settings import PreprocessSettings

THRESHOLD = 0.5


def load_views(views: Mapping[str, tuple[ExamFile, ExamFile | None]], settings: PreprocessSettings
               ) -> torch.Tensor:
    """Read and preprocess the selected views in memory: x (4, C, H, W) float32 in VIEW_ORDER."""
    expected = expected_raw_range(settings)
    des_images = {key: read_pixels(views[key][1].path, expected_range=expected)
                  for key in VIEW_ORDER if views[key][1] is not None}
    bounds = exam_des_bounds(list(des_images.values()), settings)
    planes = []
    for key in VIEW_ORDER:
        le_file, _ = views[key]
        le = read_pixels(le_file.path, expected_range=expected)
        le01, des01 = preprocess_pair(le, des_images.get(key), key[0], settings, source=str(le_file.path),
                                      des_bounds=bounds)
        planes.append(np.stack([le01] if des01 is None else [le01, des01]))
    return torch.from_numpy(np.stack(planes))


# ------------------------------------------------------------------------------------------------ model


def load_exam_model(checkpoint: str | os.PathLike, inputs: str | None = None, device: str | None = None
                    ) -> LoadedModel:
    """Load a stage-2 (or stage-1) checkpoint with its preprocessing settings, in evaluation mode."""
    return load_for_inference(checkpoint, inputs, device)


def _probabilities(model: nn.Module, outputs: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(breast (2,), view (4,) or None) malignant probabilities from one exam's model outputs."""
    if isinstance(model, models.ImageClassifier):
        views = models.malignant_probability(outputs)[None]
    else:
        views = models.view_probability(outputs)
    if views is not None:  # in float64: the report's mean matches the shown views' mean exactly
        views = views.double()
    breast = models.breast_from_views(views) if views is not None else models.malignant_probability(outputs)

    def plain(values: torch.Tensor) -> np.ndarray:
        return values[0].detach().cpu().numpy().astype(np.float64)

    return plain(breast), None if views is None else plain(views)


def run_model(model: nn.Module, x: torch.Tensor, cams: bool = True
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Score one exam x (4, C, H, W): (breast probabilities (2,), view probabilities (4,) or None,
    each view's Grad-CAM++ map for its own breast (4, H, W) or None), from a single forward pass."""
    device = next(model.parameters()).device
    is_image_model = isinstance(model, models.ImageClassifier)
    if not cams:
        with torch.no_grad():
            batch = x.to(device)
            outputs = model(batch) if is_image_model else model(batch[None])
        return (*_probabilities(model, outputs), None)
    captured: list[Any] = []
    handle = model.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        if is_image_model:
            maps = image_cams(model, x, target_class=1)
        else:
            maps = explain_exam(model, x)["own"]
    finally:
        handle.remove()
    return (*_probabilities(model, captured[-1]), np.asarray(maps, dtype=np.float32))


@dataclass
class ExamPrediction:
    """One exam's scores (and maps) from one model."""

    exam: ExamFiles
    model: LoadedModel
    views: dict[str, tuple[ExamFile, ExamFile | None]]
    x: torch.Tensor
    breast: dict[str, float]
    per_view: dict[str, float] | None
    cams: np.ndarray | None
    timings: dict[str, float]

    def call(self, side: str) -> str:
        """'malignant' when the breast's probability is at least the 0.5 threshold, else 'benign'."""
        return "malignant" if self.breast[side] >= THRESHOLD else "benign"


def predict_exam(study: str | os.PathLike, checkpoint: str | os.PathLike | LoadedModel,
                 inputs: str | None = None, device: str | None = None, cams: bool = True,
                 exclude: Iterable[str | os.PathLike] = ()) -> ExamPrediction:
    """Find, preprocess and score one exam folder (and compute its Grad-CAM++ maps unless cams=False)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if isinstance(checkpoint, LoadedModel):
        loaded = checkpoint
    else:
        loaded = load_exam_model(checkpoint, inputs, device)
    timings["load_model_s"] = time.perf_counter() - started
    mark = time.perf_counter()
    exam = find_exam(study, exclude)
    views = select_views(exam, loaded.inputs)
    timings["find_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    x = load_views(views, loaded.settings)
    timings["preprocess_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    breast, per_view, maps = run_model(loaded.model, x, cams)
    timings["model_s" if not cams else "model_and_cams_s"] = time.perf_counter() - mark
    return ExamPrediction(
        exam=exam, model=loaded, views=views, x=x,
        breast={side: float(p) for side, p in zip(SIDES, breast, strict=True)},
        per_view=None if per_view is None else dict(zip(VIEW_ORDER, per_view.tolist(), strict=True)),
        cams=maps, timings=timings,
    )


