"""Source adapters for the GE (synthetic) layout and the authors' MF_MODEL layout, and the DICOM checks."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from cemlib.core.views import SIDES, VIEWS
from cemlib.data import sources
from cemlib.data.manifest import Manifest
from cemlib.data.sources import ImageRejected, check_mg_header, ge, mfmodel
from tests.factories import write_mg_dicom

#: A byte-identical copy of the authors' example label sheet (shared/real/MF_MODEL_label.xlsx).
REAL_SHEET = Path(__file__).resolve().parent / "data" / "MF_MODEL_label.xlsx"
SHARED_REAL_SHEET = Path(__file__).resolve().parents[2] / "shared" / "real" / "MF_MODEL_label.xlsx"
FAKE_NAME = "DOE^JANE^FAKE"
FAKE_MRN = "MRN-99887766"
ENERGY_TAGS = {
    "LE": (["ORIGINAL", "PRIMARY", "", "LOW_ENERGY"], "LOW_ENERGY"),
    "DES": (["DERIVED", "PRIMARY", "", "RECOMBINED"], "RECOMBINED"),
}


def mg_tags(side: str, view: str, energy: str, **overrides) -> dict:
    """Header tags a GE CEM image of (side, view, energy) carries, with fake PHI."""
    image_type, series = ENERGY_TAGS[energy]
    tags = {"ImageLaterality": side, "ViewPosition": view, "ImageType": image_type,
            "SeriesDescription": f"{series} {side} {view}", "PatientName": FAKE_NAME, "PatientID": FAKE_MRN}
    tags.update(overrides)
    return tags


def tiny_pixels(seed: int, shape: tuple[int, int] = (12, 8)) -> np.ndarray:
    """A small 14-bit image; its content depends on the seed so files differ."""
    return np.random.default_rng(seed).integers(1500, 3300, size=shape, dtype=np.uint16)


def write_ge_cohort(root: Path, n_patients: int = 4, labels: list[tuple[int, int]] | None = None) -> Path:
    """A GE-layout folder: n patients x 8 DICOMs, labels.csv, and a mask for the first malignant view."""
    root.mkdir(parents=True, exist_ok=True)
    labels = labels or [((i % 3) == 1, i % 5 == 2) for i in range(n_patients)]
    rows = []
    for index in range(n_patients):
        patient = f"SYN{index + 1:04d}"
        for s_index, side in enumerate(SIDES):
            for v_index, view in enumerate(VIEWS):
                for e_index, energy in enumerate(("LE", "DES")):
                    seed = index * 8 + s_index * 4 + v_index * 2 + e_index
                    write_mg_dicom(root / patient / f"{side}_{view}_{energy}.dcm",
                                   tiny_pixels(seed, (12 + index, 8)), **mg_tags(side, view, energy))
            label = int(labels[index][s_index])
            rows.append({"patient_id": patient, "side": side, "label": label,
                         "birads": "4B" if label else "2", "pathology": "IDC" if label else "fibroadenoma",
                         "age": 40 + index, "density": "c"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    mask = root / "masks" / "SYN0002" / "L_CC.png"
    mask.parent.mkdir(parents=True, exist_ok=True)
    mask.write_bytes(b"\x89PNG placeholder")
    return root


def set_label(root: Path, patient: str, side: str, value: str) -> None:
    """Rewrite one breast's label in labels.csv."""
    labels = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    labels.loc[(labels.patient_id == patient) & (labels.side == side), "label"] = value
    labels.to_csv(root / "labels.csv", index=False)


def excluded(manifest: Manifest, patient: str) -> pd.DataFrame:
    """The exclusion rows of one patient, after checking the patient is out of breasts and images."""
    assert patient not in set(manifest.breasts.patient_id)
    assert patient not in set(manifest.images.patient_id)
    rows = manifest.exclusions[manifest.exclusions.patient_id == patient]
    assert len(rows) >= 1
    return rows


@pytest.fixture
def ge_root(tmp_path: Path) -> Path:
    return write_ge_cohort(tmp_path / "ge", 4)


# ------------------------------------------------------------------------------------------ GE layout

