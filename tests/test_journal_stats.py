"""Calibration, operating points, decision curves and clustered AUCs against independent references:
statsmodels' GLM, scikit-learn, DeLong (pROC-checked in test_stats), Vickers & Elkin's formula worked by
hand, and a patient-level bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss

from cemlib.results import calibration, clustered, decision, stats

sm = pytest.importorskip("statsmodels.api")


def miscalibrated(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true risks, and predictions that are too extreme and too high."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-0.3, 1.2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    p = 1 / (1 + np.exp(-(0.4 + 1.6 * true_logit)))
    return y, p


# --------------------------------------------------------------------------------------------------
# calibration


def test_brier_score_is_sklearns():
    y, p = miscalibrated()
    assert calibration.brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_calibration_slope_and_intercept_match_statsmodels_glm():
    y, p = miscalibrated()
    lp = np.log(p / (1 - p))
    fits = calibration.calibration_intercept_slope(y, p)
    slope = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    large = sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=lp).fit()
    for interval, fit, k in ((fits["slope"], slope, 1), (fits["intercept"], large, 0)):
        low, high = fit.conf_int(0.05)[k]
        assert interval.estimate == pytest.approx(fit.params[k], abs=1e-7)
        assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-6)
    # predictions too extreme and too high: slope under 1, intercept under 0
    assert fits["slope"].high < 1 and fits["intercept"].high < 0


def test_calibration_of_separated_labels_is_nan_not_a_huge_number():
    fits = calibration.calibration_intercept_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert np.isnan(fits["slope"].estimate) and np.isnan(fits["slope"].low)


def test_reliability_bins_and_ece_agree_with_sklearn_calibration_curve():
    y, p = miscalibrated()
    table = calibration.reliability_table(y, p, n_bins=10)
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    used = table[table["n"] > 0]
    assert used["observed"].to_numpy() == pytest.approx(observed)
    assert used["mean_predicted"].to_numpy() == pytest.approx(predicted)
    assert table["n"].sum() == y.size and len(table) == 10
    counts = np.histogram(p, bins=np.linspace(0, 1, 11))[0]
    ece = np.sum(counts[counts > 0] / y.size * np.abs(observed - predicted))
    assert calibration.expected_calibration_error(y, p) == pytest.approx(ece)


def test_ece_worked_example():
    # two bins used: [0.1, 0.2) holds 0.1, 0.1 (0 of 2 malignant), [0.8, 0.9) holds 0.8, 0.8 (1 of 2)
    ece = calibration.expected_calibration_error([0, 0, 1, 0], [0.1, 0.1, 0.8, 0.8])
    assert ece == pytest.approx(0.5 * 0.1 + 0.5 * 0.3)


def test_platt_recalibration_is_an_unpenalised_logistic_fit_on_the_logit():
    y, p = miscalibrated()
    lp = np.log(p / (1 - p))
    reference = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    recalibrate = calibration.fit_recalibration(y, p, "platt")
    assert recalibrate(p) == pytest.approx(reference.predict(sm.add_constant(lp)), abs=1e-7)
    assert calibration.calibration_intercept_slope(y, recalibrate(p))["slope"].estimate == pytest.approx(1)


def test_isotonic_recalibration_is_sklearns_and_clips_outside_the_fitted_range():
    y, p = miscalibrated()
    recalibrate = calibration.fit_recalibration(y[:200], p[:200], "isotonic")
    reference = IsotonicRegression(out_of_bounds="clip").fit(p[:200], y[:200])
    assert recalibrate(p[200:]) == pytest.approx(reference.predict(p[200:]))
    with pytest.raises(ValueError, match="recalibration"):
        calibration.fit_recalibration(y, p, "beta")


def test_calibration_inputs_are_validated():
    with pytest.raises(ValueError, match="probabilities"):
        calibration.brier_score([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="lengths must match"):
        calibration.reliability_table([0, 1, 1], [0.5, 0.2])


# --------------------------------------------------------------------------------------------------
# operating points and decision curves


def test_sensitivity_threshold_keeps_at_least_the_target_share_of_cases():
    y = np.array([1] * 10 + [0] * 10)
    s = np.r_[np.linspace(0.95, 0.5, 10), np.linspace(0.6, 0.0, 10)]
    threshold = decision.sensitivity_threshold(y, s, 0.9)
    assert threshold == pytest.approx(s[8])  # the 9th highest case: 9 of 10 called
    assert stats.classification_metrics(y, s, threshold)["sen"].estimate == 0.9


def test_rules_are_named_and_the_paper_rule_is_half():
    assert decision.rule_threshold("paper 0.5") == 0.5
    y, p = miscalibrated()
    assert decision.rule_threshold("youden", y, p) == stats.youden_threshold(y, p)
    with pytest.raises(ValueError, match="validation"):
        decision.rule_threshold("youden")


def test_operating_point_rates_are_exact_binomial_intervals():
    point = decision.operating_point([1, 1, 1, 0, 0, 0, 0], [0.9, 0.8, 0.2, 0.7, 0.1, 0.1, 0.3], 0.5)
    assert (point["tp"], point["fn"], point["fp"], point["tn"]) == (2, 1, 1, 3)
    assert point["sen"] == stats.binomial_ci(2, 3) and point["npv"] == stats.binomial_ci(3, 4)


def test_net_benefit_worked_example_vickers_elkin():
    # 10 breasts, 3 malignant. At pt = 0.2, 4 breasts reach it: 2 true, 2 false positives:
    # NB = 2/10 - 2/10 * 0.2/0.8 = 0.15; treat all = 3/10 - 7/10 * 0.25 = 0.125.
    y = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    s = [0.9, 0.3, 0.1, 0.5, 0.25, 0.15, 0.1, 0.05, 0.05, 0.0]
    assert decision.net_benefit(y, s, [0.2]) == pytest.approx([0.15])
    assert decision.net_benefit_treat_all(y, [0.2]) == pytest.approx([0.125])
    # pt = 0.5: one true positive (0.9), one false (0.5): 1/10 - 1/10 * 1 = 0
    assert decision.net_benefit(y, s, [0.5]) == pytest.approx([0.0])
    with pytest.raises(ValueError, match="strictly between"):
        decision.net_benefit(y, s, [0.0])


def test_threshold_grid_spans_the_biopsy_range():
    grid = decision.threshold_grid()
    assert grid[0] == 0.02 and grid[-1] == 0.5 and len(grid) == 49


# --------------------------------------------------------------------------------------------------
# clustered AUC


def test_obuchowski_with_one_breast_per_patient_is_delong():
    y, p = miscalibrated(120)
    auc, variance = clustered.obuchowski_variance(y, p, np.arange(y.size))
    assert auc == pytest.approx(stats.roc_auc(y, p))
    assert variance == pytest.approx(stats.delong_variance(y, p), rel=1e-10)


def clustered_sample(patients: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two breasts per patient sharing a patient effect in their scores and their labels."""
    rng = np.random.default_rng(seed)
    effect = np.repeat(rng.normal(0, 1.2, patients), 2)
    y = (rng.random(2 * patients) < 1 / (1 + np.exp(-(effect - 0.5)))).astype(int)
    score = effect + 1.0 * y + rng.normal(0, 0.6, 2 * patients)
    return y, score, np.repeat(np.arange(patients), 2)


def test_obuchowski_variance_agrees_with_a_patient_level_bootstrap():
    y, s, patients = clustered_sample(300, 1)
    _, variance = clustered.obuchowski_variance(y, s, patients)
    reps = stats.bootstrap_replicates(y, s, "auc", n_boot=3000, stratified=False, groups=patients, seed=2)
    assert variance == pytest.approx(np.nanvar(reps, ddof=1), rel=0.15)
    # breasts correlated within patients: wider than DeLong's, which takes them as independent
    assert variance > stats.delong_variance(y, s)
    ci = clustered.obuchowski_auc_ci(y, s, patients)
    assert ci.low < ci.estimate < ci.high


def test_patient_scores_take_the_larger_breast():
    import pandas as pd

    breasts = pd.DataFrame({"dataset": "d", "patient_id": ["a", "a", "b", "b"], "side": ["L", "R"] * 2,
                            "label": [0, 1, 0, 0], "score": [0.7, 0.4, 0.2, 0.3]})
    patients = clustered.patient_scores(breasts)
    assert patients[["patient_id", "label", "score"]].values.tolist() == [["a", 1, 0.7], ["b", 0, 0.3]]
