"""cemlib.results.stats against R pROC 1.18 (numbers stored in tests/data, made by make_proc_reference.R),
scipy, scikit-learn and hand-computed cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import log_loss, roc_auc_score

from cemlib.results import stats as st
from cemlib.study import timings

DATA = Path(__file__).parent / "data"
TOL = 1e-9


def _load_cases() -> dict[str, dict]:
    inputs = pd.read_csv(DATA / "proc_cases.csv")
    results = pd.read_csv(DATA / "proc_results.csv")
    cases = {}
    for name, rows in inputs.groupby("case", sort=False):
        first, second = rows[rows["sample"] == 1], rows[rows["sample"] == 2]
        case = {"kind": rows["kind"].iloc[0], "y1": first["y"].to_numpy(), "a": first["score_a"].to_numpy()}
        if case["kind"] == "paired":
            case.update(y2=case["y1"], b=first["score_b"].to_numpy())
        else:
            case.update(y2=second["y"].to_numpy(), b=second["score_b"].to_numpy())
        expected = results[results["case"] == name]
        case["expected"] = dict(zip(expected["quantity"], expected["value"].astype(float), strict=True))
        cases[name] = case
    return cases


CASES = _load_cases()


def _close(actual: float, expected: float) -> bool:
    if math.isnan(expected):
        return math.isnan(actual)
    if math.isinf(expected):
        return actual == expected
    return abs(actual - expected) <= TOL


@pytest.fixture(scope="module")
def asah() -> pd.DataFrame:
    return pd.read_csv(DATA / "aSAH.csv")


# ------------------------------------------------------------------ pROC's published aSAH results


def test_asah_published_auc_and_roc_test(asah):
    assert len(asah) == 113 and set(asah["outcome"]) == {0, 1}
    assert round(st.roc_auc(asah["outcome"], asah["s100b"]), 4) == 0.7314
    result = st.delong_test(asah["outcome"], asah["ndka"], asah["s100b"])
    assert result.z == pytest.approx(-1.39077002573558, abs=1e-12)
    assert result.p_value == pytest.approx(0.164295175223054, abs=1e-12)
    assert round(result.auc_a, 4) == 0.6120 and round(result.auc_b, 4) == 0.7314


def test_asah_published_ci_auc(asah):
    # pROC's documentation: ci.auc(aSAH$outcome, aSAH$s100b) -> 95% CI: 0.6301-0.8326 (DeLong)
    _auc, low, high = st.auc_ci(asah["outcome"], asah["s100b"])
    assert (round(low, 4), round(high, 4)) == (0.6301, 0.8326)


# ------------------------------------------------------------------ every stored pROC case


@pytest.mark.parametrize("name", list(CASES))
def test_matches_proc_auc_var_and_ci(name):
    case = CASES[name]
    exp = case["expected"]
    for side, y, s in (("a", case["y1"], case["a"]), ("b", case["y2"], case["b"])):
        assert _close(st.roc_auc(y, s), exp[f"auc_{side}"])
        assert _close(st.delong_variance(y, s), exp[f"var_{side}"])
        _auc, low, high = st.auc_ci(y, s, method="delong")
        assert _close(low, exp[f"ci_low_{side}"]) and _close(high, exp[f"ci_high_{side}"])


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c["kind"] == "paired"])
def test_matches_proc_paired_roc_test(name):
    case = CASES[name]
    exp = case["expected"]
    result = st.delong_test(case["y1"], case["a"], case["b"], paired=True)
    assert _close(result.z, exp["z"]), (result.z, exp["z"])
    assert _close(result.p_value, exp["p"])
    assert _close(result.ci_low, exp["diff_ci_low"]) and _close(result.ci_high, exp["diff_ci_high"])


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c["kind"] == "unpaired"])
def test_matches_proc_unpaired_roc_test(name):
    case = CASES[name]
    exp = case["expected"]
    result = st.delong_test(case["y1"], case["a"], case["b"], paired=False, y_true_b=case["y2"])
    assert _close(result.z, exp["d"]) and _close(result.df, exp["df"]) and _close(result.p_value, exp["p"])


def test_zero_variance_cases_give_nan_as_proc():
    """Both AUCs 1 (or 0 against 1) in two samples: pROC's D is NaN (or -Inf) with NaN df and p, no error."""
    both = CASES["unpaired_both_perfect"]
    result = st.delong_test(both["y1"], both["a"], both["b"], paired=False, y_true_b=both["y2"])
    assert (result.auc_a, result.auc_b) == (1.0, 1.0)
    assert math.isnan(result.z) and math.isnan(result.df) and math.isnan(result.p_value)
    assert math.isnan(result.ci_low) and math.isnan(result.ci_high)
    paired = CASES["paired_both_perfect"]
    result = st.delong_test(paired["y1"], paired["a"], paired["b"])
    assert (result.z, result.p_value, result.ci_low, result.ci_high) == (0.0, 1.0, 0.0, 0.0)


