"""Synthetic CEM patients with the paper's cohort statistics and published finding frequencies.

`sample_cohort` draws patients whose class shares (Table 2), ages, BI-RADS categories and pathologies
(Table 1) follow the paper, conditional on the label; `lesions.draw_finding` then draws each finding's
kind and descriptors from published frequencies (values and sources in CARD.md). Nothing here is tuned
so that a model, an input or a fusion comes out ahead: what the phantom builds in by construction is
listed in the card (iodine uptake of most cancers, the descriptors' published predictive values, dense
tissue masking LE findings); everything else is left to chance.

A population (`POPULATIONS`) bundles the patient mix of a dataset: the paper's internal cohort, or the
mixes of the CDD-CESM and INbreast releases, whose breast sizes, densities and class shares differ.

Same seed, same patients: every random draw comes from a per-patient `numpy.random.SeedSequence` stream.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cemlib.core.views import SIDES, VIEWS
from cemlib.synthetic import lesions
from cemlib.synthetic.lesions import Finding, draw_finding
from cemlib.synthetic.phantom import (
    GE_ESSENTIAL,
    BreastSpec,
    Detector,
    FocusSpec,
    LesionSpec,
    PatientSpec,
    ShapeSpec,
)

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
#: Benign pathologies of biopsied breasts (the paper gives none; a typical surgical series, see CARD.md).
BENIGN_PATHOLOGY = {"fibroadenoma": 33, "fibrocystic change": 20, "adenosis": 17, "cyst": 10,
                    "intraductal papilloma": 8, "benign phyllodes tumour": 3, "mastitis": 3,
                    "fat necrosis": 3, "radial scar": 3}
#: Share of benign breasts with a finding, by BI-RADS (1 = negative by definition).
P_FINDING_BENIGN = {"1": 0.0, "0": 0.5}
lesions.TILT_CENTRE.update(lesions.tilt_centres({
    1: BIRADS_MALIGNANT,
    0: {b: w * P_FINDING_BENIGN.get(b, 1.0) for b, w in BIRADS_BENIGN.items()}}))
#: A second, benign finding in the same breast (malignant, benign breast).
P_SECOND_FINDING = (0.15, 0.15)
AGE_MEAN = {"benign": 47.3, "malignant": 55.5}  # mixture mean 53 with 69% malignant patients
AGE_SD, AGE_RANGE = 11.4, (17, 85)
DENSITY_FRACTION = {"a": (0.08, 0.03), "b": (0.22, 0.05), "c": (0.42, 0.06), "d": (0.62, 0.06)}
BPE_LEVELS = ("minimal", "mild", "moderate", "marked")
#: BPE weights (minimal, mild, moderate, marked) under and over 50 years (Sogani 2017; see CARD.md).
BPE_WEIGHTS = {"young": (0.25, 0.35, 0.25, 0.15), "old": (0.45, 0.35, 0.15, 0.05)}
BPE_AMPLITUDE = {"minimal": (5, 25), "mild": (40, 85), "moderate": (95, 165), "marked": (175, 280)}
#: Typical compressed breast thickness (mm). A mass's LE contrast follows its thickness along the beam
#: relative to it, times its attenuation relative to glandular tissue (0.75-1.05 for every mass).
COMPRESSED_THICKNESS_MM = 60.0
#: Enhancing foci without a lesion per patient, by BPE level: single-view (Poisson mean), mirrored pairs (p).
FOCI_SINGLE = {"minimal": 0.4, "mild": 0.8, "moderate": 1.3, "marked": 1.8}
FOCI_MIRRORED = {"minimal": 0.2, "mild": 0.35, "moderate": 0.5, "marked": 0.6}
#: Share of CC views that show a sliver of pectoral muscle at the chest wall.
P_CC_PECTORAL = 0.3

GIVEN_NAMES = ("JANE", "MARY", "ANNA", "LINDA", "SUSAN", "KAREN", "LISA", "NANCY", "HELEN", "SANDRA",
               "DONNA", "CAROL", "RUTH", "SHARON", "LAURA", "SARAH", "EMMA", "GRACE", "ALICE", "JULIA",
               "MEI", "LING", "YAN", "HUA", "FANG", "XIU", "JING", "LI", "NA", "MIN")
FAMILY_NAMES = ("DOE", "ROE", "SMITH", "JONES", "BROWN", "TAYLOR", "MILLER", "DAVIS", "WILSON", "MOORE",
                "CLARK", "LEWIS", "WALKER", "HALL", "YOUNG", "KING", "WRIGHT", "GREEN", "BAKER", "ADAMS",
                "WANG", "ZHANG", "LIU", "CHEN", "YANG", "ZHAO", "HUANG", "ZHOU", "WU", "XU")

#: One row per finding, in the internal cohort's folder and in every replica's.
LESIONS_FILE = "lesions.csv"
#: Columns of lesions.csv (`lesion_rows`); a replica's table adds one column, its own identifier.
LESION_COLUMNS = ("patient_id", "side", "label", "breast_label", "pathology", "birads", "kind", "shape",
                  "margin", "size_mm", "calcification", "morphology", "enhancement", "enhancement_level",
                  "uptake", "density", "bpe")

#: The embedded default cohort (the smoke profile's): 450 patients at scale 0.08 is about 350 MB and
#: gives 90 validation and 180 test breasts, enough for stable early stopping and test AUCs.
DEFAULT_PATIENTS = 450


@dataclass(frozen=True)
class Population:
    """The patient mix of one dataset: class shares, density by age band, breast size and detector."""

    name: str
    class_shares: dict[str, float]
    density: tuple[dict[str, float], dict[str, float], dict[str, float]]  # <45, 45-59, >=60 years
    size: float  # breast size factor
    detector: Detector


INTERNAL = Population(
    "internal", CLASS_SHARES,
    ({"a": 0.05, "b": 0.30, "c": 0.45, "d": 0.20}, {"a": 0.10, "b": 0.38, "c": 0.40, "d": 0.12},
     {"a": 0.18, "b": 0.45, "c": 0.30, "d": 0.07}),
    1.0, GE_ESSENTIAL)
#: CDD-CESM as the paper used it (193 patients: 62 / 127 / 4); larger, fattier breasts than the internal
#: cohort (no published density table for the release: an assumption), other systems (Hologic, GE DS).
CDDCESM = Population(
    "cddcesm",
    {"bilateral_benign": 62 / 193, "unilateral_malignant": 127 / 193, "bilateral_malignant": 4 / 193},
    ({"a": 0.10, "b": 0.40, "c": 0.38, "d": 0.12}, {"a": 0.18, "b": 0.45, "c": 0.30, "d": 0.07},
     {"a": 0.28, "b": 0.47, "c": 0.20, "d": 0.05}),
    1.15, Detector("Hologic Selenia Dimensions", contrast=0.85, gamma=0.85, noise=1.5, blur_mm=0.15,
                   iodine=0.85))
#: INbreast as the paper used it (86 patients: 44 / 41 / 1); density from the release's ACR column
#: (images: 33% / 36% / 24% / 7%), a Siemens FFDM detector with finer pixels and less noise.
INBREAST = Population(
    "inbreast", {"bilateral_benign": 44 / 86, "unilateral_malignant": 41 / 86, "bilateral_malignant": 1 / 86},
    ({"a": 0.25, "b": 0.37, "c": 0.28, "d": 0.10}, {"a": 0.33, "b": 0.36, "c": 0.24, "d": 0.07},
     {"a": 0.42, "b": 0.35, "c": 0.19, "d": 0.04}),
    1.0, Detector("Siemens Mammomat Novation DR", contrast=1.15, gamma=1.2, noise=0.7, blur_mm=0.0))
POPULATIONS = {p.name: p for p in (INTERNAL, CDDCESM, INBREAST)}


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _class_quota(n: int, shares: dict[str, float] = CLASS_SHARES) -> list[str]:
    """Largest-remainder allocation of the class shares to n patients."""
    raw = {k: v * n for k, v in shares.items()}
    counts = {k: math.floor(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    return [k for k, c in counts.items() for _ in range(c)]


def _shape(rng: np.random.Generator, base: dict[str, float]) -> ShapeSpec:
    jitter = {k: v * rng.uniform(0.97, 1.03) for k, v in base.items()}
    jitter["cc_pectoral_mm"] = float(rng.uniform(6, 16)) if rng.random() < P_CC_PECTORAL else 0.0
    return ShapeSpec(**jitter)


def _base_shape(rng: np.random.Generator, density: str, size_factor: float) -> dict[str, float]:
    size = rng.uniform(0.85, 1.1) * (1.05 if density in "ab" else 0.95) * size_factor  # fatty ones larger
    return {"cc_depth": 150 * size, "cc_half_height": 105 * size, "cc_center": rng.uniform(0.46, 0.54),
            "mlo_depth": 165 * size, "mlo_half_height": 150 * size, "mlo_center": rng.uniform(0.30, 0.38),
            "mlo_tilt_deg": rng.uniform(18, 30), "pect_width": rng.uniform(60, 100),
            "pect_height": rng.uniform(130, 190), "nipple_mm": rng.uniform(4.0, 6.5)}


def _aspect(rng: np.random.Generator, kind: str, shape: str) -> float:
    if kind == "mass":
        return float({"oval": rng.uniform(0.55, 0.8), "round": rng.uniform(0.85, 1.0)}.get(
            shape, rng.uniform(0.6, 0.95)))
    return float(rng.uniform(0.5, 1.0))


def _lesion(rng: np.random.Generator, label: int, pathology: str, birads: str) -> LesionSpec:
    """Draw one finding and where and how strongly it shows in LE and DES."""
    finding = draw_finding(rng, label, pathology, birads)
    aspect = _aspect(rng, finding.kind, finding.shape)
    iodine = finding.uptake
    if finding.kind == "mass":
        thickness = min(0.6, finding.size_mm * math.sqrt(aspect) / COMPRESSED_THICKNESS_MM)
        le_density = thickness * rng.uniform(0.75, 1.05)
    elif finding.kind == "asymmetry":
        le_density = rng.uniform(0.25, 0.45)
    elif finding.kind == "non-mass enhancement":
        le_density = rng.uniform(0.0, 0.15)
    else:
        le_density = 0.0
    return LesionSpec(finding=finding, depth=float(rng.uniform(0.15, 0.8)), ml=float(rng.uniform(-0.9, 0.9)),
                      si=float(rng.uniform(-0.9, 0.9)), aspect=aspect, angle_deg=float(rng.uniform(0, 180)),
                      iodine=iodine, le_density=float(le_density), shape_seed=int(rng.integers(2**31)))


def _breast(rng: np.random.Generator, side: str, label: int, shape: ShapeSpec) -> BreastSpec:
    """Draw BI-RADS, pathology and findings of one breast given its label."""
    if label:
        birads = _choice(rng, BIRADS_MALIGNANT)
        pathology = _choice(rng, MALIGNANT_PATHOLOGY)
        lesions = [_lesion(rng, 1, pathology, birads)]
    else:
        birads = _choice(rng, BIRADS_BENIGN)
        if rng.random() >= P_FINDING_BENIGN.get(birads, 1.0):
            return BreastSpec(side, 0, birads, "normal", shape, ())
        pathology = _choice(rng, BENIGN_PATHOLOGY)
        lesions = [_lesion(rng, 0, pathology, birads)]
    if rng.random() < P_SECOND_FINDING[0 if label else 1]:
        lesions.append(_lesion(rng, 0, _choice(rng, BENIGN_PATHOLOGY), "3"))
    return BreastSpec(side, label, birads, pathology, shape, tuple(lesions))


def _foci(rng: np.random.Generator, bpe: str) -> tuple[FocusSpec, ...]:
    """Enhancing foci without a lesion: single-view ones and mirrored bilateral ones."""
    foci = []
    for _ in range(int(rng.poisson(FOCI_SINGLE[bpe]))):
        foci.append(FocusSpec((str(rng.choice(SIDES)),), (str(rng.choice(VIEWS)),),
                              float(rng.uniform(0.15, 0.8)), float(rng.uniform(-0.9, 0.9)),
                              float(rng.uniform(-0.9, 0.9)), float(rng.uniform(4, 10)),
                              float(rng.uniform(100, 300))))
    if rng.random() < FOCI_MIRRORED[bpe]:
        for _ in range(int(rng.integers(1, 3))):
            foci.append(FocusSpec(SIDES, VIEWS, float(rng.uniform(0.15, 0.8)), float(rng.uniform(-0.9, 0.9)),
                                  float(rng.uniform(-0.9, 0.9)), float(rng.uniform(4, 9)),
                                  float(rng.uniform(90, 250))))
    return tuple(foci)


def _density(rng: np.random.Generator, age: int, population: Population) -> str:
    young, middle, old = population.density
    return _choice(rng, young if age < 45 else middle if age < 60 else old)


def sample_patient(index: int, patient_class: str, seed: int,
                   population: Population = INTERNAL) -> PatientSpec:
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
    density = _density(rng, age, population)
    bpe = _choice(rng, dict(zip(BPE_LEVELS, BPE_WEIGHTS["young" if age < 50 else "old"], strict=True)))
    labels = {"bilateral_benign": (0, 0), "bilateral_malignant": (1, 1)}.get(patient_class)
    if labels is None:
        labels = (1, 0) if rng.random() < 0.5 else (0, 1)
    base = _base_shape(rng, density, population.size)
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
        render_seed=int(rng.integers(2**62)), detector=population.detector)


def sample_cohort(n_patients: int, seed: int, population: str | Population = "internal") -> list[PatientSpec]:
    """Draw n patients: exact class quotas in seeded random order, then one stream per patient."""
    if n_patients < 1:
        raise ValueError(f"n_patients must be at least 1, got {n_patients}")
    mix = POPULATIONS[population] if isinstance(population, str) else population
    classes = _class_quota(n_patients, mix.class_shares)
    order = np.random.default_rng(np.random.SeedSequence([seed, 0xC0407])).permutation(n_patients)
    return [sample_patient(i, classes[int(order[i])], seed, mix) for i in range(n_patients)]


#: The positive control's planted sign: one round, circumscribed mass of this size (mm) in every malignant
#: breast, enhancing far above any background enhancement (raw DES units) and dense on LE. Benign breasts
#: carry no finding, background enhancement is minimal and there are no enhancing foci, so the sign is
#: unambiguous: a pipeline that cannot learn it is broken.
CONTROL_SIZE_MM = 22.0
CONTROL_IODINE = 600.0
CONTROL_LE_DENSITY = 0.35


def plant_sign(spec: PatientSpec) -> PatientSpec:
    """The positive control's version of a patient: the planted mass in each malignant breast only."""
    breasts = {}
    for side, breast in spec.breasts.items():
        lesions: tuple[LesionSpec, ...] = ()
        if breast.label:
            finding = Finding(label=1, pathology=breast.pathology, kind="mass", shape="round",
                              margin="circumscribed", size_mm=CONTROL_SIZE_MM, calcification="none",
                              morphology="", enhancement="homogeneous", enhancement_level=3,
                              uptake=CONTROL_IODINE)
            lesions = (LesionSpec(finding=finding, depth=0.45, ml=0.0, si=0.0, aspect=1.0, angle_deg=0.0,
                                  iodine=CONTROL_IODINE, le_density=CONTROL_LE_DENSITY,
                                  shape_seed=spec.index),)
        breasts[side] = dataclasses.replace(breast, lesions=lesions)
    return dataclasses.replace(spec, breasts=breasts, bpe="minimal", bpe_amplitude=5.0, foci=())


