"""Lesion outlines to pixel masks and back, shared by the external-dataset adapters and their replicas.

Coordinates are image pixels with the centre of pixel (row r, column c) at (x=c, y=r), the convention of
both the VGG Image Annotator export (CDD-CESM) and the OsiriX plists of INbreast. A shape is rasterised on
the image grid, so any part of it outside the image is clipped away; a shape wholly outside gives an empty
mask. Masks are written as 8-bit PNGs, 255 inside a lesion and 0 elsewhere (the project's mask format).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cemlib.core.fileio import atomic_write_bytes

#: Radius (pixels, full resolution) of the disc drawn for a single-point annotation such as a
#: calcification: about 0.3 mm at the 70-100 um pixel pitch of these releases.
POINT_RADIUS_PX = 4.0


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    rows, cols = (int(v) for v in shape)
    if rows <= 0 or cols <= 0:
        raise ValueError(f"mask shape must be positive, got {shape!r}")
    return rows, cols


def polygon_mask(shape: Sequence[int], xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """Filled polygon (outline included) through the vertices (xs[i], ys[i]); bool (rows, cols)."""
    rows, cols = _check_shape(shape)
    if len(xs) != len(ys):
        raise ValueError(f"polygon has {len(xs)} x but {len(ys)} y coordinates")
    if len(xs) == 0:
        raise ValueError("polygon has no vertices")
    points = [(round(float(x)), round(float(y))) for x, y in zip(xs, ys, strict=True)]
    if not all(math.isfinite(v) for p in points for v in p):
        raise ValueError("polygon has a non-finite coordinate")
    canvas = Image.new("1", (cols, rows), 0)
    draw = ImageDraw.Draw(canvas)
    if len(points) == 1:
        draw.point(points, fill=1)
    elif len(points) == 2:
        draw.line(points, fill=1)
    else:
        draw.polygon(points, fill=1, outline=1)
    return np.array(canvas, dtype=bool)


def ellipse_mask(
    shape: Sequence[int], cx: float, cy: float, rx: float, ry: float, theta: float = 0.0
) -> np.ndarray:
    """Filled ellipse centred at (cx, cy) with semi-axes rx, ry, rotated by theta radians (x towards y)."""
    rows, cols = _check_shape(shape)
    if rx < 0 or ry < 0 or not all(math.isfinite(v) for v in (cx, cy, rx, ry, theta)):
        raise ValueError(f"bad ellipse cx={cx} cy={cy} rx={rx} ry={ry} theta={theta}")
    mask = np.zeros((rows, cols), dtype=bool)
    reach = max(rx, ry)
    r0, r1 = max(0, math.floor(cy - reach)), min(rows, math.ceil(cy + reach) + 1)
    c0, c1 = max(0, math.floor(cx - reach)), min(cols, math.ceil(cx + reach) + 1)
    if r0 >= r1 or c0 >= c1:
        return mask
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    dx, dy = xx - cx, yy - cy
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    u = dx * cos_t + dy * sin_t
    v = -dx * sin_t + dy * cos_t
    # A degenerate axis (0 px) still marks the pixels on the segment.
    inside = (u / max(rx, 0.5)) ** 2 + (v / max(ry, 0.5)) ** 2 <= 1.0
    mask[r0:r1, c0:c1] = inside
    return mask


def disc_mask(shape: Sequence[int], cx: float, cy: float, r: float) -> np.ndarray:
    """Filled disc of radius r centred at (cx, cy)."""
    return ellipse_mask(shape, cx, cy, r, r, 0.0)


def rect_mask(shape: Sequence[int], x: float, y: float, width: float, height: float) -> np.ndarray:
    """Filled axis-aligned rectangle with top-left corner (x, y)."""
    return polygon_mask(shape, [x, x + width, x + width, x], [y, y, y + height, y + height])


def via_region_mask(
    shape: Sequence[int], attributes: Mapping[str, object], point_radius: float = POINT_RADIUS_PX
) -> np.ndarray:
    """Rasterise one VGG Image Annotator region (its `region_shape_attributes` dict).

    polygon and polyline are filled (a polyline in these releases traces a lesion outline that was left
    open); ellipse uses `theta` when present; a point becomes a disc of `point_radius` pixels.
    """
    name = str(attributes.get("name", "")).strip().lower()

    def number(key: str, default: float | None = None) -> float:
        value = attributes.get(key, default)
        if value is None:
            raise ValueError(f"{name} region lacks {key!r}")
        return float(value)

    def coordinates(key: str) -> list[float]:
        values = attributes.get(key)
        if not isinstance(values, list):
            raise ValueError(f"{name} region lacks the list {key!r}")
        return [float(v) for v in values]

    if name in ("polygon", "polyline"):
        return polygon_mask(shape, coordinates("all_points_x"), coordinates("all_points_y"))
    if name == "ellipse":
        return ellipse_mask(shape, number("cx"), number("cy"), number("rx"), number("ry"),
                            number("theta", 0.0))
    if name == "circle":
        return disc_mask(shape, number("cx"), number("cy"), number("r"))
    if name == "point":
        return disc_mask(shape, number("cx"), number("cy"), point_radius)
    if name == "rect":
        return rect_mask(shape, number("x"), number("y"), number("width"), number("height"))
    raise ValueError(f"unknown region shape {name!r}")


def points_mask(
    shape: Sequence[int], points: Sequence[tuple[float, float]], point_radius: float = POINT_RADIUS_PX
) -> np.ndarray:
    """Mask of an outline given as (x, y) points: a polygon, or a disc when it is a single point."""
    if len(points) == 0:
        raise ValueError("outline has no points")
    if len(points) == 1:
        (x, y), = points
        return disc_mask(shape, x, y, point_radius)
    xs, ys = zip(*points, strict=True)
    return polygon_mask(shape, xs, ys)


def mask_png_bytes(mask: np.ndarray) -> bytes:
    """PNG bytes of a bool mask as 8-bit 0/255."""
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_mask_png(path: str | Path, mask: np.ndarray) -> Path:
    """Write a bool mask atomically as an 8-bit PNG (255 in lesion)."""
    path = Path(path)
    atomic_write_bytes(path, mask_png_bytes(mask))
    return path


def read_mask_png(path: str | Path) -> np.ndarray:
    """Read a mask PNG back as bool (any non-zero pixel is lesion)."""
    with Image.open(path) as image:
        return np.array(image.convert("L")) > 0


@dataclass(frozen=True)
class Outline:
    """One connected lesion region described the ways annotation tools store it."""

    area: int
    cx: float
    cy: float
    rx: float
    ry: float
    theta: float
    xs: tuple[float, ...]
    ys: tuple[float, ...]


def _moment_ellipse(rr: np.ndarray, cc: np.ndarray) -> tuple[float, float, float, float, float]:
    """Centre, semi-axes and angle of the ellipse with the same first and second moments."""
    cy, cx = float(rr.mean()), float(cc.mean())
    if rr.size < 2:
        return cx, cy, 0.5, 0.5, 0.0
    cov = np.cov(np.vstack([cc - cx, rr - cy]))
    evals, evecs = np.linalg.eigh(cov)
    # A uniform filled ellipse of semi-axis a has variance a^2 / 4 along that axis.
    ry, rx = (2.0 * math.sqrt(max(float(e), 1.0 / 12.0)) for e in evals)
    major = evecs[:, 1]
    theta = math.atan2(float(major[1]), float(major[0]))
    return cx, cy, rx, ry, theta


def mask_outlines(mask: np.ndarray, max_vertices: int = 64) -> list[Outline]:
    """Connected regions of a bool mask, each with its boundary polygon and moment-matched ellipse."""
    import contourpy
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    outlines: list[Outline] = []
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None:
            continue
        rows, cols = region
        sub = labels[rows, cols] == index
        rr, cc = np.nonzero(sub)
        rr = rr + rows.start
        cc = cc + cols.start
        cx, cy, rx, ry, theta = _moment_ellipse(rr.astype(float), cc.astype(float))
        padded = np.pad(sub.astype(np.float64), 1)
        lines = contourpy.contour_generator(z=padded).lines(0.5)
        if lines:
            line = max(lines, key=len)
            step = max(1, math.ceil(len(line) / max_vertices))
            line = line[::step]
            xs = tuple(float(x) - 1 + cols.start for x in line[:, 0])
            ys = tuple(float(y) - 1 + rows.start for y in line[:, 1])
        else:
            xs, ys = (cx,), (cy,)
        outlines.append(Outline(int(sub.sum()), cx, cy, rx, ry, theta, xs, ys))
    return outlines
