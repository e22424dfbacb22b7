"""Pixels: read DICOM/JPEG, window, crop, orient and resize mammograms exactly as the study does.

The pipeline of one low-energy (LE) image and its dual-energy subtracted (DES) partner:

1. ``read_pixels`` decodes the file to float32 grey levels where higher means denser: DICOM rescale
   slope/intercept (or a Modality LUT) applied, MONOCHROME1 inverted, the VOI LUT only on request;
   8-bit JPEG (CDD-CESM) and 16-bit DICOM (INbreast, GE) go through the same function.
2. Window (``cemlib.pixels.window``): the authors' adaptive window inside the raw range 1500..3300, made
   stable against re-encodings (see that module), or a fixed window; every image gets its own window,
   recorded with the rule that chose it; values are clipped and min-max scaled to [0, 1].
3. Crop (``find_geometry``): bounding box of the largest connected tissue component of the LE image, reused
   for its DES image and lesion mask.
4. Orient: right breasts are flipped horizontally so every chest wall ends on the left; the side is checked
   against the pixels (the chest wall is where the tissue meets the image edge), so a pre-flipped or
   mislabelled image raises ``OrientationError`` instead of being learned from.
5. Resize to ``settings.size`` (rows, cols) bilinearly with antialiasing (torch ``interpolate``).

Bad input raises ``PreprocessError`` (a ``ValueError``) whose message names the source and the problem,
so the caller can exclude the image with that reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from cemlib.pixels import headercheck, sizecap
from cemlib.pixels.settings import RAW_RANGE, PreprocessSettings
from cemlib.pixels.sizecap import MAX_IMAGE_SIZE
from cemlib.pixels.window import PreprocessError, choose_window, exam_window, grey_histogram

PILLOW_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


class OrientationError(PreprocessError):
    """The pixels say the breast faces the other way than its laterality implies."""


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ImageInfo:
    """What later steps need to know about a decoded image's pixel domain (no patient identifiers)."""

    path: str
    kind: str  # "dicom" | "jpeg" | "png" | "tiff" | "bmp"
    bits_stored: int
    photometric: str
    value_range: tuple[float, float]  # nominal range of the returned values (after rescale/inversion)
    rescaled: bool
    inverted: bool
    voi_applied: bool
    laterality: str  # "L", "R" or "" when the file does not say
    view: str  # ViewPosition as stored ("CC", "MLO", ...) or ""


def read_pixels(path: str | Path, voi_lut: bool = False, max_size: tuple[int, int] = MAX_IMAGE_SIZE,
                expected_range: tuple[float, float] | None = RAW_RANGE) -> np.ndarray:
    """Decode an image file to float32 (H, W) grey levels, higher = denser (see ``read_image``)."""
    return read_image(path, voi_lut=voi_lut, max_size=max_size, expected_range=expected_range)[0]


def check_plane_size(rows: int, cols: int, source: str, max_size: tuple[int, int] = MAX_IMAGE_SIZE) -> None:
    """PreprocessError naming the size when a plane of rows x cols exceeds ``max_size`` (either axis)."""
    problem = sizecap.plane_problem(rows, cols, max_size)
    if problem:
        raise PreprocessError(f"{source}: {problem}")


