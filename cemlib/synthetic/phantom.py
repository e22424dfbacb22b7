"""Physics of the synthetic CEM phantom: one patient specification in, eight images and lesion masks out.

A contrast-enhanced mammography exam has, per breast and view (CC, MLO), a low-energy (LE) image that
looks like an ordinary mammogram and a recombined (dual-energy subtracted, DES) image in which tissue
contrast cancels and iodine uptake remains. The phantom models each piece at the level a classifier sees:

- Outline. The compressed breast is a half-ellipse against the chest-wall edge (CC). The MLO outline is the
  same ellipse tilted downwards, plus the pectoral muscle: a triangle in the upper chest-wall corner.
  Compressed thickness falls off over the last millimetres to the skin, so the periphery is darker.
  Images are rendered for a left breast (chest wall on the left image edge) and mirrored for a right
  breast, as GE stores them, so a correct right-breast flip makes all breasts face the same way.
- Tissue. Fibroglandular tissue is a thresholded field of power-law (1/f^beta, beta ~ 3) anatomical noise
  plus a prior that keeps it central and away from the skin and chest wall; the threshold is chosen so the
  fibroglandular fraction matches the ACR density (a-d). Raw LE grows with dense tissue along the ray
  (denser = brighter, about 1500..3300 inside the breast); the detector background outside is low but not
  zero, and a lead side marker sits in the corner away from the chest wall as a small separate blob.
- Lesions. A mass adds dense tissue: its LE contrast grows with its thickness along the beam relative to the
  compressed breast (``LesionSpec.le_density``: a 2 cm cancer in a 6 cm breast is about a third of the ray)
  and with the fat it displaces, so dense tissue masks it while a fatty breast shows it as a density.
  Malignant masses are irregular or spiculated; benign ones oval and circumscribed.
  Lesions are placed in 3-D breast coordinates (distance from the nipple, medial-lateral and
  superior-inferior position) and projected into both views, so CC and MLO agree.
- Iodine (DES). Tissue residuals are small; background parenchymal enhancement (BPE) follows the
  fibroglandular tissue with a patient-level strength (minimal..marked); a few vessels enhance; malignant
  lesions enhance strongly (homogeneous, heterogeneous or rim), benign ones weakly, with exceptions set in
  the specification. Enhancing foci seen in one view only, or mirrored in both breasts, mimic lesions in a
  single image but not across views or against the other breast. DES noise is higher than LE noise. DES
  is stored with an offset (about 2000 in the breast) so it fits the same raw window as LE.

Everything in a specification is in millimetres or fractions, so one specification renders at any scale
(pixel spacing 0.1 mm / scale on a 3062 x 2394 grid at scale 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

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


@dataclass(frozen=True)
class LesionSpec:
    """One lesion in 3-D breast coordinates, with its appearance in LE and DES."""

    kind: str  # "malignant" | "benign"
    pathology: str
    depth: float  # distance from the nipple as a fraction of the breast depth (0 nipple, 1 chest wall)
    ml: float  # medial-lateral position, -1..1 of the local half-width
    si: float  # superior-inferior position, -1..1
    size_mm: float  # long diameter
    aspect: float  # short / long diameter
    angle_deg: float
    margin: str  # "circumscribed" | "irregular" | "spiculated"
    pattern: str  # DES enhancement: "none" | "homogeneous" | "heterogeneous" | "rim"
    enhancement: float  # peak iodine signal in raw DES units
    le_density: float  # lesion thickness as a fraction of the compressed breast (LE contrast)
    shape_seed: int


@dataclass(frozen=True)
class FocusSpec:
    """An enhancing focus without a mass: in one view only, or mirrored in both breasts and both views."""

    sides: tuple[str, ...]
    views: tuple[str, ...]
    depth: float
    ml: float
    si: float
    size_mm: float
    enhancement: float


@dataclass(frozen=True)
class ShapeSpec:
    """Outline of one breast in both views, in millimetres."""

    cc_depth: float
    cc_half_height: float
    cc_center: float  # fraction of the image height
    mlo_depth: float
    mlo_half_height: float
    mlo_center: float
    mlo_tilt_deg: float
    pect_width: float  # along the top edge
    pect_height: float  # along the chest wall


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


# ---------------------------------------------------------------------------------------------- noise
def power_law_noise(shape: tuple[int, int], beta: float, spacing_mm: float, rng: np.random.Generator,
                    corner_mm: float = 60.0) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian field with power spectrum ~ 1/f^beta (f in cycles/mm)."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0], d=spacing_mm)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=spacing_mm)[None, :]
    f2 = fy**2 + fx**2 + (1.0 / corner_mm) ** 2  # the corner keeps the lowest frequencies finite
    field_ = np.fft.irfft2(np.fft.rfft2(white) * f2 ** (-beta / 4.0), s=shape)
    field_ -= field_.mean()
    return field_ / (field_.std() + 1e-12)


# ------------------------------------------------------------------------------------------- geometry
@dataclass
class ViewGeometry:
    """Pixel maps of one rendered view (canonical left-breast orientation)."""

    breast: np.ndarray  # bool, breast incl. pectoral muscle
    pectoral: np.ndarray  # bool
    thickness: np.ndarray  # relative compressed thickness, 1 inside, lower near the skin
    skin_mm: np.ndarray  # distance to the skin line in mm
    axial: np.ndarray  # position along the nipple axis as a fraction of depth (0 chest wall, 1 nipple)
    depth_px: float
    half_px: float
    center_px: tuple[float, float]  # (x, y) of the ellipse centre on the chest wall
    tilt: float  # radians


def view_geometry(shape: ShapeSpec, view: str, rows: int, cols: int, spacing: float) -> ViewGeometry:
    """Breast outline, pectoral muscle and thickness map of one view."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    if view == "CC":
        depth, half, yc, tilt = shape.cc_depth, shape.cc_half_height, shape.cc_center, 0.0
    else:
        depth, half, yc = shape.mlo_depth, shape.mlo_half_height, shape.mlo_center
        tilt = math.radians(shape.mlo_tilt_deg)
    a, b, y0 = depth / spacing, half / spacing, yc * rows
    u = xx * math.cos(tilt) + (yy - y0) * math.sin(tilt)
    v = -xx * math.sin(tilt) + (yy - y0) * math.cos(tilt)
    breast = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    pectoral = np.zeros_like(breast)
    if view == "MLO":
        pw, ph = shape.pect_width / spacing, shape.pect_height / spacing
        pectoral = (xx / pw + yy / ph) <= 1.0
        breast |= pectoral
    # distance to the skin; the chest wall (and the axilla at the top of an MLO) continues the body
    pad = max(4, int(30 / spacing))
    padded = np.pad(breast, ((pad if view == "MLO" else 0, 0), (pad, 0)), mode="edge")
    skin_mm = ndimage.distance_transform_edt(padded)[-rows:, -cols:] * spacing
    thickness = np.where(breast, 1.0 - 0.45 * np.exp(-skin_mm / 6.0), 0.0)
    axial = np.clip(u / a, 0.0, 1.0)
    return ViewGeometry(breast, pectoral, thickness, skin_mm, axial, a, b, (0.0, y0), tilt)


