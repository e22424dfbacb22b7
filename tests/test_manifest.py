"""The manifest: shared validation, checksums, save/load, verify, patient-level split, `cem manifest`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cemlib.cli import main as cem
from cemlib.core.views import SIDES, VIEWS
from cemlib.core.vocab import PATIENT_CLASSES
from cemlib.data.freshness import changed_files, verify
from cemlib.data.manifest import (
    BREAST_COLUMNS,
    EXCLUSION_COLUMNS,
    IMAGE_COLUMNS,
    Manifest,
    allocate,
    assemble,
    class_by_patient,
    exclusion,
    normalise_ratios,
    parse_label,
    split_patients,
    split_summary,
)
from tests.test_sources_internal import FAKE_MRN, FAKE_NAME, write_ge_cohort

# ----------------------------------------------------------------------------------------- helpers


def candidate_tables(root: Path, patients: list[str], labels: dict[str, tuple] | None = None):
    """Images (one small real file per view) and breasts for `patients`, as an adapter would pass them."""
    images, breasts = [], []
    for patient in patients:
        for side in SIDES:
            for view in VIEWS:
                for energy in ("LE", "DES"):
                    rel = f"{patient}/{side}_{view}_{energy}.bin"
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    (root / rel).write_bytes(f"{patient}{side}{view}{energy}".encode())
                    images.append({"patient_id": patient, "side": side, "view": view, "energy": energy,
                                   "path": rel, "rows": 10, "cols": 6})
            label = (labels or {}).get(patient, (0, 1))[SIDES.index(side)]
            breasts.append({"patient_id": patient, "side": side, "label": label, "birads": "3-4a",
                            "pathology": "benign", "age": 51.0, "density": "B"})
    return images, breasts


def breasts_with_classes(n_benign: int, n_unilateral: int, n_bilateral: int) -> pd.DataFrame:
    """Breast rows for patients of the three classes (ids P0000...)."""
    rows, index = [], 0
    for labels, count in (((0, 0), n_benign), ((1, 0), n_unilateral), ((1, 1), n_bilateral)):
        for _ in range(count):
            for side, label in zip(SIDES, labels, strict=True):
                rows.append({"patient_id": f"P{index:04d}", "side": side, "label": label})
            index += 1
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- assemble

def test_assemble_keeps_complete_patients_with_contract_columns(tmp_path: Path):
    images, breasts = candidate_tables(tmp_path, ["A", "B"])
    manifest = assemble("demo", tmp_path, images, breasts)
    assert tuple(manifest.images.columns) == IMAGE_COLUMNS
    assert tuple(manifest.breasts.columns) == BREAST_COLUMNS
    assert tuple(manifest.exclusions.columns) == EXCLUSION_COLUMNS
    assert manifest.patients == ["A", "B"] and len(manifest.images) == 16
    assert manifest.exclusions.empty
    assert manifest.breasts["label"].tolist() == [0, 1, 0, 1]
    assert set(manifest.breasts["birads"]) == {"3-4A"} and set(manifest.breasts["density"]) == {"b"}
    assert manifest.images["mask_path"].eq("").all()
    assert manifest.image_path(manifest.images.iloc[0]) == tmp_path.resolve() / "A/L_CC_LE.bin"


def test_assemble_excludes_each_bad_patient_with_a_reason_and_drops_nobody_silently(tmp_path: Path):
    patients = ["ok", "missing", "dup", "nolabel", "badlabel", "conflict", "gone", "dropped", "stray"]
    images, breasts = candidate_tables(tmp_path, patients)
    images = [i for i in images if not (i["patient_id"] == "missing" and i["path"].endswith("R_MLO_LE.bin"))]
    images.append({**next(i for i in images if i["patient_id"] == "dup"), "path": "dup/copy.bin"})
    breasts = [b for b in breasts if not (b["patient_id"] == "nolabel" and b["side"] == "L")]
    for b in breasts:
        if b["patient_id"] == "badlabel" and b["side"] == "R":
            b["label"] = "2"
    breasts.append({"patient_id": "conflict", "side": "L", "label": 1})
    (tmp_path / "gone/L_MLO_DES.bin").unlink()
    adapter_rows = [exclusion("dropped", "prior surgery", "clinical"),
                    exclusion("stray", "odd.dcm: unknown name", "unrecognised_name", path="stray/odd.dcm")]
    manifest = assemble("demo", tmp_path, images, breasts, adapter_rows)

    assert manifest.patients == ["ok", "stray"]
    reasons = manifest.exclusions.groupby("patient_id")["reason"].apply(" | ".join).to_dict()
    kinds = manifest.exclusions.groupby("patient_id")["kind"].apply(set).to_dict()
    assert kinds["missing"] == {"missing_view"} and "R MLO LE" in reasons["missing"]
    assert kinds["dup"] == {"duplicate_view"} and "dup/copy.bin" in reasons["dup"]
    assert kinds["nolabel"] == {"missing_label"} and "breast L" in reasons["nolabel"]
    assert kinds["badlabel"] == {"bad_label"} and "'2'" in reasons["badlabel"]
    assert kinds["conflict"] == {"label_conflict"}
    assert kinds["gone"] == {"unreadable"} and "gone/L_MLO_DES.bin" in reasons["gone"]
    assert reasons["dropped"] == "prior surgery"
    assert reasons["stray"] == "odd.dcm: unknown name"  # image-level row: the complete exam stays
    # every patient handed in is either kept or has its reason
    assert set(patients) == set(manifest.patients) | set(manifest.exclusions.patient_id)
    assert manifest.excluded_patients() == sorted(set(patients) - {"ok", "stray"})
    assert set(manifest.exclusions["dataset"]) == {"demo"}


def test_assemble_with_le_only_energies(tmp_path: Path):
    images, breasts = candidate_tables(tmp_path, ["A"])
    le_only = [i for i in images if i["energy"] == "LE"]
    manifest = assemble("ffdm", tmp_path, le_only, breasts, energies=("LE",))
    assert manifest.patients == ["A"] and len(manifest.images) == 4
    with pytest.raises(ValueError, match="unexpected energy"):
        assemble("ffdm", tmp_path, images, breasts, energies=("LE",))


def test_parse_label():
    assert [parse_label(v) for v in (0, 1, "0", " 1 ", 1.0, "0.0", np.int64(1))] == [0, 1, 0, 1, 1, 0, 1]
    assert [parse_label(v) for v in (2, "2", "yes", "", None, float("nan"), True, 0.5)] == [None] * 8


# -------------------------------------------------------------------------------------- save / load

def test_save_load_round_trip_keeps_types_and_text(tmp_path: Path):
    images, breasts = candidate_tables(tmp_path / "data", ["0001", "0002"])
    breasts[0]["age"] = ""
    manifest = assemble("demo", tmp_path / "data", images, breasts,
                        [exclusion("0003", "no images", "no_images")])
    manifest.breasts = split_patients(manifest.breasts, seed=3)
    manifest.split_seed, manifest.split_ratios = 3, (0.7, 0.1, 0.2)
    folder = manifest.save(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["breasts.csv", "exclusions.csv", "images.csv",
                                                         "manifest.json"]
    meta = json.loads((folder / "manifest.json").read_text())
    assert meta == {"dataset": "demo", "root": "../data", "root_absolute": str((tmp_path / "data").resolve()),
                    "energies": ["LE", "DES"], "split_seed": 3, "split_ratios": [0.7, 0.1, 0.2],
                    "cemlib_version": meta["cemlib_version"]}
    loaded = Manifest.load(folder)
    pd.testing.assert_frame_equal(loaded.images, manifest.images)
    pd.testing.assert_frame_equal(loaded.breasts, manifest.breasts)
    pd.testing.assert_frame_equal(loaded.exclusions, manifest.exclusions)
    assert loaded.patients == ["0001", "0002"] and np.isnan(loaded.breasts.loc[0, "age"])
    assert loaded.split_seed == 3 and loaded.root == (tmp_path / "data").resolve()


def test_load_reports_missing_files(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        Manifest.load(tmp_path)


def test_verify_finds_changed_and_vanished_files(tmp_path: Path):
    images, breasts = candidate_tables(tmp_path, ["A", "B"])
    manifest = assemble("demo", tmp_path, images, breasts)
    assert verify(manifest).empty
    (tmp_path / "A/R_CC_DES.bin").write_bytes(b"edited")
    (tmp_path / "B/L_MLO_LE.bin").unlink()
    problems = verify(manifest).set_index("path")["status"].to_dict()
    assert problems == {"A/R_CC_DES.bin": "changed", "B/L_MLO_LE.bin": "missing"}


# -------------------------------------------------------------------------------------------- split

@pytest.mark.parametrize(("n", "ratios", "expected"), [
    (10, (0.7, 0.1, 0.2), [7, 1, 2]),
    (39, (0.7, 0.1, 0.2), [27, 4, 8]),   # 27.3, 3.9, 7.8: the two largest remainders get one more
    (765, (0.7, 0.1, 0.2), [536, 76, 153]),  # 535.5, 76.5, 153: tie goes to the earlier split
    (1, (0.7, 0.1, 0.2), [1, 0, 0]),
    (0, (0.7, 0.1, 0.2), [0, 0, 0]),
    (5, (7, 1, 2), [4, 0, 1]),          # 3.5, 0.5, 1.0
])
def test_allocate_largest_remainder(n: int, ratios: tuple, expected: list[int]):
    assert allocate(n, ratios) == expected


def test_bad_ratios_are_an_error():
    assert normalise_ratios((7, 1, 2)) == pytest.approx((0.7, 0.1, 0.2))
    for bad in ((0.5, 0.5), (1, -1, 1), (0, 0, 0)):
        with pytest.raises(ValueError, match="split ratios"):
            normalise_ratios(bad)


def test_split_is_patient_level_stratified_and_seeded():
    breasts = breasts_with_classes(61, 137, 9)
    split = split_patients(breasts, (0.7, 0.1, 0.2), seed=0)
    per_patient = split.groupby("patient_id")["split"].agg(set)
    assert per_patient.map(len).eq(1).all()  # both breasts of a patient in one split
    members = {s: set(split.loc[split.split == s, "patient_id"]) for s in ("train", "val", "test")}
    assert not (members["train"] & members["val"] or members["train"] & members["test"]
                or members["val"] & members["test"])
    assert set().union(*members.values()) == set(breasts.patient_id)
    classes = class_by_patient(split)
    first_split = per_patient.map(lambda s: next(iter(s)))
    for patient_class, n in zip(PATIENT_CLASSES, (61, 137, 9), strict=True):
        counts = first_split[classes == patient_class].value_counts()
        for name, ratio in zip(("train", "val", "test"), (0.7, 0.1, 0.2), strict=True):
            assert abs(counts.get(name, 0) - n * ratio) < 1
    assert split_patients(breasts, seed=0)["split"].tolist() == split["split"].tolist()
    assert split_patients(breasts, seed=1)["split"].tolist() != split["split"].tolist()
    shuffled = breasts.sample(frac=1.0, random_state=5)
    again = split_patients(shuffled, seed=0).set_index(["patient_id", "side"])["split"]
    reference = split.set_index(["patient_id", "side"])["split"]
    assert again.sort_index().tolist() == reference.sort_index().tolist()


def test_split_summary_has_table_2_shape():
    split = split_patients(breasts_with_classes(10, 20, 3), seed=2)
    table = split_summary(split)
    assert list(table.index) == [*PATIENT_CLASSES, "total"]
    assert list(table.columns) == ["train", "val", "test", "total"]
    assert table.loc["bilateral benign"].tolist() == [7, 1, 2, 10]
    assert table.loc["unilateral malignant"].tolist() == [14, 2, 4, 20]
    assert table.loc["bilateral malignant"].tolist() == [2, 0, 1, 3]  # 2.1, 0.3, 0.6
    assert table.loc["total", "total"] == 33


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_writes_tables_verifies_and_is_reproducible(tmp_path: Path, capsys):
    root = write_ge_cohort(tmp_path / "D", 6)
    assert cem(["manifest", str(root), "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "6 patients kept of 6 found" in out and "48 images" in out and "layout ge" in out
    first = Manifest.load(root / "manifest")
    assert set(first.breasts.split) <= {"train", "val", "test"} and first.split_seed == 4
    assert cem(["manifest", "ge", "--root", str(root), "--out", str(tmp_path / "m2"), "--seed", "4"]) == 0
    second = Manifest.load(tmp_path / "m2")
    assert first.images.sha256.tolist() == second.images.sha256.tolist()
    assert first.breasts.split.tolist() == second.breasts.split.tolist()
    for csv in (root / "manifest").glob("*.csv"):
        text = csv.read_text()
        assert FAKE_NAME not in text and FAKE_MRN not in text

    capsys.readouterr()
    assert cem(["manifest", "--verify", str(root / "manifest")]) == 0
    (root / "SYN0002" / "L_CC_LE.dcm").unlink()
    assert cem(["manifest", "--verify", str(root / "manifest")]) == 1
    assert "missing: ge/SYN0002 L CC LE" in capsys.readouterr().out


def test_cli_reports_bad_usage(tmp_path: Path, capsys):
    assert cem(["manifest", "dicomdir", "--root", str(tmp_path)]) == 1
    assert "unknown layout 'dicomdir'" in capsys.readouterr().err
    assert cem(["manifest", "ge"]) == 1
    assert "needs --root" in capsys.readouterr().err
    assert cem(["manifest", str(tmp_path / "nowhere")]) == 1
    assert "not found" in capsys.readouterr().err
    assert cem(["manifest", str(tmp_path), "--split", "1", "-1", "1"]) == 1
    assert "split ratios" in capsys.readouterr().err
    assert cem(["manifest", str(tmp_path)]) == 1
    assert "no known dataset layout" in capsys.readouterr().err


def test_external_layouts_get_the_external_split(tmp_path: Path, monkeypatch):
    import sys
    import types

    from cemlib.data import sources
    from cemlib.data.sources import build

    images, breasts = candidate_tables(tmp_path, ["X1", "X2"])
    fake = types.ModuleType("fake_external_adapter")
    fake.detect = lambda root: True
    fake.scan = lambda root, workers=None: assemble("replica", root, images, breasts)
    monkeypatch.setitem(sys.modules, "fake_external_adapter", fake)
    monkeypatch.setitem(sources.ADAPTERS, "inbreast", "fake_external_adapter")
    manifest, layout = build(tmp_path, "inbreast")
    assert layout == "inbreast" and set(manifest.breasts["split"]) == {"external"}
    assert manifest.split_seed is None and manifest.split_ratios is None
    assert split_summary(manifest.breasts).columns.tolist() == ["external", "total"]


# ------------------------------------------------------------------------------ a moved project

def test_a_moved_project_finds_its_data_through_relative_paths(tmp_path: Path, capsys):
    project = tmp_path / "project"
    root = write_ge_cohort(project / "data" / "cohort", 3)
    assert cem(["manifest", str(root), "--out", str(project / "manifests" / "ge")]) == 0
    meta = json.loads((project / "manifests" / "ge" / "manifest.json").read_text())
    assert meta["root"] == "../../data/cohort" and meta["root_absolute"] == str(root.resolve())
    moved = tmp_path / "elsewhere" / "project"
    moved.parent.mkdir()
    shutil.move(project, moved)  # the reproduction: the moved project refused its own data
    manifest = Manifest.load(moved / "manifests" / "ge")
    assert manifest.root == (moved / "data" / "cohort").resolve()
    assert manifest.image_path(manifest.images.iloc[0]).is_file()
    assert changed_files(manifest).empty and verify(manifest).empty
    capsys.readouterr()
    assert cem(["manifest", "--verify", str(moved / "manifests" / "ge")]) == 0


def test_old_absolute_manifests_still_load_and_a_lone_copy_falls_back_to_the_absolute_root(tmp_path: Path):
    root = write_ge_cohort(tmp_path / "data", 2)
    assert cem(["manifest", str(root)]) == 0
    path = root / "manifest" / "manifest.json"
    meta = json.loads(path.read_text())
    old = {key: value for key, value in meta.items() if key != "root_absolute"}
    old["root"] = str(root.resolve())
    path.write_text(json.dumps(old))  # as manifests were written before relative roots
    assert Manifest.load(root / "manifest").root == root.resolve()
    path.write_text(json.dumps(meta))
    copy = Path(shutil.copytree(root / "manifest", tmp_path / "shared" / "deep" / "manifest"))
    assert Manifest.load(copy).root == root.resolve()  # ../../data is not there: the absolute root is


def test_a_profile_moved_with_its_data_is_not_refused(tmp_path: Path):
    from cemlib.core.settings import load_profile
    from cemlib.study import prepare

    def plan(base: Path):
        profile = load_profile("smoke", {"data.root": str(base / "data"), "data.synth.patients": 3,
                                         "data.synth.scale": 0.03, "data.manifest": str(base / "manifest")})
        return prepare.plan_dataset(profile)

    first = prepare.ensure_manifest(plan(tmp_path / "a"), workers=0)
    shutil.move(tmp_path / "a", tmp_path / "b")
    again = prepare.ensure_manifest(plan(tmp_path / "b"), workers=0)
    assert again.root == (tmp_path / "b" / "data").resolve()
    pd.testing.assert_frame_equal(again.breasts, first.breasts)
