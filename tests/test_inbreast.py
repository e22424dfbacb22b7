"""INbreast adapter and replica: the real INbreast.csv, file names, tables, ROIs, labels, exclusions."""

from __future__ import annotations

import hashlib
import io
import plistlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import xlrd

from cemlib.data.sources import detect_layout, inbreast
from cemlib.data.sources.masks import read_mask_png
from cemlib.synthetic import inbreast as writer
from cemlib.synthetic import sample_cohort, write_cohort
from cemlib.synthetic.cohort import LESIONS_FILE, lesions_table

N_PATIENTS, SEED, SCALE = 6, 0, 0.06
SHARED_REAL_CSV = Path(__file__).resolve().parents[2] / "shared" / "real" / "INbreast.csv"


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    return writer.write_replica(tmp_path_factory.mktemp("inb") / "INbreast", N_PATIENTS, SEED, SCALE, 0)


@pytest.fixture(scope="module")
def manifest(replica):
    return inbreast.scan(replica)


@pytest.fixture(scope="module")
def plans():
    specs = sample_cohort(N_PATIENTS, SEED, "inbreast")
    return specs, writer.plan_replica(specs, SEED, writer.real_file_names())


# ------------------------------------------------------------------------------------- real table

def test_real_csv_counts():
    table = inbreast.read_csv_table(writer.REAL_CSV)
    assert len(table) == 410 and table["file_name"].is_unique
    assert table["birads"].value_counts().to_dict() == {
        "1": 67, "2": 220, "3": 23, "4a": 13, "4b": 8, "4c": 22, "5": 49, "6": 8}
    assert table["view"].value_counts().to_dict() == {"MLO": 206, "CC": 203, "FB": 1}
    assert table["laterality"].value_counts().to_dict() == {"L": 209, "R": 201}
    assert (table["acr"] == "").sum() == 1  # one ACR cell is a run of spaces
    labels = table["birads"].map(inbreast.birads_label)
    assert labels.sum() == 13 + 8 + 22 + 49 + 8


@pytest.mark.skipif(not SHARED_REAL_CSV.is_file(), reason="the shared copy of the real CSV is not here")
def test_shipped_copy_is_the_real_csv():
    assert writer.REAL_CSV.read_bytes() == SHARED_REAL_CSV.read_bytes()


def test_birads_rule_and_order():
    assert [inbreast.birads_label(b) for b in inbreast.BIRADS_VALUES] == [0, 0, 0, 1, 1, 1, 1, 1]
    assert inbreast.birads_label("") is None
    assert max(["2", "4a", "3"], key=inbreast.birads_rank) == "4a"
    assert max(["4c", "5", "4b"], key=inbreast.birads_rank) == "5"
    assert inbreast.normalise_birads(5.0) == "5" and inbreast.normalise_birads(" 4A ") == "4a"
    assert inbreast.normalise_birads("4") == "" and inbreast.normalise_birads(float("nan")) == ""


@pytest.mark.parametrize("name, parts", [
    ("22678622_6c613a14b80a8591_MG_R_CC_ANON.dcm", ("22678622", "6c613a14b80a8591", "R", "CC")),
    ("22678646_6c613a14b80a8591_MG_L_ML_ANON.dcm", ("22678646", "6c613a14b80a8591", "L", "MLO")),
    ("50994300_6c613a14b80a8591_MG_R_FB_ANON.dcm", ("50994300", "6c613a14b80a8591", "R", None)),
])
def test_dicom_names(name, parts):
    parsed = inbreast.parse_dicom_name(name)
    assert (parsed.file_name, parsed.patient_id, parsed.side, parsed.view) == parts


@pytest.mark.parametrize("name", ["22678622_MG_R_CC_ANON.dcm", "22678622_abc_MG_X_CC_ANON.dcm", "x.dcm"])
def test_other_names(name):
    assert inbreast.parse_dicom_name(name) is None


# -------------------------------------------------------------------------------------------- ROIs

def test_plist_rois_to_mask(tmp_path):
    square = [f"({x:.6f}, {y:.6f})" for x, y in [(10, 10), (19, 10), (19, 19), (10, 19)]]
    plist = {"Images": [{"ImageIndex": 0, "NumberOfROIs": 3, "ROIs": [
        {"Name": "Mass", "NumberOfPoints": 4, "Point_px": square},
        {"Name": "Calcification", "NumberOfPoints": 1, "Point_px": ["(40.000000, 31.000000)"]},
        {"Name": "Pectoral Muscle", "NumberOfPoints": 3, "Point_px": ["(0, 0)", "(5, 0)", "(0, 5)"]},
    ]}]}
    path = tmp_path / "1.xml"
    path.write_bytes(plistlib.dumps(plist, fmt=plistlib.FMT_XML))
    rois = inbreast.read_rois(path)
    assert [r["name"] for r in rois] == ["Mass", "Calcification"]
    mask = inbreast.roi_mask((50, 60), rois)
    assert mask[10:20, 10:20].all() and mask[:, :30].sum() == 100  # 10 x 10 pixels, outline included
    assert mask[:, 30:].sum() == 49 and mask[31, 40]  # single point: disc of radius 4 at (40, 31)
    assert not mask[:6, :6].any()  # pectoral muscle outline is not a lesion
    path.write_text("<plist><dict><key>Images</key></dict>")
    with pytest.raises(ValueError, match=r"1\.xml"):
        inbreast.read_rois(path)


