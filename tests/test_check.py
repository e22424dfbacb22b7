"""`cemlib.results.check`: a run against a replicated reference."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from cemlib.cli import main
from cemlib.core.resources import DATA_MANIFEST, resource_dir
from cemlib.results import build as results
from cemlib.results import check, stats

SMOKE_TABLES = Path(__file__).resolve().parents[1] / "reports" / "smoke" / "tables"


def _metrics_csv(folder, aucs: dict[str, float], n_breasts: int = 400, n_malignant: int = 200) -> None:
    rows = [{"dataset": "internal", "split": "test", "model": model, "n_breasts": n_breasts,
             "n_malignant": n_malignant, "metric": "auc", "estimate": auc} for model, auc in aucs.items()]
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

    good = check.compare(check.run_metrics(tmp_path / "good"), reference, check.run_sizes(tmp_path / "good"))
    broken = check.compare(check.run_metrics(tmp_path / "broken"), reference,
                           check.run_sizes(tmp_path / "broken"))

    assert good["verdict"].tolist() == ["within"] and good["informative"].all()
    assert check.failed(good).empty and check.verdict_summary(good, None)[0]
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
    assert list(written.columns) == [*check.REPLICATE_COLUMNS, *check.REFERENCE_EXTRA_COLUMNS]
    assert set(written["metric"]) >= {"internal auc", "cddcesm auc"} and (written["n"] == 5).all()
    assert (written["profile"] == "smoke").all()
    sizes = written.set_index("metric")[["n_pos", "n_neg"]]
    internal = breasts[breasts["split"] == "test"]["label"]
    assert tuple(sizes.loc["internal auc"]) == (internal.sum(), (internal == 0).sum())
    assert check.promised(written) == 2

    _write_run(tmp_path / "good", [_predictions(breasts, 11)])
    _write_run(tmp_path / "broken", [_predictions(breasts, 11, shuffled=True)])
    capsys.readouterr()
    assert main(["check", "--run", str(tmp_path / "good"), "--reference", str(reference)]) == 0
    assert "2 of 2 headline metrics informative" in (out := capsys.readouterr().out)
    assert "all 2 within their bands" in out
    assert main(["check", "--run", str(tmp_path / "broken"), "--reference", str(reference)]) == 1
    out = capsys.readouterr().out
    assert "outside" in out and "2 outside their bands or missing" in out


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


def test_the_shipped_smoke_reference_holds_its_replicates_and_says_what_it_can_check():
    """The committed reference: five replicates of every headline metric, each with its test-set size. The
    four CEM models' internal bands keep a model at chance out, the LE models' (at chance themselves) and
    the small external replicas' do not, so the reference promises exactly the CEM bands, and a run at its
    means passes on those."""
    reference = check.read_reference(check.reference_path("smoke"))
    headline = reference[reference["metric"].isin(check.HEADLINE_METRICS)]
    assert len(headline) == 10 and (headline["n"] >= check.MIN_REFERENCE_REPLICATES).all()
    assert (headline["min"] <= headline["mean"]).all() and (headline["mean"] <= headline["max"]).all()
    assert set(reference["profile"]) == {"smoke"} and headline[["n_pos", "n_neg"]].notna().all().all()
    sizes = check.run_sizes(SMOKE_TABLES)
    assert headline.merge(sizes, on=["model", "metric"], suffixes=("", "_run")).eval(
        "n_pos == n_pos_run and n_neg == n_neg_run").all()
    at_mean = headline[["model", "metric"]].assign(value=headline["mean"].to_numpy())
    comparison = check.compare(at_mean, reference)
    verdicts = comparison[comparison["headline"]].set_index(["model", "metric"])["verdict"]
    informative = verdicts[verdicts != "uninformative"]
    assert check.promised(reference) == len(informative) >= 1
    assert set(informative) == {"within"}
    assert sorted(informative.index) == [(f"CEM {fusion}", "internal auc") for fusion in sorted(
        ["none", "left_right", "mf_average", "mf_concat"])]
    passed, line = check.verdict_summary(comparison, check.promised(reference))
    assert passed and line.startswith(f"{len(informative)} of 10 headline metrics informative")


def test_null_se_and_chance_inside_match_a_simulation():
    """Hanley-McNeil's null SE and the chance of landing in a band, against AUCs of random scores."""
    rng = np.random.default_rng(0)
    for n_pos, n_neg in ((63, 117), (11, 41)):
        labels = np.r_[np.ones(n_pos), np.zeros(n_neg)]
        scores = rng.random((20000, n_pos + n_neg))
        ranks = rankdata(scores, axis=1)[:, :n_pos].sum(axis=1)
        aucs = (ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        assert roc_auc_score(labels, scores[0]) == pytest.approx(aucs[0])
        se = stats.auc_null_se(n_pos, n_neg)
        assert se == pytest.approx(np.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg)))
        assert aucs.std() == pytest.approx(se, rel=0.03)
        low, high = 0.5 + 0.5 * se, 0.5 + 3 * se
        simulated = ((aucs >= low) & (aucs <= high)).mean()
        assert stats.chance_inside(low, high, se) == pytest.approx(simulated, abs=0.015)
    assert np.isnan(stats.auc_null_se(0, 10)) and np.isnan(stats.chance_inside(0.4, 0.6, 0.0))