def test_ge_scan_reads_every_image_label_and_mask(ge_root: Path):
    manifest = ge.scan(ge_root, workers=2)
    assert manifest.dataset == "ge"
    assert len(manifest.patients) == 4 and len(manifest.images) == 32 and len(manifest.breasts) == 8
    assert manifest.exclusions.empty
    first = manifest.images[manifest.images.patient_id == "SYN0001"]
    assert list(first.side + first.view) == ["LCC", "LCC", "LMLO", "LMLO", "RCC", "RCC", "RMLO", "RMLO"]
    assert list(first.energy) == ["LE", "DES"] * 4
    # rows/cols come from the header: patient index i was written 12 + i rows high
    assert set(manifest.images.loc[manifest.images.patient_id == "SYN0003", "rows"]) == {14}
    assert set(manifest.images["cols"]) == {8}
    masked = manifest.images[manifest.images.mask_path != ""]
    assert sorted(masked.energy) == ["DES", "LE"]
    assert set(masked.mask_path) == {"masks/SYN0002/L_CC.png"}
    labels = manifest.breasts.set_index(["patient_id", "side"])["label"]
    assert labels[("SYN0002", "L")] == 1 and labels[("SYN0001", "R")] == 0
    assert manifest.breasts.loc[0, "birads"] in {"2", "4B"}


def test_ge_sha256_matches_hashlib_and_is_stable(ge_root: Path):
    first, second = ge.scan(ge_root), ge.scan(ge_root)
    assert first.images["sha256"].tolist() == second.images["sha256"].tolist()
    row = first.images.iloc[5]
    assert row["sha256"] == hashlib.sha256(first.image_path(row).read_bytes()).hexdigest()


def test_ge_dataset_is_synthetic_when_cohort_json_present(ge_root: Path):
    (ge_root / "cohort.json").write_text("{}")
    assert ge.scan(ge_root).dataset == "synthetic"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "header_only"])
def test_corrupt_or_truncated_dicom_excludes_patient(ge_root: Path, damage: str):
    path = ge_root / "SYN0002" / "R_MLO_DES.dcm"
    data = path.read_bytes()
    path.write_bytes({"garbage": b"not a dicom file at all" * 10, "truncated": data[:-40],
                      "header_only": data[:200]}[damage])
    manifest = ge.scan(ge_root)
    rows = excluded(manifest, "SYN0002")
    image_row = rows[rows.path == "SYN0002/R_MLO_DES.dcm"]
    assert list(image_row.kind) == ["unreadable"]
    assert "R_MLO_DES.dcm" in image_row.reason.iloc[0]
    assert rows[rows.path == ""].reason.str.contains("R MLO DES").any()
    assert len(manifest.patients) == 3


def test_missing_view_excludes_patient_naming_the_view(ge_root: Path):
    (ge_root / "SYN0003" / "L_MLO_LE.dcm").unlink()
    rows = excluded(ge.scan(ge_root), "SYN0003")
    assert list(rows.kind) == ["missing_view"]
    assert "L MLO LE" in rows.reason.iloc[0] and rows.side.iloc[0] == "L"


def test_duplicated_view_excludes_patient_naming_both_files(ge_root: Path):
    source = ge_root / "SYN0001" / "R_CC_LE.dcm"
    shutil.copy(source, ge_root / "SYN0001" / "r_cc_le.DCM")
    rows = excluded(ge.scan(ge_root), "SYN0001")
    assert list(rows.kind) == ["duplicate_view"]
    assert "R_CC_LE.dcm" in rows.reason.iloc[0] and "r_cc_le.DCM" in rows.reason.iloc[0]


@pytest.mark.parametrize(("tags", "kind", "words"), [
    ({"ImageLaterality": "R"}, "tag_mismatch", "ImageLaterality 'R'"),
    ({"ViewPosition": "MLO"}, "tag_mismatch", "ViewPosition 'MLO'"),
    ({"ViewPosition": "ML"}, "tag_mismatch", "ViewPosition 'ML'"),
    ({"ImageType": ["DERIVED", "PRIMARY", "", "RECOMBINED"], "SeriesDescription": "RECOMBINED L CC"},
     "tag_mismatch", "recombined"),
    ({"Modality": "CT"}, "not_mg", "Modality is 'CT'"),
])
def test_header_disagreeing_with_file_name_excludes_patient(ge_root: Path, tags: dict, kind: str, words: str):
    write_mg_dicom(ge_root / "SYN0004" / "L_CC_LE.dcm", tiny_pixels(0), **mg_tags("L", "CC", "LE", **tags))
    rows = excluded(ge.scan(ge_root), "SYN0004")
    image_row = rows[rows.path == "SYN0004/L_CC_LE.dcm"]
    assert list(image_row.kind) == [kind]
    assert words in image_row.reason.iloc[0]


