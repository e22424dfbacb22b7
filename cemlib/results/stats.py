"""Statistics of the study: AUC with CIs, DeLong tests, binomial and bootstrap CIs, thresholds.

Conventions (the same as R pROC with ``direction = "<"``):
- ``y_true`` holds 0 (benign, pROC's "controls") and 1 (malignant, pROC's "cases").
- ``y_score`` is higher for malignant (e.g. the malignant probability). The direction is never flipped,
  so an inverted classifier gets an AUC below 0.5 (pROC's ``direction = "auto"`` would flip it instead).
- A breast is called malignant when ``y_score >= threshold`` (0.5 on the malignant probability by default).

DeLong variances and tests follow DeLong et al. (1988) in the fast midrank form of Sun & Xu (2014), and
reproduce pROC 1.18's ``var``, ``ci.auc(method = "delong")`` and ``roc.test(method = "delong")``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import stats as sps

CI_METHODS = ("clopper-pearson", "wilson")
METRICS = ("auc", "acc", "sen", "spe", "ppv", "npv")


class Interval(NamedTuple):
    """A point estimate with the bounds of its confidence interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class DelongResult:
    """Result of a DeLong comparison of two AUCs (a minus b).

    For the paired test ``z`` is the normal deviate; for the unpaired test it is pROC's D statistic,
    referred to a t distribution with ``df`` degrees of freedom.
    """

    auc_a: float
    auc_b: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    paired: bool
    level: float = 0.95
    df: float | None = None

    @property
    def difference(self) -> float:
        """AUC of a minus AUC of b."""
        return self.auc_a - self.auc_b


# ----------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------


def _as_labels(y_true: Sequence | np.ndarray, name: str = "y_true") -> np.ndarray:
    """0/1 labels as an int8 array, or a ValueError saying what is wrong."""
    arr = np.asarray(y_true)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype == bool:
        return arr.astype(np.int8)
    try:
        numeric = arr.astype(float)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must hold labels 0 (benign) and 1 (malignant); got {np.unique(arr.astype(str))[:5]}"
        ) from None
    bad = ~np.isin(numeric, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            f"{name} must hold labels 0 (benign) and 1 (malignant) only; found "
            f"{sorted(set(arr[bad].tolist()), key=str)[:5]}"
        )
    return numeric.astype(np.int8)


def _as_scores(y_score: Sequence | np.ndarray, n: int, name: str = "y_score") -> np.ndarray:
    """Finite float scores of length n, or a ValueError."""
    arr = np.asarray(y_score, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size != n:
        raise ValueError(f"{name} has {arr.size} values but the labels have {n}: lengths must match")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(arr)).sum())} NaN or infinite value(s)")
    return arr


def _check_two_classes(y: np.ndarray, name: str = "y_true") -> None:
    """ROC statistics need at least one malignant and one benign case."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        only = "malignant (1)" if n_pos else "benign (0)"
        raise ValueError(f"{name} holds only {only} labels: an ROC analysis needs both classes")


def check_binary_input(y_true, y_score, need_both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels int8, scores float) arrays; raises ValueError naming the problem."""
    y = _as_labels(y_true)
    s = _as_scores(y_score, y.size)
    if need_both_classes:
        _check_two_classes(y)
    return y, s


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level}")
    return float(level)


# ----------------------------------------------------------------------------------------------------
# AUC and DeLong
# ----------------------------------------------------------------------------------------------------


