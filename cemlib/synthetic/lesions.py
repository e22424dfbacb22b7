"""Findings and their descriptors, drawn from published frequencies (the values and sources: CARD.md).

A breast's label, BI-RADS category and pathology come first (Table 1 of the paper, `cohort.py`); this
module then draws what a radiologist would describe: the finding kind (mass, calcifications, non-mass
enhancement, asymmetry), its lexicon descriptors, size, calcifications and CEM enhancement.

How a descriptor group is drawn. For each value v the card gives its positive predictive value PPV(v)
(BI-RADS lexicon studies) and its share f(v) among biopsied findings of that kind. By Bayes,
P(v | malignant) is proportional to PPV(v) f(v) and P(v | benign) to (1 - PPV(v)) f(v), so every value
with 0 < PPV < 1 occurs in both classes: descriptors inform but never decide. The BI-RADS category then
tilts both conditionals towards suspicious values, P(v | label, category) ~ P(v | label) LR(v)^tau, with
LR(v) = P(v | malignant) / P(v | benign) and tau rising from category 3 to 5 (the category is the
radiologist's summary of how suspicious the finding looks). A few pathologies have their own look
(a cyst is round and circumscribed, mucinous and papillary carcinomas are often circumscribed, fat
necrosis rim-enhances); those factors multiply the conditionals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("mass", "calcifications", "non-mass enhancement", "asymmetry")
ENHANCEMENTS = ("none", "homogeneous", "heterogeneous", "rim", "non-mass")
#: enhancement_level: 0 none, 1 mild, 2 moderate, 3 marked.
ENHANCEMENT_LEVELS = ("none", "mild", "moderate", "marked")

# -------------------------------------------------------------------------------- lexicon (PPV, share)
#: Mass shape: PPV and share among biopsied masses (Liberman 1998; BI-RADS atlas 5th ed.).
MASS_SHAPE = {"oval": (0.14, 0.42), "round": (0.22, 0.14), "irregular": (0.73, 0.44)}
#: Mass margin: PPV and share among biopsied masses (Liberman 1998; Burnside 2007).
MASS_MARGIN = {"circumscribed": (0.05, 0.30), "obscured": (0.15, 0.12), "microlobulated": (0.55, 0.08),
               "indistinct": (0.52, 0.33), "spiculated": (0.81, 0.17)}
#: Calcification morphology: PPV, share among biopsied calcifications, and the class the table reports
#: (Bent 2010; Burnside 2007; BI-RADS atlas 5th ed.).
CALC_MORPHOLOGY = {"round": (0.05, 0.10, "benign"), "coarse": (0.05, 0.05, "benign"),
                   "amorphous": (0.20, 0.33, "suspicious"),
                   "coarse heterogeneous": (0.13, 0.11, "suspicious"),
                   "fine pleomorphic": (0.29, 0.30, "suspicious"), "fine linear": (0.70, 0.11, "suspicious")}
#: Calcification distribution: PPV and share (Liberman 1998; Bent 2010).
CALC_DISTRIBUTION = {"grouped": (0.31, 0.68), "regional": (0.26, 0.10), "linear": (0.68, 0.09),
                     "segmental": (0.74, 0.13)}
#: Non-mass enhancement distribution: PPV and share (MRI NME lexicon studies; no CEM-specific values).
NME_DISTRIBUTION = {"focal": (0.30, 0.35), "linear": (0.45, 0.15), "segmental": (0.70, 0.20),
                    "regional": (0.25, 0.30)}
#: Asymmetry type: PPV and share among worked-up asymmetries (Leung 2007; Sickles 1998).
ASYMMETRY_TYPE = {"focal": (0.10, 0.65), "developing": (0.27, 0.25), "global": (0.04, 0.10)}

# ------------------------------------------------------------------------------- CEM enhancement
#: P(enhancing | malignant): CEM meta-analyses give pooled per-lesion sensitivity 0.89-0.98.
P_ENHANCING_MALIGNANT = 0.90
#: P(enhancing | benign lesion): 51 of 109 biopsied benign index lesions enhanced on CEM (Emory et al.,
#: J Breast Imaging 2023).
P_ENHANCING_BENIGN = 0.47
#: Pattern of an enhancing mass or calcification: P(pattern | malignant), P(pattern | benign).
MASS_PATTERN = {"homogeneous": (0.32, 0.52), "heterogeneous": (0.53, 0.40), "rim": (0.15, 0.08)}
#: Peak iodine signal (raw DES units) of an enhancing finding: log-normal with this median for a malignant
#: and a benign finding and this log SD, kept inside UPTAKE_RANGE. Chosen so that the uptake of every
#: finding (0 when not enhancing) separates the classes as the quantitative CEM series does: AUC 0.877,
#: sensitivity 75.9% and specificity 88.6% at its Youden cut (Br J Radiol 2018, 108 malignant and 44
#: benign lesions); the phantom gives 0.89, 0.80 and 0.88 (CARD.md).
UPTAKE_MEDIAN = {1: 270.0, 0: 115.0}
UPTAKE_SPREAD = 0.45
UPTAKE_RANGE = (40.0, 700.0)
#: The BI-RADS tilt moves the log median by this much per unit of tilt (no source; same direction as the
#: descriptors' tilt: more suspicious categories enhance more).
UPTAKE_TILT = 0.25
#: The reported level (mild, moderate, marked) is the uptake as a reader grades it: cut at these raw DES
#: units after a log-normal reading error of this SD (no source; readers agree on enhancement level only
#: moderately), so the report is coarser than the image.
LEVEL_CUTS = (150.0, 280.0)
LEVEL_READING_SPREAD = 0.3

# ------------------------------------------------------------------------------ kinds per pathology
#: Share of finding kinds (mass, calcifications, non-mass enhancement, asymmetry) by pathology.
KIND_OF_PATHOLOGY = {
    "IDC": (0.78, 0.08, 0.05, 0.09),
    "DCIS+IDC": (0.50, 0.38, 0.08, 0.04),
    "DCIS": (0.12, 0.72, 0.14, 0.02),
    "LCIS": (0.20, 0.40, 0.20, 0.20),
    "ILC": (0.50, 0.05, 0.15, 0.30),
    "LCIS+ILC": (0.50, 0.10, 0.15, 0.25),
    "papillary carcinoma": (0.90, 0.06, 0.04, 0.0),
    "mucinous carcinoma": (0.95, 0.05, 0.0, 0.0),
    "malignant phyllodes tumour": (1.0, 0.0, 0.0, 0.0),
    "Paget disease": (0.25, 0.50, 0.25, 0.0),
    "squamous cell carcinoma": (1.0, 0.0, 0.0, 0.0),
    "fibroadenoma": (0.88, 0.10, 0.0, 0.02),
    "fibrocystic change": (0.30, 0.30, 0.10, 0.30),
    "adenosis": (0.35, 0.35, 0.15, 0.15),
    "cyst": (1.0, 0.0, 0.0, 0.0),
    "intraductal papilloma": (0.80, 0.12, 0.08, 0.0),
    "benign phyllodes tumour": (1.0, 0.0, 0.0, 0.0),
    "mastitis": (0.20, 0.0, 0.45, 0.35),
    "fat necrosis": (0.45, 0.40, 0.0, 0.15),
    "radial scar": (0.60, 0.15, 0.05, 0.20),
}
#: Pathologies with their own look: factors on the value weights of a descriptor group.
PATHOLOGY_LOOK: dict[str, dict[str, dict[str, float]]] = {
    "cyst": {"shape": {"oval": 1.5, "round": 2.0, "irregular": 0.1},
             "margin": {"circumscribed": 3.0, "obscured": 2.0, "microlobulated": 0.3, "indistinct": 0.3,
                        "spiculated": 0.0},
             "enhancing": {"yes": 0.15}, "pattern": {"rim": 6.0, "heterogeneous": 0.2}},
    "fibroadenoma": {"shape": {"oval": 1.6}, "margin": {"circumscribed": 1.6},
                     "morphology": {"coarse": 6.0}, "enhancing": {"yes": 1.4}},
    "mucinous carcinoma": {"shape": {"oval": 2.5, "round": 2.5}, "margin": {"circumscribed": 6.0,
                                                                           "microlobulated": 2.0}},
    "papillary carcinoma": {"shape": {"oval": 2.0, "round": 2.5}, "margin": {"circumscribed": 5.0,
                                                                            "obscured": 2.0}},
    "intraductal papilloma": {"enhancing": {"yes": 2.0}, "pattern": {"homogeneous": 1.5}},
    "fat necrosis": {"margin": {"spiculated": 3.0, "indistinct": 1.5}, "morphology": {"coarse": 4.0},
                     "pattern": {"rim": 5.0}},
    "radial scar": {"margin": {"spiculated": 6.0}, "shape": {"irregular": 2.0}},
    "DCIS": {"enhancing": {"yes": 0.6}},
    "mastitis": {"enhancing": {"yes": 2.0}, "pattern": {"heterogeneous": 2.0}},
}
#: Strength of the BI-RADS tilt towards suspicious-looking values (no published source; monotone by
#: construction because a category summarises how suspicious the finding looks). The cohort centres it
#: per label (`tilt_centres`), so that averaged over a label's categories the descriptors keep their
#: published predictive values instead of being sharpened by the category mix.
BIRADS_TILT = {"0": -0.3, "1": -0.6, "2": -0.6, "3": -0.6, "3-4A": -0.45, "4A": -0.3, "4B": 0.0, "4C": 0.3,
               "5": 0.6, "6": 0.3}
#: Median long diameter in mm (mass / calcification cluster / NME / asymmetry) by label, and the size
#: factor per BI-RADS category (smaller cancers are more often called 4A; factor not from a source).
MEDIAN_SIZE_MM = {"mass": (20.0, 15.0), "calcifications": (14.0, 10.0), "non-mass enhancement": (30.0, 25.0),
                  "asymmetry": (28.0, 25.0)}
SIZE_BY_BIRADS = {"3-4A": 0.8, "4A": 0.8, "4B": 0.9, "4C": 1.0, "5": 1.1, "6": 1.1}
SIZE_SPREAD = 0.5  # lognormal sigma
SIZE_RANGE_MM = {"mass": (5.0, 50.0), "calcifications": (3.0, 45.0), "non-mass enhancement": (10.0, 70.0),
                 "asymmetry": (12.0, 60.0)}
#: Mass with associated calcifications: P(malignant mass), P(benign mass) (DCIS+IDC carries them most).
P_MASS_CALCS = (0.20, 0.06)
P_MASS_CALCS_DCIS_IDC = 0.55


@dataclass(frozen=True)
class Finding:
    """The descriptors of one lesion, as a radiologist would report them (one lesions.csv row)."""

    label: int
    pathology: str
    kind: str
    shape: str  # mass shape, calcification morphology, NME distribution or asymmetry type
    margin: str  # mass margin, calcification distribution, or "n/a"
    size_mm: float
    calcification: str  # none | benign | suspicious
    morphology: str  # calcification morphology ("" when none)
    enhancement: str  # none | homogeneous | heterogeneous | rim | non-mass
    enhancement_level: int  # 0 none .. 3 marked, as a reader grades it
    uptake: float = 0.0  # peak iodine signal in raw DES units (0: not enhancing)


def class_conditionals(table: dict[str, tuple]) -> dict[str, tuple[float, float]]:
    """(P(v | malignant), P(v | benign)) from a {value: (PPV, share, ...)} table by Bayes' rule."""
    malignant = {v: row[0] * row[1] for v, row in table.items()}
    benign = {v: (1.0 - row[0]) * row[1] for v, row in table.items()}
    m_sum, b_sum = sum(malignant.values()), sum(benign.values())
    return {v: (malignant[v] / m_sum, benign[v] / b_sum) for v in table}


