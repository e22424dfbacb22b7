"""Findings in pixels: masses, calcification clusters, non-mass enhancement and asymmetries.

Each finding is placed in 3-D breast coordinates and projected into both views, so CC and MLO agree.
What it adds to a view is split into four maps: extra soft tissue (LE density, a fraction of the
glandular gain), calcium (LE, very attenuating, almost cancelled in DES), iodine (DES) and the mask.

- Masses: an outline from radial harmonics (oval, round, irregular shape; circumscribed, obscured,
  microlobulated, indistinct margins; spiculated margins add spicules). The mass's thickness profile
  is smooth, so its edge blends into the tissue around it instead of being cut out; an indistinct or
  obscured margin is blurred further. Iodine follows the pattern: homogeneous, heterogeneous (patchy)
  or rim (peripheral).
- Calcification clusters: specks of a morphology's size and number, laid out by the distribution
  (grouped, linear and segmental along the ducts towards the nipple, regional). Each speck adds its
  projected calcium (volume over pixel area, in mm of calcium), so specks smaller than a pixel fade at
  low resolution as on a downsampled mammogram, and overlapping specks add up instead of merging into
  one saturated blob.
- Non-mass enhancement: iodine without a mass, spread evenly over the distribution's envelope (focal,
  linear, segmental, regional) and broken into clumps and gaps, so it reads as a stippled area rather
  than a few bright foci; little or no LE correlate.
- Asymmetry: a patch of extra glandular density without convex borders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cemlib.synthetic.anatomy import ViewGeometry, power_law_noise


@dataclass
class FindingMaps:
    """What one finding adds to a view, on a local patch at (row0, col0)."""

    row0: int
    col0: int
    tissue: np.ndarray  # extra soft-tissue density, in units of the glandular gain
    calcium: np.ndarray  # projected calcium thickness per pixel, mm
    iodine: np.ndarray  # raw DES units
    mask: np.ndarray  # bool


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


def offsets_to_pixels(offsets_mm: np.ndarray, view: str, geom: ViewGeometry,
                       spacing: float) -> np.ndarray:
    """3-D offsets (towards the nipple, medial-lateral, superior-inferior; mm) -> pixel (dx, dy)."""
    along, ml, si = offsets_mm[:, 0], offsets_mm[:, 1], offsets_mm[:, 2]
    across = -ml if view == "CC" else -(0.75 * si + 0.45 * ml)
    dx = (along * math.cos(geom.tilt) - across * math.sin(geom.tilt)) / spacing
    dy = (along * math.sin(geom.tilt) + across * math.cos(geom.tilt)) / spacing
    return np.stack([dx, dy], axis=1)


# ------------------------------------------------------------------------------------------- masses
_SHAPE_HARMONICS = {"oval": 0.03, "round": 0.03, "irregular": 0.22}
_MARGIN_SOFT_MM = {"circumscribed": 0.25, "obscured": 1.2, "microlobulated": 0.35, "indistinct": 1.6,
                   "spiculated": 0.8}


def _outline(shape: str, margin: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Harmonic orders, amplitudes and phases of a mass outline."""
    k = np.arange(2, 8)
    amps = _SHAPE_HARMONICS.get(shape, 0.1) * rng.uniform(0.4, 1.0, k.size) / np.sqrt(k - 1)
    if margin == "indistinct":
        amps = amps + 0.06 * rng.uniform(0.4, 1.0, k.size) / np.sqrt(k - 1)
    if margin == "microlobulated":
        k = np.concatenate([k, np.arange(9, 15)])
        amps = np.concatenate([amps, 0.035 * rng.uniform(0.6, 1.0, 6)])
    return k, amps, rng.uniform(0, 2 * np.pi, k.size)


