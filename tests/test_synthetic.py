"""Synthetic CEM cohort: determinism, DICOM tags, pixel ranges, ground truth, fake PHI and statistics."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from cemlib.cli import main as cem_main
from cemlib.core.fileio import sha256_file
from cemlib.synthetic import (
    grid_shape,
    pixel_spacing,
    render_exam,
    sample_cohort,
    write_cohort,
)
from cemlib.synthetic.cohort import BIRADS_BENIGN, BIRADS_MALIGNANT

SCALE = 0.03
PATIENTS = 5
PAPER_BIRADS = {"0": 0.8, "1": 14.2, "2": 3.0, "3": 30.5, "3-4A": 2.3, "4A": 11.4, "4B": 8.4, "4C": 11.8,
                "5": 12.0, "6": 5.6}


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return write_cohort(tmp_path_factory.mktemp("synth") / "a", patients=PATIENTS, seed=3, scale=SCALE,
                        workers=0)


def test_same_seed_gives_identical_bytes_serial_or_parallel(cohort, tmp_path):
    parallel = write_cohort(tmp_path / "b", patients=PATIENTS, seed=3, scale=SCALE, workers=2)
    other = write_cohort(tmp_path / "c", patients=PATIENTS, seed=4, scale=SCALE, workers=0)
    reference = _digests(cohort)
    assert len([k for k in reference if k.endswith(".dcm")]) == 8 * PATIENTS
    assert _digests(parallel) == reference
    changed = _digests(other)
    dicoms = [k for k in reference if k.endswith(".dcm")]
    assert all(changed[k] != reference[k] for k in dicoms)


def test_dicom_tags_match_file_names(cohort):
    labels = pd.read_csv(cohort / "labels.csv", dtype={"birads": str})
    uids = set()
    for path in sorted(cohort.glob("SYN*/*.dcm")):
        side, view, energy = path.stem.split("_")
        ds = pydicom.dcmread(path)
        assert ds.Modality == "MG"
        assert ds.ImageLaterality == side and ds.ViewPosition == view
        kind = "LOW_ENERGY" if energy == "LE" else "RECOMBINED"
        assert ds.ImageType[3] == kind
        assert ds.ImageType[0] == ("ORIGINAL" if energy == "LE" else "DERIVED")
        assert ds.SeriesDescription == f"{kind} {side} {view}"
        assert ds.BitsAllocated == 16 and ds.BitsStored == 14 and ds.HighBit == 13
        assert ds.BitsStored >= 12 and ds.PixelRepresentation == 0
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == 0
        assert ds.Manufacturer == "GE MEDICAL SYSTEMS" and ds.ManufacturerModelName == "Senographe Essential"
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([pixel_spacing(SCALE)] * 2, rel=1e-5)
        assert (ds.Rows, ds.Columns) == grid_shape(SCALE) == ds.pixel_array.shape
        assert ds.PatientID and ds.PatientID != path.parent.name
        assert "^" in str(ds.PatientName)
        birth = dt.datetime.strptime(ds.PatientBirthDate, "%Y%m%d").date()
        study = dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date()
        age = study.year - birth.year - ((study.month, study.day) < (birth.month, birth.day))
        assert age == labels.loc[labels.patient_id == path.parent.name, "age"].iloc[0]
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == 8 * PATIENTS


def test_le_values_and_breast_orientation(cohort):
    rows, cols = grid_shape(SCALE)
    for path in sorted(cohort.glob("SYN*/*_LE.dcm")):
        side = path.stem.split("_")[0]
        le = pydicom.dcmread(path).pixel_array.astype(float)
        components, n = ndimage.label(le > 1000)
        sizes = ndimage.sum_labels(np.ones_like(le), components, range(1, n + 1))
        breast = components == 1 + int(np.argmax(sizes))
        assert breast.sum() > 0.25 * rows * cols
        low, high = np.percentile(le[breast], [1, 99])
        assert 1400 <= low and high <= 3400, path
        background = le[~ndimage.binary_dilation(le > 1000, iterations=2)]
        assert 50 < np.median(background) < 400 and background.std() > 0
        centre = np.nonzero(breast)[1].mean()
        assert (centre < cols / 2) if side == "L" else (centre > cols / 2), path


def test_masks_match_lesion_table_in_both_views(cohort):
    lesions = pd.read_csv(cohort / "lesion_views.csv")
    labels = pd.read_csv(cohort / "labels.csv", dtype={"birads": str})
    findings = pd.read_csv(cohort / "lesions.csv")
    assert len(lesions) == 4 * len(findings) / 2, "every finding is seen in CC and MLO"
    malignant = lesions[lesions["label"] == 1]  # the masks hold the malignant findings (phantom v5)
    for (pid, side, view), group in malignant.groupby(["patient_id", "side", "view"]):
        mask = np.array(Image.open(cohort / "masks" / pid / f"{side}_{view}.png"))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255} and mask.any()
        le = pydicom.dcmread(cohort / pid / f"{side}_{view}_LE.dcm").pixel_array
        assert (le[mask > 0] > 1000).all(), "mask outside the breast"
        for row in group.itertuples():
            y, x = round(row.cy), round(row.cx)
            window = mask[max(0, y - 2):y + 3, max(0, x - 2):x + 3]
            assert window.any(), f"no mask at lesion centre {pid} {side} {view}"
    pngs = {(p.parent.name, *p.stem.split("_")) for p in (cohort / "masks").glob("*/*.png")}
    assert pngs == set(malignant.groupby(["patient_id", "side", "view"]).groups)
    per_breast = lesions.groupby(["patient_id", "side"]).view.apply(lambda v: sorted(v.value_counts()))
    for counts in per_breast:
        assert len(counts) == 2 and counts[0] == counts[1], "lesion missing in CC or MLO"
    for row in labels.itertuples():
        mine = lesions.loc[(lesions.patient_id == row.patient_id) & (lesions.side == row.side), "label"]
        assert (1 in set(mine)) == bool(row.label)
        assert (row.pathology == "normal") == mine.empty


def test_fake_phi_never_reaches_tables(cohort):
    identifiers = set()
    for path in cohort.glob("SYN*/*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        identifiers |= {str(ds.PatientID), str(ds.PatientName), str(ds.PatientBirthDate)}
        identifiers |= set(str(ds.PatientName).split("^"))
    assert len(identifiers) >= 3 * PATIENTS
    for name in ("labels.csv", "lesions.csv", "cohort.json"):
        text = (cohort / name).read_text()
        assert not [i for i in identifiers if i in text], name


def test_cohort_statistics_follow_the_paper():
    specs = sample_cohort(2000, seed=11)
    classes = pd.Series([s.patient_class for s in specs]).value_counts(normalize=True)
    assert classes["bilateral_benign"] == pytest.approx(0.306, abs=0.005)
    assert classes["unilateral_malignant"] == pytest.approx(0.678, abs=0.005)
    assert classes["bilateral_malignant"] == pytest.approx(0.016, abs=0.003)
    ages = np.array([s.age for s in specs])
    assert ages.mean() == pytest.approx(53, abs=1.0) and ages.std() == pytest.approx(12, abs=1.5)
    assert ages.min() >= 17 and ages.max() <= 85
    malignant = np.array([s.patient_class != "bilateral_benign" for s in specs])
    assert ages[malignant].mean() > ages[~malignant].mean() + 4
    breasts = [b for s in specs for b in s.breasts.values()]
    assert np.mean([b.label for b in breasts]) == pytest.approx(0.355, abs=0.01)
    birads = pd.Series([b.birads for b in breasts]).value_counts(normalize=True) * 100
    for category, share in PAPER_BIRADS.items():
        assert birads.get(category, 0.0) == pytest.approx(share, abs=2.5), category
    assert all(b.birads in BIRADS_MALIGNANT for b in breasts if b.label)
    assert all(b.birads in BIRADS_BENIGN for b in breasts if not b.label)
    pathology = pd.Series([b.pathology for b in breasts if b.label]).value_counts(normalize=True)
    assert pathology.index[0] == "IDC" and pathology["IDC"] == pytest.approx(18.5 / 35.5, abs=0.04)
    assert not any(b.lesions for b in breasts if b.pathology == "normal")
    assert any(not b.lesions for b in breasts if not b.label)
    cancers = [b.lesions[0] for b in breasts if b.label]
    benign = [lesion for b in breasts for lesion in b.lesions if lesion.label == 0]
    # 91% of cancers enhance (Bicchierai 2020); 51 of 109 biopsied benign index lesions (Emory 2023)
    assert np.mean([c.iodine > 0 for c in cancers]) == pytest.approx(0.89, abs=0.04)
    assert np.mean([b.iodine > 0 for b in benign]) == pytest.approx(51 / 109, abs=0.07)
    assert {s.density for s in specs} == set("abcd")
    foci = [f for s in specs for f in s.foci]
    assert any(len(f.views) == 1 for f in foci) and any(len(f.sides) == 2 for f in foci)


def test_both_breasts_share_density_and_texture():
    for spec in sample_cohort(30, seed=5):
        left, right = spec.breasts["L"].shape, spec.breasts["R"].shape
        assert left.cc_depth == pytest.approx(right.cc_depth, rel=0.07)
    spec = sample_cohort(1, seed=5)[0]
    exam = render_exam(spec, SCALE)
    means = [exam.images[(side, "CC", "LE")] for side in ("L", "R")]
    inside = [m[m > 1000].mean() for m in means]
    assert inside[0] == pytest.approx(inside[1], abs=150)


def _disk_mean(image: np.ndarray, cx: float, cy: float, radius: float) -> float:
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    return float(image[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2].mean())


def test_malignant_lesions_enhance_more_than_benign_in_pixels():
    gain = {"malignant": [], "benign": []}
    le_contrast = {"fatty": [], "dense": []}
    for spec in sample_cohort(40, seed=21):
        exam = render_exam(spec, 0.05)
        for lesion in exam.lesions:
            if lesion["kind"] != "mass":
                continue
            des = exam.images[(lesion["side"], lesion["view"], "DES")].astype(float)
            le = exam.images[(lesion["side"], lesion["view"], "LE")].astype(float)
            radius = max(1.0, 0.6 * min(lesion["rx"], lesion["ry"]))
            breast = le > 1000
            group = "malignant" if lesion["label"] else "benign"
            gain[group].append(_disk_mean(des, lesion["cx"], lesion["cy"], radius) - np.median(des[breast]))
            ring = _disk_mean(le, lesion["cx"], lesion["cy"], 2.5 * radius)
            contrast = _disk_mean(le, lesion["cx"], lesion["cy"], radius) - ring
            le_contrast["fatty" if spec.density in "ab" else "dense"].append(contrast)
    assert len(gain["malignant"]) >= 20 and len(gain["benign"]) >= 20
    assert np.mean(gain["malignant"]) > 2 * np.mean(gain["benign"])
    assert np.median(gain["malignant"]) > 2 * np.median(gain["benign"])
    # dense tissue masks lesions in LE
    assert np.mean(le_contrast["fatty"]) > np.mean(le_contrast["dense"])


def test_render_grid_follows_scale():
    assert grid_shape(1.0) == (3062, 2394) and pixel_spacing(1.0) == pytest.approx(0.1)
    assert pixel_spacing(0.1) == pytest.approx(1.0, rel=1e-3)
    exam = render_exam(sample_cohort(1, seed=0)[0], SCALE)
    assert len(exam.images) == 8 and len(exam.masks) == 4
    assert all(a.shape == grid_shape(SCALE) and a.dtype == np.uint16 for a in exam.images.values())
    assert all(m.dtype == bool for m in exam.masks.values())
    with pytest.raises(ValueError, match="scale"):
        grid_shape(0.0)


def test_cli_writes_cohort_and_refuses_foreign_folder(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--patients", "3", "--seed", "1", "--scale", str(SCALE),
            "--workers", "0"]
    assert cem_main(args) == 0
    assert sorted(p.name for p in out.glob("SYN*")) == ["SYN0001", "SYN0002", "SYN0003"]
    assert len(pd.read_csv(out / "labels.csv")) == 6
    assert cem_main([*args[:4], "2", *args[5:]]) == 0  # a smaller cohort replaces the larger one
    assert sorted(p.name for p in out.glob("SYN*")) == ["SYN0001", "SYN0002"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert cem_main(["synth", "--out", str(foreign), "--patients", "1", "--scale", str(SCALE)]) == 1
    assert "no synthetic cohort" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"