def _placements(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Structural components (Sun & Xu 2014) for k score rows: (auc (k,), v_cases (k,m), v_controls (k,n)).

    v_cases[i] = P(control < case i) + 0.5 P(tie); v_controls[j] = P(case > control j) + 0.5 P(tie),
    both from midranks, so the cost is one sort per row.
    """
    scores = np.atleast_2d(scores)
    cases, controls = scores[:, y == 1], scores[:, y == 0]
    m, n = cases.shape[1], controls.shape[1]
    rank_all = sps.rankdata(np.concatenate([cases, controls], axis=1), axis=1)
    rank_cases = sps.rankdata(cases, axis=1)
    rank_controls = sps.rankdata(controls, axis=1)
    v_cases = (rank_all[:, :m] - rank_cases) / n
    v_controls = 1.0 - (rank_all[:, m:] - rank_controls) / m
    auc = v_cases.mean(axis=1)
    return auc, v_cases, v_controls


def _delong_covariance(v_cases: np.ndarray, v_controls: np.ndarray) -> np.ndarray:
    """DeLong covariance matrix of the k AUCs (sample covariances with n-1, as pROC).

    Undefined (NaN, as pROC's NA) with fewer than two cases or two controls.
    """
    k, m = v_cases.shape
    n = v_controls.shape[1]
    if m < 2 or n < 2:
        return np.full((k, k), np.nan)
    s10 = np.atleast_2d(np.cov(v_cases, ddof=1))
    s01 = np.atleast_2d(np.cov(v_controls, ddof=1))
    return s10 / m + s01 / n


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve (Mann-Whitney with ties counted one half); equals sklearn's roc_auc_score."""
    y, s = check_binary_input(y_true, y_score)
    return float(_placements(y, s)[0][0])


def delong_variance(y_true, y_score) -> float:
    """DeLong variance of the AUC (pROC ``var(roc, method = "delong")``)."""
    y, s = check_binary_input(y_true, y_score)
    _, v_cases, v_controls = _placements(y, s)
    return float(_delong_covariance(v_cases, v_controls)[0, 0])


def _normal_quantile(level: float) -> float:
    return float(sps.norm.ppf(1.0 - (1.0 - level) / 2.0))


def auc_ci(
    y_true,
    y_score,
    method: str = "delong",
    level: float = 0.95,
    n_boot: int = 2000,
    stratified: bool = True,
    seed: int = 0,
    groups=None,
) -> Interval:
    """AUC with its CI: DeLong (normal on the AUC scale, clipped to [0, 1], as pROC) or percentile bootstrap.

    ``groups`` (bootstrap only) resamples whole clusters, e.g. patient ids, instead of single breasts.
    With fewer than two cases or two controls the DeLong bounds are NaN (pROC returns NA).
    """
    level = _check_level(level)
    y, s = check_binary_input(y_true, y_score)
    if method == "delong":
        if groups is not None:
            raise ValueError("groups (cluster resampling) applies to method='bootstrap' only")
        auc, v_cases, v_controls = _placements(y, s)
        sd = float(np.sqrt(_delong_covariance(v_cases, v_controls)[0, 0]))
        half = _normal_quantile(level) * sd
        low, high = np.clip([auc[0] - half, auc[0] + half], 0.0, 1.0)
        return Interval(float(auc[0]), float(low), float(high))
    if method == "bootstrap":
        return bootstrap_ci(
            y, s, "auc", n_boot=n_boot, level=level, stratified=stratified, seed=seed, groups=groups
        )
    raise ValueError(f"unknown AUC CI method {method!r}: use 'delong' or 'bootstrap'")


def delong_test(
    y_true,
    score_a,
    score_b,
    paired: bool = True,
    level: float = 0.95,
    y_true_b=None,
) -> DelongResult:
    """Compare two AUCs (a minus b) with DeLong's method, two-sided, as pROC ``roc.test(method="delong")``.

    Paired: both scores belong to the same breasts (``y_true``). Unpaired: two independent samples, then
    ``y_true`` labels ``score_a`` and ``y_true_b`` labels ``score_b``; pROC's D statistic is used, with a
    t distribution on Welch-Satterthwaite degrees of freedom.
    """
    level = _check_level(level)
    if paired:
        if y_true_b is not None:
            raise ValueError("a paired DeLong test takes one label vector; pass paired=False for two samples")
        y = _as_labels(y_true)
        a = _as_scores(score_a, y.size, "score_a")
        b = _as_scores(score_b, y.size, "score_b")
        _check_two_classes(y)
        return _delong_paired(y, a, b, level)
    if y_true_b is None:
        raise ValueError("an unpaired DeLong test needs the labels of the second sample (y_true_b)")
    ya, a = check_binary_input(y_true, score_a)
    yb = _as_labels(y_true_b, "y_true_b")
    b = _as_scores(score_b, yb.size, "score_b")
    _check_two_classes(yb, "y_true_b")
    return _delong_unpaired(ya, a, yb, b, level)


def _two_sided_normal_p(z: float) -> float:
    return float(2.0 * sps.norm.sf(abs(z))) if not np.isnan(z) else float("nan")


def _ratio_or_zero(diff: float, sd: float) -> float:
    """diff / sd, where 0/0 is 0 (identical rankings give Z = 0, as pROC) and NaN stays NaN."""
    if np.isnan(sd):
        return float("nan")
    if sd == 0.0:
        return 0.0 if diff == 0.0 else float(np.copysign(np.inf, diff))
    return diff / sd


def _delong_paired(y: np.ndarray, a: np.ndarray, b: np.ndarray, level: float) -> DelongResult:
    auc, v_cases, v_controls = _placements(y, np.vstack([a, b]))
    cov = _delong_covariance(v_cases, v_controls)
    var_diff = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    diff = float(auc[0] - auc[1])
    sd = float(np.sqrt(max(var_diff, 0.0))) if np.isfinite(var_diff) else float("nan")
    z = _ratio_or_zero(diff, sd)
    half = _normal_quantile(level) * sd
    return DelongResult(
        float(auc[0]),
        float(auc[1]),
        float(z),
        _two_sided_normal_p(z),
        diff - half,
        diff + half,
        paired=True,
        level=level,
    )


def _delong_unpaired(
    ya: np.ndarray, a: np.ndarray, yb: np.ndarray, b: np.ndarray, level: float
) -> DelongResult:
    auc_a, vca, vna = _placements(ya, a)
    auc_b, vcb, vnb = _placements(yb, b)
    var_a = float(_delong_covariance(vca, vna)[0, 0])
    var_b = float(_delong_covariance(vcb, vnb)[0, 0])
    diff = float(auc_a[0] - auc_b[0])
    total = np.float64(var_a) + np.float64(var_b)
    # Zero total variance gives NaN (or infinite D) and NaN df and p, exactly as pROC. Every operand is a
    # numpy float so that 0/0 is NaN, never Python's ZeroDivisionError.
    with np.errstate(invalid="ignore", divide="ignore"):
        d = float(np.float64(diff) / np.sqrt(total))
        welch = np.float64(var_a) ** 2 / (ya.size - 1) + np.float64(var_b) ** 2 / (yb.size - 1)
        df = float(total**2 / welch)
        p = float(2.0 * sps.t.sf(abs(d), df))
        half = float(sps.t.ppf(1.0 - (1.0 - level) / 2.0, df) * np.sqrt(total))
    return DelongResult(
        float(auc_a[0]),
        float(auc_b[0]),
        float(d),
        p,
        diff - half,
        diff + half,
        paired=False,
        level=level,
        df=df,
    )


def auc_null_se(n_pos: int, n_neg: int) -> float:
    """Hanley-McNeil SE of the AUC of a model at chance (true AUC 0.5): sqrt((n1 + n0 + 1) / (12 n1 n0)).

    At AUC 0.5 Hanley & McNeil's Q1 = Q2 = 1/3, and their variance reduces to the Mann-Whitney null
    variance of U / (n1 n0) without ties. NaN without a positive and a negative.
    """
    if n_pos < 1 or n_neg < 1:
        return float("nan")
    return float(np.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg)))