# ------------------------------------------------------------------------------- replica and scan

def test_replica_layout_and_headers(replica, plans):
    real = set(writer.real_file_names())
    dicoms = sorted((replica / inbreast.DICOM_DIR).iterdir())
    assert len(dicoms) == sum(len(p.images) for p in plans[1])
    assert all(inbreast.parse_dicom_name(p.name).file_name in real for p in dicoms)
    ds = pydicom.dcmread(dicoms[0])
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "StudyDate", "AcquisitionDate",
                    "ViewPosition", "ImageLaterality", "Laterality"):
        assert keyword not in ds
    assert (ds.Modality, ds.BitsStored, ds.PhotometricInterpretation) == ("MG", 14, "MONOCHROME2")
    assert ds.pixel_array.max() <= 16383 and ds.pixel_array.min() == 0
    text = (replica / inbreast.CSV_NAME).read_bytes()
    header = b"Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads\r\n"
    assert text.startswith(header)
    assert b";" + b" " * 100 in text  # the blank ACR cell
    assert detect_layout(replica) == "inbreast"


def test_xls_has_17_columns_and_two_total_rows(replica):
    sheet = xlrd.open_workbook(replica / inbreast.XLS_NAME).sheet_by_index(0)
    assert sheet.ncols == 17 and "Mass " in sheet.row_values(0)
    raw = pd.DataFrame([sheet.row_values(r) for r in range(1, sheet.nrows)])
    table = inbreast.read_xls_table(replica / inbreast.XLS_NAME)
    assert len(raw) == len(table) + 2
    assert table.index.tolist() == inbreast.read_csv_table(replica / inbreast.CSV_NAME).index.tolist()


def test_replica_lesions_table_joins_the_tables(replica, manifest, plans, tmp_path):
    internal = write_cohort(tmp_path / "internal", N_PATIENTS, SEED, SCALE, 0, images=False)
    columns = pd.read_csv(internal / LESIONS_FILE, nrows=0).columns.tolist()
    text = {"patient_id": str, "birads": str, writer.LESION_KEY_COLUMN: str}
    found = pd.read_csv(replica / LESIONS_FILE, dtype=text)
    assert found.columns.tolist() == [*columns, writer.LESION_KEY_COLUMN]
    table = inbreast.read_csv_table(replica / inbreast.CSV_NAME)
    file_names: dict[tuple[str, str], list[str]] = {}
    for path in sorted((replica / inbreast.DICOM_DIR).iterdir()):
        name = inbreast.parse_dicom_name(path.name)
        file_names.setdefault((name.patient_id, name.side), []).append(name.file_name)
    # the replica's own labels: the highest Bi-Rads of a breast's CC and MLO rows, 1-3 benign, 4-6 malignant
    labels = {}
    for key, names in file_names.items():
        rows = table.loc[names]
        assert set(rows["laterality"]) == {key[1]}
        birads = max(rows.loc[rows["view"] != "FB", "birads"], key=inbreast.birads_rank)
        labels[key] = inbreast.birads_label(birads)
    assert 1 in labels.values() and 0 in labels.values()
    for key, label in labels.items():
        mine = found[(found["patient_id"] == key[0]) & (found["side"] == key[1])]
        assert set(mine["breast_label"]) <= {label}
        assert all(sorted(cell.split()) == sorted(file_names[key]) for cell in mine[writer.LESION_KEY_COLUMN])
        if label:  # every malignant breast of the tables has its cancer in lesions.csv
            assert 1 in set(mine["label"])
    assert {(r.patient_id, r.side) for r in found.itertuples()} <= set(labels)
    specs, patient_plans = plans
    by_hash = {plan.patient_hash: spec for spec, plan in zip(specs, patient_plans, strict=True)}
    assert len(found) == sum(len(by_hash[p].breasts[side].lesions) for p, side in labels)
    # the rows are the internal table builder's, for the breasts the tables list
    synthetic_id = {spec.patient_id: patient_hash for patient_hash, spec in by_hash.items()}
    rows = lesions_table(specs)
    rows["patient_id"] = rows["patient_id"].map(synthetic_id)
    rows = rows[[key in labels for key in zip(rows["patient_id"], rows["side"], strict=True)]]
    again = pd.read_csv(io.StringIO(rows.to_csv(index=False)), dtype=text)
    pd.testing.assert_frame_equal(found[columns], again)
    # the adapter reads the folder as the release: lesions.csv is neither an image nor an exclusion
    assert detect_layout(replica) == "inbreast"
    assert not manifest.exclusions["path"].str.contains(LESIONS_FILE).any()
    assert not manifest.images["path"].str.contains(LESIONS_FILE).any()