def render_mass(cx: float, cy: float, rx: float, ry: float, angle: float, shape: str, margin: str,
                pattern: str, iodine: float, density: float, spacing: float, rng: np.random.Generator,
                outline_rng: np.random.Generator, image_shape: tuple[int, int]) -> FindingMaps:
    """One mass: body, spicules, iodine and mask on a patch around (cx, cy)."""
    spiculated = margin == "spiculated"
    reach = max(rx, ry) * (2.8 if spiculated else 1.8) + 4
    r0, r1 = max(0, int(cy - reach)), min(image_shape[0], int(cy + reach) + 2)
    c0, c1 = max(0, int(cx - reach)), min(image_shape[1], int(cx + reach) + 2)
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    dx, dy = xx - cx, yy - cy
    ca, sa = math.cos(angle), math.sin(angle)
    xr, yr = (dx * ca + dy * sa) / rx, (-dx * sa + dy * ca) / ry
    theta = np.arctan2(yr, xr)
    k, amps, phases = _outline(shape, margin, outline_rng)
    waves = np.cos(k[:, None, None] * theta[None] + phases[:, None, None])
    radial = 1.0 + (amps[:, None, None] * waves).sum(0)
    rho = np.hypot(xr, yr) / np.maximum(radial, 0.3)
    mask = rho <= 1.0
    body = np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0))
    soft = _MARGIN_SOFT_MM[margin] / spacing
    if soft > 0.3:
        body = ndimage.gaussian_filter(body, min(soft, 0.5 * min(rx, ry) + 0.3))
    spicules = _spicules(cx - c0, cy - r0, max(rx, ry), body.shape, spacing, rng) if spiculated else 0.0
    tissue = density * (body + 0.5 * spicules)
    edge = np.clip(body / 0.35, 0.0, 1.0)  # enhancement fades with the mass's thickness at its edge
    if pattern == "none" or iodine <= 0:
        enh = np.zeros_like(body)
    elif pattern == "rim":
        enh = edge * (0.25 + 0.9 * np.clip(rho, 0, 1) ** 2)
    elif pattern == "heterogeneous":
        texture = power_law_noise(body.shape, 2.0, spacing, rng, corner_mm=4.0)
        enh = edge * np.clip(0.7 + 0.35 * texture, 0.15, 1.3)
    else:
        enh = edge * (0.85 + 0.15 * body)
    enh = ndimage.gaussian_filter(enh, max(0.5, 0.4 / spacing))
    iodine_map = iodine * enh + 0.2 * iodine * spicules
    return FindingMaps(r0, c0, tissue, np.zeros_like(body), iodine_map, mask)


def _spicules(cx: float, cy: float, radius: float, shape: tuple[int, int], spacing: float,
              rng: np.random.Generator) -> np.ndarray:
    """Thin radiating lines from a mass's edge, peak about 1."""
    canvas = np.zeros(shape)
    for _ in range(int(rng.integers(6, 13))):
        phi = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.6, 1.7) * radius
        steps = np.arange(0.0, length, 0.4)
        px = cx + (0.8 * radius + steps) * math.cos(phi)
        py = cy + (0.8 * radius + steps) * math.sin(phi)
        keep = (px >= 0) & (px < shape[1] - 1) & (py >= 0) & (py < shape[0] - 1)
        np.add.at(canvas, (np.round(py[keep]).astype(int), np.round(px[keep]).astype(int)),
                  0.4 * (1.0 - steps[keep] / length))
    sigma = max(0.6, 0.35 / spacing)
    return np.clip(ndimage.gaussian_filter(canvas, sigma) * sigma * 2.5, 0.0, 1.0)


# ----------------------------------------------------------------------------------------- clusters
#: Calcification morphology: (number of specks low, high), speck diameter mm (low, high), elongation.
SPECKS = {"round": ((3, 10), (0.8, 2.0), 1.0), "coarse": ((1, 4), (2.5, 6.0), 1.6),
          "amorphous": ((12, 35), (0.15, 0.35), 1.0), "coarse heterogeneous": ((6, 18), (0.5, 1.0), 1.3),
          "fine pleomorphic": ((10, 35), (0.2, 0.7), 1.5), "fine linear": ((10, 30), (0.25, 0.5), 3.0)}
#: A speck's calcium relative to a solid speck of its size; amorphous specks are faint (thin, less dense).
SPECK_CONTRAST = {"amorphous": 0.45}


