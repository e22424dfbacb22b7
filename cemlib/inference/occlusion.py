"""Occlusion: does a model's call rest on the lesion? Each lesion is covered with its view's breast median
and the exam scored again; a model that reads the lesion loses confidence, one that reads something else
(a global brightness, the breast edge) does not.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from cemlib.core.views import SIDES, VIEW_ORDER
from cemlib.model.networks import FusionNet, malignant_probability

#: Pixels the lesion mask is grown by before it is covered, so its blurred rim goes too.
DILATION = 2
#: Exams scored in one forward pass.
BATCH = 16


def occlude_lesions(x: torch.Tensor, masks: torch.Tensor, side: str, dilation: int = DILATION
                    ) -> torch.Tensor:
    """A copy of one exam (4, C, H, W) whose lesions in `side`'s views are set, in every channel, to the
    median of that view's breast (its pixels above zero on the first channel) outside the lesion."""
    if x.ndim != 4 or masks.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"need an exam (4, C, H, W) and masks (4, H, W), got {tuple(x.shape)} and "
                         f"{tuple(masks.shape)}")
    out = x.clone()
    for v, view in enumerate(VIEW_ORDER):
        mask = masks[v].numpy() > 0.5
        if not view.startswith(side) or not mask.any():
            continue
        grown = ndimage.binary_dilation(mask, iterations=dilation) if dilation else mask
        breast = (x[v, 0].numpy() > 0) & ~grown
        cover = torch.from_numpy(grown)
        for c in range(x.shape[1]):
            plane = x[v, c].numpy()
            fill = float(np.median(plane[breast])) if breast.any() else 0.0
            out[v, c][cover] = fill
    return out


def breast_probabilities(model: FusionNet, x: torch.Tensor) -> dict[str, float]:
    """Each breast's malignant probability for one exam (4, C, H, W)."""
    return batch_probabilities(model, [x])[0]


@torch.no_grad()
def batch_probabilities(model: FusionNet, exams: list[torch.Tensor], batch: int = BATCH
                        ) -> list[dict[str, float]]:
    """Each breast's malignant probability for many exams, scored `batch` at a time."""
    device = next(model.parameters()).device
    out: list[dict[str, float]] = []
    for start in range(0, len(exams), batch):
        x = torch.stack(exams[start:start + batch]).to(device)
        out += [dict(zip(SIDES, row, strict=True)) for row in malignant_probability(model(x)).cpu().tolist()]
    return out
