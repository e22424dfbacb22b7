"""Pixel pipeline: reading, windowing, crop, orientation, resize and bad input, on hand-built arrays."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cemlib.core.settings import load_profile
from cemlib.pixels.imaging import (
    OrientationError,
    find_geometry,
    preprocess_files,
    preprocess_mask,
    preprocess_pair,
    read_image,
    read_pixels,
    resize_plane,
)
from cemlib.pixels.settings import PreprocessSettings
from cemlib.pixels.window import (
    GreyHistogram,
    PreprocessError,
    apply_window,
    background_edge,
    grey_histogram,
    otsu_level,
    window_bounds,
    window_range_for,
)
from cemlib.study import timings
from tests.factories import write_mg_dicom


def image_with_levels(level_counts: dict[int, int], cols: int = 100) -> np.ndarray:
    """A float32 image holding exactly `count` pixels of each grey level (row-major, padded by the last)."""
    values = np.concatenate([np.full(n, level, np.float32) for level, n in level_counts.items()])
    rows = -(-values.size // cols)
    padded = np.concatenate([values, np.full(rows * cols - values.size, values[-1], np.float32)])
    return padded.reshape(rows, cols)


def breast_rectangles(rows: int = 64, cols: int = 48, chest_wall: str = "L") -> np.ndarray:
    """Background 100, a big 'breast' attached to the chest-wall edge, a small separate 'marker'."""
    image = np.full((rows, cols), 100.0, np.float32)
    image[10:41, 0:21] = 2000.0  # breast: rows 10..40, cols 0..20, touching the left edge
    image[20:30, 0:12] = 2600.0  # denser tissue near the chest wall
    image[50:56, 35:46] = 3000.0  # marker: a smaller, separate component
    return image if chest_wall == "L" else np.ascontiguousarray(image[:, ::-1])


FIXED = PreprocessSettings(size=(64, 48), window="fixed", window_source="raw")


# ------------------------------------------------------------------------------------------------ reading


def test_rescale_slope_intercept_applied(tmp_path):
    stored = np.array([[0, 100, 1000], [2000, 3000, 16383]], np.uint16)
    path = write_mg_dicom(tmp_path / "r.dcm", stored, RescaleSlope=2, RescaleIntercept=-100)
    pixels, info = read_image(path)
    assert pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, stored.astype(np.float64) * 2 - 100)
    assert info.rescaled and info.value_range == (-100.0, 16383 * 2 - 100.0)
    assert info.kind == "dicom" and info.bits_stored == 14


def test_identity_rescale_keeps_stored_values(tmp_path):
    stored = np.array([[5, 6], [7, 1500]], np.uint16)
    path = write_mg_dicom(tmp_path / "i.dcm", stored, RescaleSlope=1, RescaleIntercept=0)
    np.testing.assert_array_equal(read_pixels(path), stored)


def test_monochrome1_inverted_within_nominal_range(tmp_path):
    stored = np.array([[0, 100], [2000, 16383]], np.uint16)
    path = write_mg_dicom(tmp_path / "m1.dcm", stored, PhotometricInterpretation="MONOCHROME1")
    pixels, info = read_image(path)
    np.testing.assert_array_equal(pixels, 16383 - stored.astype(np.float64))  # higher = denser
    assert info.inverted
    rescaled = write_mg_dicom(tmp_path / "m1r.dcm", stored, PhotometricInterpretation="MONOCHROME1",
                              RescaleSlope=2, RescaleIntercept=-100)
    # rescaled range -100..32666, so value v -> -100 + 32666 - (2 v - 100) = 32666 - 2 v
    np.testing.assert_array_equal(read_pixels(rescaled), 32666 - 2 * stored.astype(np.float64))


def test_voi_lut_only_when_asked(tmp_path):
    stored = np.array([[1000, 2000], [3000, 1999]], np.uint16)
    path = write_mg_dicom(tmp_path / "w.dcm", stored, WindowCenter=2000, WindowWidth=1001)
    np.testing.assert_array_equal(read_pixels(path), stored)  # off by default
    # DICOM LINEAR window: ((x - (c - 0.5)) / (w - 1) + 0.5) * 16383, clipped to 0..16383
    expected = np.clip(((stored - 1999.5) / 1000 + 0.5) * 16383, 0, 16383)
    windowed, info = read_image(path, voi_lut=True)
    np.testing.assert_allclose(windowed, expected, rtol=1e-6)
    assert info.voi_applied and windowed[0, 0] == 0 and windowed[1, 0] == 16383


def test_jpeg_8bit_and_rgb_read_as_grey(tmp_path):
    grey = (np.arange(40 * 30) % 251).astype(np.uint8).reshape(40, 30)
    Image.fromarray(grey, mode="L").save(tmp_path / "P1_L_DM_CC.jpg", quality=95)
    pixels, info = read_image(tmp_path / "P1_L_DM_CC.jpg")
    reference = np.asarray(Image.open(tmp_path / "P1_L_DM_CC.jpg"))  # Pillow's own decode
    np.testing.assert_array_equal(pixels, reference)
    assert pixels.dtype == np.float32 and info.kind == "jpeg" and info.bits_stored == 8
    assert info.value_range == (0.0, 255.0) and info.laterality == ""
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "c.png")
    expected = np.asarray(Image.fromarray(rgb, mode="RGB").convert("L"))
    np.testing.assert_array_equal(read_pixels(tmp_path / "c.png"), expected)


def test_dicom_laterality_reported_without_patient_fields(tmp_path):
    path = write_mg_dicom(tmp_path / "x.dcm", np.arange(12, dtype=np.uint16).reshape(3, 4),
                          ImageLaterality="R", ViewPosition="MLO")
    _, info = read_image(path, expected_range=None)  # values far below a detector's: no range check
    assert (info.laterality, info.view) == ("R", "MLO")
    assert "TEST" not in repr(info)  # no PatientID / PatientName anywhere


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.dcm"):
        read_pixels(tmp_path / "nope.dcm")
    junk = tmp_path / "junk.dcm"
    junk.write_text("not a dicom")
    with pytest.raises(PreprocessError, match=r"junk\.dcm.*not a readable DICOM"):
        read_pixels(junk)
    bad_jpeg = tmp_path / "bad.jpg"
    bad_jpeg.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(PreprocessError, match=r"bad\.jpg"):
        read_pixels(bad_jpeg)
    flat = write_mg_dicom(tmp_path / "flat.dcm", np.full((4, 4), 7, np.uint16))
    with pytest.raises(PreprocessError, match=r"flat\.dcm.*constant"):
        read_pixels(flat)
    no_pixels = write_mg_dicom(tmp_path / "np.dcm", np.ones((2, 2), np.uint16))
    ds = pydicom.dcmread(no_pixels)
    del ds.PixelData
    ds.save_as(no_pixels)
    with pytest.raises(PreprocessError, match=r"np\.dcm.*no pixel data"):
        read_pixels(no_pixels)


def test_multiframe_dicom_is_not_2d(tmp_path):
    frames = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    path = write_mg_dicom(tmp_path / "mf.dcm", frames[0])
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = frames.tobytes()
    ds.save_as(path)
    with pytest.raises(PreprocessError, match=r"mf\.dcm.*not a 2-D"):
        read_pixels(path)


# ---------------------------------------------------------------------------------------------- windowing


def test_grey_histogram_counts_each_level():
    image = image_with_levels({3: 2, 5: 4, 9: 6}, cols=4)
    hist = grey_histogram(image)
    assert hist.first == 3
    np.testing.assert_array_equal(hist.counts, [2, 0, 4, 0, 0, 0, 6])
    negative = np.array([[-2.5, -2.0], [0.2, 1.0]], np.float32)  # floor: -3, -2, 0, 1
    hist = grey_histogram(negative)
    assert hist.first == -3
    np.testing.assert_array_equal(hist.counts, [1, 1, 0, 1, 1])


def test_adaptive_window_on_hand_built_histogram():
    # range 10..30, peak inside = 100 (level 15); levels with count > 10% of it: 14 15 18 20 25 28
    # (12 has 1, 22 has 5; 5 and 35 lie outside the range)
    counts = {5: 1000, 12: 1, 14: 20, 15: 100, 18: 50, 20: 30, 22: 5, 25: 15, 28: 11, 35: 500}
    image = image_with_levels(counts)
    settings = PreprocessSettings(window_range=(10, 30), peak_fraction=0.1, upper_rank=3, window_source="raw")
    assert window_bounds(grey_histogram(image), settings) == (14.0, 20.0)  # first and third-to-last
    last = dataclasses.replace(settings, upper_rank=1)
    assert window_bounds(grey_histogram(image), last) == (14.0, 28.0)
    windowed = apply_window(np.array([[5, 14, 17], [20, 35, 15]], np.float32), (14.0, 20.0))
    np.testing.assert_allclose(windowed, [[0, 0, 0.5], [1, 1, 1 / 6]], atol=1e-7)


def authors_indexing_bounds(image: np.ndarray) -> tuple[int, int]:
    """The authors' indexing: cumulative per-level histogram from the minimum m, steps [1500 - m : 3300]."""
    minimum = int(image.min())
    cdf = np.cumsum(np.bincount((image - minimum).astype(int).ravel())) / image.size
    steps = np.diff(cdf)[1500 - minimum:3300]  # step k counts level m + k + 1
    picked = [i + 1500 for i in range(steps.size) if steps[i] > steps.max() * 0.005]
    return picked[0], picked[-3]


