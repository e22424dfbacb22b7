"""Normal anatomy of one view: outline, nipple, skin, pectoral muscle, fibroglandular tissue, vessels.

Everything is computed for a left breast (chest wall on the left image edge) in pixel maps; sizes come in
millimetres and are turned into pixels with the view's spacing, so one specification renders at any
scale.

- Outline: a half-ellipse against the chest wall (CC); on the MLO the ellipse is tilted downwards and
  the pectoral muscle fills the upper chest-wall corner with a convex anterior edge. The nipple is a
  small bump at the apex. Compressed thickness falls off over the last millimetres to the skin, so the
  subcutaneous periphery is darker, and the skin itself (about 1.5 mm) shows as a thin brighter line.
- Pectoral muscle: as dense as glandular tissue or a little less, brighter towards the axilla where it
  is thicker, with fibres striated along its length. On some CC views a sliver of it shows at the chest
  wall.
- Fibroglandular tissue: a field of strands and lobules elongated along the lines that converge on the
  nipple (ducts run to the nipple), mixed with isotropic power-law (1/f^beta) anatomical noise, kept
  behind a subcutaneous and a retromammary fat layer, thresholded so that its area fraction matches
  the ACR density.
- Cooper's ligaments: thin curved strands crossing the subcutaneous fat from the glands to the skin,
  spaced along the outline, so the fat in front of the glands is not empty.
- Vessels: a few curvilinear tubes running from the chest wall towards the nipple.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.signal import lfilter

#: Width of the gland/fat transition in units of the tissue field's standard deviation (partial volume).
FG_EDGE = 1.0


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


def _unit(field_: np.ndarray) -> np.ndarray:
    field_ = field_ - field_.mean()
    return field_ / (field_.std() + 1e-12)


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
    pect_width: float  # along the top edge (MLO)
    pect_height: float  # along the chest wall (MLO)
    nipple_mm: float = 5.0  # radius of the nipple bump
    cc_pectoral_mm: float = 0.0  # depth of the pectoral sliver at the CC chest wall (0: not shown)


@dataclass
class ViewGeometry:
    """Pixel maps of one rendered view (canonical left-breast orientation)."""

    breast: np.ndarray  # bool, breast incl. pectoral muscle and nipple
    pectoral: np.ndarray  # float 0..1 (soft edge)
    thickness: np.ndarray  # relative compressed thickness, 1 inside, lower near the skin
    skin_mm: np.ndarray  # distance to the skin line in mm
    axial: np.ndarray  # position along the nipple axis as a fraction of depth (0 chest wall, 1 nipple)
    depth_px: float
    half_px: float
    center_px: tuple[float, float]  # (x, y) of the ellipse centre on the chest wall
    tilt: float  # radians
    nipple_px: tuple[float, float]  # (x, y) of the nipple


def _pectoral(view: str, shape: ShapeSpec, xx: np.ndarray, yy: np.ndarray, y0: float,
              spacing: float) -> np.ndarray:
    """Soft pectoral-muscle map: MLO corner with a convex edge, or a sliver at the CC chest wall."""
    soft = max(0.6, 0.8 / spacing)
    if view == "MLO":
        pw, ph = shape.pect_width / spacing, shape.pect_height / spacing
        # exponent < 1 bows the anterior edge outwards (convex towards the breast)
        level = (np.clip(xx / pw, 0, None) ** 0.8 + np.clip(yy / ph, 0, None) ** 0.8) ** (1 / 0.8)
        return np.clip((1.0 - level) * min(pw, ph) / soft, 0.0, 1.0)
    if shape.cc_pectoral_mm <= 0:
        return np.zeros_like(xx)
    width, half = shape.cc_pectoral_mm / spacing, 0.35 * shape.cc_half_height / spacing
    inside = 1.0 - (xx / width) ** 2 - ((yy - y0) / half) ** 2
    return np.clip(inside * width / soft, 0.0, 1.0)


def view_geometry(shape: ShapeSpec, view: str, rows: int, cols: int, spacing: float) -> ViewGeometry:
    """Breast outline, nipple, pectoral muscle and thickness map of one view."""
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
    nipple = (a * math.cos(tilt), y0 + a * math.sin(tilt))
    r_nipple = shape.nipple_mm / spacing
    breast |= (xx - nipple[0]) ** 2 + (yy - nipple[1]) ** 2 <= r_nipple**2
    pectoral = _pectoral(view, shape, xx, yy, y0, spacing)
    breast |= pectoral > 0.5
    # distance to the skin; the chest wall (and the axilla at the top of an MLO) continues the body
    pad = max(4, int(30 / spacing))
    padded = np.pad(breast, ((pad if view == "MLO" else 0, 0), (pad, 0)), mode="edge")
    skin_mm = ndimage.distance_transform_edt(padded)[-rows:, -cols:] * spacing
    thickness = np.where(breast, 1.0 - 0.45 * np.exp(-skin_mm / 6.0), 0.0)
    axial = np.clip(u / a, 0.0, 1.0)
    return ViewGeometry(breast, pectoral, thickness, skin_mm, axial, a, b, (0.0, y0), tilt, nipple)


def skin_line(geom: ViewGeometry, spacing: float) -> np.ndarray:
    """The skin seen edge-on: a thin line (about 1.5 mm) along the outline, 1 at the surface."""
    width = max(1.5, 0.8 * spacing)
    return np.where(geom.breast, np.clip(1.0 - geom.skin_mm / width, 0.0, 1.0), 0.0)


def cooper_ligaments(geom: ViewGeometry, spacing: float, rng: np.random.Generator,
                     gap_mm: float = 13.0, width_mm: float = 0.35) -> np.ndarray:
    """Cooper's ligaments: thin curved strands from the skin inwards across the subcutaneous fat, 0..1."""
    band = (geom.breast & (geom.pectoral < 0.5) & (geom.axial > 0.08)
            & (geom.skin_mm > 0.5) & (geom.skin_mm < 2.0))
    starts = np.argwhere(band).astype(np.float64)
    count = int(len(starts) * spacing**2 / 1.5 / gap_mm)  # the band is 1.5 mm wide: its length over the gap
    if count < 1:
        return np.zeros(geom.breast.shape)
    pos = starts[rng.choice(len(starts), count, replace=False)]  # (row, col)
    reach = rng.uniform(4.0, 14.0, count)  # each strand ends where it meets the glands
    bend = rng.normal(0.0, 0.35, count)  # oblique to the skin ...
    curl = rng.choice([-1.0, 1.0], count) * rng.uniform(0.03, 0.12, count)  # ... and curving (rad per mm)
    strength = rng.uniform(0.5, 1.0, count)
    grad_r, grad_c = np.gradient(geom.skin_mm)
    canvas = np.zeros(geom.breast.shape)
    step = 0.5  # pixels
    for i in range(int(reach.max() / spacing / step) + 1):
        travelled = i * step * spacing
        alive = travelled < reach
        if not alive.any():
            break
        r, c = np.clip(np.rint(pos[:, 0]).astype(int), 0, canvas.shape[0] - 1), \
            np.clip(np.rint(pos[:, 1]).astype(int), 0, canvas.shape[1] - 1)
        np.add.at(canvas, (r[alive], c[alive]), step * strength[alive] * np.clip(travelled / 2.0, 0.3, 1.0))
        gr, gc = grad_r[r, c], grad_c[r, c]  # inwards: away from the skin
        norm = np.hypot(gr, gc) + 1e-9
        angle = bend + curl * travelled
        ca, sa = np.cos(angle), np.sin(angle)
        pos[:, 0] += step * (ca * gr - sa * gc) / norm
        pos[:, 1] += step * (sa * gr + ca * gc) / norm
    sigma_mm = math.hypot(width_mm, 0.5 * spacing)  # a strand thinner than a pixel is seen fainter and wider
    sigma = sigma_mm / spacing
    lines = ndimage.gaussian_filter(canvas, sigma) * sigma * math.sqrt(2 * math.pi) * width_mm / sigma_mm
    return np.where(geom.breast & (geom.pectoral < 0.5), np.clip(lines, 0.0, 1.0), 0.0)


