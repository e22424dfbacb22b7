"""The window rule is stable: re-encodings and small changes of an image move its window a little, never
to another rule (issue: even grey levels moved one LE window from 1577..2906 to 178..2812)."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cemlib.pixels.imaging import exam_des_bounds, preprocess_pair
from cemlib.pixels.settings import PreprocessSettings
from cemlib.pixels.window import UPPER_SMOOTHING, choose_window, grey_histogram, grey_step, raw_weight
from cemlib.synthetic import render_exam, sample_patient

SETTINGS = PreprocessSettings(size=(64, 32))
CLASSES = ("bilateral benign", "unilateral malignant", "bilateral malignant")


@functools.lru_cache(maxsize=8)
def exam(index: int):
    """Phantom exam of the smoke cohort's size (scale 0.08), as `cem synth` renders it."""
    spec = sample_patient(index, CLASSES[index % 3], 0)
    return render_exam(spec, 0.08)


def even_levels(pixels: np.ndarray) -> np.ndarray:
    """Only even grey levels: what a RescaleSlope 2 / RescaleIntercept 100 encoding decodes to."""
    return 2.0 * np.floor((pixels - 100.0) / 2.0) + 100.0


PERTURBATIONS = {
    "even levels (slope 2, intercept 100)": even_levels,
    "odd levels": lambda p: 2.0 * np.floor(p / 2.0) + 1.0,
    "every third level": lambda p: 3.0 * np.floor(p / 3.0),
    "one grey level up": lambda p: p + 1.0,
    "one grey level down": lambda p: p - 1.0,
    "four levels up": lambda p: p + 4.0,
}


def window(pixels: np.ndarray):
    return choose_window(grey_histogram(pixels), SETTINGS)


def test_even_grey_levels_keep_the_window_of_the_issue_image():
    """The reproduction: an LE image re-encoded with only even levels keeps its raw-range window."""
    le = exam(0).images[("L", "CC", "LE")].astype(np.float32)
    before, after = window(le), window(even_levels(le))
    assert before.rule == "adaptive raw 1500..3300" and after.raw_weight == 1.0
    assert after.rule == "adaptive raw 1500..3300; grey step 2"
    assert abs(after.low - before.low) <= 4
    assert abs(after.high - before.high) <= 0.03 * (before.high - before.low)


def test_raw_images_keep_the_authors_lower_bound_and_a_smoothed_upper_bound():
    """On a raw image the lower bound is the authors' (first level above 0.5% of the peak); the upper bound
    is sought on counts averaged over UPPER_SMOOTHING levels, so it lies within that many levels of the
    last level the authors' rule lets qualify, not at the third-to-last isolated pixel value."""
    le = exam(1).images[("R", "MLO", "LE")].astype(np.float32)
    hist = grey_histogram(le)
    assert grey_step(hist) == 1.0
    segment = hist.counts[1500 - hist.first:3301 - hist.first]
    qualifying = np.flatnonzero(segment > 0.005 * segment.max()) + 1500
    low, high = window(le).bounds
    assert low == float(qualifying[0])
    assert qualifying[-1] - UPPER_SMOOTHING <= high <= qualifying[-1]

