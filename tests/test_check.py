"""`cemlib.check`: a run against a replicated reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cemlib import check


def _metrics_csv(folder, aucs: dict[str, float]) -> None:
    rows = [{"dataset": "internal", "split": "test", "model": model, "metric": "auc", "estimate": auc}
            for model, auc in aucs.items()]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)


def _scores(seed: int, shuffle: bool) -> float:
    """AUC of a model that sees the labels through noise, or of one trained on shuffled labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    scores = labels * 1.5 + rng.normal(size=labels.size)
    if shuffle:
        scores = rng.permutation(scores)
    return roc_auc_score(labels, scores)


def test_summary_columns_and_values():
    runs = [pd.DataFrame({"model": ["A"], "metric": ["internal auc"], "value": [v]})
            for v in (0.8, 0.9, 0.85)]
    summary = check.summarise_replicates(runs)
    assert list(summary.columns) == list(check.REPLICATE_COLUMNS)
    row = summary.iloc[0]
    assert (row["n"], row["min"], row["max"]) == (3, 0.8, 0.9)
    assert row["mean"] == pytest.approx(0.85)
    assert row["sd"] == pytest.approx(np.std([0.8, 0.9, 0.85], ddof=1))


def test_good_run_within_and_broken_model_outside(tmp_path):
    reference = check.summarise_replicates(
        pd.DataFrame({"model": ["CEM mf_concat"], "metric": ["internal auc"], "value": [_scores(s, False)]})
        for s in range(5))
    _metrics_csv(tmp_path / "good", {"CEM mf_concat": _scores(11, False)})
    _metrics_csv(tmp_path / "broken", {"CEM mf_concat": _scores(11, True)})

    good = check.compare(check.run_metrics(tmp_path / "good"), reference)
    broken = check.compare(check.run_metrics(tmp_path / "broken"), reference)

    assert good["verdict"].tolist() == ["within"]
    assert check.failed(good).empty
    assert broken["verdict"].tolist() == ["outside"]
    assert len(check.failed(broken)) == 1
    assert "outside" in check.format_comparison(broken)


def test_missing_headline_metric_fails(tmp_path):
    reference = pd.DataFrame([{"model": "LE none", "metric": "internal auc", "n": 5, "mean": 0.7, "sd": 0.02,
                               "min": 0.68, "max": 0.73}])
    _metrics_csv(tmp_path, {"CEM none": 0.9})
    comparison = check.compare(check.run_metrics(tmp_path), reference)
    assert comparison["verdict"].tolist() == ["missing"]
    assert len(check.failed(comparison)) == 1


def test_band_is_range_widened_by_sd_and_margin():
    reference = pd.DataFrame([{"model": "m", "metric": "internal auc", "n": 5, "mean": 0.80, "sd": 0.01,
                               "min": 0.75, "max": 0.81}])
    band = check.bands(reference).iloc[0]
    assert band["low"] == pytest.approx(0.75 - check.BAND_MARGIN)
    assert band["high"] == pytest.approx(0.83 + check.BAND_MARGIN)


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"metrics\.csv"):
        check.run_metrics(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ref\.csv"):
        check.read_reference(tmp_path / "ref.csv")
