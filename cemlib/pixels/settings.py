"""The settings of the pixel pipeline: one frozen record, read from a profile's preprocess section and
stored with every cache entry and checkpoint (its digest keys the tensor cache)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cemlib.core.vocab import PAPER_INPUT_SIZE

#: Version of the pixel pipeline; part of the settings digest, so a change of behaviour rebuilds caches.
PREPROCESS_VERSION = "3"
#: Raw grey levels of breast tissue in the study's detector (GE; the paper's window range 1500..3300), in
#: which the kit's phantom renders both energies; the default window and detector range.
RAW_RANGE = (1500.0, 3300.0)

WINDOWS = ("adaptive", "fixed")
#: How a DES image is windowed: "image", by the same rule as its LE image, on its own histogram (the
#: authors' way); "exam", by that rule on the pooled histogram of the exam's DES views, one window for
#: all four (a lesion cannot darken the rest of its own breast only); "fixed", clipped to one raw range.
DES_WINDOWS = ("image", "exam", "fixed")
WINDOW_SOURCES = ("auto", "raw", "image")



@dataclass(frozen=True)
class PreprocessSettings:
    """Every setting of the pixel pipeline; ``digest()`` keys caches on all of them.

    size: output (rows, cols); the paper uses 512 x 256.
    window: "adaptive" (authors' histogram rule inside ``window_range``) or "fixed" (clip to the range).
    window_range: raw grey levels the window lives in (paper: 1500..3300).
    window_source: which range the window uses: "raw" (always ``window_range``), "image" (the image's own
        tissue range: end of the background peak .. maximum) or "auto" (raw when most tissue pixels lie
        inside ``window_range``, the image's own range when few do: 8-bit JPEG, offsets; a linear blend of
        the two windows in between, see ``cemlib.pixels.window``).
    peak_fraction: a grey level counts when its pixel count exceeds this fraction of the histogram peak.
    upper_rank: the upper bound is the ``upper_rank``-th last counting level (authors: third-to-last).
    background: a pixel is tissue when its windowed value exceeds this (authors: > 0).
    min_foreground: the largest tissue component must cover at least this fraction of the image.
    min_size_fraction: images or crops smaller than this fraction of ``size`` in either dimension fail.
    des_window: "image" (the authors' rule, each DES image on its own histogram), "exam" (the rule on the
        pooled histogram of the exam's DES views: one window for the four) or "fixed" (every DES image
        clipped to ``des_window_range``, or ``window_range`` when that is not given).
    des_window_range: the raw DES grey levels of the fixed DES window.
    detector_range: raw grey levels of breast tissue from the detector, for both energies: a DICOM image
        whose values cannot reach it (a re-encode) or whose rescale moves tissue already inside it is
        refused (``cemlib.pixels.headercheck``). None: ``window_range`` (no check when the window lives in
        each image's own range, window_source "image"); set it where the detector's range differs.
    flip_right: flip right breasts horizontally (chest wall on the left afterwards).
    check_orientation: compare the laterality with the chest-wall side seen in the pixels.
    version: pipeline version, part of the digest.
    """

    size: tuple[int, int] = PAPER_INPUT_SIZE
    window: str = "adaptive"
    window_range: tuple[float, float] = RAW_RANGE
    window_source: str = "auto"
    peak_fraction: float = 0.005
    upper_rank: int = 3
    background: float = 0.0
    min_foreground: float = 0.01
    min_size_fraction: float = 0.125
    des_window: str = "image"
    des_window_range: tuple[float, float] | None = None
    detector_range: tuple[float, float] | None = None
    flip_right: bool = True
    check_orientation: bool = True
    version: str = PREPROCESS_VERSION

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size)
        window_range = tuple(float(v) for v in self.window_range)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"preprocess size must be two positive integers (rows, cols), got {self.size!r}")
        if len(window_range) != 2 or not window_range[0] < window_range[1]:
            raise ValueError(f"window_range must be (low, high) with low < high, got {self.window_range!r}")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {self.window!r}")
        if self.des_window not in DES_WINDOWS:
            raise ValueError(f"des_window must be one of {DES_WINDOWS}, got {self.des_window!r}")
        for name in ("des_window_range", "detector_range"):
            given = getattr(self, name)
            if given is not None:
                object.__setattr__(self, name, _value_range(name, given))
        if self.window_source not in WINDOW_SOURCES:
            raise ValueError(f"window_source must be one of {WINDOW_SOURCES}, got {self.window_source!r}")
        if not 0.0 < float(self.peak_fraction) < 1.0:
            raise ValueError(f"peak_fraction must lie in (0, 1), got {self.peak_fraction!r}")
        if int(self.upper_rank) < 1:
            raise ValueError(f"upper_rank must be >= 1, got {self.upper_rank!r}")
        if not 0.0 <= float(self.background) < 1.0:
            raise ValueError(f"background must lie in [0, 1), got {self.background!r}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "window_range", window_range)
        for name, kind in (("peak_fraction", float), ("upper_rank", int), ("background", float),
                           ("min_foreground", float), ("min_size_fraction", float),
                           ("flip_right", bool), ("check_orientation", bool), ("version", str)):
            object.__setattr__(self, name, kind(getattr(self, name)))

    @property
    def des_range(self) -> tuple[float, float]:
        """The raw DES range of the fixed DES window."""
        return self.des_window_range if self.des_window_range is not None else self.window_range

    def checked_range(self) -> tuple[float, float] | None:
        """The raw range read DICOM images are checked against (both energies): ``detector_range``, else
        ``window_range``, or None (no range check) when the window uses each image's own range only."""
        if self.detector_range is not None:
            return self.detector_range
        return None if self.window_source == "image" else self.window_range

    def digest(self) -> str:
        """Stable 16-hex hash of every field (cache key component)."""
        fields = dataclasses.asdict(self)
        for name, default in (("des_window", "image"), ("des_window_range", None), ("detector_range", None)):
            if fields[name] == default:  # unset: caches built before the DES choice stay valid
                del fields[name]
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> PreprocessSettings:
        """Settings from a profile's ``preprocess`` section; keys that are not fields (cache) are ignored."""
        section = dict(profile.get("preprocess") or {})
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in section.items() if k in names})


def _value_range(name: str, given) -> tuple[float, float]:
    """A (low, high) setting as floats; ValueError naming it unless low < high."""
    values = tuple(float(v) for v in given)
    if len(values) != 2 or not values[0] < values[1]:
        raise ValueError(f"{name} must be (low, high) with low < high, got {given!r}")
    return values
