"""The synthetic CEM phantom: one patient specification in, eight images and lesion masks out.

A contrast-enhanced mammography exam has, per breast and view (CC, MLO), a low-energy (LE) image that
looks like an ordinary mammogram and a recombined (dual-energy subtracted, DES) image in which tissue
contrast cancels and iodine uptake remains. The phantom composes each view from:

- anatomy (`anatomy.py`): outline, nipple, skin line, pectoral muscle, fibroglandular tissue oriented
  towards the nipple with the ACR density's area fraction, Cooper's ligaments, vessels;
- findings (`findings.py`): masses, calcification clusters, non-mass enhancement and asymmetries with
  the descriptors drawn in `lesions.py`;
- physics of the two images. LE grows with dense tissue along the ray (denser = brighter, about
  1500..3300 inside the breast); a mass adds its thickness relative to the compressed breast and
  displaces the fat or glands it replaces, so dense tissue masks it; calcium is far more attenuating
  than tissue. In DES, tissue residuals are small, calcium nearly cancels, and iodine remains:
  background parenchymal enhancement (BPE) follows the glandular tissue with a patient-level strength
  (minimal..marked) and a nodular texture, vessels enhance, lesions enhance as drawn, and enhancing
  foci without a lesion appear in one view or mirrored in both breasts. DES is stored with an offset
  (about 2000 in the breast) so it fits the same raw window as LE;
- the detector (`Detector`): response curve, contrast, blur and quantum noise whose variance grows with
  the signal, plus correlated (blurred) noise; the DES noise is higher because recombination amplifies
  it. The external replicas use other detectors.

Images are rendered for a left breast (chest wall on the left image edge) and mirrored for a right
breast, as GE stores them. Everything in a specification is in millimetres or fractions, so one
specification renders at any scale (pixel spacing 0.1 mm / scale on a 3062 x 2394 grid at scale 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cemlib.synthetic import findings as fx
from cemlib.synthetic.anatomy import (
    ShapeSpec,
    cooper_ligaments,
    draw_marker,
    fibroglandular,
    pectoral_texture,
    power_law_noise,
    skin_line,
    vessel_map,
    view_geometry,
)
from cemlib.synthetic.lesions import Finding

__all__ = ["DES_OFFSET", "FULL_SHAPE", "FULL_SPACING_MM", "MAX_VALUE", "BreastSpec", "Detector", "Exam",
           "FocusSpec", "LesionSpec", "PatientSpec", "ShapeSpec", "grid_shape", "pixel_spacing",
           "render_exam", "render_view"]

#: Paper image size (rows, cols) at scale 1 and its pixel spacing in millimetres.
FULL_SHAPE = (3062, 2394)
FULL_SPACING_MM = 0.1
#: Maximum grey level of the 14-bit detector.
MAX_VALUE = (1 << 14) - 1
DES_OFFSET = 2000.0
#: LE signal of a mass per unit of its thickness fraction, in units of the fibroglandular map's gain. The map
#: is a projected gland fraction with fat interleaved along the ray; a mass is solid tissue at least as
#: attenuating as gland, so it reads as a focal density above the glandular pattern of a fatty breast.
LESION_LE_GAIN = 2.6
#: LE signal of calcium (raw units): CALCIUM_LE * (1 - exp(-t / CALCIUM_MM)) for t mm of projected calcium.
#: A millimetre of calcium attenuates about as much as a centimetre or two of glands, so 0.3 mm specks
#: stand out at full resolution while thick (coarse, popcorn) calcifications approach saturation.
CALCIUM_LE = 1500.0
CALCIUM_MM = 1.0
#: Cooper's ligaments' signal in units of the glandular gain (a fibrous strand, denser than fat).
LIGAMENT_LEVEL = 0.4
#: Seeds and clump size (mm) of a region finding; calcifications' enhancement is a small clumped region.
REGION_SEEDS = {"non-mass enhancement": (120, 2.0), "calcifications": (40, 3.0), "asymmetry": (8, 6.0)}
#: Pixel spacing (mm) at which the patient's noise standard deviations are given.
NOISE_SPACING_MM = 0.5
#: Share of the calcium signal left in DES after recombination.
CALCIUM_DES = 0.06


@dataclass(frozen=True)
class Detector:
    """How a mammography system turns the projected signal into grey levels."""

    name: str = "GE Senographe Essential"
    contrast: float = 1.0  # tissue signal above fat
    gamma: float = 1.0  # response curve inside the raw breast range 1500..3300
    noise: float = 1.0  # quantum noise
    blur_mm: float = 0.0  # extra unsharpness (focal spot, scatter, detector MTF)
    iodine: float = 1.0  # iodine signal of the recombination


GE_ESSENTIAL = Detector()


@dataclass(frozen=True)
class LesionSpec:
    """One finding in 3-D breast coordinates, with what it looks like in LE and DES."""

    finding: Finding
    depth: float  # distance from the nipple as a fraction of the breast depth (0 nipple, 1 chest wall)
    ml: float  # medial-lateral position, -1..1 of the local half-width
    si: float  # superior-inferior position, -1..1
    aspect: float  # short / long diameter
    angle_deg: float
    iodine: float  # peak iodine signal in raw DES units (0: not enhancing)
    le_density: float  # mass: thickness as a fraction of the compressed breast; else extra gland density
    shape_seed: int

    @property
    def label(self) -> int:
        """1 for a cancer, 0 for a benign finding."""
        return self.finding.label

    @property
    def kind(self) -> str:
        """mass, calcifications, non-mass enhancement or asymmetry."""
        return self.finding.kind

    @property
    def size_mm(self) -> float:
        """Long diameter (mass) or extent (cluster, region) in millimetres."""
        return self.finding.size_mm


@dataclass(frozen=True)
class FocusSpec:
    """An enhancing focus without a lesion: in one view only, or mirrored in both breasts and both views."""

    sides: tuple[str, ...]
    views: tuple[str, ...]
    depth: float
    ml: float
    si: float
    size_mm: float
    enhancement: float


@dataclass(frozen=True)
class BreastSpec:
    """Label, BI-RADS, pathology, outline and lesions of one breast."""

    side: str
    label: int
    birads: str
    pathology: str
    shape: ShapeSpec
    lesions: tuple[LesionSpec, ...] = ()


@dataclass(frozen=True)
class PatientSpec:
    """Everything needed to render one exam, plus the fake identity written into its DICOM headers."""

    index: int
    patient_id: str  # pseudonymous folder name, e.g. SYN0001
    mrn: str  # fake PHI
    name: str  # fake PHI
    birth_date: str  # fake PHI, YYYYMMDD
    study_date: str
    age: int
    density: str  # ACR a-d
    bpe: str  # minimal | mild | moderate | marked
    fg_fraction: float
    beta: float
    bpe_amplitude: float
    fat_level: float
    fg_gain: float
    le_noise: float
    des_noise: float
    n_vessels: int
    breasts: dict[str, BreastSpec]
    foci: tuple[FocusSpec, ...]
    render_seed: int
    detector: Detector = GE_ESSENTIAL

    @property
    def patient_class(self) -> str:
        """bilateral benign / unilateral malignant / bilateral malignant (Table 2 of the paper)."""
        n = sum(b.label for b in self.breasts.values())
        return ("bilateral_benign", "unilateral_malignant", "bilateral_malignant")[n]


@dataclass
class Exam:
    """Rendered exam: raw 14-bit images, boolean lesion masks and lesion geometry per view."""

    images: dict[tuple[str, str, str], np.ndarray]
    masks: dict[tuple[str, str], np.ndarray]
    lesions: list[dict] = field(default_factory=list)
    pixel_spacing_mm: float = FULL_SPACING_MM


def grid_shape(scale: float) -> tuple[int, int]:
    """Image (rows, cols) at `scale` relative to the paper's 3062 x 2394."""
    if not (0.005 <= scale <= 1.0):
        raise ValueError(f"scale must be in [0.005, 1], got {scale}")
    return max(16, round(FULL_SHAPE[0] * scale)), max(12, round(FULL_SHAPE[1] * scale))