def chance_inside(low: float, high: float, se: float, chance: float = 0.5) -> float:
    """Probability that a normal estimate centred on `chance` with SD `se` lands inside [low, high]."""
    if not se > 0:
        return float("nan")
    return float(sps.norm.cdf((high - chance) / se) - sps.norm.cdf((low - chance) / se))


# ----------------------------------------------------------------------------------------------------
# binomial CIs and classification metrics at a threshold
# ----------------------------------------------------------------------------------------------------


def binomial_ci(k: int, n: int, level: float = 0.95, method: str = "clopper-pearson") -> Interval:
    """Proportion k/n with a Clopper-Pearson (exact, as MedCalc) or Wilson CI, via scipy.stats.binomtest.

    n = 0 gives NaNs (e.g. PPV when no breast is called malignant).
    """
    level = _check_level(level)
    if method not in CI_METHODS:
        raise ValueError(f"unknown binomial CI method {method!r}: use one of {CI_METHODS}")
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"binomial CI needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    scipy_method = "exact" if method == "clopper-pearson" else "wilson"
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=level, method=scipy_method)
    return Interval(k / n, float(ci.low), float(ci.high))


def confusion_counts(y_true, y_score, threshold: float = 0.5) -> dict[str, int]:
    """TP, FP, TN, FN with malignant called when ``y_score >= threshold``."""
    y, s = check_binary_input(y_true, y_score, need_both_classes=False)
    pred = s >= threshold
    pos = y == 1
    return {
        "tp": int(np.sum(pred & pos)),
        "fp": int(np.sum(pred & ~pos)),
        "tn": int(np.sum(~pred & ~pos)),
        "fn": int(np.sum(~pred & pos)),
    }


