"""Does an image look like the view its tag names? The pectoral muscle tells a CC from an MLO view.

An MLO view shows the pectoral muscle as a bright triangle in the upper chest-wall corner (the axilla
is at the top); a CC view does not: its breast is a half-ellipse on the chest wall, and the corner
above it is background or thin skin-edge fat (a sliver of muscle, when a CC shows one, lies at the
middle of the chest wall, not in the corner). ``pectoral_score`` measures that corner on a low-energy
(or FFDM) image; ``view_contradictions`` compares the scores with the views an exam's tags name.

The score: the image is reduced to at most ``WORK_ROWS`` rows (block means), the breast is the largest
bright region (Otsu threshold, holes filled), the chest wall is the image edge it touches most, and
the score is the mean grey level of the corner triangle (legs ``CORNER`` of the height and width from
the upper chest-wall corner) above the background, in units of the breast's median above the
background: about 0 for background, about 1 or more for muscle, which is as dense as gland or denser.
No score (None) when the image is too small, flat, shows no breast on one edge, or its bright region
is smoother than the rest (background, as in an image whose MONOCHROME1 tag lies): such an image is
not judged.

Calibration on cemlib's synthetic phantom (internal cohorts of 450 patients at scale 0.08, 100 at 0.06,
40 at 0.03 and 40 at 0.25; the INbreast replica, 30 patients, and the CDD-CESM replica, 40): every MLO
scores 0.97 or more, every CC 0.69 or less (the CDD-CESM replica's tight crops; 0.53 or less on the
internal cohorts, 0.44 on the smoke cohort). A view is taken for an MLO from ``MLO_AT_LEAST`` up and for
a CC up to ``CC_AT_MOST``: both leave a margin of at least 0.2 to the phantom's scores; between them
nothing is concluded. Not calibrated
on real exams: a faint or cropped-off muscle can make a real MLO look like a CC, so an MLO is called
contradicted only when another image of the same exam does show the muscle (the exam proves the check
works on its images), while a CC that shows the corner triangle is called contradicted on its own.
Only grey levels are read; nothing of the header but how to decode the pixels.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Rows the score works on (larger images are reduced by block means): the muscle spans a fifth of them.
WORK_ROWS = 160
#: Smallest image (rows and columns) that is judged: below it a corner holds too few pixels.
MIN_PIXELS = 48
#: Legs of the corner triangle as fractions of the height and of the width (inside every phantom muscle).
CORNER = (0.2, 0.15)
#: Scores from here up say MLO; scores up to CC_AT_MOST say CC; between them the image is not judged.
MLO_AT_LEAST = 0.9
CC_AT_MOST = 0.75
#: The chest-wall edge must be touched by the breast over this share of its length at least.
MIN_CHEST_WALL = 0.3


@dataclass(frozen=True)
class ViewScore:
    """The corner score of one image and the view it points to ("MLO", "CC" or "" when undecided)."""

    score: float | None

    @property
    def looks_like(self) -> str:
        if self.score is None:
            return ""
        if self.score >= MLO_AT_LEAST:
            return "MLO"
        return "CC" if self.score <= CC_AT_MOST else ""


def reduce(pixels: np.ndarray, rows: int = WORK_ROWS) -> np.ndarray:
    """float32 block means of ``pixels`` with at most about ``rows`` rows (the same array when smaller)."""
    factor = max(1, int(np.ceil(pixels.shape[0] / rows)))
    height, width = pixels.shape[0] // factor, pixels.shape[1] // factor
    blocks = pixels[: height * factor, : width * factor].reshape(height, factor, width, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a set of grey levels (the level that best splits them into two classes)."""
    counts, edges = np.histogram(values, bins=bins)
    share = counts / max(counts.sum(), 1)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(share)
    mean_below = np.cumsum(share * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_below[-1] * below - mean_below) ** 2 / (below * (1 - below))
    return float(centres[int(np.nanargmax(between))])


def breast_region(work: np.ndarray) -> np.ndarray:
    """The largest bright connected region of a reduced image, its holes filled (boolean)."""
    mask = work > otsu_threshold(work.ravel())
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    region = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    # the holes: parts of the rest that do not reach the image border (faster than binary_fill_holes)
    rest, _ = ndimage.label(~region)
    border = np.unique(np.concatenate([rest[0], rest[-1], rest[:, 0], rest[:, -1]]))
    return region | ~np.isin(rest, border)


def texture(work: np.ndarray, mask: np.ndarray) -> float:
    """Median absolute step between vertical neighbours inside `mask` (its rim left out); 0 when empty.

    At the working scale tissue is textured and background smooth, whatever the grey levels say."""
    inner = ndimage.binary_erosion(mask, iterations=2)
    both = inner[1:] & inner[:-1]
    return float(np.median(np.abs(np.diff(work, axis=0))[both])) if both.any() else 0.0


