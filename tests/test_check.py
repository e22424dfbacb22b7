"""`cemlib.results.check`: a run against a replicated reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cemlib.cli import main
from cemlib.results import build as results
from cemlib.results import check


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


# ------------------------------------------------------------------ the `cem check` command


def _breasts(seed: int = 0) -> pd.DataFrame:
    """Internal test breasts (a third malignant) and an external CDD-CESM set."""
    rng = np.random.default_rng(seed)
    rows = [{"dataset": dataset, "patient_id": f"{dataset[:1]}{i:03d}", "side": side,
             "label": int(rng.random() < 0.35), "split": split}
            for dataset, split, n in (("synthetic", "test", 120), ("cddcesm", "external", 60))
            for i in range(n) for side in ("L", "R")]
    return pd.DataFrame(rows)


def _predictions(breasts: pd.DataFrame, seed: int, shuffled: bool = False) -> pd.DataFrame:
    """Scores of the main model, seeing the labels through noise; `shuffled`: trained on shuffled labels."""
    rng = np.random.default_rng(seed)
    labels = breasts["label"].to_numpy()
    if shuffled:
        labels = rng.permutation(labels)
    frame = breasts.copy()
    frame["score"] = 1 / (1 + np.exp(-(2.0 * (labels - 0.5) * 1.6 + rng.normal(0, 1, len(frame)))))
    frame["model"] = "CEM mf_concat"
    return frame


def _write_run(folder, replicates: list[pd.DataFrame]) -> None:
    built = results.build_tables(replicates[0], replicates=replicates if len(replicates) > 1 else None)
    results.write_tables(built, folder / "tables")


def test_cem_check_passes_a_good_run_and_fails_a_broken_model(tmp_path, capsys):
    breasts = _breasts()
    _write_run(tmp_path / "replicated", [_predictions(breasts, seed) for seed in range(5)])
    reference = tmp_path / "reference.csv"
    assert main(["check", "--run", str(tmp_path / "replicated"), "--reference", str(reference),
                 "--make-reference"]) == 0
    written = pd.read_csv(reference)
    assert list(written.columns) == list(check.REPLICATE_COLUMNS)
    assert set(written["metric"]) >= {"internal auc", "cddcesm auc"} and (written["n"] == 5).all()

    _write_run(tmp_path / "good", [_predictions(breasts, 11)])
    _write_run(tmp_path / "broken", [_predictions(breasts, 11, shuffled=True)])
    capsys.readouterr()
    assert main(["check", "--run", str(tmp_path / "good"), "--reference", str(reference)]) == 0
    assert "all 2 headline metrics within their bands" in capsys.readouterr().out
    assert main(["check", "--run", str(tmp_path / "broken"), "--reference", str(reference)]) == 1
    out = capsys.readouterr().out
    assert "outside" in out and "2 of 2 headline metrics outside" in out


def test_make_reference_refuses_too_few_replicates(tmp_path, capsys):
    breasts = _breasts()
    _write_run(tmp_path / "run", [_predictions(breasts, seed) for seed in range(2)])
    out = tmp_path / "reference.csv"
    args = ["check", "--run", str(tmp_path / "run"), "--reference", str(out), "--make-reference"]
    assert main(args) == 1
    assert "needs at least 5" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--min-replicates", "2"]) == 0 and out.exists()
    _write_run(tmp_path / "single", [_predictions(breasts, 0)])
    assert main(["check", "--run", str(tmp_path / "single"), "--reference", str(out),
                 "--make-reference"]) == 1
    assert "replicates.csv" in capsys.readouterr().err


def test_the_shipped_smoke_reference_holds_its_replicates_and_refuses_a_chance_model():
    """The committed reference: five replicates of every headline metric; a model at chance fails it."""
    reference = check.read_reference(check.reference_path("smoke"))
    headline = reference[reference["metric"].isin(check.HEADLINE_METRICS)]
    assert len(headline) == 10 and (headline["n"] >= check.MIN_REFERENCE_REPLICATES).all()
    assert (headline["min"] <= headline["mean"]).all() and (headline["mean"] <= headline["max"]).all()
    chance = headline[["model", "metric"]].assign(value=0.5)
    assert not check.failed(check.compare(chance, reference)).empty
    at_mean = headline[["model", "metric"]].assign(value=headline["mean"].to_numpy())
    assert check.failed(check.compare(at_mean, reference)).empty


def test_the_reference_carries_every_replicates_pointing_game(tmp_path):
    """Each replicate's pointing game joins the reference (shown); a model without views does not."""
    breasts = _breasts()
    _write_run(tmp_path / "run", [_predictions(breasts, seed) for seed in range(5)])
    per_seed = pd.DataFrame({"model": ["LE mf_concat", "CEM mf_concat"] * 5,
                             "replicate": np.repeat(np.arange(5), 2),
                             "pointing game": [np.nan, 0.0, np.nan, 0.69, np.nan, 0.45, np.nan, 0.5, np.nan,
                                               0.6]})
    per_seed.to_csv(tmp_path / "run" / "tables" / "pointing_game_replicates.csv", index=False)
    summary = check.make_reference(tmp_path / "run" / "tables", tmp_path / "reference.csv")
    row = summary[summary["metric"] == "pointing game"]
    assert list(row["model"]) == ["CEM mf_concat"] and int(row["n"].iloc[0]) == 5
    assert row["mean"].iloc[0] == pytest.approx(np.mean([0.0, 0.69, 0.45, 0.5, 0.6]))
    assert row["min"].iloc[0] == 0.0 and row["max"].iloc[0] == 0.69
    reference = check.read_reference(tmp_path / "reference.csv")
    assert "pointing game" in set(reference["metric"])
    assert not check.bands(reference).query("metric == 'pointing game'")["low"].isna().any()
