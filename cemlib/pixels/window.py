"""The grey-level window of one image: its histogram, the background edge and the adaptive window rule.

The reference is the authors' rule on raw 12-14 bit images: inside raw grey levels 1500..3300, the lower
bound is the first level whose pixel count exceeds 0.5% of the largest count, the upper bound the
third-to-last such level. On a raw image whose every grey level is occupied this module gives exactly
that window. It departs from a literal reading of the rule in three ways, each so that an equivalent
encoding of the same image, or a small change of it, moves the window by a little and never to another
rule:

- Grey step. Counts are compared after averaging over the image's grey step q, the mean spacing of its
  occupied levels (1 for a raw image; 2 for an image holding only even levels, as a RescaleSlope 2
  encoding does). Literally applied to an image with empty odd levels, "the first level after the
  background peak whose count falls below 0.5% of the peak" is the empty level next to the peak, so the
  whole background counted as tissue and the window jumped from 1577..2906 to 178..2812. The averaging is
  a box of width q (a no-op for q = 1), and the upper rank counts levels of the same step.
- No switch. The raw range and the image's own tissue range (background edge .. maximum) are not chosen
  by a threshold on the share s of tissue pixels inside the raw range: the window is the blend
  w * raw-range window + (1 - w) * own-range window, with w rising linearly from 0 at s = 0.25 to 1 at
  s = 0.75. Raw images (s near 1) get the authors' window; 8-bit JPEG and other domains (s near 0) the
  same rule inside their own tissue range; an image near the old 0.5 threshold moves smoothly.
- Record. Each choice is returned with a readable ``rule`` (e.g. ``raw 1500..3300``,
  ``image 6..200``, ``blend 0.40 raw 1500..3300 + 0.60 image 178..3042``, plus ``grey step 2`` when the
  step is not 1), kept per image by the preprocessing and the QC figure.

``PreprocessError`` lives here because windowing is the lowest pixel step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cemlib.pixels.settings import PreprocessSettings

#: Widest grey-level histogram accepted (levels between the image minimum and maximum).
MAX_HISTOGRAM_LEVELS = 1 << 20
#: Share s of tissue pixels inside the raw range below which the image's own range is used alone, and
#: above which the raw range is used alone; the window is blended linearly in between.
RAW_SHARE_RAMP = (0.25, 0.75)
#: A grey step above 1 is recognised only with this many occupied levels, and up to this size.
MIN_STEP_LEVELS = 32
MAX_STEP = 16.0
_CHUNK = 1 << 20
#: The upper bound is sought on counts averaged over this many grey levels (``_range_window``), in search
#: ranges at least MIN_SMOOTHED_RANGE levels wide.
UPPER_SMOOTHING = 32
MIN_SMOOTHED_RANGE = 512



class PreprocessError(ValueError):
    """An image that cannot be preprocessed; the message names the source and the reason."""


@dataclass(frozen=True)
class GreyHistogram:
    """Pixel counts per grey level: ``counts[i]`` pixels have floor(value) == ``first + i``."""

    first: int
    counts: np.ndarray
    minimum: float
    maximum: float

    def levels(self) -> np.ndarray:
        """The grey level of each bin."""
        return np.arange(self.first, self.first + self.counts.size)


@dataclass(frozen=True)
class WindowChoice:
    """The window of one image and why: bounds, the readable rule, raw-range weight and grey step."""

    low: float
    high: float
    rule: str
    raw_weight: float
    step: float

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) clip bounds."""
        return self.low, self.high


def grey_histogram(pixels: np.ndarray, source: str = "",
                   extremes: tuple[float, float] | None = None) -> GreyHistogram:
    """Exact per-grey-level histogram (unit-wide bins) of a finite image; ``extremes`` = known (min, max)."""
    low, high = extremes if extremes is not None else (float(pixels.min()), float(pixels.max()))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise PreprocessError(f"{source or 'image'}: image contains NaN or infinite pixel values")
    first = math.floor(low)
    n_levels = math.floor(high) - first + 1
    if n_levels > MAX_HISTOGRAM_LEVELS:
        raise PreprocessError(f"{source or 'image'}: pixel range {low:g}..{high:g} is too wide for a "
                              f"grey-level histogram ({n_levels} levels)")
    # non-negative values with a small maximum are counted from 0 (saves a subtraction pass); otherwise
    # from the minimum. Every counted value is >= 0, so the integer conversion (truncation) is a floor.
    offset = 0 if 0 <= first and first + n_levels <= 1 << 17 else first
    span = first + n_levels - offset
    flat = pixels.reshape(-1)
    counts = torch.zeros(span, dtype=torch.int64)
    for start in range(0, flat.size, _CHUNK):  # chunked so the conversion stays in cache
        chunk = flat[start:start + _CHUNK]
        if offset != 0:
            chunk = chunk - (np.float32(offset) if chunk.dtype.kind == "f" else offset)
        # torch.bincount counts int32 about twice as fast as np.bincount (which widens to int64 first)
        counts += torch.bincount(torch.from_numpy(chunk.astype(np.int32)), minlength=span)
    return GreyHistogram(first, counts.numpy()[first - offset:], low, high)


