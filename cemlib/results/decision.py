"""Operating points fixed before the test set, and decision curves (net benefit).

Operating points: a threshold is chosen on the validation split by a named rule and then applied, unchanged,
to the test split (and the external sets):
- ``youden``: the validation score maximising SEN + SPE - 1 (`stats.youden_threshold`);
- ``sensitivity 0.90``: the highest validation score at which SEN >= 0.90;
- ``paper 0.5``: the paper's fixed rule, malignant when the predicted probability is >= 0.5.

Decision curves follow Vickers & Elkin, Med Decis Making 2006: at threshold probability pt a breast is
biopsied when its probability is >= pt, and its net benefit is NB = TP/n - FP/n * pt / (1 - pt); treat
all has NB = prevalence - (1 - prevalence) pt / (1 - pt); treat none has NB = 0.
"""

from __future__ import annotations

import numpy as np

from cemlib.results import stats

#: Threshold probabilities of a biopsy decision (BI-RADS 3 ends at 2%, 4A spans 2-10%, 4C reaches 95%):
#: the curves are drawn from 2% to 50%.
BIOPSY_RANGE = (0.02, 0.50)
#: The operating-point rules, in the order the tables list them.
RULES = ("youden", "sensitivity 0.90", "paper 0.5")
PAPER_RULE = "paper 0.5"


def sensitivity_threshold(y_true, y_score, target: float = 0.90) -> float:
    """The highest observed score at which SEN >= target (malignant when score >= threshold)."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must lie in (0, 1], got {target}")
    y, s = stats.check_binary_input(y_true, y_score)
    cases = np.sort(s[y == 1])[::-1]
    # The k-th highest case score keeps k cases at or above it (ties keep more).
    needed = int(np.ceil(target * cases.size - 1e-12))
    return float(cases[max(needed, 1) - 1])


def rule_threshold(rule: str, y_val=None, score_val=None) -> float:
    """The threshold of a named rule (RULES), on validation labels and scores where the rule needs them."""
    if rule == PAPER_RULE:
        return 0.5
    if y_val is None or score_val is None or len(y_val) == 0:
        raise ValueError(f"the {rule!r} threshold needs validation labels and scores")
    if rule == "youden":
        return stats.youden_threshold(y_val, score_val)
    if rule.startswith("sensitivity "):
        return sensitivity_threshold(y_val, score_val, float(rule.split()[1]))
    raise ValueError(f"unknown threshold rule {rule!r}: use one of {RULES}")


def operating_point(y_true, y_score, threshold: float, level: float = 0.95) -> dict[str, object]:
    """Confusion counts and SEN, SPE, PPV, NPV with exact (Clopper-Pearson) CIs at a fixed threshold."""
    counts = stats.confusion_counts(y_true, y_score, threshold)
    rates = stats.classification_metrics(y_true, y_score, threshold, level, "clopper-pearson")
    return {**counts, **{name: rates[name] for name in ("sen", "spe", "ppv", "npv")}}


def net_benefit(y_true, y_score, thresholds) -> np.ndarray:
    """Net benefit of biopsying when y_score >= pt, at each threshold probability pt (Vickers & Elkin)."""
    y, s = stats.check_binary_input(y_true, y_score, need_both_classes=False)
    pt = _threshold_probabilities(thresholds)
    called = s[None, :] >= pt[:, None]
    tp = (called & (y == 1)).sum(axis=1)
    fp = (called & (y == 0)).sum(axis=1)
    return tp / y.size - fp / y.size * pt / (1.0 - pt)


def net_benefit_treat_all(y_true, thresholds) -> np.ndarray:
    """Net benefit of biopsying every breast: prevalence - (1 - prevalence) pt / (1 - pt)."""
    y = stats.check_binary_input(y_true, np.zeros(len(y_true)), need_both_classes=False)[0]
    pt = _threshold_probabilities(thresholds)
    prevalence = y.mean()
    return prevalence - (1.0 - prevalence) * pt / (1.0 - pt)


def _threshold_probabilities(thresholds) -> np.ndarray:
    pt = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if ((pt <= 0) | (pt >= 1)).any():
        raise ValueError("threshold probabilities must lie strictly between 0 and 1")
    return pt


def threshold_grid(low: float = BIOPSY_RANGE[0], high: float = BIOPSY_RANGE[1],
                   step: float = 0.01) -> np.ndarray:
    """Threshold probabilities from low to high (inclusive) in steps."""
    return np.round(np.arange(low, high + step / 2, step), 6)