def test_adaptive_window_indexes_grey_levels_when_minimum_is_not_zero():
    # background at 1000 (the minimum), tissue at 1600..3300 and bright levels above the range
    counts = {1000: 5000, 1600: 100, 2000: 400, 3000: 50, 3200: 30, 3300: 10, 3500: 300, 4000: 200}
    image = image_with_levels(counts)
    settings = PreprocessSettings(window_source="raw")
    # inside 1500..3300 the levels 1600 2000 3000 3200 3300 all exceed 0.5% of 400 (2 pixels): the lower
    # bound is the first, 1600. The upper bound is sought on counts averaged over 32 levels (UPPER_SMOOTHING):
    # the isolated spikes at 3000 (50 / 32), 3200 and 3300 stay below 2, level 2000 reaches 16 levels up
    # (half weight at 2016: 400 * 0.5 / 32), so the last qualifying level is 2016 and two below it, 2014.
    assert window_bounds(grey_histogram(image), settings) == (1600.0, 2014.0)
    # the authors' slice reaches level 3300 + 1000 and labels each level one low: a different window
    assert authors_indexing_bounds(image) == (1599, 3299)


def test_fixed_window_clips_then_min_max_over_the_clipped_image():
    image = np.array([[1000, 2000], [2400, 4000]], np.float32)
    settings = PreprocessSettings(window="fixed", window_source="raw")
    bounds = window_bounds(grey_histogram(image), settings)
    assert bounds == (1500.0, 3300.0)
    np.testing.assert_allclose(apply_window(image, bounds), [[0, 500 / 1800], [900 / 1800, 1]], atol=1e-7)
    narrow = np.array([[1000, 2000], [2400, 3000]], np.float32)  # max 3000 < 3300: min-max uses 3000
    bounds = window_bounds(grey_histogram(narrow), settings)
    assert bounds == (1500.0, 3000.0)
    np.testing.assert_allclose(apply_window(narrow, bounds), [[0, 1 / 3], [0.6, 1]], atol=1e-7)


