"""The unit of analysis: a patient's two breasts are not independent.

- `obuchowski_auc_ci`: the per-breast AUC with the variance of Obuchowski's nonparametric clustered ROC
  analysis (Biometrics 1997;53:567-578), patients as clusters. With one breast per patient it is DeLong's.
- `patient_scores`: one row per patient, the larger of the two breast scores against the patient's label
  (malignant when either breast is), for a per-patient AUC.
The patient-level bootstrap is `stats.auc_ci(..., method="bootstrap", groups=patient ids)`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from cemlib.results import stats


def obuchowski_variance(y_true, y_score, clusters) -> tuple[float, float]:
    """(AUC, its clustered variance): Obuchowski (1997), eqs. for S10, S01 and S11 with clusters as units."""
    y, s = stats.check_binary_input(y_true, y_score)
    clusters = np.asarray(clusters)
    if clusters.shape != y.shape:
        raise ValueError(f"clusters has {clusters.size} values but the labels have {y.size}: "
                         "lengths must match")
    cases, controls = s[y == 1], s[y == 0]
    m, n = cases.size, controls.size
    # psi(case, control) = 1 if case > control, 1/2 on a tie, 0 otherwise.
    psi = (cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])
    auc = float(psi.mean())
    v10 = psi.mean(axis=1)  # per case: share of controls below it
    v01 = psi.mean(axis=0)  # per control: share of cases above it
    ids, member = np.unique(clusters, return_inverse=True)
    k = ids.size
    m_i = np.bincount(member[y == 1], minlength=k)
    n_i = np.bincount(member[y == 0], minlength=k)
    v10_i = np.bincount(member[y == 1], weights=v10, minlength=k)
    v01_i = np.bincount(member[y == 0], weights=v01, minlength=k)
    i10, i01 = int((m_i > 0).sum()), int((n_i > 0).sum())
    if i10 < 2 or i01 < 2:
        return auc, float("nan")
    d10, d01 = v10_i - m_i * auc, v01_i - n_i * auc
    s10 = i10 / ((i10 - 1) * m) * np.sum(d10**2)
    s01 = i01 / ((i01 - 1) * n) * np.sum(d01**2)
    s11 = k / (k - 1) * np.sum(d10 * d01)
    return auc, float(s10 / m + s01 / n + 2.0 * s11 / (m * n))


def obuchowski_auc_ci(y_true, y_score, clusters, level: float = 0.95) -> stats.Interval:
    """Per-breast AUC with a normal CI on Obuchowski's clustered variance (clipped to [0, 1])."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level}")
    auc, variance = obuchowski_variance(y_true, y_score, clusters)
    half = float(sps.norm.ppf(1.0 - (1.0 - level) / 2.0)) * np.sqrt(variance)
    low, high = np.clip([auc - half, auc + half], 0.0, 1.0)
    return stats.Interval(auc, float(low), float(high))


def patient_scores(breasts: pd.DataFrame) -> pd.DataFrame:
    """Per patient (dataset, patient_id): the larger breast score and the label (1 if any breast is)."""
    missing = {"dataset", "patient_id", "label", "score"} - set(breasts.columns)
    if missing:
        raise ValueError(f"breast scores lack column(s) {sorted(missing)}")
    return (breasts.groupby(["dataset", "patient_id"], sort=False)
            .agg(label=("label", "max"), score=("score", "max"), breasts=("score", "size")).reset_index())
