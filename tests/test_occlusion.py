"""Lesion occlusion: the covered pixels take the breast's median, nothing else moves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemlib.core.views import VIEW_ORDER
from cemlib.inference.occlusion import batch_probabilities, breast_probabilities, occlude_lesions
from cemlib.model.networks import build_model


def exam_with_lesion():
    """A 4-view, 2-channel exam: breast at 0.3 (LE) / 0.2 (DES), a bright lesion in the left CC view."""
    x = torch.zeros(4, 2, 32, 16)
    x[:, 0, 4:28, 2:14] = 0.3
    x[:, 1, 4:28, 2:14] = 0.2
    masks = torch.zeros(4, 32, 16)
    lcc = VIEW_ORDER.index("LCC")
    masks[lcc, 10:14, 6:10] = 1.0
    x[lcc, :, 10:14, 6:10] = 0.9
    return x, masks, lcc


def test_the_lesion_and_its_rim_take_the_breast_median():
    x, masks, lcc = exam_with_lesion()
    covered = occlude_lesions(x, masks, "L", dilation=2)
    assert torch.all(covered[lcc, 0, 8:16, 4:12] == 0.3) and torch.all(covered[lcc, 1, 8:16, 4:12] == 0.2)
    outside = np.ones((32, 16), bool)
    outside[8:16, 4:12] = False
    assert torch.equal(covered[lcc][:, torch.from_numpy(outside)], x[lcc][:, torch.from_numpy(outside)])
    others = [v for v in range(4) if v != lcc]
    assert torch.equal(covered[others], x[others])


def test_the_other_breast_is_left_alone_and_bad_shapes_are_refused():
    x, masks, _ = exam_with_lesion()
    assert torch.equal(occlude_lesions(x, masks, "R"), x)
    with pytest.raises(ValueError, match="masks"):
        occlude_lesions(x, masks[:3], "L")


def test_scoring_in_batches_gives_each_exams_own_probabilities():
    torch.manual_seed(0)
    model = build_model("mf_concat", 2, width=0.0625, global_pool=True, head=(16, 8)).eval()
    exams = [torch.rand(4, 2, 64, 32) for _ in range(5)]
    batched = batch_probabilities(model, exams, batch=2)
    for exam, scores in zip(exams, batched, strict=True):
        alone = breast_probabilities(model, exam)
        assert scores.keys() == alone.keys()
        assert all(scores[side] == pytest.approx(alone[side], abs=1e-5) for side in alone)
