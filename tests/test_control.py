"""The positive control: a pipeline that can learn must learn a planted, unambiguous sign, and the
mutations that a broken pipeline would suffer must break it. A test that cannot fail proves nothing;
these show that the pipeline's numbers can.

Each case trains the control profile's CEM MF-concatenation model on a small control cohort (stage 1
and stage 2, through the kit's own training code) and scores its test breasts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from cemlib import training
from cemlib.core.settings import load_profile
from cemlib.core.views import SIDES, VIEW_ORDER
from cemlib.data import datasets as data
from cemlib.inference.occlusion import breast_probabilities
from cemlib.model.checkpoints import load_model
from cemlib.study import prepare

pytestmark = pytest.mark.slow

#: The shipped control profile as it is (100 patients, 5 + 3 epochs; training takes seconds). A 60-patient
#: cohort learnt the sign under phantom v5 but not under v6 (stage 1 at the prior, test AUC 0.69): with 42
#: training patients whether the sign is learnt in 5 epochs depends on the draw, which is not what this
#: test is about.
OVERRIDES = {"threads": 2}
#: Where each view's slot goes when the left and right views are exchanged.
SWAP_SIDES = [VIEW_ORDER.index(("R" if v[0] == "L" else "L") + v[1:]) for v in VIEW_ORDER]


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    """The control profile's data in a temporary work folder: (profile, manifest, cache)."""
    profile = load_profile("control", OVERRIDES, tmp_path_factory.mktemp("control"))
    manifest, cache = prepare.prepare_data(profile, progress=False)
    return profile, manifest, cache


def trained(control, run, manifest=None):
    """The CEM MF-concatenation model trained on the control data (or on a mutated manifest)."""
    profile, clean, cache = control
    best = training.train(profile, "mf_concat", "cem", run, manifest=manifest or clean, cache=cache)
    return load_model(best)


def breast_auc(control, model, views=None) -> float:
    """Per-breast AUC of a model on the control's test patients (views reordered by `views` if given)."""
    _, manifest, cache = control
    dataset = data.PatientDataset(manifest, cache, "test", inputs="cem")
    labels, scores = [], []
    model.eval()
    for index in range(len(dataset)):
        item = dataset[index]
        x = item["x"] if views is None else item["x"][views]
        probs = breast_probabilities(model, x)
        labels += [int(v) for v in item["y"]]
        scores += [probs[side] for side in SIDES]
    return float(roc_auc_score(labels, scores))


def relabelled(manifest, labels_of):
    """A copy of the manifest whose breast labels are `labels_of(breasts)` on the train and val splits."""
    breasts = manifest.breasts.copy()
    learn = breasts["split"].isin(["train", "val"])
    breasts.loc[learn, "label"] = labels_of(breasts[learn])
    return dataclasses.replace(manifest, breasts=breasts)


@pytest.fixture(scope="module")
def clean_model(control, tmp_path_factory):
    torch.manual_seed(0)
    return trained(control, tmp_path_factory.mktemp("clean"))


def test_the_pipeline_learns_the_planted_sign(control, clean_model):
    assert breast_auc(control, clean_model) >= 0.9


def test_views_fed_in_the_wrong_order_break_it(control, clean_model):
    assert breast_auc(control, clean_model, views=SWAP_SIDES) <= 0.3  # each breast is scored on the other's


def test_labels_of_left_and_right_swapped_break_it(control, tmp_path):
    def swapped(breasts):
        other = breasts.set_index(["patient_id", "side"])["label"]
        return [other[(p, "R" if s == "L" else "L")] for p, s in zip(breasts["patient_id"], breasts["side"],
                                                                       strict=True)]

    model = trained(control, tmp_path, relabelled(control[1], swapped))
    assert breast_auc(control, model) <= 0.5


def test_shuffled_labels_break_it(control, tmp_path):
    rng = np.random.default_rng(0)
    shuffled = relabelled(control[1], lambda breasts: rng.permutation(breasts["label"].to_numpy()))
    model = trained(control, tmp_path, shuffled)
    assert breast_auc(control, model) <= 0.75