def cluster_offsets(distribution: str, extent_mm: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """3-D offsets (mm) of n elements laid out by the distribution; ducts run towards the nipple (+x)."""
    if distribution == "linear":
        along = rng.uniform(-0.5, 0.5, n) * extent_mm
        bend = 0.08 * extent_mm * np.sin(along / max(extent_mm, 1.0) * 3.0 + rng.uniform(0, 6))
        return np.stack([along, bend + rng.normal(0, 0.6, n), rng.normal(0, 0.6, n)], axis=1)
    if distribution == "segmental":
        along = rng.uniform(-0.5, 0.5, n) * extent_mm
        spread = (0.5 - along / extent_mm) * math.tan(math.radians(20)) * extent_mm  # widens to the back
        return np.stack([along, rng.uniform(-1, 1, n) * spread, rng.uniform(-1, 1, n) * spread], axis=1)
    if distribution == "regional":
        return rng.normal(0, extent_mm / 4.0, (n, 3))
    if distribution == "focal":
        return rng.normal(0, extent_mm / 5.0, (n, 3))
    return rng.normal(0, extent_mm / 5.0, (n, 3))  # grouped


def _splat(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray, weights: np.ndarray) -> None:
    """Add weights at sub-pixel positions, shared bilinearly between the four nearest pixels."""
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for ox, oy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                      (1, 1, fx * fy)):
        cx, cy = x0 + ox, y0 + oy
        keep = (cx >= 0) & (cx < canvas.shape[1]) & (cy >= 0) & (cy < canvas.shape[0])
        np.add.at(canvas, (cy[keep], cx[keep]), (weights * w)[keep])


def _patch(cx: float, cy: float, reach: float, image_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    return (max(0, int(cy - reach)), min(image_shape[0], int(cy + reach) + 2),
            max(0, int(cx - reach)), min(image_shape[1], int(cx + reach) + 2))


def render_calcifications(cx: float, cy: float, morphology: str, offsets_px: np.ndarray,
                          diameters_mm: np.ndarray, spacing: float,
                          image_shape: tuple[int, int]) -> FindingMaps:
    """Calcium specks at (cx, cy) + offsets: projected calcium (mm) per pixel, and the cluster mask."""
    reach = float(np.abs(offsets_px).max(initial=0.0)) + max(diameters_mm.max(initial=1.0) / spacing, 1) + 4
    r0, r1, c0, c1 = _patch(cx, cy, reach, image_shape)
    canvas = np.zeros((r1 - r0, c1 - c0))
    xs, ys = cx - c0 + offsets_px[:, 0], cy - r0 + offsets_px[:, 1]
    # a speck projects its volume onto the pixel: mm of calcium along the ray, averaged over the pixel
    volume = math.pi / 6.0 * diameters_mm**3 * SPECKS[morphology][2]
    _splat(canvas, xs, ys, volume / spacing**2 * SPECK_CONTRAST.get(morphology, 1.0))
    radius_px = diameters_mm.max(initial=0.0) / 2 / spacing
    if radius_px > 0.7:  # specks larger than a pixel spread over their own area (the sum is kept)
        canvas = ndimage.gaussian_filter(canvas, radius_px / 1.5)
    calcium = ndimage.gaussian_filter(canvas, 0.5)
    hull = ndimage.gaussian_filter((canvas > 0).astype(float), max(1.0, 2.0 / spacing)) > 0.02
    return FindingMaps(r0, c0, np.zeros_like(canvas), calcium, np.zeros_like(canvas), hull)


def render_region(cx: float, cy: float, offsets_px: np.ndarray, blob_mm: float, clump_mm: float,
                  iodine: float, density: float, spacing: float, rng: np.random.Generator,
                  image_shape: tuple[int, int]) -> FindingMaps:
    """Non-mass enhancement or asymmetry: tissue and iodine over an envelope, in clumps, no outline."""
    sigma = max(0.7, blob_mm / 2 / spacing)
    reach = float(np.abs(offsets_px).max(initial=0.0)) + 3 * sigma + 3
    r0, r1, c0, c1 = _patch(cx, cy, reach, image_shape)
    canvas = np.zeros((r1 - r0, c1 - c0))
    _splat(canvas, cx - c0 + offsets_px[:, 0], cy - r0 + offsets_px[:, 1], np.ones(len(offsets_px)))
    region = ndimage.gaussian_filter(canvas, sigma)
    # flat inside the distribution, fading at its edge: the densest spot must not become a focal peak
    inside = region[region > 0.05 * region.max()]
    level = max(float(np.percentile(inside, 60)), 1e-9) if inside.size else 1.0
    envelope = np.clip(region / level, 0.0, 1.0)
    texture = power_law_noise(region.shape, 2.2, spacing, rng, corner_mm=clump_mm)
    clumps = np.clip(0.6 + 0.45 * texture, 0.0, 1.4)
    return FindingMaps(r0, c0, density * envelope * clumps, np.zeros_like(region), iodine * envelope * clumps,
                       envelope > 0.5)
