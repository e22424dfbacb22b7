"""The honest scorecard (`cemlib.results.claims.scorecard`): each model pair once, replicate shares, claims
built
into the phantom, the detectable AUC difference of "no difference" claims, paper values inside the CIs."""

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


def test_share_of_replicates_where_a_claim_holds(breasts):
    replicates = [make_predictions(breasts, seed=s) for s in (1, 2, 3)]
    # In the third replicate MF concatenation is made worse than left-right fusion (CEM): a reversed copy.
    third = replicates[2]
    weak = (third["model"] == "CEM mf_concat") & (third["split"] == "test")
    third.loc[weak, "score"] = 1 - third.loc[weak, "score"]
    built = results.build_tables(replicates[0], reference=claims.load_reference(REFERENCE),
                                 replicates=replicates)
    card = built["scorecard"].set_index("Claim")
    per_run = [tables.metrics_frame(r) for r in replicates]
    holds = [claims._auc_of(m, "CEM mf_concat") > claims._auc_of(m, "CEM left_right") for m in per_run]
    assert holds[2] is False
    row = card.loc["MF fusion (concatenation) beats left-right fusion (CEM)"]
    assert row["Replicates where it holds"] == f"{sum(holds)} of 3"
    assert (card["Replicates where it holds"].iloc[:16].str.endswith("of 3")).all()
    # the spread table: one row per model and checked metric, n = 3
    spread = built["replicates"]
    assert list(spread.columns) == ["model", "metric", "n", "mean", "sd", "min", "max"]
    auc = spread[(spread["model"] == "CEM mf_concat") & (spread["metric"] == "internal auc")].iloc[0]
    values = [claims._auc_of(m, "CEM mf_concat") for m in per_run]
    assert auc["n"] == 3 and auc["mean"] == pytest.approx(np.mean(values))
    assert auc["sd"] == pytest.approx(np.std(values, ddof=1)) and auc["min"] == pytest.approx(min(values))


def test_one_run_no_difference_claims_and_summary(breasts):
    predictions = make_predictions(breasts)
    built = results.build_tables(predictions, reference=claims.load_reference(REFERENCE))
    card = built["scorecard"].set_index("Claim")
    assert "replicates" not in built
    assert set(card["Replicates where it holds"].iloc[:16]) <= {"1 of 1", "0 of 1"}
    same = card.loc["MF fusion (average) and MF fusion (concatenation) do not differ significantly "
                    "(CEM, DeLong)"]
    test = built["delong"].set_index(["model_a", "model_b"]).loc[("CEM mf_average", "CEM mf_concat")]
    expected = claims.detectable_difference(claims.difference_se(test["ci_low"], test["ci_high"]))
    assert float(same["Smallest detectable AUC difference (80% power)"]) == pytest.approx(expected, abs=5e-4)
    assert same["Verdict"] == ("holds" if test["p_value"] >= 0.05 else "does not hold")
    assert card.loc["CEM beats LE (No fusion)", "Built into the phantom"].startswith("yes")
    inside = built["table_comparison"]["Paper value within this run's CI"]
    summary = card.loc["Paper values inside this run's 95% CI", "This run"]
    assert summary == f"{(inside == 'yes').sum()} of {inside.isin(['yes', 'no']).sum()}"
    chance = card.loc["Claims that hold, not built into the phantom", "This run"]
    assert chance.endswith("of 12 assessable")