def pectoral_score(pixels: np.ndarray) -> float | None:
    """Brightness of the upper chest-wall corner relative to the breast (see the module docstring).

    ``pixels``: a 2-D grey image, higher = denser (MONOCHROME1 already inverted). None when the image
    cannot be judged: too small, flat, or no breast meeting one side edge.
    """
    if pixels.ndim != 2 or min(pixels.shape) < MIN_PIXELS:
        return None
    work = reduce(np.asarray(pixels))
    if not np.isfinite(work).all() or float(work.max() - work.min()) <= 0:
        return None
    breast = breast_region(work)
    if texture(work, breast) <= texture(work, ~breast):
        return None  # the bright region is smoother than the rest: background (an inverted image?)
    left, right = float(breast[:, :2].mean()), float(breast[:, -2:].mean())
    if max(left, right) < MIN_CHEST_WALL or min(left, right) * 1.5 > max(left, right):
        return None  # no breast on one edge, or on both (a cropped or framed image): not judged
    if right > left:  # chest wall on the left from here on
        work, breast = work[:, ::-1], breast[:, ::-1]
    rows, cols = work.shape
    yy, xx = np.ogrid[0:rows, 0:cols]
    corner = xx / (CORNER[1] * cols) + yy / (CORNER[0] * rows) < 1
    outside, tissue = work[~breast], work[breast & ~corner]
    if outside.size < 0.02 * work.size or tissue.size == 0:
        return None  # no background to measure against
    background = float(np.median(outside))
    level = float(np.median(tissue)) - background
    if level <= 0.02 * float(work.max() - work.min()):
        return None
    return round((float(work[corner].mean()) - background) / level, 4)


def grey_image(data: bytes, dataset=None) -> np.ndarray:
    """Grey levels (higher = denser) of an image file's bytes: a parsed pydicom ``dataset`` when given
    (MONOCHROME1 and a negative rescale slope inverted), else a Pillow image (JPEG, PNG)."""
    if dataset is not None:
        pixels = np.asarray(dataset.pixel_array, dtype=np.float32)
        if pixels.ndim != 2:
            raise ValueError(f"not a single grey plane (array shape {pixels.shape})")
        slope = float(dataset.get("RescaleSlope", 1) or 1)
        inverted = str(dataset.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1"
        return -pixels if inverted != (slope < 0) else pixels
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        grey = image if image.mode in ("L", "I;16", "I", "F") else image.convert("L")
        return np.asarray(grey, dtype=np.float32)


def view_contradictions(scores: Mapping[tuple[str, str], float | None],
                        what: str = "LE") -> list[tuple[str, str, str]]:
    """(side, view, reason) for each image of one exam whose pixels contradict its view tag.

    ``scores``: (side, view) -> ``pectoral_score`` of the exam's `what` images. A CC-tagged image whose
    corner holds the muscle is contradicted; an MLO-tagged image with no muscle is contradicted when
    another image of the exam shows one. Each reason names the image and the image it is compared with.
    """
    judged = {key: ViewScore(score) for key, score in scores.items()}
    showing = sorted(key for key, s in judged.items() if s.looks_like == "MLO")
    found = []
    for (side, view), value in sorted(judged.items()):
        partner = (side, "MLO" if view == "CC" else "CC")
        other = (f"; {partner[0]} {partner[1]} {what} scores {_shown(judged[partner].score)}"
                 if partner in judged else "")
        if view == "CC" and value.looks_like == "MLO":
            found.append((side, view, f"{side} CC {what} is tagged CC but shows a pectoral muscle in its "
                                      f"upper chest-wall corner as an MLO view does (corner score "
                                      f"{_shown(value.score)}; MLO views score {MLO_AT_LEAST} or more, CC "
                                      f"views {CC_AT_MOST} or less){other}"))
        elif view == "MLO" and value.looks_like == "CC":
            witnesses = [key for key in showing if key != (side, view)]
            if not witnesses:
                continue  # no image of this exam shows the muscle: the check proves nothing here
            seen = witnesses[0]
            found.append((side, view, f"{side} MLO {what} is tagged MLO but shows no pectoral muscle in its "
                                      f"upper chest-wall corner, as a CC view does (corner score "
                                      f"{_shown(value.score)}, CC views score {CC_AT_MOST} or less), while "
                                      f"{seen[0]} {seen[1]} {what} of this exam shows one (score "
                                      f"{_shown(judged[seen].score)}){other}"))
    return found


def _shown(score: float | None) -> str:
    return "none" if score is None else f"{score:.2f}"