def classification_metrics(
    y_true,
    y_score,
    threshold: float = 0.5,
    level: float = 0.95,
    method: str = "clopper-pearson",
) -> dict[str, Interval]:
    """ACC, SEN, SPE, PPV, NPV at a threshold, each with a binomial CI (keys acc, sen, spe, ppv, npv)."""
    c = confusion_counts(y_true, y_score, threshold)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    return {
        "acc": binomial_ci(tp + tn, tp + fp + tn + fn, level, method),
        "sen": binomial_ci(tp, tp + fn, level, method),
        "spe": binomial_ci(tn, tn + fp, level, method),
        "ppv": binomial_ci(tp, tp + fp, level, method),
        "npv": binomial_ci(tn, tn + fn, level, method),
    }


def youden_threshold(y_true, y_score) -> float:
    """Score threshold maximising Youden's J = SEN + SPE - 1 (choose it on the validation split).

    Candidates are the observed scores (malignant when score >= threshold); ties in J go to the
    highest threshold.
    """
    y, s = check_binary_input(y_true, y_score)
    thresholds = np.unique(s)[::-1]
    pos = y == 1
    sorted_pos = np.sort(s[pos])
    sorted_neg = np.sort(s[~pos])
    sen = 1.0 - np.searchsorted(sorted_pos, thresholds, side="left") / sorted_pos.size
    spe = np.searchsorted(sorted_neg, thresholds, side="left") / sorted_neg.size
    return float(thresholds[int(np.argmax(sen + spe - 1.0))])


def choose_threshold(method: str | float = 0.5, y_val=None, score_val=None) -> float:
    """The operating threshold: a number (0.5 by default) or 'youden' on validation labels and scores."""
    if isinstance(method, int | float) and not isinstance(method, bool):
        if not 0.0 <= float(method) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] on the malignant probability, got {method}")
        return float(method)
    if method == "youden":
        if y_val is None or score_val is None:
            raise ValueError("the Youden threshold needs validation labels and scores")
        return youden_threshold(y_val, score_val)
    try:
        value = float(method)
    except (TypeError, ValueError):
        raise ValueError(f"unknown threshold {method!r}: give a number in [0, 1] or 'youden'") from None
    return choose_threshold(value)


# ----------------------------------------------------------------------------------------------------
# bootstrap
# ----------------------------------------------------------------------------------------------------


def _counts_from_indices(idx: np.ndarray, size: int) -> np.ndarray:
    """(B, k) resampled indices into [0, size) -> (B, size) multiplicities."""
    n_boot = idx.shape[0]
    flat = (idx + (np.arange(n_boot)[:, None] * size)).ravel()
    return np.bincount(flat, minlength=n_boot * size).reshape(n_boot, size).astype(np.float64)