def test_reference_cases_cover_ties_tiny_and_unpaired():
    kinds = {c["kind"] for c in CASES.values()}
    sizes = [len(c["y1"]) for c in CASES.values()]
    assert kinds == {"paired", "unpaired"} and min(sizes) <= 4 and len(CASES) >= 10


# ------------------------------------------------------------------ properties


def test_identical_scores_give_zero_z_and_p_one():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = rng.normal(y, 1.0)
    result = st.delong_test(y, s, s.copy())
    assert result.z == 0.0 and result.p_value == 1.0 and result.ci_low == result.ci_high == 0.0


def test_swapping_models_flips_z_and_keeps_p():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 250)
    a, b = rng.normal(y * 1.0, 1.0), rng.normal(y * 0.6, 1.0)
    ab, ba = st.delong_test(y, a, b), st.delong_test(y, b, a)
    assert ab.z == pytest.approx(-ba.z, abs=1e-12) and ab.p_value == pytest.approx(ba.p_value, abs=1e-12)
    assert ab.ci_low == pytest.approx(-ba.ci_high, abs=1e-12)


def test_monotone_transform_leaves_everything_unchanged():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 120)
    a, b = np.round(rng.normal(y, 1.0), 1), rng.normal(y * 0.5, 1.0)
    base, transformed = st.delong_test(y, a, b), st.delong_test(y, np.exp(a), 3 * b + 7)
    assert transformed.z == pytest.approx(base.z, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 97)
    y[:2] = (0, 1)
    s = rng.integers(0, 6, 97).astype(float)
    assert st.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-14)


def test_auc_hand_computed_and_not_flipped():
    # pairs (case, control): 0.8>0.2, 0.8>0.5, 0.5=0.5 (half), 0.5>0.2 -> 3.5 / 4
    assert st.roc_auc([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.8]) == 0.875
    assert st.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0


def test_unpaired_ci_excludes_zero_exactly_when_significant():
    rng = np.random.default_rng(6)
    for _ in range(10):
        ya, yb = rng.integers(0, 2, 80), rng.integers(0, 2, 90)
        ya[:2] = yb[:2] = (0, 1)
        r = st.delong_test(ya, rng.normal(ya * 1.5, 1), rng.normal(yb * 0.3, 1), paired=False, y_true_b=yb)
        assert (r.p_value < 0.05) == (r.ci_low > 0 or r.ci_high < 0)


def test_paired_ci_is_consistent_with_p():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 200)
    r = st.delong_test(y, rng.normal(y * 1.2, 1), rng.normal(y * 0.6, 1))
    half = (r.ci_high - r.ci_low) / 2
    assert r.difference / (half / sps.norm.ppf(0.975)) == pytest.approx(r.z)


def test_fewer_than_two_cases_gives_nan_like_proc():
    auc, low, high = st.auc_ci([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9])
    assert auc == 1.0 and math.isnan(low) and math.isnan(high)
    assert math.isnan(st.delong_test([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9], [0.3, 0.2, 0.1, 0.5]).z)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "only malignant"),
        ([0, 0], [0.1, 0.2], "only benign"),
        ([0, 1, 1], [0.1, float("nan"), 0.3], "NaN"),
        ([0, 1, 1], [0.1, 0.3], "lengths must match"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "labels 0 .benign. and 1"),
        (["benign", "malignant"], [0.1, 0.2], "labels 0"),
        ([], [], "empty"),
    ],
)
def test_clear_errors(y, s, message):
    with pytest.raises(ValueError, match=message):
        st.auc_ci(y, s)