def within_class_variance_threshold(counts: np.ndarray) -> int:
    """Brute force: the split <= t vs > t with the smallest weighted within-class variance."""
    levels = np.arange(counts.size, dtype=float)
    best, best_t = np.inf, -1
    for t in range(counts.size - 1):
        lo, hi = counts[: t + 1], counts[t + 1:]
        if lo.sum() == 0 or hi.sum() == 0:
            continue
        var = sum(c.sum() * np.average((v - np.average(v, weights=c)) ** 2, weights=c)
                  for c, v in ((lo, levels[: t + 1]), (hi, levels[t + 1:])))
        if var < best - 1e-9:
            best, best_t = var, t
    return best_t


def test_otsu_level_by_hand_and_against_brute_force():
    # counts {0: 2, 1: 1, 5: 3}: between-class variance 3.56 at t=0, 5.44 at t=1..4 -> first maximum t=1
    hist = GreyHistogram(0, np.array([2, 1, 0, 0, 0, 3]), 0.0, 5.0)
    assert otsu_level(hist) == 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(0, 50, size=40) * (rng.random(40) < 0.7)
        counts[0] += 1
        counts[-1] += 1
        assert otsu_level(GreyHistogram(0, counts, 0.0, 39.0)) == within_class_variance_threshold(counts)