#: Mass shape follows the margin this often (circumscribed masses are oval or round, spiculated ones
#: irregular); otherwise it is drawn on its own. Keeps shape and margin from counting twice.
SHAPE_FOLLOWS_MARGIN = 0.9
SHAPE_OF_MARGIN = {"circumscribed": ("oval", "round"), "obscured": ("oval", "round"),
                   "microlobulated": ("oval", "irregular"), "indistinct": ("irregular",),
                   "spiculated": ("irregular",)}


def tilt_centres(birads_weights: dict[int, dict[str, float]]) -> dict[int, float]:
    """Mean BI-RADS tilt per label under the cohort's category weights (subtracted from the tilt)."""
    return {label: sum(w * BIRADS_TILT.get(b, 0.0) for b, w in weights.items()) / sum(weights.values())
            for label, weights in birads_weights.items()}


#: Set by the cohort from its BI-RADS mix (cohort.py); zero until then.
TILT_CENTRE = {0: 0.0, 1: 0.0}


def finding_tilt(label: int, birads: str) -> float:
    """How far a finding of this label and category leans towards suspicious-looking values (centred)."""
    return BIRADS_TILT.get(birads, 0.0) - TILT_CENTRE[1 if label else 0]


def _draw(rng: np.random.Generator, conditionals: dict, label: int, tau: float,
          look: dict[str, float] | None = None) -> str:
    """One value: P(v | label) tilted by `tau` (how suspicious the finding looks) and the pathology's look."""
    keys = list(conditionals)
    weights = []
    for key in keys:
        p_malignant, p_benign = conditionals[key]
        base = p_malignant if label else p_benign
        ratio = max(p_malignant, 1e-9) / max(p_benign, 1e-9)
        weights.append(base * ratio**tau * (look or {}).get(str(key), 1.0))
    p = np.asarray(weights, float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


_SHAPE = class_conditionals(MASS_SHAPE)
_MARGIN = class_conditionals(MASS_MARGIN)
_MORPHOLOGY = class_conditionals(CALC_MORPHOLOGY)
_DISTRIBUTION = class_conditionals(CALC_DISTRIBUTION)
_NME = class_conditionals(NME_DISTRIBUTION)
_ASYMMETRY = class_conditionals(ASYMMETRY_TYPE)
_ENHANCING = {"yes": (P_ENHANCING_MALIGNANT, P_ENHANCING_BENIGN),
              "no": (1 - P_ENHANCING_MALIGNANT, 1 - P_ENHANCING_BENIGN)}


def _size(rng: np.random.Generator, kind: str, label: int, birads: str) -> float:
    median = MEDIAN_SIZE_MM[kind][0 if label else 1] * SIZE_BY_BIRADS.get(birads, 1.0)
    low, high = SIZE_RANGE_MM[kind]
    return float(np.clip(rng.lognormal(math.log(median), SIZE_SPREAD), low, high))


def _calcifications(rng: np.random.Generator, label: int, tau: float, look: dict) -> tuple[str, str, str]:
    """(class, morphology, distribution) of a calcification group."""
    morphology = _draw(rng, _MORPHOLOGY, label, tau, look.get("morphology"))
    distribution = _draw(rng, _DISTRIBUTION, label, tau, look.get("distribution"))
    return CALC_MORPHOLOGY[morphology][2], morphology, distribution


def _uptake(rng: np.random.Generator, label: int, tau: float) -> float:
    """Peak iodine signal of an enhancing finding (raw DES units)."""
    log_median = math.log(UPTAKE_MEDIAN[1 if label else 0]) + UPTAKE_TILT * tau
    return float(np.clip(rng.lognormal(log_median, UPTAKE_SPREAD), *UPTAKE_RANGE))


def graded_level(rng: np.random.Generator, uptake: float) -> int:
    """The enhancement level a reader reports for this uptake (1 mild, 2 moderate, 3 marked)."""
    read = uptake * rng.lognormal(0.0, LEVEL_READING_SPREAD)
    return 1 + int(np.searchsorted(LEVEL_CUTS, read))


def _enhancement(rng: np.random.Generator, kind: str, label: int, tau: float, look: dict
                 ) -> tuple[str, int, float]:
    """(pattern, reported level, uptake) in the recombined image."""
    if kind == "non-mass enhancement":
        enhancing = "yes"  # the finding is defined by its enhancement
    else:
        enhancing = _draw(rng, _ENHANCING, label, tau, look.get("enhancing"))
    if enhancing == "no":
        return "none", 0, 0.0
    uptake = _uptake(rng, label, tau)
    level = graded_level(rng, uptake)
    if kind in ("non-mass enhancement", "asymmetry") or (kind == "calcifications" and rng.random() < 0.6):
        return "non-mass", level, uptake
    return _draw(rng, MASS_PATTERN, label, tau, look.get("pattern")), level, uptake


def draw_finding(rng: np.random.Generator, label: int, pathology: str, birads: str) -> Finding:
    """Draw one finding of a breast with this label, pathology and BI-RADS category."""
    look = PATHOLOGY_LOOK.get(pathology, {})
    tau = finding_tilt(label, birads)
    shares = KIND_OF_PATHOLOGY.get(pathology, (0.7, 0.15, 0.05, 0.10))
    kind = KINDS[int(rng.choice(len(KINDS), p=np.asarray(shares) / sum(shares)))]
    size = _size(rng, kind, label, birads)
    calcification, morphology = "none", ""
    if kind == "mass":
        margin = _draw(rng, _MARGIN, label, tau, look.get("margin"))
        shape = _draw(rng, _SHAPE, label, tau, look.get("shape"))
        if rng.random() < SHAPE_FOLLOWS_MARGIN and shape not in SHAPE_OF_MARGIN[margin]:
            options = SHAPE_OF_MARGIN[margin]
            shape = options[int(rng.integers(len(options)))]
        p_calcs = P_MASS_CALCS_DCIS_IDC if pathology == "DCIS+IDC" else P_MASS_CALCS[0 if label else 1]
        if rng.random() < p_calcs:
            calcification, morphology, _ = _calcifications(rng, label, tau, look)
    elif kind == "calcifications":
        calcification, morphology, margin = _calcifications(rng, label, tau, look)
        shape = morphology
    elif kind == "non-mass enhancement":
        shape, margin = _draw(rng, _NME, label, tau, look.get("distribution")), "n/a"
    else:
        shape, margin = _draw(rng, _ASYMMETRY, label, tau, look.get("asymmetry")), "n/a"
    enhancement, level, uptake = _enhancement(rng, kind, label, tau, look)
    return Finding(label, pathology, kind, shape, margin, size, calcification, morphology, enhancement, level,
                   uptake)