def _resample_counts(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicities (B, N) of a bootstrap that resamples each stratum to its own size."""
    n_units = strata.size
    counts = np.zeros((n_boot, n_units))
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        draws = rng.integers(0, members.size, size=(n_boot, members.size))
        counts[:, members] = _counts_from_indices(draws, members.size)
    return counts


def bootstrap_weights(
    y_true,
    n_boot: int = 2000,
    stratified: bool = True,
    groups=None,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap replicates as per-breast multiplicities, shape (n_boot, N).

    Stratified: cases and controls are resampled separately (as pROC). With ``groups`` (e.g. patient
    ids) whole clusters are resampled, stratified by their composition (number of breasts, number
    malignant), so a patient's two breasts stay together.
    """
    y = _as_labels(y_true)
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    rng = np.random.default_rng(seed)
    if groups is None:
        strata = y if stratified else np.zeros_like(y)
        return _resample_counts(strata, n_boot, rng)
    groups = np.asarray(groups)
    if groups.shape != y.shape:
        raise ValueError(f"groups has {groups.size} values but the labels have {y.size}: lengths must match")
    cluster_ids, member_of = np.unique(groups, return_inverse=True)
    size = np.bincount(member_of, minlength=cluster_ids.size)
    positives = np.bincount(member_of, weights=y, minlength=cluster_ids.size).astype(int)
    strata = size * 1000 + positives if stratified else np.zeros(cluster_ids.size, dtype=int)
    cluster_counts = _resample_counts(strata, n_boot, rng)
    return cluster_counts[:, member_of]


def _weighted_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUC of each weighted replicate (rows of w), ties counted one half; one sort shared by all rows."""
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted, w = s[order], y[order].astype(float), w[:, order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    w_pos = np.add.reduceat(w * y_sorted, starts, axis=1)
    w_neg = np.add.reduceat(w * (1.0 - y_sorted), starts, axis=1)
    neg_below = np.cumsum(w_neg, axis=1) - w_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w_pos * (neg_below + 0.5 * w_neg)).sum(axis=1) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


def _weighted_rates(name: str, y: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float) -> np.ndarray:
    pred = (s >= threshold).astype(float)
    pos = y.astype(float)
    num, den = {
        "acc": (pred * pos + (1 - pred) * (1 - pos), np.ones_like(pos)),
        "sen": (pred * pos, pos),
        "spe": ((1 - pred) * (1 - pos), 1 - pos),
        "ppv": (pred * pos, pred),
        "npv": ((1 - pred) * (1 - pos), 1 - pred),
    }[name]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ num) / (w @ den)


def bootstrap_replicates(
    y_true,
    y_score,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "auc",
    threshold: float = 0.5,
    n_boot: int = 2000,
    stratified: bool = True,
    groups=None,
    seed: int = 0,
) -> np.ndarray:
    """The metric on each bootstrap replicate (NaN where undefined, e.g. a replicate with one class).

    Named metrics ('auc', 'acc', 'sen', 'spe', 'ppv', 'npv') are computed for all replicates at once;
    a callable ``metric(y_true, y_score) -> float`` is called once per replicate.
    """
    y, s = check_binary_input(y_true, y_score, need_both_classes=metric == "auc")
    w = bootstrap_weights(y, n_boot=n_boot, stratified=stratified, groups=groups, seed=seed)
    if metric == "auc":
        return _weighted_auc(y, s, w)
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}: use one of {METRICS} or a callable")
        return _weighted_rates(metric, y, s, w, threshold)
    out = np.empty(n_boot)
    positions = np.arange(y.size)
    for b in range(n_boot):
        idx = np.repeat(positions, w[b].astype(int))
        try:
            out[b] = float(metric(y[idx], s[idx]))
        except ValueError:
            out[b] = np.nan
    return out


def _point_metric(metric, y: np.ndarray, s: np.ndarray, threshold: float) -> float:
    if metric == "auc":
        return roc_auc(y, s)
    if isinstance(metric, str):
        return float(_weighted_rates(metric, y, s, np.ones((1, y.size)), threshold)[0])
    return float(metric(y, s))


def bootstrap_ci(
    y_true,
    y_score,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "auc",
    threshold: float = 0.5,
    n_boot: int = 2000,
    level: float = 0.95,
    stratified: bool = True,
    groups=None,
    seed: int = 0,
) -> Interval:
    """Metric on the full sample with a percentile bootstrap CI (quantile type 7, as R's default).

    Replicates where the metric is undefined are left out; if none remain the bounds are NaN.
    """
    level = _check_level(level)
    y, s = check_binary_input(y_true, y_score, need_both_classes=metric == "auc")
    reps = bootstrap_replicates(y, s, metric, threshold, n_boot, stratified, groups, seed)
    reps = reps[np.isfinite(reps)]
    estimate = _point_metric(metric, y, s, threshold)
    if reps.size == 0:
        return Interval(estimate, float("nan"), float("nan"))
    alpha = 1.0 - level
    low, high = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Interval(estimate, float(low), float(high))


# ----------------------------------------------------------------------------------------------------
# speed
# ----------------------------------------------------------------------------------------------------


def binary_entropy(prevalence: float) -> float:
    """Cross-entropy (nats) of always predicting `prevalence` for labels with that prevalence."""
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must lie in [0, 1], got {prevalence}")
    if prevalence in (0.0, 1.0):
        return 0.0
    return float(-(prevalence * np.log(prevalence) + (1 - prevalence) * np.log(1 - prevalence)))