def oriented_noise(shape: tuple[int, int], angle: float, along_px: float, across_px: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise elongated along `angle` (radians): fibres, strands."""
    rows, cols = shape
    size = math.ceil(math.hypot(rows, cols)) + 4
    white = ndimage.gaussian_filter(rng.standard_normal((size, size)), (across_px, along_px), mode="wrap")
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    ca, sa = math.cos(angle), math.sin(angle)
    along = (xx - cols / 2) * ca + (yy - rows / 2) * sa + size / 2
    across = -(xx - cols / 2) * sa + (yy - rows / 2) * ca + size / 2
    return _unit(ndimage.map_coordinates(white, [across, along], order=1, mode="wrap"))


def radial_noise(geom: ViewGeometry, spacing: float, rng: np.random.Generator,
                 along_mm: float = 9.0, across_deg: float = 2.5) -> np.ndarray:
    """Unit-variance noise elongated along lines through the nipple (ducts and their lobules)."""
    rows, cols = geom.breast.shape
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    dx, dy = xx - geom.nipple_px[0], yy - geom.nipple_px[1]
    radius = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx) - (geom.tilt + math.pi)  # 0 = along the nipple axis towards the chest wall
    theta = (theta + math.pi) % (2 * math.pi) - math.pi
    # the polar grid is coarse along the radius (the strands are long) and 1.5 degrees across
    r_step = max(1.0, min(3.0, along_mm / spacing / 3.0))
    n_r, n_t = max(8, int(radius.max() / r_step) + 2), 240
    grid = rng.standard_normal((n_r, n_t))
    sigmas = (along_mm / spacing / r_step, across_deg * n_t / 360.0)
    grid = ndimage.gaussian_filter(grid, sigmas, mode=("nearest", "wrap"))
    coords = [radius / r_step, (theta + math.pi) / (2 * math.pi) * n_t]
    return _unit(ndimage.map_coordinates(grid, coords, order=1, mode="grid-wrap"))


def fibroglandular(geom: ViewGeometry, fg_fraction: float, beta: float, spacing: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Projected fibroglandular fraction 0..1 per pixel; its mean over the breast is the ACR density's."""
    tissue = geom.breast & (geom.pectoral < 0.5)
    if not tissue.any():
        return np.zeros(geom.breast.shape)
    iso = power_law_noise(geom.breast.shape, beta, spacing, rng, corner_mm=25.0)
    ducts = radial_noise(geom, spacing, rng)
    # close to the nipple the strands converge below the pixel size: the isotropic part takes over there
    rows, cols = geom.breast.shape
    from_nipple = np.hypot(np.arange(cols)[None, :] - geom.nipple_px[0],
                           np.arange(rows)[:, None] - geom.nipple_px[1]) * spacing
    radial_weight = 0.8 * np.clip((from_nipple - 8.0) / 30.0, 0.0, 1.0)
    score = np.sqrt(1.0 - 0.5 * radial_weight**2) * iso + radial_weight * ducts
    # glands sit behind the subcutaneous fat and in front of the retromammary fat, centred on the axis
    central = np.exp(-((geom.axial - 0.55) / 0.45) ** 2)
    subcutaneous = np.clip((geom.skin_mm - 4.0) / 12.0, 0.0, 1.0)
    retromammary = np.clip(geom.axial / 0.12, 0.0, 1.0) * np.clip(1.0 - geom.pectoral, 0.0, 1.0)
    inner = subcutaneous * retromammary
    score = score + 2.2 * inner * central - 2.0 * (1.0 - inner)
    values = score[tissue][::3]  # a third of the pixels pins the threshold to well under 1%
    # the threshold is set so that the mean projected fraction (not just the area) matches the density
    low, high = float(values.min()) - 3.0, float(values.max()) + 3.0
    for _ in range(12):
        threshold = 0.5 * (low + high)
        mean = float(np.mean(1.0 / (1.0 + np.exp(-(values - threshold) / FG_EDGE))))
        low, high = (threshold, high) if mean > fg_fraction else (low, threshold)
    fg = 1.0 / (1.0 + np.exp(-(score - 0.5 * (low + high)) / FG_EDGE))
    return np.where(tissue, fg, 0.0)


def pectoral_texture(geom: ViewGeometry, shape: ShapeSpec, spacing: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Relative muscle signal 0.8..1.2: thicker towards the axilla, fibres along the muscle's length."""
    rows, cols = geom.breast.shape
    out = np.ones((rows, cols))
    where = np.nonzero(geom.pectoral > 0)
    if not where[0].size:
        return out
    r1, c1 = int(where[0].max()) + 1, int(where[1].max()) + 1
    r0, c0 = int(where[0].min()), int(where[1].min())
    angle = math.atan2(shape.pect_height, -shape.pect_width)  # from the top edge down to the chest wall
    fibres = oriented_noise((r1 - r0, c1 - c0), angle, 10.0 / spacing, max(0.6, 1.0 / spacing), rng)
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    reach = max(shape.pect_width, shape.pect_height) / spacing
    thicker = 1.0 - 0.25 * np.clip(np.hypot(xx, yy) / reach, 0.0, 1.0)
    out[r0:r1, c0:c1] = thicker * (1.0 + 0.04 * fibres)
    return out


def vessel_map(geom: ViewGeometry, n: int, spacing: float, rng: np.random.Generator) -> np.ndarray:
    """Curvilinear vessels from the chest wall towards the nipple, peak 1."""
    rows, cols = geom.breast.shape
    canvas = np.zeros((rows, cols))
    step = 0.5
    for _ in range(n):
        y0 = geom.center_px[1] + rng.uniform(-0.6, 0.6) * geom.half_px
        offset = rng.uniform(-0.5, 0.5)
        count = max(2, int(rng.uniform(0.4, 0.9) * geom.depth_px / step))
        # the heading wanders and is pulled back towards the nipple axis (an AR(1) walk)
        wander = lfilter([1.0], [1.0, -0.97], rng.normal(0.0, 0.06, count))
        heading = geom.tilt + offset * 0.97 ** np.arange(count) + wander
        xs = 1.0 + np.cumsum(step * np.cos(heading))
        ys = y0 + np.cumsum(step * np.sin(heading))
        ix, iy = np.rint(xs).astype(int), np.rint(ys).astype(int)
        keep = (iy >= 0) & (iy < rows) & (ix >= 0) & (ix < cols)
        keep[keep] = geom.breast[iy[keep], ix[keep]]
        np.add.at(canvas, (iy[keep], ix[keep]), step)
    sigma = max(0.6, 0.7 / spacing)
    return np.clip(ndimage.gaussian_filter(canvas, sigma) * sigma * math.sqrt(2 * math.pi), 0.0, 1.0)


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
    gap = max(2, margin // 2)
    around = (slice(max(0, r0 - gap), r0 + bitmap.shape[0] + gap),
              slice(max(0, c0 - gap), c0 + bitmap.shape[1] + gap))
    if breast[around].any():  # keep the marker clear of the breast
        return
    image[region] = np.where(bitmap, value, image[region])