def pixel_spacing(scale: float) -> float:
    """Pixel spacing in millimetres at `scale` (0.1 mm at scale 1)."""
    rows, _ = grid_shape(scale)
    return FULL_SHAPE[0] * FULL_SPACING_MM / rows


def _rng(spec: PatientSpec, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.render_seed, *keys]))


def _finding_maps(lesion: LesionSpec, index: int, spec: PatientSpec, view: str, geom, spacing: float,
                  shape: tuple[int, int], key: int) -> tuple[fx.FindingMaps, tuple]:
    """Render one finding in one view; the layout of its parts comes from its own seed (both views)."""
    f = lesion.finding
    rng = _rng(spec, key, 100 + index)
    layout = np.random.default_rng(lesion.shape_seed)
    radius = max(1.0, f.size_mm / 2 / spacing)
    cx, cy = fx.project(geom, view, lesion.depth, lesion.ml, lesion.si, radius)
    if f.kind == "mass":
        rx = max(1.0, radius * rng.uniform(0.9, 1.1))
        ry = max(1.0, rx * lesion.aspect)
        angle = math.radians(lesion.angle_deg + (0.0 if view == "CC" else rng.uniform(-35, 35)))
        maps = fx.render_mass(cx, cy, rx, ry, angle, f.shape, f.margin, f.enhancement, lesion.iodine,
                              lesion.le_density, spacing, rng, layout, shape)
        if f.calcification != "none":
            maps = _with_calcifications(maps, f, layout, view, geom, spacing, shape, cx, cy)
        return maps, (cx, cy, rx, ry, math.degrees(angle) % 180.0)
    if f.kind == "calcifications":
        maps = _calcifications(f, layout, view, geom, spacing, shape, cx, cy, f.size_mm)
        if lesion.iodine > 0:
            region = _region(lesion, layout, rng, view, geom, spacing, shape, cx, cy, "grouped", 3.0)
            maps = _merge(maps, region, shape)
        return maps, (cx, cy, radius, radius, 0.0)
    distribution = f.shape if f.kind == "non-mass enhancement" else "regional"
    blob = 3.0 if f.kind == "non-mass enhancement" else 0.3 * f.size_mm
    maps = _region(lesion, layout, rng, view, geom, spacing, shape, cx, cy, distribution, blob)
    return maps, (cx, cy, radius, radius * lesion.aspect, 0.0)