def test_laterality_tag_is_used_when_image_laterality_is_absent(tmp_path: Path):
    path = write_mg_dicom(tmp_path / "x.dcm", tiny_pixels(1), **mg_tags("L", "CC", "LE"))
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.ImageLaterality
    ds.Laterality = "R"
    ds.save_as(path)
    with pytest.raises(ImageRejected, match="Laterality 'R'"):
        check_mg_header(path, "L", "CC", "LE")
    assert check_mg_header(path, "R", "CC", "LE") == (12, 8)


def test_header_without_view_or_energy_statement_is_accepted(tmp_path: Path):
    path = write_mg_dicom(tmp_path / "x.dcm", tiny_pixels(1), ViewPosition="",
                          ImageType=["ORIGINAL", "PRIMARY"], SeriesDescription="")
    assert check_mg_header(path, "L", "MLO", "DES") == (12, 8)


@pytest.mark.parametrize(("value", "kind", "words"), [
    ("2", "bad_label", "is '2', expected 0 or 1"),
    ("maybe", "bad_label", "'maybe'"),
    ("", "missing_label", "label of breast R is empty"),
])
def test_bad_label_excludes_patient(ge_root: Path, value: str, kind: str, words: str):
    set_label(ge_root, "SYN0002", "R", value)
    rows = excluded(ge.scan(ge_root), "SYN0002")
    assert list(rows.kind) == [kind] and words in rows.reason.iloc[0]


def test_missing_label_row_and_missing_folder(ge_root: Path):
    labels = pd.read_csv(ge_root / "labels.csv", dtype=str)
    extra = labels[labels.patient_id == "SYN0001"].assign(patient_id="SYN0099")
    labels = pd.concat([labels[~((labels.patient_id == "SYN0003") & (labels.side == "L"))], extra])
    labels.to_csv(ge_root / "labels.csv", index=False)
    manifest = ge.scan(ge_root)
    assert excluded(manifest, "SYN0003").reason.tolist() == ["no label for breast L"]
    assert excluded(manifest, "SYN0099").kind.tolist() == ["no_images"]
    assert len(manifest.patients) == 3


def test_stray_file_is_reported_but_complete_exam_is_kept(ge_root: Path):
    shutil.copy(ge_root / "SYN0001" / "L_CC_LE.dcm", ge_root / "SYN0001" / "L_XCCL_LE.dcm")
    (ge_root / "SYN0001" / "notes.txt").write_text("ignored: not a DICOM name")
    manifest = ge.scan(ge_root)
    assert "SYN0001" in manifest.patients
    assert manifest.exclusions.to_dict("records") == [{
        "dataset": "ge", "patient_id": "SYN0001", "side": "", "path": ge.stored_path("SYN0001/L_XCCL_LE.dcm"),
        "reason": "a .dcm file whose name is not SIDE_VIEW_ENERGY.dcm "
                  "(e.g. L_CC_LE.dcm; the path column holds it, private/paths.csv its name)",
        "kind": "unrecognised_name"}]


def test_ge_folder_names_become_pseudonyms_kept_only_in_the_private_map(ge_root: Path, tmp_path: Path):
    """The reproduction: a GE folder `Jane_Doe_1970` was the patient_id in breasts.csv and images.csv."""
    (ge_root / "SYN0002").rename(ge_root / "Jane_Doe_1970")
    (ge_root / "masks" / "SYN0002").rename(ge_root / "masks" / "Jane_Doe_1970")
    labels = pd.read_csv(ge_root / "labels.csv", dtype=str)
    labels["patient_id"] = labels["patient_id"].replace("SYN0002", "Jane_Doe_1970")
    labels.to_csv(ge_root / "labels.csv", index=False)
    manifest = ge.scan(ge_root)
    alias = ge.pseudonym("Jane_Doe_1970")
    assert alias == "GE" + hashlib.sha256(b"Jane_Doe_1970").hexdigest()[:10].upper()
    assert alias in manifest.patients and ge.pseudonym("SYN0003") == "SYN0003"
    assert manifest.images.loc[manifest.images.patient_id == alias, "mask_path"].str.len().max() > 0
    out = manifest.save(tmp_path / "manifest")
    for name in ("images.csv", "breasts.csv", "exclusions.csv", "manifest.json"):
        table = (out / name).read_text()  # path columns included: they store the folder as its token
        assert "Jane" not in table and "Doe" not in table, name
    images = Manifest.load(out).images
    rows = images[images.patient_id == alias]
    assert set(rows.path.str.split("/").str[0]) == {"@" + alias}
    assert set(rows.mask_path) - {""} == {f"masks/@{alias}/L_CC.png"}
    loaded = Manifest.load(out)
    assert all(loaded.image_path(row).is_file() for row in rows.to_dict("records"))
    mask = loaded.mask_path(rows[rows.mask_path != ""].iloc[0])
    assert mask == (ge_root / "masks" / "Jane_Doe_1970" / "L_CC.png").resolve()
    private = pd.read_csv(out / "private" / "patient_names.csv")
    assert private.to_dict("records") == [{"patient_id": alias, "folder": "Jane_Doe_1970"}]
    assert "Jane_Doe_1970/L_CC_LE.dcm" in (out / "private" / "paths.csv").read_text()