def lesion_rows(specs: list[PatientSpec]) -> list[dict]:
    """One row per finding (lesions.csv): the patient, breast, label and the finding's descriptors."""
    rows = []
    for spec in specs:
        for side, breast in spec.breasts.items():
            for lesion in breast.lesions:
                f = lesion.finding
                rows.append({"patient_id": spec.patient_id, "side": side, "label": f.label,
                             "breast_label": breast.label, "pathology": f.pathology, "birads": breast.birads,
                             "kind": f.kind, "shape": f.shape, "margin": f.margin,
                             "size_mm": round(f.size_mm, 1), "calcification": f.calcification,
                             "morphology": f.morphology or "none", "enhancement": f.enhancement,
                             "enhancement_level": f.enhancement_level, "uptake": round(f.uptake, 1),
                             "density": spec.density,
                             "bpe": spec.bpe})
    return rows


def lesions_table(specs: list[PatientSpec]) -> pd.DataFrame:
    """lesions.csv: one row per finding with its descriptors; a breast without a finding has no row."""
    return pd.DataFrame(lesion_rows(specs), columns=list(LESION_COLUMNS))


def replica_lesions_table(specs: list[PatientSpec], breasts: Mapping[tuple[str, str], tuple[str, object]],
                          key_column: str) -> pd.DataFrame:
    """A replica's lesions.csv: `lesion_rows` of the breasts the replica holds, under its patient ids.

    `breasts` maps (phantom patient_id, side) of every breast in the replica's label table to (the
    patient id its adapter gives, the replica's own identifier); the identifier fills `key_column`, the
    one column added to LESION_COLUMNS. Findings of breasts the replica leaves out have no row. The other
    values are the phantom's, BI-RADS included (a release's table may write the category otherwise).
    """
    rows = []
    for row in lesion_rows(specs):
        key = (row["patient_id"], row["side"])
        if key in breasts:
            patient_id, own = breasts[key]
            rows.append({**row, "patient_id": patient_id, key_column: own})
    return pd.DataFrame(rows, columns=[*LESION_COLUMNS, key_column])