def test_error_on_mismatched_second_score_and_missing_labels():
    with pytest.raises(ValueError, match="score_b has 2 values"):
        st.delong_test([0, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="y_true_b"):
        st.delong_test([0, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2], paired=False)
    with pytest.raises(ValueError, match="unknown AUC CI method"):
        st.auc_ci([0, 1], [0.1, 0.2], method="hanley")


# ------------------------------------------------------------------ binomial CIs and metrics


def test_binomial_ci_clopper_pearson_from_beta_quantiles():
    # Clopper-Pearson bounds are Beta quantiles: an independent formula.
    k, n = 47, 523
    _, low, high = st.binomial_ci(k, n)
    assert low == pytest.approx(sps.beta.ppf(0.025, k, n - k + 1), abs=1e-9)
    assert high == pytest.approx(sps.beta.ppf(0.975, k + 1, n - k), abs=1e-9)
    assert st.binomial_ci(0, 10).low == 0.0 and st.binomial_ci(10, 10).high == 1.0


def test_binomial_ci_wilson_formula():
    k, n, z = 30, 40, sps.norm.ppf(0.975)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    est, low, high = st.binomial_ci(k, n, method="wilson")
    assert est == 0.75 and low == pytest.approx(centre - half) and high == pytest.approx(centre + half)
    assert all(math.isnan(v) for v in st.binomial_ci(0, 0))
    with pytest.raises(ValueError, match="unknown binomial CI method"):
        st.binomial_ci(1, 2, method="agresti")


def test_classification_metrics_by_hand():
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.5, 0.2, 0.7, 0.3, 0.1, 0.1, 0.4, 0.49]
    assert st.confusion_counts(y, s) == {"tp": 3, "fp": 1, "tn": 5, "fn": 1}  # 0.5 counts as malignant
    m = st.classification_metrics(y, s)
    assert (m["acc"].estimate, m["sen"].estimate, m["spe"].estimate) == (0.8, 0.75, 5 / 6)
    assert (m["ppv"].estimate, m["npv"].estimate) == (0.75, 5 / 6)
    assert m["sen"].low == pytest.approx(sps.beta.ppf(0.025, 3, 2))
    none_called = st.classification_metrics(y, np.zeros(10))
    assert math.isnan(none_called["ppv"].estimate) and none_called["npv"].estimate == 0.6


