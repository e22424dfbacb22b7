"""The honest scorecard (`cemlib.results.claims.scorecard`): each model pair once, three verdicts each resting
on a test, replicate shares and verdicts per seed, claims built into the phantom, the detectable AUC
difference, paper values inside the CIs where this run can estimate them."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from cemlib.core import vocab
from cemlib.results import build as results
from cemlib.results import claims, stats, tables
from tests.test_tables import REFERENCE, make_breasts, make_predictions


def _hand_delong_se(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SE of AUC(a) - AUC(b) from DeLong's structural components, written out with plain loops."""
    cases, controls = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

    def psi(x: float, z: float) -> float:
        return 1.0 if x > z else (0.5 if x == z else 0.0)

    def components(s: np.ndarray) -> tuple[list[float], list[float]]:
        v10 = [sum(psi(s[i], s[j]) for j in controls) / len(controls) for i in cases]
        v01 = [sum(psi(s[i], s[j]) for i in cases) / len(cases) for j in controls]
        return v10, v01

    (a10, a01), (b10, b01) = components(a), components(b)

    def cov(u: list[float], v: list[float]) -> float:
        mu, mv = sum(u) / len(u), sum(v) / len(v)
        return sum((x - mu) * (z - mv) for x, z in zip(u, v, strict=True)) / (len(u) - 1)

    s10 = [[cov(a10, a10), cov(a10, b10)], [cov(b10, a10), cov(b10, b10)]]
    s01 = [[cov(a01, a01), cov(a01, b01)], [cov(b01, a01), cov(b01, b01)]]
    var = [[s10[i][j] / len(cases) + s01[i][j] / len(controls) for j in range(2)] for i in range(2)]
    return float(np.sqrt(var[0][0] + var[1][1] - 2 * var[0][1]))


def test_detectable_difference_matches_a_hand_computation():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 60)
    a = np.round(y + rng.normal(0, 1.0, 60), 1)  # rounding makes ties
    b = np.round(0.6 * a + 0.8 * y + rng.normal(0, 1.0, 60), 1)
    test = stats.delong_test(y, a, b)
    se = claims.difference_se(test.ci_low, test.ci_high)
    assert se == pytest.approx(_hand_delong_se(y, a, b), rel=1e-9)
    # z_0.975 = 1.959964, z_0.80 = 0.841621 (normal table)
    expected = (1.959964 + 0.841621) * _hand_delong_se(y, a, b)
    assert claims.detectable_difference(se) == pytest.approx(expected, rel=1e-5)
    assert claims.detectable_difference(se, power=0.5) == pytest.approx(1.959964 * se, rel=1e-5)


def test_each_model_pair_once_and_the_new_fusion_claims():
    pairs = [frozenset((c.first, c.second)) for c in claims.paper_claims()]
    assert len(pairs) == len(set(pairs)) == 16
    texts = [c.text for c in claims.paper_claims()]
    mf = ("MF fusion (average)", "MF fusion (concatenation)")
    for inputs, fusion in itertools.product(("LE", "CEM"), mf):
        assert f"{fusion} beats left-right fusion ({inputs})" in texts
    built_in = [c for c in claims.paper_claims() if c.built_in]
    assert {c.text for c in built_in} == {f"CEM beats LE ({vocab.FUSION_LABELS[f]})" for f in vocab.FUSIONS}


@pytest.fixture(scope="module")
def breasts() -> pd.DataFrame:
    return make_breasts(300)


def _expected_verdict(kind: str, test: stats.DelongResult) -> str:
    """The verdict rule written out from the issue: DeLong P for superiority, a +-0.05 margin for sameness."""
    if kind == "same":
        if -0.05 <= test.ci_low and test.ci_high <= 0.05:
            return "holds"
        return "contradicted" if test.ci_low > 0.05 or test.ci_high < -0.05 else "inconclusive"
    if test.p_value < 0.05:
        return "holds" if test.difference > 0 else "contradicted"
    return "inconclusive"


