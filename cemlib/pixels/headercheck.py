"""DICOM header values checked against the pixels they describe, so that a lying header is refused.

A header that contradicts its pixels gives a silently wrong picture: MONOCHROME1 set on pixels that were
never inverted turns the background white; RescaleSlope/Intercept set on pixels that were not rescaled
move every value out of the detector's range; an 8-bit re-encode of 14-bit data has lost the raw values
the window rule expects; BitsStored smaller than the stored values masks them into noise. Each check
returns a reason naming the tag (None when the header agrees), for ``cemlib.pixels.imaging.read_image`` to
raise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cemlib.pixels.window import grey_histogram, otsu_level

#: Share of the image border that may lie in the bright (tissue) class: the breast meets one edge only.
MAX_BRIGHT_BORDER = 0.5
#: Percentile of the pixel values that stands for the tissue when locating an image in a value range.
TISSUE_PERCENTILE = 80.0
_SAMPLE = 4


def stored_bits_problem(ds: Any) -> str | None:
    """BitsStored smaller than the stored values need (uncompressed data, read before masking)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    bits, allocated = int(ds.get("BitsStored", 0) or 0), int(ds.get("BitsAllocated", 0) or 0)
    if syntax is None or syntax.is_compressed or not 0 < bits < allocated or allocated not in (8, 16, 32):
        return None
    if int(ds.get("PixelRepresentation", 0)) == 1 or "PixelData" not in ds:
        return None
    count = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
    raw = np.frombuffer(ds.PixelData, dtype=np.dtype(f"<u{allocated // 8}"), count=count)
    top = int(raw.max())
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


def _tissue_level(values: np.ndarray) -> float:
    return float(np.percentile(values[::_SAMPLE, ::_SAMPLE], TISSUE_PERCENTILE))


def _inside(level: float, expected: tuple[float, float]) -> bool:
    return expected[0] <= level <= expected[1]


def rescale_problem(stored: np.ndarray, rescaled: np.ndarray, slope: float, intercept: float,
                    expected: tuple[float, float]) -> str | None:
    """RescaleSlope/Intercept that move pixels already in the detector's range out of it."""
    before, after = _tissue_level(stored), _tissue_level(rescaled)
    if not _inside(before, expected) or _inside(after, expected):
        return None
    return (f"RescaleSlope {slope:g} / RescaleIntercept {intercept:g} contradict the pixels: the stored "
            f"values already lie in the detector's range {expected[0]:g}..{expected[1]:g} (tissue level "
            f"{before:g}) and the rescale moves them out of it (to {after:g}); slope and intercept were "
            "set on pixels that were not rescaled")


def domain_problem(pixels: np.ndarray, bits: int, expected: tuple[float, float]) -> str | None:
    """Pixel values that cannot reach the raw range the profile expects (an 8-bit re-encode)."""
    low, high = float(pixels.min()), float(pixels.max())
    if high >= expected[0]:
        return None
    return (f"BitsStored {bits}: the pixel values span {low:g}..{high:g}, below the raw "
            f"detector range {expected[0]:g}..{expected[1]:g} this profile expects (window_range); "
            "a re-encode of raw data (e.g. 8-bit) has lost the values the window needs")