def project(geom: ViewGeometry, view: str, depth: float, ml: float, si: float,
            radius_px: float) -> tuple[float, float]:
    """Pixel (x, y) of a point at `depth` from the nipple and transverse position (ml, si) in `view`."""
    u = geom.depth_px * (1.0 - depth)
    width = geom.half_px * math.sqrt(max(0.0, 1.0 - (u / geom.depth_px) ** 2))
    transverse = -ml if view == "CC" else -(0.75 * si + 0.45 * ml)
    transverse = max(-1.0, min(1.0, transverse))
    v = transverse * max(0.0, 0.72 * width - radius_px)
    x = u * math.cos(geom.tilt) - v * math.sin(geom.tilt)
    y = geom.center_px[1] + u * math.sin(geom.tilt) + v * math.cos(geom.tilt)
    return max(x, radius_px + 2.0), y


# -------------------------------------------------------------------------------------------- lesions
@dataclass
class Blob:
    """A lesion or focus rendered on a local patch placed at (row0, col0)."""

    row0: int
    col0: int
    body: np.ndarray  # thickness-like profile 0..1
    mask: np.ndarray  # bool, inside the lesion outline
    enhancement: np.ndarray  # iodine map in raw DES units
    spicules: np.ndarray  # linear density map 0..1


def _harmonics(margin: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Radial harmonic amplitudes and phases of the outline (irregular margins get large ones)."""
    k = np.arange(2, 8)
    scale = {"circumscribed": 0.04, "irregular": 0.22, "spiculated": 0.16}[margin]
    amps = scale * rng.uniform(0.4, 1.0, k.size) / np.sqrt(k - 1)
    return amps, rng.uniform(0, 2 * np.pi, k.size)


def render_blob(cx: float, cy: float, rx: float, ry: float, angle: float, margin: str, pattern: str,
                amplitude: float, spacing: float, rng: np.random.Generator, shape: tuple[int, int],
                harmonics: tuple[np.ndarray, np.ndarray], n_spicules: int = 0) -> Blob:
    """Render one lesion outline, body and enhancement on a patch around (cx, cy)."""
    reach = max(rx, ry) * (2.6 if n_spicules else 1.6) + 3
    r0, r1 = max(0, int(cy - reach)), min(shape[0], int(cy + reach) + 2)
    c0, c1 = max(0, int(cx - reach)), min(shape[1], int(cx + reach) + 2)
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    dx, dy = xx - cx, yy - cy
    ca, sa = math.cos(angle), math.sin(angle)
    xr, yr = (dx * ca + dy * sa) / rx, (-dx * sa + dy * ca) / ry
    theta = np.arctan2(yr, xr)
    amps, phases = harmonics
    k = np.arange(2, 2 + amps.size)[:, None, None]
    radial = 1.0 + (amps[:, None, None] * np.cos(k * theta[None] + phases[:, None, None])).sum(0)
    rho = np.hypot(xr, yr) / np.maximum(radial, 0.3)
    mask = rho <= 1.0
    body = np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0))
    soft_px = (0.25 if margin == "circumscribed" else 0.8) / spacing
    if soft_px > 0.3:
        body = ndimage.gaussian_filter(body, min(soft_px, 0.3 * min(rx, ry) + 0.3))
    inside = np.clip((1.0 - rho) * max(2.0, min(rx, ry)), 0.0, 1.0)  # ~1 px soft edge
    if pattern == "none" or amplitude <= 0:
        enh = np.zeros_like(body)
    elif pattern == "rim":
        enh = inside * (0.2 + 0.8 * np.clip(rho, 0, 1) ** 2)
    elif pattern == "heterogeneous":
        texture = power_law_noise(body.shape, 2.0, spacing, rng, corner_mm=4.0)
        enh = inside * np.clip(0.75 + 0.3 * texture, 0.2, 1.3)
    else:
        enh = inside * (0.85 + 0.15 * body)
    spic = np.zeros_like(body)
    for _ in range(n_spicules):
        phi = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.6, 1.6) * max(rx, ry)
        base = max(rx, ry) * 0.8
        steps = np.arange(0.0, length, 0.4)
        px = cx + (base + steps) * math.cos(phi) - c0
        py = cy + (base + steps) * math.sin(phi) - r0
        keep = (px >= 0) & (px < spic.shape[1] - 1) & (py >= 0) & (py < spic.shape[0] - 1)
        np.add.at(spic, (np.round(py[keep]).astype(int), np.round(px[keep]).astype(int)),
                  0.4 * (1.0 - steps[keep] / length))
    if n_spicules:
        sigma = max(0.6, 0.35 / spacing)
        spic = np.clip(ndimage.gaussian_filter(spic, sigma) * sigma * 2.5, 0.0, 1.0)
    return Blob(r0, c0, body, mask, amplitude * enh, spic)


def _paste(target: np.ndarray, blob: Blob, values: np.ndarray) -> None:
    h, w = values.shape
    target[blob.row0:blob.row0 + h, blob.col0:blob.col0 + w] += values


# -------------------------------------------------------------------------------------------- vessels
def vessel_map(geom: ViewGeometry, n: int, spacing: float, rng: np.random.Generator) -> np.ndarray:
    """Curvilinear vessels from the chest wall towards the nipple, peak 1."""
    rows, cols = geom.breast.shape
    canvas = np.zeros((rows, cols))
    step = 0.5
    for _ in range(n):
        y = geom.center_px[1] + rng.uniform(-0.6, 0.6) * geom.half_px
        x, heading = 1.0, geom.tilt + rng.uniform(-0.5, 0.5)
        length = rng.uniform(0.4, 0.9) * geom.depth_px
        travelled = 0.0
        while travelled < length:
            iy, ix = round(y), round(x)
            if 0 <= iy < rows and 0 <= ix < cols and geom.breast[iy, ix]:
                canvas[iy, ix] += step
            heading += rng.normal(0.0, 0.08) - 0.02 * (heading - geom.tilt)
            x += step * math.cos(heading)
            y += step * math.sin(heading)
            travelled += step
    sigma = max(0.6, 0.7 / spacing)
    return np.clip(ndimage.gaussian_filter(canvas, sigma) * sigma * math.sqrt(2 * math.pi), 0.0, 1.0)


# --------------------------------------------------------------------------------------------- marker
_GLYPHS = {
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "C": ["01111", "10000", "10000", "10000", "10000", "10000", "01111"],
    "M": ["10001", "11011", "10101", "10001", "10001", "10001", "10001"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
}


def draw_marker(image: np.ndarray, breast: np.ndarray, text: str, spacing: float, value: float,
                chest_wall_left: bool = True) -> None:
    """Burn a lead side marker (e.g. 'LCC') into the corner away from the chest wall, if it fits."""
    cell = max(1, round(1.2 / spacing))
    glyphs = [np.array([[c == "1" for c in row] for row in _GLYPHS[ch]]) for ch in text]
    gap = np.zeros((7, 1), bool)
    bitmap = np.hstack([g if i == 0 else np.hstack([gap, g]) for i, g in enumerate(glyphs)])
    bitmap = np.kron(bitmap, np.ones((cell, cell), bool))
    margin = max(2, round(6 / spacing))
    r0 = margin
    c0 = image.shape[1] - margin - bitmap.shape[1] if chest_wall_left else margin
    if c0 < 0 or r0 + bitmap.shape[0] >= image.shape[0]:
        return
    region = (slice(r0, r0 + bitmap.shape[0]), slice(c0, c0 + bitmap.shape[1]))
    near = ndimage.binary_dilation(breast, iterations=max(2, margin // 2))
    if near[region].any():
        return
    image[region] = np.where(bitmap, value, image[region])


# ------------------------------------------------------------------------------------------ rendering
def _rng(spec: PatientSpec, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.render_seed, *keys]))


def _fibroglandular(spec: PatientSpec, geom: ViewGeometry, spacing: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Fibroglandular fraction 0..1 per pixel, its mean over the breast set by the ACR density."""
    tissue = geom.breast & ~geom.pectoral
    z = power_law_noise(geom.breast.shape, spec.beta, spacing, rng, corner_mm=25.0)
    central = np.exp(-((geom.axial - 0.5) / 0.4) ** 2)
    prior = 2.0 * np.clip(geom.skin_mm / 15.0, 0.0, 1.0) * central
    score = z + prior
    if not tissue.any():
        return np.zeros_like(z)
    threshold = np.quantile(score[tissue], 1.0 - spec.fg_fraction)
    fg = 1.0 / (1.0 + np.exp(-(score - threshold) / 0.7))
    return np.where(tissue, fg, 0.0)


def _lesion_blobs(spec: PatientSpec, side: str, view: str, geom: ViewGeometry, spacing: float,
                  shape: tuple[int, int], key: int) -> list[tuple[LesionSpec, Blob, tuple]]:
    out = []
    for i, lesion in enumerate(spec.breasts[side].lesions):
        shape_rng = np.random.default_rng(lesion.shape_seed)
        harmonics = _harmonics(lesion.margin, shape_rng)
        rng = _rng(spec, key, 100 + i)
        jitter = rng.uniform(0.9, 1.1)
        rx = max(1.0, lesion.size_mm / 2 / spacing * jitter)
        ry = max(1.0, rx * lesion.aspect)
        angle = math.radians(lesion.angle_deg + (0.0 if view == "CC" else rng.uniform(-35, 35)))
        cx, cy = project(geom, view, lesion.depth, lesion.ml, lesion.si, rx)
        n_spic = int(rng.integers(6, 12)) if lesion.margin == "spiculated" else 0
        blob = render_blob(cx, cy, rx, ry, angle, lesion.margin, lesion.pattern, lesion.enhancement,
                           spacing, rng, shape, harmonics, n_spic)
        out.append((lesion, blob, (cx, cy, rx, ry, math.degrees(angle) % 180.0)))
    return out


def render_view(spec: PatientSpec, side: str, view: str, scale: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Render LE, DES, lesion mask and lesion rows of one view (stored orientation)."""
    rows, cols = grid_shape(scale)
    spacing = pixel_spacing(scale)
    key = (0 if side == "L" else 2) + (0 if view == "CC" else 1)
    rng = _rng(spec, key)
    geom = view_geometry(spec.breasts[side].shape, view, rows, cols, spacing)
    fg = _fibroglandular(spec, geom, spacing, rng)
    t = geom.thickness
    fine = power_law_noise((rows, cols), 1.6, spacing, rng, corner_mm=3.0)
    vessels = vessel_map(geom, spec.n_vessels, spacing, rng)

    le_tissue = spec.fg_gain * fg + 1050.0 * geom.pectoral * (1.0 + 0.03 * fine)
    lesion_le = np.zeros((rows, cols))
    enhancement = np.zeros((rows, cols))
    mask = np.zeros((rows, cols), bool)
    lesion_rows = []
    for lesion, blob, (cx, cy, rx, ry, angle_deg) in _lesion_blobs(spec, side, view, geom, spacing,
                                                                   (rows, cols), key):
        h, w = blob.body.shape
        local_fg = fg[blob.row0:blob.row0 + h, blob.col0:blob.col0 + w]
        # the mass displaces tissue: its contrast is what it adds over fat minus the glands it replaces
        density = lesion.le_density * (blob.body + 0.6 * blob.spicules) * (1.0 - 0.85 * local_fg)
        _paste(lesion_le, blob, spec.fg_gain * LESION_LE_GAIN * density)
        _paste(enhancement, blob, blob.enhancement + 0.25 * lesion.enhancement * blob.spicules)
        mask[blob.row0:blob.row0 + h, blob.col0:blob.col0 + w] |= blob.mask
        lesion_rows.append({"side": side, "view": view, "kind": lesion.kind, "cx": cx, "cy": cy,
                            "rx": rx, "ry": ry, "angle": angle_deg, "enhancement": lesion.enhancement})
    for j, focus in enumerate(spec.foci):
        if side not in focus.sides or view not in focus.views:
            continue
        frng = _rng(spec, key, 200 + j)
        r = max(1.0, focus.size_mm / 2 / spacing)
        cx, cy = project(geom, view, focus.depth, focus.ml, focus.si, r)
        blob = render_blob(cx, cy, r, r * frng.uniform(0.8, 1.0), frng.uniform(0, np.pi), "circumscribed",
                           "homogeneous", focus.enhancement, spacing, frng, (rows, cols),
                           _harmonics("circumscribed", frng))
        _paste(enhancement, blob, blob.enhancement)

    le = (1480.0 + spec.fat_level * t + t * (200.0 + le_tissue + lesion_le + 30.0 * vessels)
          + 14.0 * fine * geom.breast)
    le += rng.normal(0.0, spec.le_noise, (rows, cols))
    bpe_field = np.exp(0.6 * power_law_noise((rows, cols), 3.5, spacing, rng))
    bpe = spec.bpe_amplitude * fg * bpe_field / bpe_field[geom.breast].mean()
    des = (DES_OFFSET + 140.0 * (1.0 - t) / 0.45 - 60.0 * (fg - fg[geom.breast].mean()) + 40.0 * geom.pectoral
           + bpe + 120.0 * vessels + enhancement * t
           + 15.0 * power_law_noise((rows, cols), 2.0, spacing, rng, corner_mm=10.0))
    des += rng.normal(0.0, spec.des_noise, (rows, cols))

    # detector background: low but not zero, with a slow gradient and noise
    gradient = power_law_noise((rows, cols), 3.0, spacing, rng)
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


def render_exam(spec: PatientSpec, scale: float) -> Exam:
    """Render the eight images (LE and DES x L/R x CC/MLO) and lesion masks of one patient."""
    images, masks, lesions = {}, {}, []
    for side in ("L", "R"):
        for view in ("CC", "MLO"):
            le, des, mask, rows = render_view(spec, side, view, scale)
            images[(side, view, "LE")] = le
            images[(side, view, "DES")] = des
            masks[(side, view)] = mask
            lesions.extend(rows)
    return Exam(images, masks, lesions, pixel_spacing(scale))