def _random_run(folder: Path, reference: pd.DataFrame, seed: int = 0) -> None:
    """Tables written by the real results code from random scores, on test sets of the reference's sizes."""
    rng = np.random.default_rng(seed)
    frames = []
    for row in reference[reference["metric"].isin(check.HEADLINE_METRICS)].itertuples():
        dataset = row.metric.split()[0]
        source, split = ("synthetic", "test") if dataset == "internal" else (dataset, "external")
        labels = np.r_[np.ones(int(row.n_pos), int), np.zeros(int(row.n_neg), int)]
        ids = [f"P{i:04d}" for i in range(labels.size)]
        frames.append(pd.DataFrame({"dataset": source, "patient_id": ids, "side": "L", "label": labels,
                                    "score": rng.random(labels.size), "model": row.model, "split": split}))
    results.write_tables(results.build_tables(pd.concat(frames, ignore_index=True)), folder / "tables")


@pytest.mark.parametrize("shipped", sorted(resource_dir(DATA_MANIFEST).glob("reference_*.csv")),
                         ids=lambda p: p.stem)
def test_random_scores_fail_every_shipped_reference(shipped, tmp_path, capsys):
    profile = shipped.stem.removeprefix("reference_")
    _random_run(tmp_path / "random", check.read_reference(shipped))
    assert main(["check", "--profile", profile, "--workdir", str(tmp_path), "--run",
                 str(tmp_path / "random")]) == 1
    assert "headline metrics informative" in capsys.readouterr().out


def test_a_band_that_admits_chance_never_passes(tmp_path, capsys):
    """An informative reference checked on a test set too small for it: fewer informative than promised."""
    reference = pd.DataFrame([{"model": "CEM mf_concat", "metric": "internal auc", "n": 5, "mean": 0.85,
                               "sd": 0.01, "min": 0.84, "max": 0.86, "profile": "smoke", "n_pos": 200,
                               "n_neg": 200}])
    reference.to_csv(tmp_path / "reference.csv", index=False)
    _metrics_csv(tmp_path / "small" / "tables", {"CEM mf_concat": 0.85}, n_breasts=8, n_malignant=4)
    args = ["check", "--workdir", str(tmp_path), "--reference", str(tmp_path / "reference.csv"), "--run"]
    assert main([*args, str(tmp_path / "small")]) == 1
    out = capsys.readouterr().out
    assert "uninformative" in out and "0 of 1 headline metrics informative" in out
    assert "checks nothing" not in out
    assert "the reference promises 1" in out
    _metrics_csv(tmp_path / "large" / "tables", {"CEM mf_concat": 0.85})
    assert main([*args, str(tmp_path / "large")]) == 0
    assert "1 of 1 headline metrics informative" in capsys.readouterr().out


def _smoke_copy(tmp_path: Path, auc=None) -> Path:
    """A copy of the committed smoke run's tables, its AUCs replaced by `auc(model, dataset)` if given."""
    run = tmp_path / "copy"
    shutil.copytree(SMOKE_TABLES, run / "tables")
    if auc is not None:
        metrics = pd.read_csv(run / "tables" / "metrics.csv")
        rows = metrics["metric"] == "auc"
        metrics.loc[rows, "estimate"] = [auc(m, d) for m, d in zip(metrics.loc[rows, "model"],
                                                                  metrics.loc[rows, "dataset"], strict=True)]
        metrics.to_csv(run / "tables" / "metrics.csv", index=False)
    return run


def test_the_committed_run_with_every_metric_at_chance_fails(tmp_path, capsys):
    run = _smoke_copy(tmp_path)
    metrics = pd.read_csv(run / "tables" / "metrics.csv").assign(estimate=0.5)
    metrics.to_csv(run / "tables" / "metrics.csv", index=False)
    assert main(["check", "--profile", "smoke", "--workdir", str(tmp_path), "--run", str(run)]) == 1
    assert "outside their bands" in capsys.readouterr().out


def _cut_reference(tmp_path: Path, lines: int, profile: str | None = None) -> Path:
    text = check.reference_path("smoke").read_text().splitlines()[:lines]
    path = tmp_path / "reference.csv"
    path.write_text("\n".join(text) + "\n")
    if profile is not None:
        pd.read_csv(path).assign(profile=profile).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("lines", "missing"), [(1, 10), (4, 9)])
def test_a_reference_lacking_headline_metrics_is_refused(tmp_path, capsys, lines, missing):
    """A header-only reference, or one cut to 4 lines, against a run with 9 of its 10 AUCs at 0.01."""
    run = _smoke_copy(tmp_path, lambda model, dataset: 0.6 if model == "CEM left_right" else 0.01)
    reference = _cut_reference(tmp_path, lines)
    assert main(["check", "--profile", "smoke", "--workdir", str(tmp_path), "--run", str(run),
                 "--reference", str(reference)]) == 1
    out = capsys.readouterr().out
    assert f"the reference lacks {missing} headline metric(s) the run has" in out
    assert "LE none internal auc" in out and "CEM mf_concat cddcesm auc" in out and "refused" in out


def test_a_reference_of_another_profile_is_refused(tmp_path, capsys):
    run = _smoke_copy(tmp_path)
    reference = _cut_reference(tmp_path, 100, profile="paper")
    assert main(["check", "--profile", "smoke", "--workdir", str(tmp_path), "--run", str(run),
                 "--reference", str(reference)]) == 1
    assert "made for profile paper, not smoke" in capsys.readouterr().out


def test_an_old_reference_without_sizes_reads_with_the_runs_sizes(tmp_path):
    """A reference written before profile, n_pos and n_neg still reads; the run's metrics.csv gives sizes."""
    old = check.read_reference(check.reference_path("smoke"))[list(check.REPLICATE_COLUMNS)]
    assert check.promised(old) is None
    comparison = check.compare(check.run_metrics(SMOKE_TABLES), old, check.run_sizes(SMOKE_TABLES))
    assert comparison[comparison["headline"]]["chance"].notna().all()
    assert not check.reference_problems(check.run_metrics(SMOKE_TABLES), old, "smoke")


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