def _calcifications(f: Finding, layout: np.random.Generator, view: str, geom, spacing: float,
                    shape: tuple[int, int], cx: float, cy: float, extent_mm: float) -> fx.FindingMaps:
    (n_low, n_high), (d_low, d_high), _ = fx.SPECKS[f.morphology]
    n = int(layout.integers(n_low, n_high + 1))
    distribution = f.margin if f.kind == "calcifications" else "grouped"
    offsets = fx.cluster_offsets(distribution, extent_mm, n, layout)
    diameters = layout.uniform(d_low, d_high, n)
    pixels = fx.offsets_to_pixels(offsets, view, geom, spacing)
    return fx.render_calcifications(cx, cy, f.morphology, pixels, diameters, spacing, shape)


def _with_calcifications(maps: fx.FindingMaps, f: Finding, layout, view, geom, spacing, shape, cx, cy):
    calcs = _calcifications(f, layout, view, geom, spacing, shape, cx, cy, 0.6 * f.size_mm)
    return _merge(maps, calcs, shape)


def _region(lesion: LesionSpec, layout: np.random.Generator, rng: np.random.Generator, view: str, geom,
            spacing: float, shape: tuple[int, int], cx: float, cy: float, distribution: str,
            blob_mm: float) -> fx.FindingMaps:
    # many seeds fill a non-mass enhancement's envelope evenly; an asymmetry is a few broad patches
    n, clump_mm = REGION_SEEDS[lesion.kind]
    offsets = fx.cluster_offsets(distribution, lesion.size_mm, n, layout)
    offsets[:, 1:] *= lesion.aspect
    pixels = fx.offsets_to_pixels(offsets, view, geom, spacing)
    return fx.render_region(cx, cy, pixels, blob_mm, clump_mm, lesion.iodine, lesion.le_density, spacing, rng,
                            shape)