def test_verdict_per_seed_from_an_independent_delong_test(breasts, tmp_path):
    replicates = [make_predictions(breasts, seed=s) for s in (1, 2, 3)]
    # In the third replicate MF concatenation is made worse than left-right fusion (CEM): a reversed copy.
    third = replicates[2]
    weak = (third["model"] == "CEM mf_concat") & (third["split"] == "test")
    third.loc[weak, "score"] = 1 - third.loc[weak, "score"]
    built = results.build_tables(replicates[0], reference=claims.load_reference(REFERENCE),
                                 replicates=replicates, seeds=[7, 8, 9])
    per_seed = built["claims_replicates"]
    assert list(per_seed.columns) == ["claim", "seed", "verdict", "delta_auc", "p"]
    assert len(per_seed) == 16 * 3 and sorted(set(per_seed["seed"])) == [7, 8, 9]
    for claim in claims.paper_claims():
        for seed, predictions in zip((7, 8, 9), replicates, strict=True):
            both = tables.paired_scores(predictions, claim.first, claim.second)
            test = stats.delong_test(both["label"], both["score_a"], both["score_b"])
            row = per_seed[(per_seed["claim"] == claim.text) & (per_seed["seed"] == seed)].iloc[0]
            assert row["delta_auc"] == pytest.approx(test.difference)
            assert row["p"] == pytest.approx(test.p_value)
            assert row["verdict"] == _expected_verdict(claim.kind, test), (claim.text, seed)
    reversed_claim = "MF fusion (concatenation) beats left-right fusion (CEM)"
    assert per_seed.set_index(["claim", "seed"]).loc[(reversed_claim, 9), "verdict"] == "contradicted"
    card = built["scorecard"].set_index("Claim")
    for claim in claims.paper_claims():
        verdicts = per_seed[per_seed["claim"] == claim.text]["verdict"]
        assert card.loc[claim.text, "Replicates where it holds"] == f"{(verdicts == 'holds').sum()} of 3"
    written = results.write_tables(built, tmp_path)
    assert "claims_replicates.csv" in written and "claims_replicates.md" not in written
    # the spread table: one row per model and checked metric, n = 3
    per_run = [tables.metrics_frame(r) for r in replicates]
    spread = built["replicates"]
    assert list(spread.columns) == ["model", "metric", "n", "mean", "sd", "min", "max"]
    auc = spread[(spread["model"] == "CEM mf_concat") & (spread["metric"] == "internal auc")].iloc[0]
    values = [claims._auc_of(m, "CEM mf_concat") for m in per_run]
    assert auc["n"] == 3 and auc["mean"] == pytest.approx(np.mean(values))
    assert auc["sd"] == pytest.approx(np.std(values, ddof=1)) and auc["min"] == pytest.approx(min(values))


def _delong(first: str, second: str, delta: float, p: float, low: float, high: float) -> pd.DataFrame:
    return pd.DataFrame([{"model_a": first, "model_b": second, "n_breasts": 180, "auc_a": 0.7 + delta,
                          "auc_b": 0.7, "z": 0.0, "p_value": p, "ci_low": low, "ci_high": high}])


BEATS = claims.paper_claims()[4]  # Left-right fusion beats no fusion (LE)
SAME = claims.paper_claims()[9]  # MF average and MF concatenation do not differ (LE)


@pytest.mark.parametrize(("claim", "delta", "p", "low", "high", "verdict"), [
    (BEATS, 0.08, 0.01, 0.02, 0.14, "holds"),
    (BEATS, -0.08, 0.01, -0.14, -0.02, "contradicted"),
    (BEATS, 0.08, 0.20, -0.04, 0.20, "inconclusive"),  # higher, but a point estimate alone never holds
    (BEATS, -0.01, 0.90, -0.10, 0.08, "inconclusive"),
    (SAME, 0.001, 0.96, -0.049, 0.046, "holds"),  # CI inside +-0.05
    (SAME, 0.02, 0.64, -0.101, 0.062, "inconclusive"),  # not significant, yet a test too weak to tell
    (SAME, 0.12, 0.001, 0.06, 0.18, "contradicted"),  # CI wholly beyond the margin
    (SAME, 0.06, 0.02, 0.01, 0.11, "inconclusive"),  # significant, but the CI reaches into the margin
])
def test_three_verdicts_each_from_its_test(claim, delta, p, low, high, verdict):
    tested = claims.outcome(claim, _delong(claim.first, claim.second, delta, p, low, high))
    assert tested.verdict == verdict and tested.delta_auc == pytest.approx(delta) and tested.p == p
    # the same test stored the other way round (second minus first) gives the same verdict
    swapped = _delong(claim.second, claim.first, -delta, p, -high, -low)
    assert claims.outcome(claim, swapped).verdict == verdict
    assert claims.outcome(claim, _delong("x", "y", delta, p, low, high)).verdict == claims.NOT_ASSESSABLE


