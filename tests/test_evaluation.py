"""Tests of prediction: per-breast and per-image score tables from a checkpoint, and `cem predict`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from cemlib import cli, training
from cemlib.core.settings import load_profile
from cemlib.data.cache import TensorCache
from cemlib.data.datasets import PatientDataset
from cemlib.inference import scoring as evaluation
from cemlib.model import checkpoints
from cemlib.model import networks as models
from cemlib.pixels.settings import PreprocessSettings
from tests.factories import save_calibrated_checkpoint, tiny_study

SIZE = (64, 32)
ARCH = {"width": 0.0625, "global_pool": True, "head": (16, 8), "input_size": SIZE}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A 12-patient synthetic cohort, its manifest and a 64 x 32 cache."""
    return tiny_study(tmp_path_factory.mktemp("tiny_eval"), patients=12, seed=5, size=SIZE)


def saved(model: nn.Module, tiny: dict, name: str, inputs: str = "cem"):
    """The model (batch norm calibrated) saved as a checkpoint with the metadata cem train records."""
    torch.manual_seed(0)
    return save_calibrated_checkpoint(model, tiny, name, inputs, SIZE)


@pytest.fixture(scope="module")
def concat_checkpoint(tiny):
    torch.manual_seed(1)
    return saved(models.build_model("mf_concat", 2, **ARCH), tiny, "concat")


def test_one_row_per_breast_with_the_contract_columns(tiny, concat_checkpoint):
    table = evaluation.predict(concat_checkpoint, tiny["manifest"], tiny["cache"], split="test")
    assert list(table.columns) == list(evaluation.BREAST_COLUMNS)
    test_breasts = tiny["manifest"].breasts.query("split == 'test'")
    assert len(table) == len(test_breasts)
    assert not table.duplicated(["patient_id", "side"]).any()
    assert table["score"].between(0, 1).all() and table["score"].nunique() > 1
    assert set(table["split"]) == {"test"} and set(table["model"]) == {"CEM mf_concat"}
    merged = table.merge(test_breasts, on=["patient_id", "side"], suffixes=("", "_manifest"))
    assert len(merged) == len(table)
    assert (merged["label"] == merged["label_manifest"]).all()
    everyone = evaluation.predict(concat_checkpoint, tiny["manifest"], tiny["cache"])
    assert len(everyone) == len(tiny["manifest"].breasts)


def test_breast_scores_are_the_models_malignant_probabilities(tiny, concat_checkpoint):
    result = evaluation.predict_tables(concat_checkpoint, tiny["manifest"], tiny["cache"], split="val",
                                       device="cpu")
    assert result.images is None
    model = checkpoints.model_from_checkpoint(checkpoints.load_checkpoint(concat_checkpoint)).eval()
    dataset = PatientDataset(tiny["manifest"], tiny["cache"], "val", inputs="cem")
    with torch.no_grad():
        for item in dataset:
            probs = model(item["x"].unsqueeze(0))["breast_logprob"][0].softmax(-1)[:, 1]
            rows = result.breasts.set_index(["patient_id", "side"])
            assert rows.loc[(item["patient_id"], "L"), "score"] == pytest.approx(float(probs[0]), abs=1e-6)
            assert rows.loc[(item["patient_id"], "R"), "score"] == pytest.approx(float(probs[1]), abs=1e-6)


@pytest.mark.parametrize("fusion", ["none", "left_right"])
def test_view_level_models_give_image_table_and_mean_of_cc_and_mlo(tiny, fusion):
    torch.manual_seed(2)
    checkpoint = saved(models.build_model(fusion, 2, **ARCH), tiny, fusion)
    result = evaluation.predict_tables(checkpoint, tiny["manifest"], tiny["cache"])
    images, breasts = result.images, result.breasts
    assert list(images.columns) == list(evaluation.IMAGE_COLUMNS)
    assert len(images) == 2 * len(breasts) and images["score"].between(0, 1).all()
    # Hand-computed: breast score = (p_CC + p_MLO) / 2 from the per-image table.
    wide = images.pivot_table(index=["patient_id", "side"], columns="view", values="score")
    expected = ((wide["CC"] + wide["MLO"]) / 2).rename("expected").reset_index()
    merged = breasts.merge(expected, on=["patient_id", "side"])
    np.testing.assert_allclose(merged["score"], merged["expected"], atol=1e-7)
    # ... which is also what the fusion network itself reports per breast.
    model = checkpoints.model_from_checkpoint(checkpoints.load_checkpoint(checkpoint)).eval()
    first = PatientDataset(tiny["manifest"], tiny["cache"], inputs="cem")[0]
    with torch.no_grad():
        probs = model(first["x"].unsqueeze(0))["breast_logprob"][0, :, 1].exp()
    mine = breasts[breasts["patient_id"] == first["patient_id"]].sort_values("side")["score"].to_numpy()
    np.testing.assert_allclose(mine, probs.numpy(), atol=1e-6)