def test_labels_csv_without_label_column_is_an_error_naming_the_file(ge_root: Path):
    pd.read_csv(ge_root / "labels.csv").drop(columns="label").to_csv(ge_root / "labels.csv", index=False)
    with pytest.raises(ValueError, match=r"labels\.csv: missing column\(s\) \['label'\]"):
        ge.scan(ge_root)


def test_fake_phi_never_reaches_written_tables(ge_root: Path, tmp_path: Path):
    (ge_root / "SYN0002" / "L_CC_DES.dcm").write_bytes(b"junk")  # an exclusion row is written too
    write_mg_dicom(ge_root / "SYN0003" / "R_CC_LE.dcm", tiny_pixels(3),
                   **mg_tags("R", "CC", "LE", Modality="OT"))
    out = ge.scan(ge_root).save(tmp_path / "out")
    written = "".join(p.read_text() for p in out.iterdir())
    assert "SYN0001" in written
    for secret in (FAKE_NAME, FAKE_MRN, "DOE", "99887766", "TEST-MRN"):
        assert secret not in written


# ------------------------------------------------------------------------------------ MF_MODEL layout

def sheet_names() -> list[tuple[int, str, str]]:
    """(row, column D name, column E label) of the real example workbook."""
    sheet = openpyxl.load_workbook(REAL_SHEET)["Sheet1"]
    return [(r, sheet.cell(r, 4).value, sheet.cell(r, 5).value) for r in range(1, sheet.max_row + 1)
            if sheet.cell(r, 4).value is not None]