def read_image(path: str | Path, voi_lut: bool = False, max_size: tuple[int, int] = MAX_IMAGE_SIZE,
               expected_range: tuple[float, float] | None = RAW_RANGE) -> tuple[np.ndarray, ImageInfo]:
    """Decode an image file to float32 (H, W) pixels plus an ``ImageInfo`` describing their domain.

    DICOM: the Modality LUT or rescale slope/intercept is applied (``pydicom.pixels.apply_modality_lut``),
    the VOI LUT/window only when ``voi_lut`` is true, and MONOCHROME1 is inverted within the nominal range
    (low + high - value) so the mapping does not depend on image content. Every transfer syntax pydicom
    decodes is read (native little- and big-endian, deflated, RLE, and JPEG where a codec is installed),
    as is float pixel data (FloatPixelData, DoubleFloatPixelData; nominal range = the data's own).
    Pillow formats (8-bit JPEG, 16-bit PNG/TIFF) are read as grey levels; colour images are converted to
    luma ('L'). The size cap (``cemlib.pixels.sizecap``) holds before anything large is read: a plane
    larger than ``max_size`` (rows, cols), decoded pixel data larger than one such plane of 4-byte pixels
    (all frames and samples) and a deflated data set inflating past that are refused from the header or
    from the inflated length, counted piece by piece; a multi-frame file is refused before decoding.
    DICOM headers that contradict their pixels are refused naming the tag (``cemlib.pixels.headercheck``),
    low energy and DES alike: BitsStored below the stored values (checked on the values decoded without
    masking, any transfer syntax), MONOCHROME1 on pixels not stored inverted, and, against
    ``expected_range`` (the raw detector range: the profile's ``PreprocessSettings.checked_range()``, by
    default the kit's 1500..3300; None skips these two), rescale values that move tissue already in the
    range and pixel values that cannot reach it (an 8-bit re-encode).
    A missing file raises FileNotFoundError; anything else unusable raises PreprocessError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.suffix.lower() in PILLOW_SUFFIXES:
        pixels, info = _read_pillow(path, max_size)
        _check_decoded(pixels, str(path))
        return pixels, info
    return _read_dicom(path, voi_lut, max_size, expected_range)


def _open_dicom(path: Path, max_size: tuple[int, int]) -> Any:
    """The data set of a DICOM file whose pixel data fits the size cap; PreprocessError otherwise."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        inflated = sizecap.deflated_length(path, sizecap.inflate_limit(max_size))
    except ValueError as exc:
        raise PreprocessError(f"{path}: not a readable DICOM file ({exc})") from exc
    _refuse(path, sizecap.inflated_problem(inflated, max_size))
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise PreprocessError(f"{path}: not a readable DICOM file ({exc})") from exc
    if not any(tag in ds for tag in sizecap.PIXEL_KEYWORDS):
        raise PreprocessError(f"{path}: DICOM file has no pixel data")
    frames, rows, cols, _, _ = sizecap.pixel_layout(ds)
    check_plane_size(rows, cols, str(path), max_size)
    _refuse(path, sizecap.pixel_bytes_problem(ds, max_size))
    if frames > 1:
        raise PreprocessError(f"{path}: pixel data holds {frames} frames, not a 2-D grey image; not decoded")
    return ds


def _decode(ds: Any, path: Path) -> tuple[np.ndarray, bool]:
    """(stored values, is float data): unsigned integers decoded without masking the unused high bits
    (so that ``headercheck.stored_bits_problem`` sees them), signed ones with pydicom's sign extension."""
    is_float = "PixelData" not in ds
    if not is_float and int(ds.get("PixelRepresentation", 0) or 0) == 0:
        ds.pixel_array_options(correct_unused_bits=False)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable data (codec missing, truncated)
        raise PreprocessError(f"{path}: cannot decode the pixel data ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 2:
        raise PreprocessError(f"{path}: pixel data is not a 2-D grey image (array shape {arr.shape})")
    return arr, is_float


def _read_dicom(path: Path, voi_lut: bool, max_size: tuple[int, int],
                expected_range: tuple[float, float] | None) -> tuple[np.ndarray, ImageInfo]:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = _open_dicom(path, max_size)
    arr, is_float = _decode(ds, path)
    allocated = int(ds.get("BitsAllocated", arr.dtype.itemsize * 8) or arr.dtype.itemsize * 8)
    bits = allocated if is_float else int(ds.get("BitsStored", allocated) or allocated)
    _refuse(path, headercheck.stored_bits_problem(arr, bits, allocated))
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if is_float:  # no nominal range: the data's own
        low, high = float(np.min(arr)), float(np.max(arr))
    else:
        low, high = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0**bits - 1)
    stored_range = (low, high)

    rescaled, stored, rescale = False, arr, None
    if ds.get("ModalityLUTSequence"):
        arr = apply_modality_lut(arr, ds)
        low, high = 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
        rescaled = True
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        if (slope, intercept) != (1.0, 0.0):  # identity is skipped: same values, no float64 detour
            arr = apply_modality_lut(arr, ds)
            low, high = sorted((low * slope + intercept, high * slope + intercept))
            rescaled, rescale = True, (slope, intercept)
    modality, modality_range = arr, (low, high)

    voi_applied = False
    if voi_lut and (ds.get("VOILUTSequence") or "WindowCenter" in ds):
        arr = apply_voi_lut(arr, ds)
        if ds.get("VOILUTSequence"):
            low, high = 0.0, 2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
        voi_applied = True

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise PreprocessError(f"{path}: photometric interpretation {photometric!r} is not a grey image")
    pixels = np.asarray(arr, dtype=np.float32)
    inverted = photometric == "MONOCHROME1"
    if inverted:  # MONOCHROME1: low values are displayed bright; turn it so higher = denser
        pixels = np.float32(low + high) - pixels
    _check_decoded(pixels, str(path))
    _refuse(path, headercheck.photometric_problem(pixels, photometric))
    if expected_range is not None and rescale is not None:
        # stored and rescaled values (before any VOI LUT), both turned so that higher = denser
        before, after = ((np.float32(sum(stored_range)) - stored, np.float32(sum(modality_range)) - modality)
                         if inverted else (stored, modality))
        _refuse(path, headercheck.rescale_problem(before, after, *rescale, expected_range))
    if expected_range is not None and not voi_applied:
        encoding = f"{'float pixel data, BitsAllocated' if is_float else 'BitsStored'} {bits}"
        _refuse(path, headercheck.domain_problem(pixels, encoding, expected_range))
    info = ImageInfo(path=str(path), kind="dicom", bits_stored=bits, photometric=photometric,
                     value_range=(float(low), float(high)), rescaled=rescaled, inverted=inverted,
                     voi_applied=voi_applied, laterality=_tag_text(ds, "ImageLaterality", "Laterality"),
                     view=_tag_text(ds, "ViewPosition"))
    return pixels, info