def otsu_level(hist: GreyHistogram) -> int:
    """Otsu's threshold on a grey histogram: the level t maximising between-class variance of <= t vs > t."""
    counts = hist.counts.astype(np.float64)
    levels = hist.levels().astype(np.float64)
    weight0 = np.cumsum(counts)
    total = weight0[-1]
    mass0 = np.cumsum(counts * levels)
    weight1 = total - weight0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mass0[-1] * weight0 - total * mass0) ** 2 / (weight0 * weight1)
    between[(weight0 == 0) | (weight1 == 0)] = -1.0
    return int(hist.first + int(np.argmax(between)))


def grey_step(hist: GreyHistogram) -> float:
    """Mean spacing of the occupied grey levels (1 for a raw image, 2 when only even levels occur).

    Each gap is weighted by the pixel count of the level it starts from, and gaps wider than four times
    the median gap (the empty stretch between background and tissue) are left out, so the sparse tails
    of a raw image do not count: the step describes the encoding, not the content. A step within 0.1
    of a whole number is that number, so a raw image gets exactly 1. A step above 1 is an encoding's
    only when adjacent occupied levels are rare (under 5% of the weight), there are at least
    ``MIN_STEP_LEVELS`` occupied levels and it is at most ``MAX_STEP``; otherwise the histogram is just
    sparse and the step is 1.
    """
    occupied = np.flatnonzero(hist.counts)
    if occupied.size < MIN_STEP_LEVELS:
        return 1.0
    gaps = np.diff(occupied).astype(np.float64)
    weights = hist.counts[occupied[:-1]].astype(np.float64)
    typical = gaps <= 4 * np.median(gaps)
    gaps, weights = gaps[typical], weights[typical]
    if weights[gaps == 1].sum() >= 0.05 * weights.sum():
        return 1.0
    step = float(np.average(gaps, weights=weights))
    step = float(round(step)) if abs(step - round(step)) < 0.1 else step
    return step if 1.0 <= step <= MAX_STEP else 1.0


def smoothed_counts(hist: GreyHistogram, step: float) -> np.ndarray:
    """Counts averaged over a box ``step`` grey levels wide (partial weight at its ends); step 1: as is."""
    counts = hist.counts.astype(np.float64)
    if step <= 1.0:
        return counts
    reach = math.ceil((step - 1.0) / 2.0)
    offsets = np.arange(-reach, reach + 1, dtype=np.float64)
    # weight of level d = overlap of [d - 1/2, d + 1/2] with [-step/2, step/2]
    kernel = np.clip(np.minimum(offsets + 0.5, step / 2) - np.maximum(offsets - 0.5, -step / 2), 0.0, None)
    return np.convolve(counts, kernel / kernel.sum(), mode="same")


def background_edge(hist: GreyHistogram, fraction: float, step: float | None = None) -> int:
    """First grey level above the background mode whose (step-averaged) count falls to ``fraction`` of it.

    The background mode is the most frequent level at or below Otsu's threshold (the darker class; pixels
    are oriented so that higher = denser). Falls back to Otsu's level + 1 when the background's tail does
    not thin out before it. Counts are averaged over the grey step (``grey_step`` when None), so an
    encoding with empty odd levels does not end the background at the empty level next to its mode.
    """
    step = grey_step(hist) if step is None else step
    otsu = otsu_level(hist) - hist.first
    dark = smoothed_counts(hist, step)[:otsu + 1]
    mode = int(np.argmax(dark))
    tail = np.flatnonzero(dark[mode + 1:] <= fraction * dark[mode])
    return hist.first + (mode + 1 + int(tail[0]) if tail.size else otsu + 1)


def own_range(hist: GreyHistogram, settings: PreprocessSettings, step: float | None = None
              ) -> tuple[float, float]:
    """The image's own tissue range: end of the background peak .. maximum."""
    edge = background_edge(hist, settings.peak_fraction, step)
    return float(edge), float(math.floor(hist.maximum))


def raw_share(hist: GreyHistogram, settings: PreprocessSettings, step: float | None = None) -> float:
    """Share of the tissue pixels (levels at or above the background edge) inside ``window_range``."""
    edge = background_edge(hist, settings.peak_fraction, step)
    levels = hist.levels()
    tissue = int(hist.counts[levels >= edge].sum())
    low, high = settings.window_range
    inside = int(hist.counts[(levels >= low) & (levels <= high)].sum())
    return inside / tissue if tissue else 0.0


def raw_weight(share: float) -> float:
    """Weight of the raw-range window given the tissue share inside the raw range (linear ramp)."""
    low, high = RAW_SHARE_RAMP
    return float(min(1.0, max(0.0, (share - low) / (high - low))))


def window_range_for(hist: GreyHistogram, settings: PreprocessSettings) -> tuple[float, float]:
    """The range the window is searched in: "raw", "image", or for "auto" the one weighing more."""
    if settings.window_source == "raw":
        return settings.window_range
    step = grey_step(hist)
    own = own_range(hist, settings, step)
    if settings.window_source == "image":
        return own
    return settings.window_range if raw_weight(raw_share(hist, settings, step)) >= 0.5 else own