def write_mf_cohort(root: Path, patient_dir: Path | None = None) -> Path:
    """The authors' layout: the real label.xlsx and one DICOM per column-D name, a folder per patient."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REAL_SHEET, root / "label.xlsx")
    base = patient_dir or root
    for row, name, _ in sheet_names():
        match = mfmodel.STEM.match(name)
        assert match, name
        energy = mfmodel.ENERGY[match["energy"]]
        write_mg_dicom(base / match["name"] / f"{name}.dcm", tiny_pixels(row),
                       **mg_tags(match["side"], match["view"], energy))
    return root


def edit_sheet(path: Path, cells: dict[str, object]) -> None:
    """Set cells (e.g. {'E5': '2'}) of Sheet1 in a workbook copy."""
    workbook = openpyxl.load_workbook(path)
    for ref, value in cells.items():
        workbook["Sheet1"][ref] = value
    workbook.save(path)


@pytest.fixture
def mf_root(tmp_path: Path) -> Path:
    return write_mf_cohort(tmp_path / "mf")


def test_real_sheet_structure_is_one_row_per_image():
    rows = sheet_names()
    assert rows[0][0] == 3  # the first two rows are empty
    assert len(rows) == 16 and len({name for _, name, _ in rows}) == 16
    assert {label for _, _, label in rows} == {"0", "1"}  # labels are text


def test_mf_scan_gives_per_breast_labels_under_pseudonyms(mf_root: Path):
    manifest = mfmodel.scan(mf_root)
    assert manifest.exclusions.empty
    assert manifest.dataset == "mfmodel"
    assert sorted(manifest.patients) == sorted([mfmodel.pseudonym("patient1"), mfmodel.pseudonym("patient2")])
    assert all(not p.startswith("patient") for p in manifest.patients)
    labels = manifest.breasts.set_index(["patient_id", "side"])["label"]
    for folder in ("patient1", "patient2"):
        assert labels[(mfmodel.pseudonym(folder), "R")] == 1
        assert labels[(mfmodel.pseudonym(folder), "L")] == 0
    assert len(manifest.images) == 16
    row = manifest.images[(manifest.images.side == "R") & (manifest.images.view == "MLO")
                          & (manifest.images.energy == "DES")].iloc[0]
    assert manifest.image_path(row).name.endswith("_RECOMBINED_MLO_R.dcm")  # found again from its tokens
    assert row["path"].startswith("@MF") and "patient" not in row["path"]


def test_mf_pseudonym_is_stable_and_short():
    assert mfmodel.pseudonym("patient1") == mfmodel.pseudonym("patient1")
    assert mfmodel.pseudonym("patient1") != mfmodel.pseudonym("patient2")
    assert mfmodel.pseudonym("patient1") == "MF" + hashlib.sha256(b"patient1").hexdigest()[:10].upper()


def test_mf_patient_folders_under_data(tmp_path: Path):
    root = write_mf_cohort(tmp_path / "mf", patient_dir=tmp_path / "mf" / "data")
    manifest = mfmodel.scan(root)
    assert len(manifest.patients) == 2 and manifest.images.path.str.startswith("data/").all()
    assert sources.detect_layout(root) == "mfmodel"


def test_mf_label_not_zero_or_one_excludes_that_exam_naming_the_row(mf_root: Path):
    edit_sheet(mf_root / "label.xlsx", {"E13": "2"})  # patient2_LOW_ENERGY_MLO_R
    manifest = mfmodel.scan(mf_root)
    rows = excluded(manifest, mfmodel.pseudonym("patient2"))
    assert list(rows.kind) == ["bad_label"]
    assert "label.xlsx row 13" in rows.reason.iloc[0] and "'2'" in rows.reason.iloc[0]
    assert manifest.patients == [mfmodel.pseudonym("patient1")]


def test_mf_exclusion_reasons_never_print_image_names(tmp_path: Path):
    """The reproduction: `label of Jane_Doe_1970_LOW_ENERGY_CC_L is 'x'` printed the patient's name."""
    root = write_mf_cohort(tmp_path / "mf")
    workbook = openpyxl.load_workbook(root / "label.xlsx")
    for row, name, _ in sheet_names():
        workbook["Sheet1"].cell(row, 4).value = name.replace("patient1", "Jane_Doe_1970")
    workbook["Sheet1"]["E7"] = "x"  # Jane_Doe_1970_LOW_ENERGY_CC_L
    workbook.save(root / "label.xlsx")
    folder = root / "Jane_Doe_1970"
    (root / "patient1").rename(folder)
    for path in folder.iterdir():
        path.rename(folder / path.name.replace("patient1", "Jane_Doe_1970"))
    write_mg_dicom(folder / "Jane_Doe_1970_LOW_ENERGY_MLO_R.dcm", tiny_pixels(1),
                   **mg_tags("L", "MLO", "LE"))  # laterality tag contradicting the name
    (folder / "Jane_Doe_1970_notes.dcm").write_bytes(b"x")
    manifest = mfmodel.scan(root)
    alias = mfmodel.pseudonym("Jane_Doe_1970")
    rows = excluded(manifest, alias)
    assert set(rows.kind) == {"bad_label", "tag_mismatch", "unrecognised_name"}
    assert f"label of {alias} LE CC L is 'x'" in " ".join(rows.reason)
    assert f"{alias} LE MLO R: ImageLaterality 'L'" in " ".join(rows.reason)
    for part in ("Jane", "Doe", "1970"):
        assert not rows.reason.str.contains(part).any(), part
    out = manifest.save(tmp_path / "manifest")
    assert (out / "private" / "patient_names.csv").read_text().count("Jane_Doe_1970") == 1


def test_mf_images_of_one_breast_disagreeing_excludes_exam(mf_root: Path):
    edit_sheet(mf_root / "label.xlsx", {"E7": "1"})  # patient1_LOW_ENERGY_CC_L, its breast is 0 elsewhere
    rows = excluded(mfmodel.scan(mf_root), mfmodel.pseudonym("patient1"))
    assert list(rows.kind) == ["label_conflict"] and "row 7" in rows.reason.iloc[0]


def test_mf_breast_not_in_sheet_is_missing_label(mf_root: Path):
    edit_sheet(mf_root / "label.xlsx", {f"{c}{r}": None for c in "DE" for r in range(15, 19)})  # patient2 L
    rows = excluded(mfmodel.scan(mf_root), mfmodel.pseudonym("patient2"))
    assert list(rows.kind) == ["missing_label"] and "breast L" in rows.reason.iloc[0]