def _refuse(path: Path, problem: str | None) -> None:
    if problem:
        raise PreprocessError(f"{path}: {problem}")


def _tag_text(ds: Any, *keywords: str) -> str:
    for keyword in keywords:
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value:
            return value
    return ""


def _read_pillow(path: Path, max_size: tuple[int, int]) -> tuple[np.ndarray, ImageInfo]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            check_plane_size(image.height, image.width, str(path), max_size)
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr, bits = np.asarray(image), 16 if image.mode.startswith("I;16") else 32
            else:  # 'L' stays as is; RGB, palette, CMYK, LA ... become luma
                arr, bits = np.asarray(image if image.mode == "L" else image.convert("L")), 8
    except PreprocessError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PreprocessError(f"{path}: not a readable image file ({exc})") from exc
    if arr.ndim != 2:
        raise PreprocessError(f"{path}: image is not a 2-D grey image (array shape {arr.shape})")
    kind = {".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff"}.get(path.suffix.lower(), path.suffix.lower()[1:])
    high = 2.0**bits - 1 if bits <= 16 else float(np.max(arr))
    info = ImageInfo(path=str(path), kind=kind, bits_stored=bits, photometric="MONOCHROME2",
                     value_range=(0.0, high), rescaled=False, inverted=False, voi_applied=False,
                     laterality="", view="")
    return np.asarray(arr, dtype=np.float32), info


def _check_decoded(pixels: np.ndarray, source: str) -> tuple[float, float]:
    """(min, max) of a non-empty, finite, non-constant image; PreprocessError naming ``source`` otherwise."""
    if pixels.size == 0:
        raise PreprocessError(f"{source}: image has no pixels (shape {pixels.shape})")
    low, high = float(pixels.min()), float(pixels.max())  # min/max propagate NaN
    if not (math.isfinite(low) and math.isfinite(high)):
        raise PreprocessError(f"{source}: image contains NaN or infinite pixel values")
    if low == high:
        raise PreprocessError(f"{source}: image is constant (every pixel = {low:g})")
    return low, high


# ----------------------------------------------------------------------------------------- crop, orient


@dataclass(frozen=True)
class Geometry:
    """Where an LE image is cropped and whether it is flipped; shared by its DES image and lesion mask."""

    shape: tuple[int, int]  # (rows, cols) of the source image
    box: tuple[int, int, int, int]  # (row0, row1, col0, col1), half-open, in source pixels
    flip: bool  # mirror horizontally after cropping
    window: tuple[float, float]  # LE clip bounds
    chest_wall: str | None  # edge ("L"/"R") the tissue meets in the stored image, None if undecided
    window_rule: str = ""  # why these bounds (WindowChoice.rule)