def test_one_run_no_difference_claims_and_summary(breasts):
    predictions = make_predictions(breasts)
    built = results.build_tables(predictions, reference=claims.load_reference(REFERENCE))
    card = built["scorecard"].set_index("Claim")
    assert "replicates" not in built and "claims_replicates" not in built
    assert set(card["Replicates where it holds"].iloc[:16]) <= {"1 of 1", "0 of 1"}
    same = card.loc["MF fusion (average) and MF fusion (concatenation) do not differ significantly "
                    "(CEM, DeLong)"]
    test = built["delong"].set_index(["model_a", "model_b"]).loc[("CEM mf_average", "CEM mf_concat")]
    expected = claims.detectable_difference(claims.difference_se(test["ci_low"], test["ci_high"]))
    assert float(same["Smallest detectable AUC difference (80% power)"]) == pytest.approx(expected, abs=5e-4)
    inside = -0.05 <= test["ci_low"] and test["ci_high"] <= 0.05
    assert same["Verdict"] == ("holds" if inside else "inconclusive")
    assert "+-0.05" in same["Test"] and "95% CI" in same["This run"]
    assert (card["Smallest detectable AUC difference (80% power)"].iloc[:16] != "").all()
    assert card.loc["CEM beats LE (No fusion)", "Built into the phantom"].startswith("yes")
    inside = built["table_comparison"]["Paper value within this run's CI"]
    summary = card.loc["Paper values inside this run's 95% CI", "This run"]
    assert summary == (f"{(inside == 'yes').sum()} of {inside.isin(['yes', 'no']).sum()} estimable here "
                       f"({(inside == claims.NOT_ESTIMABLE).sum()} not estimable here)")
    chance = card.loc["Claims that hold, not built into the phantom", "This run"]
    assert chance.endswith("of 12 assessable")


def _one_model(called: int, n_pos: int = 40, n_neg: int = 80, model: str = "CEM mf_concat") -> pd.DataFrame:
    """Test-set scores of one model that calls `called` breasts malignant, malignant ones first."""
    labels = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    rank = 1.0 - np.arange(labels.size) / labels.size
    scores = np.where(np.arange(labels.size) < called, 0.5 + 0.49 * rank, 0.49 * rank)
    return pd.DataFrame({"dataset": "synthetic", "patient_id": [f"P{i:03d}" for i in range(labels.size)],
                         "side": "L", "label": labels, "score": scores, "model": model, "split": "test"})


@pytest.mark.parametrize(("called", "estimable"), [
    (2, {"AUC", "ACC", "SEN", "SPE", "NPV"}),  # two positive calls: PPV rests on 2 breasts
    (0, {"AUC", "SEN", "SPE", "NPV"}),  # calls every breast benign: no accuracy, no PPV at all
    (115, {"AUC", "ACC", "SEN", "SPE", "PPV"}),  # 5 negative calls
    (40, {"AUC", "ACC", "SEN", "SPE", "PPV", "NPV"}),
])
def test_paper_values_count_only_where_this_run_can_estimate_them(called, estimable):
    reference = claims.load_reference(REFERENCE)
    metrics = tables.metrics_frame(_one_model(called))
    rows = claims.table_comparison(metrics, tables.metrics_frame(_one_model(called), "external"), reference)
    mine = rows[(rows["Model"] == vocab.model_label("CEM mf_concat")) & (rows["Dataset"] == "internal")]
    mine = mine.set_index("Metric")
    counted = set(mine.index[mine["Paper value within this run's CI"].isin(["yes", "no"])])
    assert counted == estimable
    shown = set(mine["Paper value within this run's CI"]) - {"yes", "no"}
    assert shown <= {claims.NOT_ESTIMABLE, tables.MISSING}
    assert mine.loc["PPV", "Cases behind this run's value"] in (f"{called} positive calls", tables.MISSING)
    assert mine.loc["SEN", "Cases behind this run's value"] == "40 positives"


def test_too_few_positives_or_negatives_leave_sen_and_spe_unestimable():
    reference = claims.load_reference(REFERENCE)
    few = _one_model(5, n_pos=8, n_neg=9)
    rows = claims.table_comparison(tables.metrics_frame(few), tables.metrics_frame(few, "external"),
                                   reference)
    mine = rows[(rows["Model"] == vocab.model_label("CEM mf_concat")) & (rows["Dataset"] == "internal")]
    mine = mine.set_index("Metric")
    assert mine.loc["SEN", "Paper value within this run's CI"] == claims.NOT_ESTIMABLE
    assert mine.loc["SPE", "Paper value within this run's CI"] == claims.NOT_ESTIMABLE
    assert mine.loc["AUC", "Paper value within this run's CI"] in ("yes", "no")