def _merge(a: fx.FindingMaps, b: fx.FindingMaps, shape: tuple[int, int]) -> fx.FindingMaps:
    """Two findings' maps on the patch covering both."""
    r0, c0 = min(a.row0, b.row0), min(a.col0, b.col0)
    r1 = max(a.row0 + a.mask.shape[0], b.row0 + b.mask.shape[0])
    c1 = max(a.col0 + a.mask.shape[1], b.col0 + b.mask.shape[1])
    out = fx.FindingMaps(r0, c0, *(np.zeros((r1 - r0, c1 - c0)) for _ in range(3)),
                         np.zeros((r1 - r0, c1 - c0), bool))
    for m in (a, b):
        h, w = m.mask.shape
        sl = (slice(m.row0 - r0, m.row0 - r0 + h), slice(m.col0 - c0, m.col0 - c0 + w))
        out.tissue[sl] += m.tissue
        out.calcium[sl] += m.calcium
        out.iodine[sl] += m.iodine
        out.mask[sl] |= m.mask
    return out


def _correlated_noise(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance detector noise: white quantum noise plus a blurred (correlated) part."""
    white = rng.standard_normal(shape)
    noise = 0.6 * white + 1.2 * ndimage.gaussian_filter(white, 0.8)
    return noise / (noise.std() + 1e-12)


def _respond(le: np.ndarray, detector: Detector) -> np.ndarray:
    """The detector's response curve inside the raw breast range 1500..3300."""
    if detector.gamma == 1.0:
        return le
    x = np.clip((le - 1500.0) / 1800.0, 0.0, None)
    return np.where(le > 1500.0, 1500.0 + 1800.0 * x**detector.gamma, le)


def render_view(spec: PatientSpec, side: str, view: str, scale: float, malignant_only: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Render LE, DES, lesion mask and lesion rows of one view (stored orientation); the mask holds every
    finding, or with malignant_only the malignant ones (what a pointing game or an occlusion asks)."""
    rows, cols = grid_shape(scale)
    spacing = pixel_spacing(scale)
    det = spec.detector
    # quantum noise per pixel falls as the pixel grows (more photons per pixel); specified at 0.5 mm
    per_pixel = NOISE_SPACING_MM / spacing
    key = (0 if side == "L" else 2) + (0 if view == "CC" else 1)
    rng = _rng(spec, key)
    breast_spec = spec.breasts[side]
    geom = view_geometry(breast_spec.shape, view, rows, cols, spacing)
    fg = fibroglandular(geom, spec.fg_fraction, spec.beta, spacing, rng)
    t = geom.thickness
    fine = power_law_noise((rows, cols), 1.6, spacing, rng, corner_mm=3.0)
    vessels = vessel_map(geom, spec.n_vessels, spacing, rng)
    muscle = geom.pectoral * pectoral_texture(geom, breast_spec.shape, spacing, rng)
    ligaments = cooper_ligaments(geom, spacing, _rng(spec, key, 300))
    pect_level = rng.uniform(0.75, 0.92)

    lesion_le = np.zeros((rows, cols))
    calcium = np.zeros((rows, cols))
    iodine = np.zeros((rows, cols))
    mask = np.zeros((rows, cols), bool)
    lesion_rows = []
    for i, lesion in enumerate(breast_spec.lesions):
        maps, (cx, cy, rx, ry, angle_deg) = _finding_maps(lesion, i, spec, view, geom, spacing,
                                                          (rows, cols), key)
        h, w = maps.mask.shape
        sl = (slice(maps.row0, maps.row0 + h), slice(maps.col0, maps.col0 + w))
        if lesion.kind == "mass":  # a mass displaces the glands it replaces
            lesion_le[sl] += LESION_LE_GAIN * maps.tissue * (1.0 - 0.85 * fg[sl])
        else:
            lesion_le[sl] += maps.tissue * (1.0 - 0.8 * fg[sl])  # extra glands only where fat was
        calcium[sl] += maps.calcium
        iodine[sl] += maps.iodine
        if lesion.label or not malignant_only:
            mask[sl] |= maps.mask
        lesion_rows.append({"side": side, "view": view, "label": lesion.label, "kind": lesion.kind,
                            "cx": cx, "cy": cy, "rx": rx, "ry": ry, "angle": angle_deg,
                            "iodine": lesion.iodine})
    for j, focus in enumerate(spec.foci):
        if side not in focus.sides or view not in focus.views:
            continue
        frng = _rng(spec, key, 200 + j)
        r = max(1.0, focus.size_mm / 2 / spacing)
        cx, cy = fx.project(geom, view, focus.depth, focus.ml, focus.si, r)
        blob = fx.render_mass(cx, cy, r, r * frng.uniform(0.8, 1.0), frng.uniform(0, np.pi), "oval",
                              "indistinct", "homogeneous", focus.enhancement, 0.0, spacing, frng, frng,
                              (rows, cols))
        h, w = blob.mask.shape
        iodine[blob.row0:blob.row0 + h, blob.col0:blob.col0 + w] += blob.iodine

    tissue = spec.fg_gain * (fg + pect_level * muscle + LIGAMENT_LEVEL * ligaments + lesion_le) * det.contrast
    calcium_le = CALCIUM_LE * (1.0 - np.exp(-calcium / CALCIUM_MM))
    le = (1480.0 + spec.fat_level * t + t * (330.0 + tissue + 30.0 * vessels) + 14.0 * fine * geom.breast
          + 110.0 * skin_line(geom, spacing) + calcium_le)
    le = _respond(le, det)
    if det.blur_mm > 0:
        le = ndimage.gaussian_filter(le, det.blur_mm / spacing)
    # quantum noise: fewer photons behind denser tissue, so the variance grows with the signal
    le_sd = spec.le_noise * det.noise * per_pixel * np.sqrt(np.clip((le - 1300.0) / 900.0, 0.2, 3.0))
    le += le_sd * _correlated_noise((rows, cols), rng)

    slow = power_law_noise((rows, cols), 3.0, spacing, rng, corner_mm=15.0)
    nodular = np.exp(0.5 * slow)
    bpe = spec.bpe_amplitude * fg**1.3 * nodular / max(nodular[geom.breast].mean(), 1e-9)
    des = (DES_OFFSET + 140.0 * (1.0 - t) / 0.45 - 60.0 * (fg - fg[geom.breast].mean()) + 40.0 * geom.pectoral
           + det.iodine * (bpe + 70.0 * vessels + iodine * t) + CALCIUM_DES * calcium_le
           + 15.0 * fine[::-1, ::-1])  # residual texture uncorrelated with the LE's at each pixel
    if det.blur_mm > 0:
        des = ndimage.gaussian_filter(des, det.blur_mm / spacing)
    des += spec.des_noise * det.noise * per_pixel * _correlated_noise((rows, cols), rng)

    # detector background: low but not zero, with a slow gradient and noise
    gradient = slow[::-1]
    background_le = 180.0 + 25.0 * gradient + rng.normal(0, 8, (rows, cols))
    background_des = 300.0 + 20.0 * gradient + rng.normal(0, 10, (rows, cols))
    le = np.where(geom.breast, le, background_le)
    des = np.where(geom.breast, des, background_des)
    mask &= geom.breast
    breast = geom.breast
    if side == "R":  # GE stores right breasts with the chest wall on the right edge
        le, des, mask, breast = le[:, ::-1], des[:, ::-1], mask[:, ::-1], breast[:, ::-1]
        for row in lesion_rows:
            row["cx"] = cols - 1 - row["cx"]
            row["angle"] = (180.0 - row["angle"]) % 180.0
    draw_marker(le, breast, side + view, spacing, 3000.0, chest_wall_left=side == "L")
    to_u16 = lambda a: np.clip(np.rint(a), 0, MAX_VALUE).astype(np.uint16)  # noqa: E731
    return to_u16(le), to_u16(des), np.ascontiguousarray(mask), lesion_rows


def render_exam(spec: PatientSpec, scale: float, malignant_only: bool = False) -> Exam:
    """Render the eight images (LE and DES x L/R x CC/MLO) and lesion masks of one patient (masks of the
    malignant findings only with malignant_only)."""
    images, masks, lesions = {}, {}, []
    for side in ("L", "R"):
        for view in ("CC", "MLO"):
            le, des, mask, rows = render_view(spec, side, view, scale, malignant_only)
            images[(side, view, "LE")] = le
            images[(side, view, "DES")] = des
            masks[(side, view)] = mask
            lesions.extend(rows)
    return Exam(images, masks, lesions, pixel_spacing(scale))