def find_geometry(le: np.ndarray, side: str, settings: PreprocessSettings, source: str = "") -> Geometry:
    """Window bounds, crop box, orientation check and flip of an LE image.

    Tissue = pixels whose windowed value exceeds ``settings.background`` (authors: > 0, i.e. above the
    lower window bound). The largest 8-connected tissue component is found on a grid sampled every s
    pixels, s = floor(min(rows / out_rows, cols / out_cols)) (about one sample per output pixel, 1 for
    small images), which skips specks and markers; its box is then refined to full resolution within the
    s - 1 pixels around each edge. Stored images are expected as GE stores them (and the phantom renders
    them): a left breast attached to the left image edge, a right breast to the right edge; a breast the
    pixels show attached to the other edge raises OrientationError (``check_orientation=False`` skips
    the check). Raises PreprocessError or OrientationError naming ``source``.
    """
    name = source or "image"
    _check_side(side, name)
    extremes = _check_image(le, settings, name, "LE")
    choice = choose_window(grey_histogram(le, name, extremes), settings, name)
    bounds = choice.bounds
    threshold = bounds[0] + settings.background * (bounds[1] - bounds[0])
    step = _sample_step(le.shape, settings.size)
    sampled = le[::step, ::step] > threshold
    labels, count = ndimage.label(sampled, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        raise PreprocessError(f"{name}: no tissue found (every pixel is at or below the window's lower bound "
                              f"{threshold:g})")
    sizes = np.bincount(labels.reshape(-1))
    sizes[0] = 0
    best = int(np.argmax(sizes))
    share = sizes[best] / sampled.size
    if share < settings.min_foreground:
        raise PreprocessError(f"{name}: the largest tissue component covers {share:.2%} of the image "
                              f"(< {settings.min_foreground:.0%}): empty or all-background image")
    rows, cols = ndimage.find_objects(labels, max_label=best)[best - 1]
    box = _refine_box(le, threshold, (rows.start, rows.stop, cols.start, cols.stop), step)
    _check_crop(box, settings, name)
    component = labels[rows, cols] == best
    chest_wall = _chest_wall_side(component, touches=(cols.start == 0, cols.stop == sampled.shape[1]))
    if settings.check_orientation and chest_wall is not None and chest_wall != side:
        raise OrientationError(
            f"{name}: side {side} breast has its chest wall on the {_EDGE[chest_wall]} image edge, expected "
            f"the {_EDGE[side]} edge for a {_EDGE[side]} breast (pre-flipped or mislabelled image)")
    return Geometry(shape=le.shape, box=box, flip=settings.flip_right and side == "R", window=bounds,
                    chest_wall=chest_wall, window_rule=choice.rule)


_EDGE = {"L": "left", "R": "right"}


def _check_side(side: str, name: str) -> None:
    if side not in ("L", "R"):
        raise PreprocessError(f"{name}: unknown breast side {side!r}; expected 'L' or 'R'")


def _check_image(pixels: np.ndarray, settings: PreprocessSettings, name: str, what: str
                 ) -> tuple[float, float]:
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2:
        shape = getattr(pixels, "shape", None)
        raise PreprocessError(f"{name}: {what} image must be a 2-D array, got shape {shape}")
    if pixels.size == 0:
        raise PreprocessError(f"{name}: {what} image is empty (shape {pixels.shape})")
    extremes = _check_decoded(pixels, f"{name} ({what})")
    min_rows, min_cols = _min_shape(settings)
    if pixels.shape[0] < min_rows or pixels.shape[1] < min_cols:
        raise PreprocessError(f"{name}: {what} image {pixels.shape[0]} x {pixels.shape[1]} is far smaller "
                              f"than the target {settings.size[0]} x {settings.size[1]} "
                              f"(minimum {min_rows} x {min_cols})")
    return extremes


def _min_shape(settings: PreprocessSettings) -> tuple[int, int]:
    return (max(1, math.ceil(settings.size[0] * settings.min_size_fraction)),
            max(1, math.ceil(settings.size[1] * settings.min_size_fraction)))


def _check_crop(box: tuple[int, int, int, int], settings: PreprocessSettings, name: str) -> None:
    height, width = box[1] - box[0], box[3] - box[2]
    min_rows, min_cols = _min_shape(settings)
    if height < min_rows or width < min_cols:
        raise PreprocessError(f"{name}: the tissue crop {height} x {width} is far smaller than the target "
                              f"{settings.size[0]} x {settings.size[1]} (minimum {min_rows} x {min_cols})")


def _sample_step(shape: tuple[int, int], size: tuple[int, int]) -> int:
    return max(1, int(min(shape[0] / size[0], shape[1] / size[1])))


def _refine_box(pixels: np.ndarray, threshold: float, sampled_box: tuple[int, int, int, int],
                step: int) -> tuple[int, int, int, int]:
    """Full-resolution box from a box on the grid sampled every ``step`` pixels."""
    r0, r1, c0, c1 = sampled_box
    rows, cols = pixels.shape
    top, bottom = r0 * step, (r1 - 1) * step + 1
    left, right = c0 * step, (c1 - 1) * step + 1
    if step == 1:
        return top, bottom, left, right
    # the component's full-resolution pixels can lie up to step - 1 beyond the outermost samples
    band_cols = slice(max(left - step + 1, 0), min(right + step - 1, cols))
    band_rows = slice(max(top - step + 1, 0), min(bottom + step - 1, rows))
    strip = pixels[max(top - step + 1, 0):top, band_cols] > threshold
    hits = np.flatnonzero(strip.any(axis=1))
    top = max(top - step + 1, 0) + int(hits[0]) if hits.size else top
    strip = pixels[bottom:min(bottom + step - 1, rows), band_cols] > threshold
    hits = np.flatnonzero(strip.any(axis=1))
    bottom = bottom + int(hits[-1]) + 1 if hits.size else bottom
    strip = pixels[band_rows, max(left - step + 1, 0):left] > threshold
    hits = np.flatnonzero(strip.any(axis=0))
    left = max(left - step + 1, 0) + int(hits[0]) if hits.size else left
    strip = pixels[band_rows, right:min(right + step - 1, cols)] > threshold
    hits = np.flatnonzero(strip.any(axis=0))
    right = right + int(hits[-1]) + 1 if hits.size else right
    return top, bottom, left, right


def _chest_wall_side(component: np.ndarray, touches: tuple[bool, bool]) -> str | None:
    """Edge the breast is attached to: where the tissue meets the image edge, else where its mass lies.

    ``component`` is the breast's mask inside its box; ``touches`` says whether the box reaches the left /
    right image edge. An edge counts as touched when at least 5% of the box height meets it; a touched
    edge wins when it meets at least twice as many rows as the other. Otherwise the half of the box with
    at least 1.2 times the tissue of the other half is the chest-wall side (a half-ellipse puts about 61%
    of its area in the half next to its flat side). None when neither rule decides.
    """
    height, width = component.shape
    left = int(component[:, 0].sum()) if touches[0] else 0
    right = int(component[:, -1].sum()) if touches[1] else 0
    min_touch = max(1, math.ceil(0.05 * height))
    if left >= min_touch and left >= 2 * right:
        return "L"
    if right >= min_touch and right >= 2 * left:
        return "R"
    half = width // 2
    if half == 0:
        return None
    per_column = component.sum(axis=0)
    left_mass, right_mass = int(per_column[:half].sum()), int(per_column[width - half:].sum())
    if left_mass > 1.2 * right_mass:
        return "L"
    if right_mass > 1.2 * left_mass:
        return "R"
    return None


# ------------------------------------------------------------------------------------------------ resize


def resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D array to ``size`` (rows, cols), antialiased where it shrinks.

    Equal to ``torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False)``:
    torch's antialiased kernel is separable and its weights for an enlarged axis are the plain bilinear
    ones, so an enlarged axis is resized without the (much slower) antialiased kernel.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None, None]
    rows, cols = (int(v) for v in size)
    shrink_rows, shrink_cols = rows < plane.shape[0], cols < plane.shape[1]
    with torch.no_grad():
        if shrink_rows == shrink_cols:
            out = F.interpolate(tensor, size=(rows, cols), mode="bilinear", antialias=shrink_rows,
                                align_corners=False)
        else:  # one axis shrinks, the other grows: one pass per axis
            out = F.interpolate(tensor, size=(plane.shape[0], cols), mode="bilinear", antialias=shrink_cols,
                                align_corners=False)
            out = F.interpolate(out, size=(rows, cols), mode="bilinear", antialias=shrink_rows,
                                align_corners=False)
    return out[0, 0].numpy()