def test_mf_header_checks_apply(mf_root: Path):
    write_mg_dicom(mf_root / "patient1" / "patient1_RECOMBINED_CC_R.dcm", tiny_pixels(4),
                   **mg_tags("L", "CC", "DES"))
    rows = excluded(mfmodel.scan(mf_root), mfmodel.pseudonym("patient1"))
    assert "ImageLaterality 'L'" in rows[rows.path != ""].reason.iloc[0]


@pytest.mark.parametrize(("cells", "message"), [
    ({f"D{r}": None for r in range(3, 19)} | {f"E{r}": None for r in range(3, 19)}, "holds no image names"),
    ({f"E{r}": None for r in range(3, 19)}, "column E of sheet Sheet1 holds no labels"),
    ({"D9": "1"}, "row 9: column D holds '1'"),
    ({"D10": None}, "row 10: label '0' in column E but no image name"),
])
def test_mf_malformed_sheet_is_an_error_naming_file_and_row(mf_root: Path, cells: dict, message: str):
    edit_sheet(mf_root / "label.xlsx", cells)
    with pytest.raises(ValueError, match=message) as info:
        mfmodel.scan(mf_root)
    assert "label.xlsx" in str(info.value)


def test_mf_header_row_is_tolerated(mf_root: Path):
    edit_sheet(mf_root / "label.xlsx", {"D2": "image", "E2": "label"})
    assert len(mfmodel.scan(mf_root).patients) == 2


def test_mf_workbook_that_is_not_xlsx_is_an_error(mf_root: Path):
    (mf_root / "label.xlsx").write_text("name,label\n")
    with pytest.raises(ValueError, match=r"label\.xlsx: not a readable \.xlsx workbook"):
        mfmodel.scan(mf_root)


def test_mf_sheet_rows_without_files_are_reported(mf_root: Path):
    shutil.rmtree(mf_root / "patient2")
    manifest = mfmodel.scan(mf_root)
    assert manifest.patients == [mfmodel.pseudonym("patient1")]
    rows = excluded(manifest, mfmodel.pseudonym("patient2"))
    assert list(rows.kind) == ["no_images"] and "8 image(s)" in rows.reason.iloc[0]


def test_detect_tells_the_layouts_apart(ge_root: Path, mf_root: Path, tmp_path: Path):
    assert ge.detect(ge_root) and not mfmodel.detect(ge_root)
    assert mfmodel.detect(mf_root) and not ge.detect(mf_root)
    assert sources.detect_layout(ge_root) == "ge"
    assert sources.detect_layout(mf_root) == "mfmodel"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no known dataset layout"):
        sources.detect_layout(tmp_path / "empty")


def test_unknown_layout_name_is_an_error():
    with pytest.raises(ValueError, match="unknown layout 'dicomdir'"):
        sources.load_adapter("dicomdir")


# ------------------------------------------------------------------------------ synthetic end to end

def test_synthetic_cohort_to_manifest_twice_gives_identical_checksums(tmp_path: Path):
    synthetic = pytest.importorskip("cemlib.synthetic")
    import pydicom

    from cemlib.cli import main as cem

    sha = []
    for run in range(2):
        root = synthetic.write_cohort(tmp_path / f"run{run}" / "D", patients=4, seed=1, scale=0.02, workers=0)
        assert cem(["manifest", str(root)]) == 0
        manifest = Manifest.load(root / "manifest")
        assert manifest.dataset == "synthetic" and len(manifest.patients) == 4
        assert len(manifest.images) == 32 and manifest.exclusions.empty
        sha.append(manifest.images["sha256"].tolist())
    assert sha[0] == sha[1]
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(root.glob("SYN*/*.dcm"))]
    written = "".join(p.read_text() for p in (root / "manifest").iterdir())
    for ds in headers:
        for secret in (str(ds.PatientName), str(ds.PatientID), str(ds.get("PatientBirthDate", ""))):
            assert secret and secret not in written


@pytest.mark.skipif(not SHARED_REAL_SHEET.is_file(), reason="the shared copy of the real sheet is not here")
def test_bundled_sheet_is_the_real_one():
    assert REAL_SHEET.read_bytes() == SHARED_REAL_SHEET.read_bytes()