def test_auto_window_source_raw_for_14bit_own_range_for_8bit():
    rng = np.random.default_rng(1)
    raw = np.where(rng.random((60, 60)) < 0.4, 180.0, rng.uniform(1600, 3200, (60, 60))).astype(np.float32)
    settings = PreprocessSettings()
    assert window_range_for(grey_histogram(raw), settings) == (1500.0, 3300.0)
    jpeg = np.where(rng.random((60, 60)) < 0.4, rng.integers(0, 6, (60, 60)),
                    rng.integers(60, 201, (60, 60))).astype(np.float32)
    hist = grey_histogram(jpeg)
    # background 0..5, first empty level 6: the window is searched in 6..200 (the image's own range)
    assert background_edge(hist, settings.peak_fraction) == 6
    assert window_range_for(hist, settings) == (6.0, 200.0)
    qualifying = [g for g in range(6, 201) if hist.counts[g] > 0.005 * hist.counts[6:201].max()]
    assert window_bounds(hist, settings) == (60.0, float(qualifying[-3]))
    forced = dataclasses.replace(settings, window_source="raw")
    with pytest.raises(PreprocessError, match="no pixels inside the window range"):
        window_bounds(hist, forced, "P1_L_DM_CC.jpg")


# ------------------------------------------------------------------------------------------- crop, resize


def test_crop_keeps_the_largest_component_and_reuses_its_box_for_des():
    le = breast_rectangles()
    geometry = find_geometry(le, "L", FIXED)
    assert geometry.box == (10, 41, 0, 21)  # the marker (rows 50..55) is smaller and left out
    assert geometry.window == (1500.0, 3000.0) and not geometry.flip
    des = np.random.default_rng(2).uniform(1500, 3300, le.shape).astype(np.float32)
    le01, des01 = preprocess_pair(le, des, "L", FIXED)
    lo, hi = float(des.min()), float(des.max())
    crop = torch.from_numpy((des[10:41, 0:21] - lo) / (hi - lo))[None, None]
    expected = F.interpolate(crop, size=FIXED.size, mode="bilinear", antialias=True, align_corners=False)
    np.testing.assert_allclose(des01, expected[0, 0].numpy(), atol=1e-5)
    assert le01.shape == des01.shape == FIXED.size and le01.dtype == des01.dtype == np.float32


def test_crop_box_exact_when_found_on_a_sampled_grid():
    image = np.full((400, 300), 150.0, np.float32)
    image[13:288, 0:172] = 2500.0
    image[300:303, 250:260] = 3000.0  # a marker far away
    settings = dataclasses.replace(FIXED, size=(40, 30))  # sampled every 10 pixels
    assert find_geometry(image, "L", settings).box == (13, 288, 0, 172)


def test_background_fraction_moves_the_tissue_threshold():
    le = breast_rectangles()
    # windowed breast = 500/1500 = 0.33, dense part = 1100/1500 = 0.73: above 0.5 only the dense part
    geometry = find_geometry(le, "L", dataclasses.replace(FIXED, background=0.5, min_foreground=0.0))
    assert geometry.box == (20, 30, 0, 12)