def test_youden_threshold_and_choice():
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.6, 0.55, 0.7, 0.9]
    # thresholds: 0.7 -> J = 2/3; 0.55 -> sen 1, spe 2/3 -> J = 2/3; 0.6 -> 2/3 - 1/3; highest best wins
    assert st.youden_threshold(y, s) == 0.7
    assert st.youden_threshold([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 0.3
    assert st.choose_threshold() == 0.5 and st.choose_threshold("0.3") == 0.3
    assert st.choose_threshold("youden", [0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 0.3
    with pytest.raises(ValueError, match="validation"):
        st.choose_threshold("youden")
    with pytest.raises(ValueError, match="unknown threshold"):
        st.choose_threshold("best")


# ------------------------------------------------------------------ bootstrap


def test_bootstrap_weights_stratified_keep_class_sizes():
    y = np.array([0] * 7 + [1] * 3)
    w = st.bootstrap_weights(y, n_boot=50, seed=1)
    assert w.shape == (50, 10)
    assert np.all(w[:, y == 1].sum(axis=1) == 3) and np.all(w[:, y == 0].sum(axis=1) == 7)


def test_cluster_bootstrap_keeps_patients_whole():
    y = np.array([0, 1, 0, 0, 1, 1, 0, 1])
    groups = np.array(["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"])
    w = st.bootstrap_weights(y, n_boot=200, groups=groups, seed=2)
    assert np.array_equal(w[:, 0::2], w[:, 1::2])  # both breasts of a patient drawn together
    # strata (unilateral malignant: p1, p4; bilateral benign: p2; bilateral malignant: p3) keep their size
    assert np.all(w[:, 2] == 1) and np.all(w[:, 4] == 1) and np.all(w[:, 0] + w[:, 6] == 2)


def test_vectorised_bootstrap_auc_equals_per_replicate_sklearn():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.normal(y, 1.0), 1)
    w = st.bootstrap_weights(y, n_boot=30, seed=3)
    fast = st.bootstrap_replicates(y, s, "auc", n_boot=30, seed=3)
    for b in range(30):
        idx = np.repeat(np.arange(60), w[b].astype(int))
        assert fast[b] == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)
    slow = st.bootstrap_replicates(y, s, lambda a, c: roc_auc_score(a, c), n_boot=30, seed=3)
    assert np.allclose(fast, slow, atol=1e-12)


@pytest.mark.parametrize("metric", ["acc", "sen", "spe", "ppv", "npv"])
def test_vectorised_rates_equal_per_replicate_counts(metric):
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 50)
    s = rng.random(50)
    fast = st.bootstrap_replicates(y, s, metric, n_boot=20, seed=4)
    w = st.bootstrap_weights(y, n_boot=20, seed=4)
    for b in range(20):
        idx = np.repeat(np.arange(50), w[b].astype(int))
        expected = st.classification_metrics(y[idx], s[idx])[metric].estimate
        assert fast[b] == pytest.approx(expected) or (math.isnan(fast[b]) and math.isnan(expected))


def test_bootstrap_ci_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, 400)
    s = rng.normal(y * 1.5, 1.0)
    first = st.auc_ci(y, s, method="bootstrap", n_boot=500, seed=11)
    assert first == st.auc_ci(y, s, method="bootstrap", n_boot=500, seed=11)
    assert first != st.auc_ci(y, s, method="bootstrap", n_boot=500, seed=12)
    assert first.low < first.estimate < first.high
    delong = st.auc_ci(y, s)
    assert abs(first.low - delong.low) < 0.02 and abs(first.high - delong.high) < 0.02


def test_bootstrap_quantiles_are_type7():
    y = np.array([0, 1] * 20)
    s = np.linspace(0, 1, 40)
    reps = st.bootstrap_replicates(y, s, "sen", threshold=0.5, n_boot=101, seed=0)
    _, low, high = st.bootstrap_ci(y, s, "sen", threshold=0.5, n_boot=101, seed=0)
    assert (low, high) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])), abs=1e-12)


def test_bootstrap_errors():
    with pytest.raises(ValueError, match="unknown metric"):
        st.bootstrap_ci([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], "f1")
    with pytest.raises(ValueError, match="groups has 2 values"):
        st.bootstrap_ci([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], groups=["a", "b"])
    with pytest.raises(ValueError, match="method='bootstrap' only"):
        st.auc_ci([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], groups=[1, 1, 2, 2])


def test_benchmark_reports_timings():
    result = timings.benchmark_stats(n_delong=2000, n_boot_breasts=200, n_boot=100, repeat=1)
    assert result["delong_paired_ms"] > 0 and result["bootstrap_auc_ms"] > 0
    assert result["delong_paired_breasts"] == 2000


def test_binary_entropy_is_the_loss_of_predicting_the_prevalence():
    """The prior's loss equals sklearn's log loss of a constant prediction at the prevalence."""
    y = np.array([1] * 224 + [0] * 406)
    assert st.binary_entropy(224 / 630) == pytest.approx(log_loss(y, np.full(len(y), 224 / 630)), abs=1e-12)
    assert st.binary_entropy(224 / 630) == pytest.approx(0.651, abs=5e-4)  # the smoke cohort's prior
    assert st.binary_entropy(0.0) == 0.0
    with pytest.raises(ValueError, match="prevalence"):
        st.binary_entropy(1.2)
