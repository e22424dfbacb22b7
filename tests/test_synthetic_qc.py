"""QC of the phantom: the sheet covers every density and finding kind; histograms across datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cemlib.data.sources import build
from cemlib.pixels.imaging import preprocess_files
from cemlib.pixels.settings import PreprocessSettings
from cemlib.synthetic import cddcesm, inbreast, lesions, qc, write_cohort


def test_sheet_rows_cover_every_density_and_finding_kind():
    exams = qc.pick_exams(seed=0)
    assert sorted(spec.density for spec, _ in exams) == list("abcd")
    kinds = {lesion.kind for spec, side in exams for lesion in spec.breasts[side].lesions}
    assert set(lesions.KINDS) <= kinds
    labels = {lesion.label for spec, side in exams for lesion in spec.breasts[side].lesions}
    assert labels == {0, 1}


def test_qc_sheet_renders_four_exams(tmp_path: Path):
    path = qc.write_qc_sheet(tmp_path / "sheet.png", seed=0, scale=0.04)
    assert path.is_file() and path.stat().st_size > 10_000


@pytest.fixture(scope="module")
def three_datasets(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("hist")
    roots = {"internal": (write_cohort(base / "internal", patients=3, seed=0, scale=0.05, workers=0), "ge"),
             "CDD-CESM": (cddcesm.write_replica(base / "cdd", 3, 0, 0.06, 0), "cddcesm"),
             "INbreast": (inbreast.write_replica(base / "inb", 3, 0, 0.04, 0), "inbreast")}
    return {name: build(root, layout, workers=1)[0] for name, (root, layout) in roots.items()}


def test_every_generated_image_passes_the_preprocessing(three_datasets):
    """Window, crop and orientation check succeed on every view of the three datasets."""
    settings = PreprocessSettings(size=(128, 64))
    for name, built in three_datasets.items():
        images = built.images
        for row in images[images.energy == "LE"].itertuples(index=False):
            des = images[(images.patient_id == row.patient_id) & (images.side == row.side)
                         & (images.view == row.view) & (images.energy == "DES")]
            des_path = built.image_path(des.iloc[0]) if len(des) else None
            le01, des01 = preprocess_files(built.image_path(row._asdict()), des_path, row.side, settings)
            assert le01.std() > 0.05, (name, row.path)
            assert des01 is None if des_path is None else des01.shape == (128, 64)
            # chest wall on the left after the right-breast flip
            assert (le01[:, :8] > 0).mean() > (le01[:, -8:] > 0).mean(), (name, row.path)


def test_external_replicas_differ_from_the_internal_cohort(three_datasets):
    fig = qc.intensity_histograms(three_datasets, n_images=8)
    axes = fig.get_axes()
    assert len(axes) == 4
    assert [len(ax.patches) > 0 for ax in axes] == [True] * 4
    raw_ranges = {}
    for name, ax in zip(three_datasets, axes, strict=False):
        edges = np.concatenate([p.get_path().vertices[:, 0] for p in ax.patches])
        raw_ranges[name] = (edges.min(), edges.max())
    assert raw_ranges["CDD-CESM"][1] <= 255.5  # 8-bit JPEG
    assert raw_ranges["INbreast"][1] > raw_ranges["internal"][1]  # 14-bit re-encoded with gain 2