def test_raw_weight_has_no_jump():
    shares = np.linspace(0, 1, 1001)
    weights = np.array([raw_weight(s) for s in shares])
    assert weights[0] == 0 and weights[-1] == 1 and np.all(np.diff(weights) >= 0)
    assert np.max(np.diff(weights)) <= 1.0 / 500 + 1e-12  # slope 2 at most: no switch at any share


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, 5), key=st.sampled_from([("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]),
       name=st.sampled_from(sorted(PERTURBATIONS)))
def test_perturbed_images_move_the_window_and_the_preprocessed_image_a_little(index, key, name):
    images = exam(index).images
    le, des = (images[(*key, e)].astype(np.float32) for e in ("LE", "DES"))
    perturb = PERTURBATIONS[name]
    side = key[0]
    # measured on these 24 views x 6 perturbations: LE and DES bounds move <= 4% of the window width
    # (the upper bound on counts averaged over 32 levels; with single-level counts the DES
    # upper bound, whose tail holds a handful of pixels at this size, moved by 58%); before the redesign
    # the LE lower bound moved by up to 116% of the width and the DES one by 379%
    for pixels, (low_tol, high_tol) in ((le, (0.02, 0.05)), (des, (0.15, 0.10))):
        before, after = window(pixels), window(perturb(pixels))
        width = before.high - before.low
        assert after.raw_weight == before.raw_weight == 1.0, (before.rule, after.rule)
        assert abs(after.low - before.low) <= low_tol * width
        assert abs(after.high - before.high) <= high_tol * width
    le01, des01 = preprocess_pair(le, des, side, SETTINGS)
    le01_p, des01_p = preprocess_pair(perturb(le), perturb(des), side, SETTINGS)
    # mean absolute change of the [0, 1] preprocessed image (measured max 0.007 LE, 0.072 DES; before
    # the redesign 0.296 and 0.375)
    assert float(np.abs(le01_p - le01).mean()) <= 0.02
    assert float(np.abs(des01_p - des01).mean()) <= 0.1


def test_a_fixed_des_window_keeps_an_enhancing_lesion_from_rescaling_the_rest_of_the_breast():
    """Under the authors' per-image rule a strong enhancement raises the DES window's upper bound and so
    darkens every other pixel of the breast (a global-brightness cue); under the fixed DES window the
    pixels away from the enhancement do not move."""
    images = exam(3).images
    le, des = images[("L", "CC", "LE")], images[("L", "CC", "DES")].astype(np.int32)
    tissue = des > 1500
    rows, cols = np.nonzero(tissue)
    r, c = int(np.median(rows)), int(np.median(cols))
    enhanced = des.copy()
    enhanced[r - 40:r + 40, c - 40:c + 40][tissue[r - 40:r + 40, c - 40:c + 40]] += 900
    outputs = {}
    for rule in ("image", "fixed"):
        settings = PreprocessSettings(size=(128, 64), des_window=rule)
        _, before = preprocess_pair(le, des.astype(np.uint16), "L", settings)
        _, after = preprocess_pair(le, enhanced.astype(np.uint16), "L", settings)
        outputs[rule] = (before, after)
    before, after = outputs["fixed"]
    untouched = (np.abs(after - before) == 0) & (before > 0)  # breast pixels the enhancement did not reach
    assert untouched.mean() > 0.2
    before, after = outputs["image"]
    assert float(np.abs(after[untouched] - before[untouched]).mean()) > 0.01


def test_an_exam_wide_des_window_darkens_both_breasts_alike():
    """Under the per-image rule an enhancement in the left breast darkens the rest of the left breast only:
    a left-right brightness cue with no lesion in it. One window for the exam's four DES views moves both
    breasts alike, so the left-right difference away from the enhancement stays as it was."""
    images = exam(3).images
    keys = [(side, view) for side in ("L", "R") for view in ("CC", "MLO")]
    des = {k: images[(*k, "DES")].astype(np.int32) for k in keys}
    enhanced = dict(des)
    lcc = des[("L", "CC")]
    tissue = lcc > 1500
    rows, cols = np.nonzero(tissue)
    r, c = int(np.median(rows)), int(np.median(cols))
    boosted = lcc.copy()
    boosted[r - 40:r + 40, c - 40:c + 40][tissue[r - 40:r + 40, c - 40:c + 40]] += 900
    enhanced[("L", "CC")] = boosted

    def windowed(rule, views):
        settings = PreprocessSettings(size=(128, 64), des_window=rule)
        bounds = exam_des_bounds([v.astype(np.uint16) for v in views.values()], settings)
        return {k: preprocess_pair(images[(*k, "LE")], views[k].astype(np.uint16), k[0], settings,
                                   des_bounds=bounds)[1] for k in (("L", "CC"), ("R", "CC"))}

    fixed_before, fixed_after = windowed("fixed", des), windowed("fixed", enhanced)
    # the left breast's pixels the enhancement itself does not reach (seen under a window that never moves)
    far = (fixed_before[("L", "CC")] > 0) & (fixed_after[("L", "CC")] == fixed_before[("L", "CC")])
    assert far.mean() > 0.2
    shift = {}
    for rule in ("image", "exam"):
        before, after = windowed(rule, des), windowed(rule, enhanced)
        right = before[("R", "CC")] > 0
        shift[rule] = (float((after[("L", "CC")] - before[("L", "CC")])[far].mean()),
                       float((after[("R", "CC")] - before[("R", "CC")])[right].mean()))
    left, right = shift["image"]
    assert left < -0.01 and abs(right) < 1e-6  # per image: only the enhanced breast darkens
    left, right = shift["exam"]
    assert right < -0.005 and abs(left - right) < 0.3 * abs(right)  # per exam: both breasts alike