@pytest.mark.parametrize("shape", [(300, 200), (20, 10), (300, 10), (20, 200)])
def test_resize_plane_matches_torch_antialiased_bilinear(shape):
    plane = np.random.default_rng(3).random(shape).astype(np.float32)
    reference = F.interpolate(torch.from_numpy(plane)[None, None], size=(64, 32), mode="bilinear",
                              antialias=True, align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(resize_plane(plane, (64, 32)), reference, atol=1e-5)


def test_resize_shape_and_constant_stays_constant():
    image = np.full((64, 48), 100.0, np.float32)
    image[5:60, 0:40] = 2000.0  # a uniform breast: windowed to 1 everywhere inside the crop
    out, _ = preprocess_pair(image, None, "L", dataclasses.replace(FIXED, size=(37, 23)))
    assert out.shape == (37, 23)
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


# ------------------------------------------------------------------------------------------- orientation


def test_right_breast_is_flipped_left_is_not():
    left = breast_rectangles(chest_wall="L")
    right = breast_rectangles(chest_wall="R")
    left01, _ = preprocess_pair(left, None, "L", FIXED)
    right01, _ = preprocess_pair(right, None, "R", FIXED)
    assert find_geometry(right, "R", FIXED).flip and not find_geometry(left, "L", FIXED).flip
    np.testing.assert_allclose(right01, left01, atol=1e-5)  # both face the same way
    assert left01[:, :8].mean() > left01[:, -8:].mean()  # denser chest-wall tissue ends on the left


def test_mis_flipped_image_raises_orientation_error():
    mirrored = breast_rectangles(chest_wall="R")
    with pytest.raises(OrientationError, match=r"LCC\.dcm.*side L.*right image edge"):
        preprocess_pair(mirrored, None, "L", FIXED, source="LCC.dcm")
    with pytest.raises(PreprocessError):  # an OrientationError is a PreprocessError (and a ValueError)
        find_geometry(breast_rectangles(chest_wall="L"), "R", FIXED, source="RCC.dcm")
    unchecked = dataclasses.replace(FIXED, check_orientation=False)
    out, _ = preprocess_pair(mirrored, None, "L", unchecked)
    assert out.shape == FIXED.size


@pytest.fixture(scope="module")
def phantom_exam():
    from cemlib.synthetic import render_exam, sample_cohort

    return render_exam(sample_cohort(2, seed=0)[1], 0.08)


@pytest.mark.parametrize("view", ["CC", "MLO"])
def test_phantom_orientation(phantom_exam, view):
    settings = PreprocessSettings(size=(128, 64))
    for side in ("L", "R"):
        le = phantom_exam.images[(side, view, "LE")].astype(np.float32)
        des = phantom_exam.images[(side, view, "DES")].astype(np.float32)
        geometry = find_geometry(le, side, settings)
        assert geometry.chest_wall == side and geometry.flip == (side == "R")
        le01, des01 = preprocess_pair(le, des, side, settings)
        columns = (le01 > 0).sum(axis=0)
        assert columns[:8].mean() > columns[-8:].mean()  # chest wall on the left after preprocessing
        assert 0.0 <= le01.min() and le01.max() <= 1.0 and 0.0 <= des01.min() and des01.max() <= 1.0
        with pytest.raises(OrientationError, match=f"phantom {side}{view}"):
            find_geometry(np.ascontiguousarray(le[:, ::-1]), side, settings, f"phantom {side}{view}")
    # a right breast equals its mirror image processed as a left breast
    right = phantom_exam.images[("R", view, "LE")].astype(np.float32)
    as_right, _ = preprocess_pair(right, None, "R", settings)
    as_left, _ = preprocess_pair(np.ascontiguousarray(right[:, ::-1]), None, "L", settings)
    np.testing.assert_allclose(as_right, as_left, atol=1e-5)


def test_lesion_mask_follows_the_image():
    le = breast_rectangles(chest_wall="R")
    mask = np.zeros(le.shape, bool)
    mask[15:19, 40:47] = True  # inside the breast, next to the chest wall on the right edge
    des = np.where(mask, 3300.0, 1500.0).astype(np.float32)  # DES that is the mask, windowed to 0/1
    _, des01 = preprocess_pair(le, des, "R", FIXED)
    mask01 = preprocess_mask(mask, le, "R", FIXED)
    assert mask01.dtype == np.float32 and mask01.shape == FIXED.size
    np.testing.assert_allclose(mask01, des01, atol=1e-5)
    assert mask01[:, : FIXED.size[1] // 2].sum() > mask01[:, FIXED.size[1] // 2:].sum()  # moved with the flip


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((0, 0), np.float32), "empty"),
        (np.full((64, 48), 900.0, np.float32), "constant"),
        (np.where(np.eye(64, 48) > 0, np.nan, 2000.0).astype(np.float32), "NaN"),
        (np.ones((64, 48, 3), np.float32), "2-D"),
        (np.random.default_rng(0).uniform(0, 4000, (7, 5)).astype(np.float32), "far smaller"),
    ],
)
def test_bad_images_raise_with_the_source_named(image, match):
    with pytest.raises(PreprocessError, match=rf"exam42/L_CC_LE\.dcm.*{match}"):
        preprocess_pair(image, None, "L", FIXED, source="exam42/L_CC_LE.dcm")


