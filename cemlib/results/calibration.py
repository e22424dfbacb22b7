"""Calibration of predicted probabilities: reliability bins, Brier score, ECE, logistic recalibration.

Conventions as in `stats`: ``y_true`` holds 0/1, ``y_prob`` the predicted probability of malignancy.

- Calibration intercept (calibration-in-the-large) and slope follow the logistic recalibration framework
  (Cox 1958; Van Calster et al., J Clin Epidemiol 2016): the slope is b of logit P(y) = a + b logit(p),
  the intercept is a of logit P(y) = a + logit(p) (the slope fixed at 1, an offset). Ideal: 0 and 1.
  Wald 95% CIs from the observed information, as statsmodels' GLM (binomial, logit link) gives them.
- The expected calibration error (ECE) is sum over equal-width bins of (n_b / n) |observed_b - mean p_b|.
- Recalibration is fitted on the validation split only and applied to test (and external) scores:
  Platt scaling (logistic regression on the logit of the score) or isotonic regression.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from cemlib.results import stats

#: Probabilities are clipped this far from 0 and 1 before the logit (a score of exactly 0 or 1).
LOGIT_EPS = 1e-6
RECALIBRATIONS = ("platt", "isotonic")
RECALIBRATION_NAMES = {"platt": "Platt scaling (logistic on logit score)", "isotonic": "isotonic regression"}


def _probabilities(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    """Validated labels and probabilities in [0, 1]."""
    y, p = stats.check_binary_input(y_true, y_prob, need_both_classes=False)
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"y_prob must hold probabilities in [0, 1]; found values in [{p.min()}, {p.max()}]")
    return y, p


def logit(p) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [LOGIT_EPS, 1 - LOGIT_EPS]."""
    p = np.clip(np.asarray(p, dtype=float), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p / (1.0 - p))


def brier_score(y_true, y_prob) -> float:
    """Mean squared difference between the probability and the 0/1 outcome (sklearn's brier_score_loss)."""
    y, p = _probabilities(y_true, y_prob)
    return float(np.mean((p - y) ** 2))


def reliability_table(y_true, y_prob, n_bins: int = 10, level: float = 0.95) -> pd.DataFrame:
    """Equal-width bins of [0, 1]: n, mean predicted, observed share malignant with a Clopper-Pearson CI.

    Empty bins are kept (n = 0, NaN shares) so every diagram has the same bins.
    """
    y, p = _probabilities(y_true, y_prob)
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # The last bin is closed on the right, so a probability of exactly 1 falls in it.
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        inside = index == b
        n, k = int(inside.sum()), int(y[inside].sum())
        observed = stats.binomial_ci(k, n, level)
        rows.append({"bin": b + 1, "low": edges[b], "high": edges[b + 1], "n": n, "malignant": k,
                     "mean_predicted": float(p[inside].mean()) if n else float("nan"),
                     "observed": observed.estimate, "observed_low": observed.low,
                     "observed_high": observed.high})
    return pd.DataFrame(rows)


def expected_calibration_error(y_true, y_prob, n_bins: int = 10) -> float:
    """ECE: the bin-size-weighted mean of |observed share - mean predicted| over equal-width bins."""
    y, p = _probabilities(y_true, y_prob)
    bins = reliability_table(y, p, n_bins)
    used = bins[bins["n"] > 0]
    return float((used["n"] / y.size * (used["observed"] - used["mean_predicted"]).abs()).sum())


@dataclass(frozen=True)
class LogisticFit:
    """Coefficients of a logistic regression with their Wald standard errors (NaN when it did not fit)."""

    coef: np.ndarray
    se: np.ndarray
    converged: bool


def logistic_fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None,
                 max_iter: int = 100, tol: float = 1e-10) -> LogisticFit:
    """Maximum-likelihood logistic regression of y on the columns of x (an intercept added), by Newton steps.

    Separated data (no finite maximum) or a singular information matrix give NaN coefficients.
    """
    design = np.column_stack([np.ones(len(y)), np.asarray(x, dtype=float).reshape(len(y), -1)])
    offset = np.zeros(len(y)) if offset is None else np.asarray(offset, dtype=float)
    beta = np.zeros(design.shape[1])
    nan = np.full(design.shape[1], np.nan)
    for _ in range(max_iter):
        eta = np.clip(offset + design @ beta, -30, 30)
        mu = 1.0 / (1.0 + np.exp(-eta))
        info = design.T @ (design * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(info, design.T @ (y - mu))
        except np.linalg.LinAlgError:
            return LogisticFit(nan, nan, False)
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            break
    else:
        return LogisticFit(nan, nan, False)
    if np.max(np.abs(beta)) > 25:  # a separated fit walks off towards infinity
        return LogisticFit(nan, nan, False)
    eta = offset + design @ beta
    mu = 1.0 / (1.0 + np.exp(-eta))
    cov = np.linalg.inv(design.T @ (design * (mu * (1 - mu))[:, None]))
    return LogisticFit(beta, np.sqrt(np.diag(cov)), True)


def calibration_intercept_slope(y_true, y_prob, level: float = 0.95) -> dict[str, stats.Interval]:
    """Calibration intercept (slope fixed at 1) and slope of the logistic recalibration, with Wald CIs."""
    y, p = _probabilities(y_true, y_prob)
    nan = stats.Interval(float("nan"), float("nan"), float("nan"))
    if y.min() == y.max():
        return {"intercept": nan, "slope": nan}
    z = float(sps.norm.ppf(1.0 - (1.0 - level) / 2.0))
    lp = logit(p)
    large = logistic_fit(np.empty((y.size, 0)), y, offset=lp)
    slope = logistic_fit(lp, y)

    def interval(fit: LogisticFit, k: int) -> stats.Interval:
        if not fit.converged:
            return nan
        return stats.Interval(float(fit.coef[k]), float(fit.coef[k] - z * fit.se[k]),
                              float(fit.coef[k] + z * fit.se[k]))

    return {"intercept": interval(large, 0), "slope": interval(slope, 1)}


def fit_recalibration(y_true, y_prob, method: str = "platt") -> Callable[[np.ndarray], np.ndarray]:
    """A map from scores to recalibrated probabilities, fitted on (validation) labels and scores."""
    y, p = _probabilities(y_true, y_prob)
    if method not in RECALIBRATIONS:
        raise ValueError(f"unknown recalibration {method!r}: use one of {RECALIBRATIONS}")
    stats.check_binary_input(y, p)
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return lambda scores: np.asarray(model.predict(np.asarray(scores, dtype=float)), dtype=float)
    fit = logistic_fit(logit(p), y)
    if not fit.converged:
        raise ValueError("Platt scaling has no finite fit on the validation scores (classes separated, "
                         "or scores all alike)")
    a, b = fit.coef
    return lambda scores: 1.0 / (1.0 + np.exp(-(a + b * logit(scores))))


def calibration_summary(y_true, y_prob, n_bins: int = 10, level: float = 0.95) -> dict[str, object]:
    """Brier score, ECE, calibration intercept and slope (with CIs) of one set of probabilities."""
    y, p = _probabilities(y_true, y_prob)
    fits = calibration_intercept_slope(y, p, level)
    return {"n": int(y.size), "malignant": int(y.sum()), "brier": brier_score(y, p),
            "ece": expected_calibration_error(y, p, n_bins), "intercept": fits["intercept"],
            "slope": fits["slope"]}
