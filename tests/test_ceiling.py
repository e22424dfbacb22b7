"""The image-attainable ceiling: its pixel measures against hand computations, and a reader that sees the
enhancement where the findings are and loses it when told the wrong places."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from cemlib.pixels.settings import PreprocessSettings
from cemlib.study import ceiling
from tests.factories import tiny_study


def test_ellipse_mask_covers_the_ellipse_area_and_follows_its_angle():
    mask = ceiling.ellipse_mask((200, 200), cx=100, cy=90, rx=40, ry=15, angle=0)
    assert mask.sum() == pytest.approx(math.pi * 40 * 15, rel=0.02)
    assert mask[90, 100 + 39] and not mask[90 + 20, 100]
    turned = ceiling.ellipse_mask((200, 200), cx=100, cy=90, rx=40, ry=15, angle=90)
    assert turned[90 + 39, 100] and not turned[90, 100 + 20]


def test_weighted_contrast_is_the_mean_difference_in_units_of_the_ring_sd():
    rng = np.random.default_rng(0)
    image = rng.normal(10.0, 2.0, (50, 50))
    inside = np.zeros((50, 50), bool)
    inside[20:30, 20:30] = True
    ring = np.zeros((50, 50), bool)
    ring[10:40, 10:40] = True
    ring &= ~inside
    image[inside] += 3.0
    expected = (image[inside].mean() - image[ring].mean()) / image[ring].std()
    got = ceiling.weighted_contrast(image, inside.astype(float), ring.astype(float))
    assert got == pytest.approx(expected, rel=1e-9)
    assert ceiling.weighted_contrast(image, np.zeros_like(image), ring.astype(float)) == 0.0


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return tiny_study(tmp_path_factory.mktemp("ceiling"), patients=24, seed=3, size=(128, 64))


def test_findings_stand_out_where_they_are_outlined_and_nowhere_else(cohort):
    """The phantom's findings stand out of their ring in DES (malignant ones more: more iodine), at the stored
    size and at the network's input; outlines moved to random places of the same views measure nothing."""
    manifest = cohort["manifest"]
    lesions = ceiling.read_lesions(cohort["root"])
    patients = sorted(set(manifest.breasts["patient_id"]))
    with_findings = lesions[["patient_id", "side"]].drop_duplicates()
    settings = PreprocessSettings(size=(128, 64), des_window="exam")
    rng = np.random.default_rng(0)
    moved = lesions.assign(cx=rng.uniform(20, 150, len(lesions)), cy=rng.uniform(20, 200, len(lesions)))
    means = {}
    runs = (("stored", lesions, None), ("input", lesions, settings), ("moved", moved, None))
    for name, table, used in runs:
        measures = ceiling.breast_measures(manifest, table, patients, used)
        measures = measures.merge(with_findings, on=["patient_id", "side"])  # breasts with a finding only
        means[name] = measures.groupby("label")["des_contrast"].mean()
    for name in ("stored", "input"):
        assert means[name][1] > 3.0 and means[name][1] > means[name][0] + 1.0, means
    assert means["moved"].abs().max() < 0.7, means


def test_ceiling_table_reports_both_inputs_at_both_sizes(cohort):
    lesions = ceiling.read_lesions(cohort["root"])
    table = ceiling.ceiling_table(cohort["manifest"], lesions, PreprocessSettings(size=(128, 64)), split=None)
    assert list(table.columns) == list(ceiling.TABLE_COLUMNS)
    assert table[["resolution", "inputs"]].values.tolist() == [
        ["stored images", "LE"], ["stored images", "CEM"],
        ["network input 128 x 64", "LE"], ["network input 128 x 64", "CEM"]]
    assert (table["breasts"] == 48).all() and (table["ci_low"] <= table["auc"]).all()
    assert isinstance(table, pd.DataFrame) and table["auc"].between(0, 1).all()


def test_real_data_without_outlines_has_no_ceiling(tmp_path):
    assert ceiling.read_lesions(tmp_path) is None


def test_a_split_too_small_to_cross_validate_gives_no_auc(cohort):
    """One malignant breast cannot be cross-validated: the row says so (no AUC) instead of failing."""
    manifest = cohort["manifest"]
    breasts = manifest.breasts
    malignant = breasts[breasts["label"] == 1]["patient_id"].iloc[0]
    benign = sorted(set(breasts["patient_id"]) - set(breasts.loc[breasts["label"] == 1, "patient_id"]))[:2]
    keep = breasts["patient_id"].isin([malignant, *benign])
    small = replace(manifest, breasts=breasts.assign(split=np.where(keep, "test", "train")))
    lesions = ceiling.read_lesions(cohort["root"])
    table = ceiling.ceiling_table(small, lesions, PreprocessSettings(size=(128, 64)))
    assert table["auc"].isna().all() and (table["malignant"] >= 1).all()