def test_all_background_and_tiny_crop_raise():
    background = np.full((64, 48), 100.0, np.float32)
    background[0, 0] = 2000.0  # one bright speck: 0.03% of the image
    with pytest.raises(PreprocessError, match=r"speck\.dcm.*empty or all-background"):
        preprocess_pair(background, None, "L", FIXED, source="speck.dcm")
    small = np.full((64, 48), 100.0, np.float32)
    small[20:24, 0:30] = 2000.0  # 4 rows tall: under 1/8 of the 64-row target
    with pytest.raises(PreprocessError, match=r"thin\.dcm.*crop 4 x 30 is far smaller"):
        preprocess_pair(small, None, "L", dataclasses.replace(FIXED, min_foreground=0.0), source="thin.dcm")
    below = np.full((64, 48), 100.0, np.float32)
    below[:, :20] = 1400.0  # nothing inside the fixed window range
    with pytest.raises(PreprocessError, match=r"dim\.dcm.*window collapses"):
        preprocess_pair(below, None, "L", FIXED, source="dim.dcm")


def test_des_problems_and_bad_side_raise():
    le = breast_rectangles()
    with pytest.raises(PreprocessError, match=r"a\.dcm.*DES image \(32, 48\) and LE image \(64, 48\)"):
        preprocess_pair(le, le[:32], "L", FIXED, source="a.dcm")
    with pytest.raises(PreprocessError, match=r"a\.dcm \(DES\).*constant"):
        preprocess_pair(le, np.full_like(le, 5.0), "L", FIXED, source="a.dcm")
    with pytest.raises(PreprocessError, match=r"a\.dcm.*side 'X'"):
        preprocess_pair(le, None, "X", FIXED, source="a.dcm")
    with pytest.raises(PreprocessError, match=r"a\.dcm.*mask \(10, 10\)"):
        preprocess_mask(np.zeros((10, 10), bool), le, "L", FIXED, source="a.dcm")


# ----------------------------------------------------------------------------------------------- settings


def test_settings_digest_is_stable_and_sensitive():
    base = PreprocessSettings()
    assert base.digest() == PreprocessSettings(size=[512, 256], window_range=[1500, 3300]).digest()
    assert len(base.digest()) == 16
    for change in ({"size": (256, 128)}, {"window": "fixed"}, {"window_range": (1400, 3300)},
                   {"peak_fraction": 0.01}, {"upper_rank": 2}, {"flip_right": False},
                   {"check_orientation": False}, {"window_source": "raw"}, {"version": "0"}):
        assert dataclasses.replace(base, **change).digest() != base.digest(), change
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.size = (1, 1)  # type: ignore[misc]


def test_settings_from_profile_and_validation():
    smoke = PreprocessSettings.from_profile(load_profile("smoke"))
    assert smoke.size == (128, 64) and smoke.window == "adaptive" and smoke.window_range == (1500.0, 3300.0)
    assert PreprocessSettings.from_profile(load_profile("paper")).size == (512, 256)
    for bad in ({"window": "magic"}, {"size": (0, 10)}, {"window_range": (3300, 1500)},
                {"peak_fraction": 0.0}, {"window_source": "elsewhere"}):
        with pytest.raises(ValueError):
            PreprocessSettings(**bad)


# ------------------------------------------------------------------------------------- files and benchmark


def test_preprocess_files_and_benchmark_on_dicoms(tmp_path, phantom_exam):
    settings = PreprocessSettings(size=(64, 32))
    items = []
    for side in ("L", "R"):
        le = write_mg_dicom(tmp_path / f"{side}_CC_LE.dcm", phantom_exam.images[(side, "CC", "LE")],
                            ImageLaterality=side)
        des = write_mg_dicom(tmp_path / f"{side}_CC_DES.dcm", phantom_exam.images[(side, "CC", "DES")],
                             ImageLaterality=side)
        le01, des01 = preprocess_files(le, des, side, settings)
        direct, _ = preprocess_pair(phantom_exam.images[(side, "CC", "LE")].astype(np.float32), None, side,
                                    settings)
        np.testing.assert_array_equal(le01, direct)
        assert des01.shape == settings.size
        items.append((le, des, side))
    with pytest.raises(OrientationError, match=r"L_CC_LE\.dcm"):
        preprocess_files(items[0][0], None, "R", settings)
    # two pairs and a file (side from its tag)
    result = timings.benchmark_preprocess([*items, items[1][0]], settings)
    assert result["images"] == 5
    assert result["decode_per_s"] > 0 and result["preprocess_per_s"] > 0


