"""DICOM header values checked against the pixels they describe, so that a lying header is refused.

A header that contradicts its pixels gives a silently wrong picture: MONOCHROME1 set on pixels that were
never inverted turns the background white; RescaleSlope/Intercept set on pixels that were not rescaled
move the tissue inside the detector's range or out of it, and the window with it; an 8-bit re-encode of
14-bit data has lost the raw values the window rule expects; BitsStored smaller than the stored values
masks them into noise. Each check returns a reason naming the tag (None when the header agrees), for
``cemlib.pixels.imaging.read_image`` to raise; the reader runs them on every DICOM image it reads, low
energy and recombined (DES) alike. The detector range they compare with is the profile's
(``PreprocessSettings.checked_range``).
"""

from __future__ import annotations

import numpy as np

from cemlib.pixels.window import RAW_SHARE_RAMP, grey_histogram, otsu_level

#: Share of the image border that may lie in the bright (tissue) class: the breast meets one edge only.
MAX_BRIGHT_BORDER = 0.5
#: Percentiles of the tissue values compared before and after a rescale.
TISSUE_PERCENTILES = (5.0, 50.0, 95.0)
#: Largest shift of those percentiles, as a share of the detector range's width, that a rescale of values
#: already in the range may make (rounding, a near-identity calibration): 2% is 36 of the 1500..3300 levels.
MAX_RESCALE_SHIFT = 0.02
#: Fewest tissue samples (on the grid sampled every 4 pixels) a rescale is judged on.
MIN_TISSUE_SAMPLES = 64
_SAMPLE = 4


def stored_bits_problem(stored: np.ndarray, bits: int, allocated: int) -> str | None:
    """BitsStored smaller than the stored values need (unsigned integers as decoded, before masking).

    ``stored`` must be decoded without masking the unused high bits (pydicom's ``correct_unused_bits``
    off), whatever the transfer syntax (native either endianness, RLE, JPEG): masked, a wrong BitsStored
    turns the values into noise that no later check can tell from an image.
    """
    if not 0 < bits < allocated or stored.dtype.kind != "u" or stored.size == 0:
        return None
    top = int(stored.max())
    if top <= (1 << bits) - 1:
        return None
    return (f"BitsStored {bits} contradicts the pixel data: stored values reach {top}, which needs "
            f"{top.bit_length()} bits (a wrong BitsStored would mask them into noise)")


def photometric_problem(pixels: np.ndarray, photometric: str) -> str | None:
    """MONOCHROME1 on pixels that were not stored inverted: after inversion the border is bright.

    In a mammogram the background (air) surrounds the breast on every edge but the chest wall, so after
    the photometric transform most of the image border must be in the dark class of Otsu's split.
    """
    if photometric != "MONOCHROME1":
        return None
    sample = np.ascontiguousarray(pixels[::_SAMPLE, ::_SAMPLE])
    if min(sample.shape) < 4:
        return None
    threshold = otsu_level(grey_histogram(sample)) + 1
    border = np.concatenate([sample[0], sample[-1], sample[1:-1, 0], sample[1:-1, -1]])
    bright = float(np.mean(border >= threshold))
    if bright <= MAX_BRIGHT_BORDER:
        return None
    return (f"PhotometricInterpretation MONOCHROME1 contradicts the pixels: once inverted, {bright:.0%} of "
            "the image border (the background) is in the bright tissue class; the pixels are not stored "
            "inverted (MONOCHROME2 data labelled MONOCHROME1?)")


def _tissue(pixels: np.ndarray) -> np.ndarray | None:
    """Mask of the tissue class (Otsu's bright class) on the sampling grid, None for a tiny image."""
    sample = np.ascontiguousarray(pixels[::_SAMPLE, ::_SAMPLE])
    if min(sample.shape) < 4:
        return None
    tissue = sample >= otsu_level(grey_histogram(sample)) + 1
    return tissue if tissue.sum() >= MIN_TISSUE_SAMPLES else None


def rescale_problem(stored: np.ndarray, rescaled: np.ndarray, slope: float, intercept: float,
                    expected: tuple[float, float]) -> str | None:
    """RescaleSlope/Intercept set on pixels that were not rescaled: the stored values already lie in the
    detector's range and the rescale moves them.

    ``stored`` are the stored values in the orientation of ``rescaled`` (higher = denser). When most of the
    stored tissue (at least RAW_SHARE_RAMP[1], the share at which the window uses the raw range alone)
    already lies inside ``expected``, the stored values are detector values; a rescale that then moves the
    tissue's 5th, 50th or 95th percentile by more than MAX_RESCALE_SHIFT of the range's width moves the
    window by as much, inside the range (slope 1.2, intercept 400) or out of it (slope 2). Stored values
    outside the range (an encoding that the rescale maps into it) are left alone.
    """
    tissue = _tissue(stored)
    if tissue is None:
        return None
    before = stored[::_SAMPLE, ::_SAMPLE][tissue].astype(np.float64)
    after = rescaled[::_SAMPLE, ::_SAMPLE][tissue].astype(np.float64)
    low, high = expected
    share = float(np.mean((before >= low) & (before <= high)))
    if share < RAW_SHARE_RAMP[1]:
        return None
    levels_before = np.percentile(before, TISSUE_PERCENTILES)
    levels_after = np.percentile(after, TISSUE_PERCENTILES)
    shift = float(np.max(np.abs(levels_after - levels_before)))
    if shift <= MAX_RESCALE_SHIFT * (high - low):
        return None
    return (f"RescaleSlope {slope:g} / RescaleIntercept {intercept:g} contradict the pixels: {share:.0%} of "
            f"the stored tissue values already lie in the detector's range {low:g}..{high:g} (median "
            f"{levels_before[1]:g}) and the rescale moves the tissue by up to {shift:g} grey levels (median "
            f"to {levels_after[1]:g}); slope and intercept were set on pixels that were not rescaled")


def domain_problem(pixels: np.ndarray, encoding: str, expected: tuple[float, float]) -> str | None:
    """Pixel values that cannot reach the raw range the profile expects (an 8-bit re-encode).

    ``encoding`` names the tag that states the stored values' width (e.g. "BitsStored 8").
    """
    low, high = float(pixels.min()), float(pixels.max())
    if high >= expected[0]:
        return None
    return (f"{encoding}: the pixel values span {low:g}..{high:g}, below the raw "
            f"detector range {expected[0]:g}..{expected[1]:g} this profile expects (detector_range, by "
            "default window_range); a re-encode of raw data (e.g. 8-bit) has lost the values the window "
            "needs")