def warp(image: np.ndarray, geometry: Geometry, size: tuple[int, int]) -> np.ndarray:
    """Crop, resize and flip any array of the LE image's shape (e.g. a lesion mask) as float32 (H, W)."""
    if tuple(image.shape) != tuple(geometry.shape):
        raise PreprocessError(f"array of shape {image.shape} does not match its LE image {geometry.shape}")
    r0, r1, c0, c1 = geometry.box
    out = resize_plane(image[r0:r1, c0:c1], size)
    return np.ascontiguousarray(out[:, ::-1]) if geometry.flip else out


def preprocess_pair(le: np.ndarray, des: np.ndarray | None, side: str, settings: PreprocessSettings,
                    source: str = "", record: dict[str, Any] | None = None,
                    des_bounds: tuple[float, float] | None = None
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """LE (and DES) pixels -> float32 [0, 1] arrays of ``settings.size``, cropped on LE, oriented, resized.

    Each image is windowed with its own bounds (a DES image with the fixed DES range under des_window
    "fixed"); the DES image reuses the LE crop box and flip. Min-max scaling is linear and the antialiased
    bilinear weights are non-negative and sum to one, so it is applied after the resize (same result, far
    fewer pixels); the clip, which is not linear, comes first.
    ``record``, when given, receives each image's window and the rule that chose it (``le_window``,
    ``le_window_rule``, and ``des_*`` with a DES image). ``des_bounds`` is the exam's DES window under
    des_window "exam" (``exam_des_bounds``); without it a view is windowed as an exam of its own.
    """
    name = source or "image"
    le = np.asarray(le)
    geometry = find_geometry(le, side, settings, name)
    le01 = _window_crop_resize(le, geometry.box, geometry.window, settings.size, geometry.flip)
    if record is not None:
        record.update(le_window=geometry.window, le_window_rule=geometry.window_rule)
    if des is None:
        return le01, None
    des = np.asarray(des)
    extremes = _check_image(des, settings, name, "DES")
    if des.shape != le.shape:
        raise PreprocessError(f"{name}: DES image {des.shape} and LE image {le.shape} differ in shape")
    if settings.des_window == "fixed":
        bounds, rule = settings.des_range, "fixed DES range"
    elif des_bounds is not None:
        bounds, rule = (float(des_bounds[0]), float(des_bounds[1])), "exam"
    else:
        des_choice = choose_window(grey_histogram(des, name, extremes), settings, f"{name} (DES)")
        bounds, rule = des_choice.bounds, des_choice.rule
    if record is not None:
        record.update(des_window=bounds, des_window_rule=rule)
    return le01, _window_crop_resize(des, geometry.box, bounds, settings.size, geometry.flip)


def exam_des_bounds(des_images: list[np.ndarray], settings: PreprocessSettings, source: str = ""
                    ) -> tuple[float, float] | None:
    """The DES window an exam's views share under des_window "exam" (None under the other rules)."""
    if settings.des_window != "exam" or not des_images:
        return None
    return exam_window(des_images, settings, f"{source or 'exam'} (DES)").bounds


def _window_crop_resize(pixels: np.ndarray, box: tuple[int, int, int, int], window: tuple[float, float],
                        size: tuple[int, int], flip: bool) -> np.ndarray:
    r0, r1, c0, c1 = box
    low, high = window
    clipped = np.clip(pixels[r0:r1, c0:c1], low, high, out=np.empty((r1 - r0, c1 - c0), dtype=np.float32))
    out = resize_plane(clipped, size)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    np.clip(out, 0.0, 1.0, out=out)
    return np.ascontiguousarray(out[:, ::-1]) if flip else out


def preprocess_mask(mask: np.ndarray, le: np.ndarray, side: str, settings: PreprocessSettings,
                    source: str = "") -> np.ndarray:
    """A lesion mask through its LE image's crop, flip and resize: float32 [0, 1] (area coverage)."""
    name = source or "image"
    mask = np.asarray(mask)
    geometry = find_geometry(np.asarray(le), side, settings, name)
    if mask.shape != geometry.shape:
        raise PreprocessError(f"{name}: mask {mask.shape} and LE image {geometry.shape} differ in shape")
    return np.clip(warp(mask.astype(np.float32), geometry, settings.size), 0.0, 1.0)


def preprocess_files(le_path: str | Path, des_path: str | Path | None, side: str,
                     settings: PreprocessSettings) -> tuple[np.ndarray, np.ndarray | None]:
    """Read and preprocess an LE file and its optional DES file; errors name the LE file (a file's own
    reading errors name that file). Both are checked against the settings' detector range."""
    le = read_pixels(le_path, expected_range=settings.checked_range())
    des = read_pixels(des_path, expected_range=settings.checked_range()) if des_path is not None else None
    return preprocess_pair(le, des, side, settings, source=str(le_path))