def test_qc_figure_from_a_manifest(tmp_path, phantom_exam):
    from cemlib.data.manifest import Manifest
    from cemlib.pixels.qc import qc_figure

    rows = []
    for (side, view, energy), pixels in phantom_exam.images.items():
        rel = f"P7/{side}_{view}_{energy}.dcm"
        write_mg_dicom(tmp_path / rel, pixels, ImageLaterality=side, ViewPosition=view,
                       PatientName="SECRET^NAME", PatientID="MRN-999")
        rows.append({"dataset": "synthetic", "patient_id": "P7", "side": side, "view": view, "energy": energy,
                     "path": rel, "sha256": "", "rows": pixels.shape[0], "cols": pixels.shape[1],
                     "mask_path": ""})
    (tmp_path / "P7/L_MLO_DES.dcm").write_text("broken")  # a failing image shows its reason, no crash
    manifest = Manifest("synthetic", tmp_path, pd.DataFrame(rows), pd.DataFrame(), pd.DataFrame())
    fig = qc_figure(manifest, ["P7"], PreprocessSettings(size=(128, 64)))
    axes = fig.get_axes()
    assert len(axes) == 16  # 4 views x (LE raw, LE preprocessed, DES raw, DES preprocessed)
    titles = " ".join(ax.get_title() for ax in axes)
    assert "P7 LCC" in titles and "P7 RMLO" in titles
    assert "SECRET" not in titles and "MRN-999" not in titles
    texts = " ".join(t.get_text() for ax in axes for t in ax.texts)
    assert "not a readable DICOM" in texts.replace("\n", "")
    assert sum(len(ax.images) for ax in axes) == 14  # the broken DES leaves two text panels
    with pytest.raises(ValueError, match="P404"):
        qc_figure(manifest, ["P404"], PreprocessSettings(size=(128, 64)))


def test_integer_arrays_give_the_same_result_as_float32(phantom_exam):
    settings = PreprocessSettings(size=(128, 64))
    le16 = phantom_exam.images[("R", "MLO", "LE")]
    des16 = phantom_exam.images[("R", "MLO", "DES")]
    from_uint16 = preprocess_pair(le16, des16, "R", settings)
    from_float = preprocess_pair(le16.astype(np.float32), des16.astype(np.float32), "R", settings)
    for a, b in zip(from_uint16, from_float, strict=True):
        np.testing.assert_array_equal(a, b)


def test_small_scale_synthetic_cohort_preprocesses_every_view(tmp_path):
    """Regression: a cohort rendered at scale 0.04 (122 x 96 pixels, smaller than the 128-row target)."""
    from cemlib.data.cache import TensorCache
    from cemlib.data.sources import ge
    from cemlib.synthetic import write_cohort

    root = write_cohort(tmp_path / "synthetic", patients=3, scale=0.04, workers=0)
    settings = PreprocessSettings(size=(128, 64))
    pairs = sorted(root.glob("SYN*/*_LE.dcm"))
    assert len(pairs) == 12
    for le_path in pairs:
        side = le_path.stem.split("_")[0]
        le01, des01 = preprocess_files(le_path, le_path.with_name(le_path.name.replace("_LE", "_DES")), side,
                                       settings)
        for plane in (le01, des01):
            assert plane.shape == (128, 64) and plane.dtype == np.float32
            assert 0.0 <= plane.min() and plane.max() <= 1.0 and plane.std() > 0.05
        # chest wall on the left after the right-breast flip: the left columns hold more tissue
        assert (le01[:, :8] > 0).mean() > (le01[:, -8:] > 0).mean()
    manifest = ge.scan(root)
    result = TensorCache(tmp_path / "cache", settings).fill(manifest, workers=0, progress=False)
    assert result.failed == 0 and result.built == 12, result.exclusions.reason.tolist()