def _range_window(hist: GreyHistogram, settings: PreprocessSettings, search: tuple[float, float],
                  step: float, source: str) -> tuple[float, float]:
    """Adaptive (step-averaged counts) or fixed window inside one search range, before narrowing."""
    low, high = search
    if settings.window != "adaptive":
        return low, high
    start = max(math.ceil(low) - hist.first, 0)
    stop = min(math.floor(high) - hist.first, hist.counts.size - 1)
    if stop < start or hist.counts[start:stop + 1].max() == 0:
        raise PreprocessError(f"{source or 'image'}: no pixels inside the window range {low:g}..{high:g} "
                              f"(image range {hist.minimum:g}..{hist.maximum:g})")
    segment = smoothed_counts(hist, step)[start:stop + 1]
    qualifying = np.flatnonzero(segment > settings.peak_fraction * segment.max()) + hist.first + start
    # The upper bound on counts averaged over UPPER_SMOOTHING levels (in a search range of at least
    # MIN_SMOOTHED_RANGE levels, as a detector's is): single levels of a sparse tail no longer cross the
    # threshold by chance, and the empty levels of an encoding average out. (The authors take the
    # third-to-last single level above it; on a DES image's sparse enhancement tail, dropping odd grey
    # levels moved that bound by half the window.)
    box = max(step, UPPER_SMOOTHING) if stop - start + 1 >= MIN_SMOOTHED_RANGE else step
    wide = smoothed_counts(hist, box)[start:stop + 1]
    above = np.flatnonzero(wide > settings.peak_fraction * segment.max())
    # the upper_rank-th last level of the encoding: (upper_rank - 1) grey steps below the last one
    rank = 1 + round((settings.upper_rank - 1) * step)
    top = int(above[-min(rank, above.size)]) if above.size else segment.size - 1
    return float(qualifying[0]), float(top + hist.first + start)


def choose_window(hist: GreyHistogram, settings: PreprocessSettings, source: str = "") -> WindowChoice:
    """Window bounds of one image and the rule that made them (see the module docstring).

    The searched levels are exactly the window range, whatever the image minimum. (The authors' code
    slices ``np.diff`` of skimage's per-level cumulative distribution, whose bin 0 is the image minimum m,
    as ``[1500 - m : 3300]``: it examines levels 1501..3300 + m and labels bin i as level 1500 + i.)
    Fixed: the search range itself. The bounds are then narrowed to the image's own minimum and maximum,
    which is what min-max scaling of the clipped image uses.
    """
    step = grey_step(hist)
    raw = settings.window_range
    if settings.window_source == "raw":
        weight = 1.0
    elif settings.window_source == "image":
        weight = 0.0
    else:
        weight = raw_weight(raw_share(hist, settings, step))
    own = own_range(hist, settings, step) if weight < 1.0 else raw
    parts = []
    low = high = 0.0
    for name, search, share in (("raw", raw, weight), ("image", own, 1.0 - weight)):
        if share <= 0.0:
            continue
        part_low, part_high = _range_window(hist, settings, search, step, source)
        low, high = low + share * part_low, high + share * part_high
        parts.append(f"{name} {search[0]:g}..{search[1]:g}" if share == 1.0
                     else f"{share:.2f} {name} {search[0]:g}..{search[1]:g}")
    low, high = max(low, hist.minimum), min(high, hist.maximum)
    if not low < high:
        raise PreprocessError(f"{source or 'image'}: the window collapses to a single value "
                              f"({low:g}..{high:g}); image range {hist.minimum:g}..{hist.maximum:g}, "
                              f"window range {raw[0]:g}..{raw[1]:g}")
    rule = f"{settings.window} " + (parts[0] if len(parts) == 1 else "blend " + " + ".join(parts))
    if step != 1.0:
        rule += f"; grey step {step:.3g}"
    return WindowChoice(low, high, rule, weight, step)


def window_bounds(hist: GreyHistogram, settings: PreprocessSettings, source: str = "") -> tuple[float, float]:
    """Clip bounds (low, high) of one image: ``choose_window`` without the record."""
    return choose_window(hist, settings, source).bounds


def apply_window(pixels: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Clip to the bounds and min-max scale to float32 [0, 1]."""
    low, high = bounds
    out = np.clip(pixels, low, high).astype(np.float32, copy=False)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return out


def exam_window(images: list[np.ndarray], settings: PreprocessSettings, source: str = "") -> WindowChoice:
    """One window for several images of an exam (its DES views): the window rule on their pooled
    histogram, so every view is scaled alike and one breast's enhancement cannot rescale that breast alone
    (under the per-image rule it darkens the rest of its own breast, a cue the other breast lacks)."""
    if not images:
        raise PreprocessError(f"{source or 'exam'}: no images to choose a shared window from")
    pooled = np.concatenate([np.asarray(image).reshape(-1) for image in images])
    return choose_window(grey_histogram(pooled, source), settings, source)
