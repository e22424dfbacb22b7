"""Synthetic CEM cohort: patient specifications with the paper's statistics, written in the GE DICOM layout.

This is the project's embedded default dataset (`cem synth`). `sample_cohort` draws patients whose class
shares (Table 2), ages, BI-RADS and pathologies (Table 1) follow the paper, conditional on the label;
`cemlib.phantom` renders them (physics explained there: outline, power-law texture, ACR density, lesions,
iodine enhancement); `write_cohort` writes the DICOM files, labels, lesion ground truth and masks.

The cohort is built to be learnable but not trivial, for the paper's physical reasons:
- Lesions have the sizes of a diagnostic CEM cohort (cancers ~2 cm median, benign masses ~1.5 cm), so they
  stay a few pixels wide at the smoke profile's resolution, as they do at the paper's 512 x 256.
- CEM beats LE alone: in LE a mass shows as a density only where the breast is fatty (its contrast follows
  its thickness; dense tissue masks it), and size, margin and a slightly higher density are the only
  LE signs of malignancy; in DES cancers enhance strongly while most benign lesions do not (with ~10%
  non-enhancing cancers, ~15% enhancing benign).
- Fusion beats single images: BPE varies strongly between patients, enhancing foci appear in one view
  only (a second view dismisses them) or mirrored in both breasts (the other breast dismisses them).

Same seed, same bytes: every random draw comes from a per-patient `numpy.random.SeedSequence` stream, UIDs
come from the seed, dates are fixed, so serial and parallel runs write identical files.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from cemlib.synthetic.phantom import BreastSpec, FocusSpec, LesionSpec, PatientSpec, ShapeSpec
from cemlib.views import SIDES, VIEWS

# ---------------------------------------------------------------------------- cohort statistics (paper)
#: Table 2: bilateral benign / unilateral malignant / bilateral malignant.
CLASS_SHARES = {"bilateral_benign": 765 / 2496, "unilateral_malignant": 1692 / 2496,
                "bilateral_malignant": 39 / 2496}
#: Table 1 BI-RADS per breast split by label so that the mixture matches the paper (malignant 35.5%).
BIRADS_MALIGNANT = {"4A": 2.5, "4B": 5.5, "4C": 10.0, "5": 11.8, "6": 5.6}
BIRADS_BENIGN = {"0": 0.8, "1": 14.2, "2": 3.0, "3": 30.5, "3-4A": 2.3, "4A": 8.9, "4B": 2.9, "4C": 1.8,
                 "5": 0.2}
#: Table 1 malignant pathologies (% of breasts).
MALIGNANT_PATHOLOGY = {"IDC": 18.5, "DCIS+IDC": 10.5, "DCIS": 1.9, "papillary carcinoma": 1.9,
                       "mucinous carcinoma": 1.1, "ILC": 0.8, "LCIS+ILC": 0.2,
                       "malignant phyllodes tumour": 0.2, "Paget disease": 0.2, "LCIS": 0.1,
                       "squamous cell carcinoma": 0.1}
BENIGN_PATHOLOGY = {"fibroadenoma": 35, "fibrocystic change": 20, "adenosis": 18, "cyst": 10,
                    "intraductal papilloma": 8, "benign phyllodes tumour": 3, "mastitis": 3,
                    "fat necrosis": 3}
AGE_MEAN = {"benign": 47.3, "malignant": 55.5}  # mixture mean 53 with 69% malignant patients
AGE_SD, AGE_RANGE = 11.4, (17, 85)
DENSITY_FRACTION = {"a": (0.08, 0.03), "b": (0.22, 0.05), "c": (0.42, 0.06), "d": (0.62, 0.06)}
BPE_LEVELS = ("minimal", "mild", "moderate", "marked")
BPE_AMPLITUDE = {"minimal": (5, 25), "mild": (40, 85), "moderate": (95, 165), "marked": (175, 280)}
#: Median long diameter (mm) of the lesions of a diagnostic CEM cohort (symptomatic women recalled for
#: BI-RADS 3-5 findings): cancers about 2 cm (smaller when only mildly suspicious), benign masses 1.5 cm.
LESION_MEDIAN_MM = {"malignant": 22.0, "4A": 16.0, "benign": 15.0}
#: Typical compressed breast thickness (mm). A mass's LE contrast follows its thickness along the beam
#: relative to it, times its attenuation relative to glandular tissue: cancers 0.8-1.05, benign masses
#: (fibroadenomas, cysts) 0.7-1.0, so high density is a weak suspicious LE sign, not a giveaway.
COMPRESSED_THICKNESS_MM = 60.0
#: Enhancing foci without a mass per patient, by BPE level: single-view (Poisson mean), mirrored pairs (p).
FOCI_SINGLE = {"minimal": 0.4, "mild": 0.8, "moderate": 1.3, "marked": 1.8}
FOCI_MIRRORED = {"minimal": 0.2, "mild": 0.35, "moderate": 0.5, "marked": 0.6}

GIVEN_NAMES = ("JANE", "MARY", "ANNA", "LINDA", "SUSAN", "KAREN", "LISA", "NANCY", "HELEN", "SANDRA",
               "DONNA", "CAROL", "RUTH", "SHARON", "LAURA", "SARAH", "EMMA", "GRACE", "ALICE", "JULIA",
               "MEI", "LING", "YAN", "HUA", "FANG", "XIU", "JING", "LI", "NA", "MIN")
FAMILY_NAMES = ("DOE", "ROE", "SMITH", "JONES", "BROWN", "TAYLOR", "MILLER", "DAVIS", "WILSON", "MOORE",
                "CLARK", "LEWIS", "WALKER", "HALL", "YOUNG", "KING", "WRIGHT", "GREEN", "BAKER", "ADAMS",
                "WANG", "ZHANG", "LIU", "CHEN", "YANG", "ZHAO", "HUANG", "ZHOU", "WU", "XU")

#: The embedded default cohort (the smoke profile's): 450 patients at scale 0.08 is about 350 MB and
#: gives 90 validation and 180 test breasts, enough for stable early stopping and test AUCs.
DEFAULT_PATIENTS = 450


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _class_quota(n: int) -> list[str]:
    """Largest-remainder allocation of the paper's class shares to n patients."""
    raw = {k: v * n for k, v in CLASS_SHARES.items()}
    counts = {k: math.floor(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    return [k for k, c in counts.items() for _ in range(c)]


def _shape(rng: np.random.Generator, base: dict[str, float]) -> ShapeSpec:
    jitter = {k: v * rng.uniform(0.97, 1.03) for k, v in base.items()}
    return ShapeSpec(**jitter)


def _base_shape(rng: np.random.Generator, density: str) -> dict[str, float]:
    size = rng.uniform(0.85, 1.1) * (1.05 if density in "ab" else 0.95)  # fatty breasts are larger
    return {"cc_depth": 150 * size, "cc_half_height": 105 * size, "cc_center": rng.uniform(0.46, 0.54),
            "mlo_depth": 165 * size, "mlo_half_height": 150 * size, "mlo_center": rng.uniform(0.30, 0.38),
            "mlo_tilt_deg": rng.uniform(18, 30), "pect_width": rng.uniform(60, 100),
            "pect_height": rng.uniform(130, 190)}


def _lesion_thickness(size_mm: float, aspect: float) -> float:
    """A mass's thickness along the beam as a fraction of the compressed breast (LE contrast scale)."""
    return min(0.6, size_mm * math.sqrt(aspect) / COMPRESSED_THICKNESS_MM)


def _lesion(rng: np.random.Generator, kind: str, pathology: str, birads: str) -> LesionSpec:
    """Draw one lesion: morphology and enhancement depend on the kind, pathology and BI-RADS."""
    suspicious = birads in ("4B", "4C", "5", "6")
    if kind == "malignant":
        median = LESION_MEDIAN_MM["4A" if birads == "4A" else "malignant"]
        size = float(np.clip(rng.lognormal(math.log(median), 0.35), 8, 40))
        if pathology in ("mucinous carcinoma", "papillary carcinoma"):
            margin, aspect = "circumscribed", rng.uniform(0.65, 0.95)
        elif pathology == "DCIS":
            margin, aspect = "irregular", rng.uniform(0.35, 0.6)
        else:
            margin, aspect = ("spiculated" if rng.random() < 0.55 else "irregular"), rng.uniform(0.6, 1.0)
        p_silent = {"4A": 0.3, "4B": 0.15, "4C": 0.08}.get(birads, 0.05)
        if rng.random() < p_silent:  # non-enhancing cancer
            pattern, enhancement = "homogeneous", rng.uniform(0, 40)
        else:
            pattern = _choice(rng, {"homogeneous": 0.35, "heterogeneous": 0.35, "rim": 0.3})
            enhancement = float(np.clip(rng.normal(380, 110), 180, 700))
        le_density = _lesion_thickness(size, aspect) * rng.uniform(0.8, 1.05)
    else:
        size = float(np.clip(rng.lognormal(math.log(LESION_MEDIAN_MM["benign"]), 0.4), 6, 34))
        p_irregular = 0.4 if suspicious else 0.25 if birads in ("3-4A", "4A") else 0.05
        margin = "irregular" if rng.random() < p_irregular else "circumscribed"
        aspect = rng.uniform(0.55, 0.95)
        p_enhancing = 0.45 if suspicious else 0.25 if birads in ("3-4A", "4A") else 0.08
        if pathology == "cyst":
            p_enhancing = 0.0
        if rng.random() < p_enhancing:  # enhancing benign lesion (fibroadenoma, papilloma, ...)
            pattern, enhancement = "homogeneous", float(rng.uniform(150, 400))
        elif rng.random() < 0.5:
            pattern, enhancement = "none", 0.0
        else:
            pattern, enhancement = "homogeneous", float(rng.uniform(20, 90))
        le_density = _lesion_thickness(size, aspect) * rng.uniform(0.7, 1.0)
    return LesionSpec(kind=kind, pathology=pathology, depth=float(rng.uniform(0.15, 0.8)),
                      ml=float(rng.uniform(-0.9, 0.9)), si=float(rng.uniform(-0.9, 0.9)), size_mm=size,
                      aspect=float(aspect), angle_deg=float(rng.uniform(0, 180)), margin=margin,
                      pattern=pattern, enhancement=float(enhancement), le_density=float(le_density),
                      shape_seed=int(rng.integers(2**31)))


def _breast(rng: np.random.Generator, side: str, label: int, shape: ShapeSpec) -> BreastSpec:
    """Draw BI-RADS, pathology and lesions of one breast given its label."""
    if label:
        birads = _choice(rng, BIRADS_MALIGNANT)
        pathology = _choice(rng, MALIGNANT_PATHOLOGY)
        lesions = [_lesion(rng, "malignant", pathology, birads)]
        if rng.random() < 0.15:
            lesions.append(_lesion(rng, "benign", _choice(rng, BENIGN_PATHOLOGY), "3"))
        return BreastSpec(side, 1, birads, pathology, shape, tuple(lesions))
    birads = _choice(rng, BIRADS_BENIGN)
    p_lesion = {"1": 0.0, "0": 0.5, "2": 0.6, "3": 0.85}.get(birads, 1.0)
    if rng.random() >= p_lesion:
        return BreastSpec(side, 0, birads, "normal", shape, ())
    pathology = _choice(rng, BENIGN_PATHOLOGY)
    lesions = [_lesion(rng, "benign", pathology, birads)]
    if rng.random() < 0.2:
        lesions.append(_lesion(rng, "benign", _choice(rng, BENIGN_PATHOLOGY), "3"))
    return BreastSpec(side, 0, birads, pathology, shape, tuple(lesions))


def _foci(rng: np.random.Generator, bpe: str) -> tuple[FocusSpec, ...]:
    """Enhancing foci without a mass: single-view ones and mirrored bilateral ones."""
    foci = []
    for _ in range(int(rng.poisson(FOCI_SINGLE[bpe]))):
        foci.append(FocusSpec((str(rng.choice(SIDES)),), (str(rng.choice(VIEWS)),),
                              float(rng.uniform(0.15, 0.8)), float(rng.uniform(-0.9, 0.9)),
                              float(rng.uniform(-0.9, 0.9)), float(rng.uniform(5, 13)),
                              float(rng.uniform(150, 450))))
    if rng.random() < FOCI_MIRRORED[bpe]:
        for _ in range(int(rng.integers(1, 3))):
            foci.append(FocusSpec(SIDES, VIEWS, float(rng.uniform(0.15, 0.8)), float(rng.uniform(-0.9, 0.9)),
                                  float(rng.uniform(-0.9, 0.9)), float(rng.uniform(5, 11)),
                                  float(rng.uniform(120, 350))))
    return tuple(foci)


def sample_patient(index: int, patient_class: str, seed: int) -> PatientSpec:
    """Draw one patient of a given class from its own random stream (independent of cohort size)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    malignant = patient_class != "bilateral_benign"
    age_draw = float(np.clip(rng.normal(AGE_MEAN["malignant" if malignant else "benign"], AGE_SD),
                             AGE_RANGE[0], AGE_RANGE[1]))
    study = dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3 * 365)))
    age = int(np.clip(math.floor(age_draw), *AGE_RANGE))
    # the last birthday falls within the year before the study date, so the header age is exact
    day = min(study.day, 28) if study.month == 2 else study.day
    last_birthday = study.replace(year=study.year - age, day=day)
    birth = last_birthday - dt.timedelta(days=int(rng.integers(0, 360)))
    if age < 45:
        density = _choice(rng, {"a": 0.05, "b": 0.30, "c": 0.45, "d": 0.20})
    elif age < 60:
        density = _choice(rng, {"a": 0.10, "b": 0.38, "c": 0.40, "d": 0.12})
    else:
        density = _choice(rng, {"a": 0.18, "b": 0.45, "c": 0.30, "d": 0.07})
    bpe_weights = (0.25, 0.35, 0.25, 0.15) if age < 50 else (0.45, 0.35, 0.15, 0.05)
    bpe = _choice(rng, dict(zip(BPE_LEVELS, bpe_weights, strict=True)))
    labels = {"bilateral_benign": (0, 0), "bilateral_malignant": (1, 1)}.get(patient_class)
    if labels is None:
        labels = (1, 0) if rng.random() < 0.5 else (0, 1)
    base = _base_shape(rng, density)
    breasts = {side: _breast(rng, side, label, _shape(rng, base))
               for side, label in zip(SIDES, labels, strict=True)}
    mean_fg, sd_fg = DENSITY_FRACTION[density]
    return PatientSpec(
        index=index, patient_id=f"SYN{index + 1:04d}",
        mrn=f"{int(rng.integers(10**7, 10**8))}",
        name=f"{rng.choice(FAMILY_NAMES)}^{rng.choice(GIVEN_NAMES)}",
        birth_date=birth.strftime("%Y%m%d"), study_date=study.strftime("%Y%m%d"), age=age, density=density,
        bpe=bpe, fg_fraction=float(np.clip(rng.normal(mean_fg, sd_fg), 0.03, 0.8)),
        beta=float(rng.uniform(2.7, 3.3)), bpe_amplitude=float(rng.uniform(*BPE_AMPLITUDE[bpe])),
        fat_level=float(rng.uniform(-40, 40)), fg_gain=float(rng.uniform(1000, 1150)),
        le_noise=float(rng.uniform(10, 16)), des_noise=float(rng.uniform(28, 40)),
        n_vessels=int(rng.integers(2, 6)), breasts=breasts, foci=_foci(rng, bpe),
        render_seed=int(rng.integers(2**62)))


def sample_cohort(n_patients: int, seed: int) -> list[PatientSpec]:
    """Draw n patients: exact Table 2 class quotas in seeded random order, then one stream per patient."""
    if n_patients < 1:
        raise ValueError(f"n_patients must be at least 1, got {n_patients}")
    classes = _class_quota(n_patients)
    order = np.random.default_rng(np.random.SeedSequence([seed, 0xC0407])).permutation(n_patients)
    return [sample_patient(i, classes[int(order[i])], seed) for i in range(n_patients)]