def test_stage1_classifier_is_scored_per_view(tiny):
    torch.manual_seed(3)
    checkpoint = saved(models.build_image_classifier(1, **ARCH), tiny, "stage1_le", inputs="le")
    result = evaluation.predict_tables(checkpoint, tiny["manifest"], tiny["cache"], split="train")
    assert result.model == "LE image" and result.images is not None
    model = checkpoints.model_from_checkpoint(checkpoints.load_checkpoint(checkpoint)).eval()
    row = result.images.iloc[0]
    dataset = PatientDataset(tiny["manifest"], tiny["cache"], "train", inputs="le")
    item = next(it for it in dataset if it["patient_id"] == row["patient_id"])
    with torch.no_grad():
        expected = model(item["x"][0:1]).softmax(-1)[0, 1]  # view 0 = LCC
    assert (row["side"], row["view"]) == ("L", "CC")
    assert row["score"] == pytest.approx(float(expected), abs=1e-6)


def test_mismatched_inputs_and_cache_size_are_refused(tiny, concat_checkpoint):
    with pytest.raises(ValueError, match=r"takes 2 channel\(s\) per view \(cem\) but inputs='le' gives 1"):
        evaluation.predict(concat_checkpoint, tiny["manifest"], tiny["cache"], inputs="le")
    other = TensorCache(tiny["base"] / "cache", PreprocessSettings(size=(96, 48)))
    with pytest.raises(ValueError, match=r"trained on 64 x 32 images but the cache .* holds 96 x 48"):
        evaluation.predict(concat_checkpoint, tiny["manifest"], other)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        evaluation.predict(tiny["base"] / "missing.pt", tiny["manifest"], tiny["cache"])


def test_training_log_auc_matches_sklearn_on_predictions(tiny, tmp_path):
    profile = load_profile("smoke", {
        "data.root": str(tiny["manifest"].root), "data.manifest": str(tiny["base"] / "manifest"),
        "preprocess.cache": str(tiny["cache"].cache_dir), "preprocess.size": list(SIZE),
        "model.width": 0.0625, "model.head": [16, 8], "train.stage2_epochs": 1,
    })
    plan = training.plan_stage2(profile, "mf_average", "cem", tmp_path, tiny["manifest"], tiny["cache"], None)
    result = plan.run()
    table = evaluation.predict(result.best_checkpoint, tiny["manifest"], tiny["cache"], split="val")
    logged = pd.read_csv(result.log)["val_auc"].iloc[0]
    assert logged == pytest.approx(roc_auc_score(table["label"], table["score"]), abs=1e-9)


def test_cem_predict_cli_writes_breast_and_image_tables(tiny, tmp_path, capsys):
    torch.manual_seed(4)
    checkpoint = saved(models.build_model("left_right", 2, **ARCH), tiny, "cli_lr")
    out = tmp_path / "scores.csv"
    code = cli.main(["predict", "--checkpoint", str(checkpoint), "--manifest", str(tiny["base"] / "manifest"),
                     "--out", str(out), "--split", "test", "--device", "cpu"])
    assert code == 0
    breasts = pd.read_csv(out)
    images = pd.read_csv(tmp_path / "scores_images.csv")
    assert len(breasts) == len(tiny["manifest"].breasts.query("split == 'test'"))
    assert len(images) == 2 * len(breasts) and set(breasts["model"]) == {"CEM left_right"}
    assert "wrote" in capsys.readouterr().out


def test_manifest_without_breasts_of_a_split_is_an_error(tiny, concat_checkpoint):
    manifest = dataclasses.replace(tiny["manifest"])
    with pytest.raises(ValueError, match="no breasts in split"):
        evaluation.predict(concat_checkpoint, manifest, tiny["cache"], split="external")