def test_scan_keeps_patients_with_four_views(manifest, plans):
    _, patient_plans = plans
    complete = {p.patient_hash for p in patient_plans if {i.side for i in p.images} == {"L", "R"}}
    assert set(manifest.patients) == complete and 0 < len(complete) < N_PATIENTS
    assert manifest.energies == ("LE",) and set(manifest.images["energy"]) == {"LE"}
    assert manifest.images.groupby("patient_id").size().eq(4).all()
    exclusions = manifest.exclusions
    fb = exclusions[exclusions["path"].str.contains("_FB_")]
    assert len(fb) == 1 and "view FB" in fb["reason"].iloc[0]
    for plan in patient_plans:
        if plan.patient_hash not in complete:
            reasons = exclusions.loc[exclusions["patient_id"] == plan.patient_hash, "reason"]
            assert reasons.str.contains("exam incomplete").any()


def test_labels_follow_birads_and_the_phantom(manifest, plans):
    specs, patient_plans = plans
    by_hash = {p.patient_hash: (spec, p) for spec, p in zip(specs, patient_plans, strict=True)}
    for row in manifest.breasts.itertuples():
        spec, plan = by_hash[row.patient_id]
        assert row.label == spec.breasts[row.side].label
        assert row.birads == plan.birads[row.side].upper()
        assert row.label == inbreast.birads_label(plan.birads[row.side])
        assert row.density == spec.density


def test_masks_sit_on_the_lesions(manifest, replica, plans):
    specs, patient_plans = plans
    by_hash = {p.patient_hash: (spec, p) for spec, p in zip(specs, patient_plans, strict=True)}
    checked = 0
    for row in manifest.images.itertuples():
        spec, plan = by_hash[row.patient_id]
        truth = writer.render_views(spec, plan, SCALE)[(row.side, row.view)]["mask"]
        if not truth.any():
            assert row.mask_path == ""
            continue
        path = manifest.mask_path(row._asdict())
        assert replica.resolve() not in path.resolve().parents
        mask = read_mask_png(path)
        assert mask.shape == truth.shape == (row.rows, row.cols)
        assert np.abs(np.argwhere(mask).mean(axis=0) - np.argwhere(truth).mean(axis=0)).max() < 3.0
        assert (mask & truth).sum() > 0.4 * truth.sum()
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("keep", ["csv", "xls"])
def test_either_table_alone_gives_the_same_manifest(replica, manifest, tmp_path, keep):
    copy = shutil.copytree(replica, tmp_path / "INbreast")
    (copy / (inbreast.XLS_NAME if keep == "csv" else inbreast.CSV_NAME)).unlink()
    other = inbreast.scan(copy, mask_dir=tmp_path / "masks")
    pd.testing.assert_frame_equal(other.breasts, manifest.breasts)
    assert other.images["path"].tolist() == manifest.images["path"].tolist()


def test_tables_that_disagree_exclude_the_image(replica, manifest, tmp_path):
    copy = shutil.copytree(replica, tmp_path / "INbreast")
    target = manifest.images["path"].iloc[0]
    file_name = Path(target).name.split("_")[0]
    lines = (copy / inbreast.CSV_NAME).read_text().split("\n")
    for i, line in enumerate(lines):
        cells = line.rstrip("\r").split(";")
        if len(cells) == 8 and cells[5] == file_name:
            cells[7] = "6" if cells[7] != "6" else "1"
            lines[i] = ";".join(cells) + "\r"
    (copy / inbreast.CSV_NAME).write_text("\n".join(lines))
    other = inbreast.scan(copy, write_masks=False)
    row = other.exclusions[other.exclusions["path"] == target].iloc[0]
    assert row["kind"] == "table_conflict" and "disagree on File Name" in row["reason"]
    assert manifest.images["patient_id"].iloc[0] not in other.patients


def test_missing_pieces_fail_with_the_folder_named(replica, tmp_path):
    copy = shutil.copytree(replica, tmp_path / "INbreast")
    (copy / inbreast.CSV_NAME).unlink()
    (copy / inbreast.XLS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=r"neither INbreast\.csv nor INbreast\.xls"):
        inbreast.scan(copy)
    with pytest.raises(FileNotFoundError, match="AllDICOMs"):
        inbreast.scan(tmp_path)


def test_replica_is_deterministic(replica, tmp_path):
    again = writer.write_replica(tmp_path / "INbreast", N_PATIENTS, SEED, SCALE, 0)

    def digests(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    assert LESIONS_FILE in digests(replica) and digests(again) == digests(replica)
