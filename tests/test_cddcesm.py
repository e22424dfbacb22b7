"""CDD-CESM adapter and replica: names, workbook quirks, VIA shapes to masks, labels, exclusions."""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cemlib.data.sources import cddcesm, detect_layout
from cemlib.data.sources.masks import (
    disc_mask,
    ellipse_mask,
    mask_outlines,
    polygon_mask,
    read_mask_png,
    via_region_mask,
)
from cemlib.synthetic import cddcesm as writer
from cemlib.synthetic import sample_cohort, write_cohort
from cemlib.synthetic.cohort import LESIONS_FILE, lesions_table

N_PATIENTS, SEED, SCALE = 6, 0, 0.08


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    return writer.write_replica(tmp_path_factory.mktemp("cdd") / "CDD-CESM", N_PATIENTS, SEED, SCALE, 0)


@pytest.fixture(scope="module")
def manifest(replica):
    return cddcesm.scan(replica)


# ------------------------------------------------------------------------------------------- names

@pytest.mark.parametrize("text, key", [
    ("P12_L_CM_CC .jpg", "P12_L_CM_CC"),
    (" P12_L_CM_CC ", "P12_L_CM_CC"),
    ("P3_R_DM_MLO.jpg", "P3_R_DM_MLO"),
    ("P3_R_DM_MLO.JPG", "P3_R_DM_MLO"),
])
def test_image_names_tolerate_stray_spaces(text, key):
    name = cddcesm.parse_image_name(text)
    assert name is not None and name.key == key
    assert name.energy == ("DES" if "_CM_" in key else "LE")


@pytest.mark.parametrize("text", ["desktop.ini", "P12_L_XX_CC.jpg", "P12_B_DM_CC.jpg", "12_L_DM_CC.jpg"])
def test_other_names_are_not_images(text):
    assert cddcesm.parse_image_name(text) is None


def test_dollar_joined_birads_takes_the_highest_category():
    assert cddcesm.birads_values("4$2") == ["4", "2"]
    assert cddcesm.birads_values("3$2$2") == ["3", "2", "2"]
    assert cddcesm.max_birads(["3$2$2", "5$2", "2"]) == "5"
    assert cddcesm.max_birads(["4", "4C", "4A"]) == "4C"
    assert cddcesm.max_birads(["", "_"]) == ""


def test_breast_label_is_malignant_if_any_image_is():
    assert cddcesm.breast_label(["Normal", "Benign"]) == (0, "Benign")
    assert cddcesm.breast_label(["Normal", "Normal"]) == (0, "Normal")
    assert cddcesm.breast_label(["Benign", "Malignant", "Normal"]) == (1, "Malignant")
    assert cddcesm.breast_label(["Normal", "unknown"]) == (None, "")


# ------------------------------------------------------------------------------------- VIA shapes

def test_polygon_pixel_counts_by_hand():
    rectangle = polygon_mask((10, 10), [2, 6, 6, 2], [3, 3, 8, 8])
    expected = np.zeros((10, 10), bool)
    expected[3:9, 2:7] = True  # rows 3..8, columns 2..6, outline included
    assert np.array_equal(rectangle, expected)
    triangle = polygon_mask((10, 10), [0, 4, 0], [0, 0, 4])
    assert triangle.sum() == 15  # lattice points with x, y >= 0 and x + y <= 4


def test_circle_area_matches_pi_r_squared():
    mask = via_region_mask((100, 100), {"name": "circle", "cx": 50, "cy": 50, "r": 10})
    assert mask.sum() == 317  # Gauss circle problem: lattice points with x^2 + y^2 <= 100
    assert abs(mask.sum() - math.pi * 100) / (math.pi * 100) < 0.02


def test_ellipse_area_and_rotation():
    flat = via_region_mask((101, 101), {"name": "ellipse", "cx": 50, "cy": 50, "rx": 30, "ry": 12})
    assert abs(flat.sum() - math.pi * 30 * 12) / (math.pi * 30 * 12) < 0.02
    assert flat[50, 80] and not flat[50, 81] and flat[62, 50] and not flat[63, 50]
    turned = via_region_mask((101, 101), {"name": "ellipse", "cx": 50, "cy": 50, "rx": 30, "ry": 12,
                                          "theta": math.pi / 2})
    assert np.array_equal(turned, flat.T)


def test_polyline_is_closed_and_point_is_a_small_disc():
    xs, ys = [2, 6, 6, 2], [3, 3, 8, 8]
    polyline = via_region_mask((10, 10), {"name": "polyline", "all_points_x": xs, "all_points_y": ys})
    assert polyline.sum() == 30
    point = via_region_mask((20, 20), {"name": "point", "cx": 10, "cy": 10})
    assert point.sum() == 49 and point[10, 10]  # radius 4: lattice points with x^2 + y^2 <= 16


def test_coordinates_outside_the_image_are_clipped():
    clipped = via_region_mask((20, 20), {"name": "polygon", "all_points_x": [-5, 4, 4, -5],
                                         "all_points_y": [-5, -5, 9, 9]})
    assert clipped.sum() == 50 and clipped[:10, :5].all()  # columns 0..4, rows 0..9
    corner = disc_mask((100, 100), 0, 0, 10)
    # quarter of the 317 - 41 off-axis lattice points, plus the 21 on the two non-negative half-axes
    assert corner.sum() == (317 - 41) // 4 + 21 == 90
    assert not via_region_mask((20, 20), {"name": "circle", "cx": -50, "cy": -50, "r": 5}).any()


def test_bad_regions_raise():
    with pytest.raises(ValueError, match="unknown region shape"):
        via_region_mask((10, 10), {"name": "spline"})
    with pytest.raises(ValueError, match="all_points_x"):
        via_region_mask((10, 10), {"name": "polygon"})


def test_mask_outlines_recover_a_drawn_ellipse():
    truth = ellipse_mask((80, 80), 40, 30, 15, 6, 0.5)
    (outline,) = mask_outlines(truth)
    assert outline.area == truth.sum()
    assert abs(outline.cx - 40) < 0.5 and abs(outline.cy - 30) < 0.5
    assert abs(outline.rx - 15) < 1.0 and abs(outline.ry - 6) < 1.0
    assert abs(math.remainder(outline.theta - 0.5, math.pi)) < 0.05
    refilled = polygon_mask(truth.shape, outline.xs, outline.ys)
    assert (refilled & truth).sum() / (refilled | truth).sum() > 0.85


# --------------------------------------------------------------------------------- VIA CSV reading

def _write_via(path: Path, rows: list[list]) -> Path:
    lines = [",".join(cddcesm.VIA_COLUMNS)]
    for name, count, region_id, shape in rows:
        cell = '"' + json.dumps(shape).replace('"', '""') + '"'
        lines.append(f"{name},1000,{{}},{count},{region_id},{cell},{{}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_segmentation_csv_rows(tmp_path):
    path = _write_via(tmp_path / "seg.csv", [
        ["P1_L_DM_CC.jpg", 2, 0, {"name": "circle", "cx": 5, "cy": 5, "r": 2}],
        ["P1_L_DM_CC .jpg", 2, 1, {"name": "point", "cx": 9, "cy": 9}],
        ["P2_R_CM_MLO.jpg", 0, 0, {}],
    ])
    regions = cddcesm.read_segmentations(path)
    assert [r["name"] for r in regions["P1_L_DM_CC"]] == ["circle", "point"]
    assert regions["P2_R_CM_MLO"] == []  # `{}` means: listed, no region


def test_segmentation_csv_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "seg.csv"
    bad.write_text(",".join(cddcesm.VIA_COLUMNS) + "\nP1_L_DM_CC.jpg,1,{},1,0,{not json,{}\n")
    with pytest.raises(ValueError, match=r"seg\.csv line 2"):
        cddcesm.read_segmentations(bad)
    header = tmp_path / "other.csv"
    header.write_text("filename,size\n")
    with pytest.raises(ValueError, match="VIA export header"):
        cddcesm.read_segmentations(header)


# ------------------------------------------------------------------------------- replica and scan

def test_replica_has_the_release_layout(replica):
    assert (replica / cddcesm.LOW_ENERGY_DIR / "desktop.ini").is_file()
    assert (replica / cddcesm.SUBTRACTED_DIR / "desktop.ini").is_file()
    assert any(" .jpg" in p.name for p in (replica / cddcesm.SUBTRACTED_DIR).iterdir())
    book = pd.read_excel(replica / cddcesm.WORKBOOK_NAMES[0], sheet_name=None, dtype=object)
    assert next(iter(book)) == "all" and {"mass_description", "calcifications"} <= set(book)
    sheet = book["all"]
    assert tuple(sheet.columns) == cddcesm.COLUMNS
    assert sheet["Image_name"].astype(str).str.endswith(" ").any()
    assert sheet["BIRADS"].astype(str).str.contains("$", regex=False).any()
    assert set(sheet["Type"]) == {"DM", "CESM"}
    assert set(sheet.loc[sheet["Type"] == "CESM", "Breast density (ACR)"]) == {"_"}
    via = pd.read_csv(replica / cddcesm.SEGMENTATION_CSV)
    shapes = {json.loads(s).get("name", "{}") for s in via["region_shape_attributes"]}
    assert "{}" in shapes and "polygon" in shapes
    assert detect_layout(replica) == "cddcesm"


def test_replica_lesions_table_joins_the_workbook(replica, manifest, tmp_path):
    internal = write_cohort(tmp_path / "internal", N_PATIENTS, SEED, SCALE, 0, images=False)
    columns = pd.read_csv(internal / LESIONS_FILE, nrows=0).columns.tolist()
    found = pd.read_csv(replica / LESIONS_FILE, dtype={"birads": str})
    assert found.columns.tolist() == [*columns, writer.LESION_KEY_COLUMN]
    sheet = cddcesm.read_annotations(replica / cddcesm.WORKBOOK_NAMES[0])
    labels = {(f"P{number}", side): cddcesm.breast_label(rows[cddcesm.PATHOLOGY_COLUMN].tolist())[0]
              for (number, side), rows in sheet.groupby(["Patient_ID", "Side"])}
    assert 1 in labels.values() and 0 in labels.values()
    for key, label in labels.items():
        mine = found[(found["patient_id"] == key[0]) & (found["side"] == key[1])]
        assert set(mine["breast_label"]) <= {label}
        if label:  # every malignant breast of the workbook has its cancer in the table
            assert 1 in set(mine["label"])
    assert (found["patient_id"] == "P" + found[writer.LESION_KEY_COLUMN].astype(str)).all()
    assert {(r.patient_id, r.side) for r in found.itertuples()} <= set(labels)
    specs = {f"P{i + 1}": spec for i, spec in enumerate(sample_cohort(N_PATIENTS, SEED, "cddcesm"))}
    assert len(found) == sum(len(specs[p].breasts[side].lesions) for p, side in labels)
    # the rows are the internal table builder's, for the breasts the workbook lists
    rows = lesions_table(list(specs.values()))
    rows["patient_id"] = "P" + rows["patient_id"].str[3:].astype(int).astype(str)
    rows = rows[[key in labels for key in zip(rows["patient_id"], rows["side"], strict=True)]]
    again = pd.read_csv(io.StringIO(rows.to_csv(index=False)), dtype={"birads": str})
    pd.testing.assert_frame_equal(found[columns], again)
    # the adapter reads the folder as the release: lesions.csv is neither an image nor an exclusion
    assert detect_layout(replica) == "cddcesm"
    assert not manifest.exclusions["path"].str.contains(LESIONS_FILE).any()
    assert not manifest.images["path"].str.contains(LESIONS_FILE).any()


def test_scan_keeps_complete_patients_and_excludes_the_rest(manifest, replica):
    specs = sample_cohort(N_PATIENTS, SEED, "cddcesm")
    plans = writer.plan_replica(specs, SEED)
    complete = {f"P{p.number}" for p in plans if not p.missing}
    assert set(manifest.patients) == complete and 0 < len(complete) < N_PATIENTS
    for plan in plans:
        if plan.missing:
            mine = manifest.exclusions["patient_id"] == f"P{plan.number}"
            reasons = manifest.exclusions.loc[mine, "reason"]
            assert reasons.str.contains("exam incomplete").any()
    assert len(manifest.images) == 8 * len(complete)
    assert manifest.images.groupby("patient_id").size().eq(8).all()
    assert not manifest.exclusions["path"].str.contains("desktop.ini").any()
    for row in manifest.images.itertuples():
        with Image.open(replica / row.path) as image:
            assert (row.rows, row.cols) == (image.height, image.width)


def test_labels_follow_the_worst_image_and_match_the_phantom(manifest, replica):
    specs = {f"P{i + 1}": spec for i, spec in enumerate(sample_cohort(N_PATIENTS, SEED, "cddcesm"))}
    sheet = pd.read_excel(replica / cddcesm.WORKBOOK_NAMES[0], sheet_name="all", dtype=object)
    sheet["key"] = sheet["Image_name"].map(lambda n: cddcesm.parse_image_name(n).key)
    for row in manifest.breasts.itertuples():
        breast = specs[row.patient_id].breasts[row.side]
        assert row.label == breast.label
        mine = sheet[sheet["key"].str.startswith(f"{row.patient_id}_{row.side}_")]
        pathologies = set(mine[cddcesm.PATHOLOGY_COLUMN])
        assert row.label == int("Malignant" in pathologies)
        assert row.birads == cddcesm.max_birads(mine["BIRADS"].astype(str).tolist())
        assert row.density == specs[row.patient_id].density
        assert row.age == specs[row.patient_id].age


def test_masks_sit_on_the_lesions_and_outside_the_release(manifest, replica):
    specs = sample_cohort(N_PATIENTS, SEED, "cddcesm")
    checked = 0
    for patient_id in manifest.patients:
        views = writer.render_views(specs[int(patient_id[1:]) - 1], SCALE)
        rows = manifest.images[manifest.images["patient_id"] == patient_id]
        for row in rows.itertuples():
            truth = views[(row.side, row.view)]["mask"]
            if not truth.any():
                assert row.mask_path == ""
                continue
            path = manifest.mask_path(row._asdict())
            assert path is not None and replica.resolve() not in path.resolve().parents
            mask = read_mask_png(path)
            assert mask.shape == truth.shape
            centre = np.argwhere(mask).mean(axis=0)
            assert np.abs(centre - np.argwhere(truth).mean(axis=0)).max() < 3.0
            assert (mask & truth).sum() > 0.4 * truth.sum()
            checked += 1
    assert checked > 0


def test_scan_without_masks_writes_nothing(replica, tmp_path):
    target = tmp_path / "masks"
    manifest = cddcesm.scan(replica, mask_dir=target, write_masks=False)
    assert not target.exists() and (manifest.images["mask_path"] == "").all()


def test_both_workbook_spellings_and_files_without_rows(replica, manifest, tmp_path):
    copy = shutil.copytree(replica, tmp_path / "CDD-CESM")
    (copy / cddcesm.WORKBOOK_NAMES[0]).rename(copy / cddcesm.WORKBOOK_NAMES[1])
    stray = copy / cddcesm.LOW_ENERGY_DIR / "P99_L_DM_CC.jpg"
    shutil.copy(copy / manifest.images["path"].iloc[0], stray)
    other = cddcesm.scan(copy, mask_dir=tmp_path / "masks")
    pd.testing.assert_frame_equal(other.breasts, manifest.breasts)
    assert other.images["sha256"].tolist() == manifest.images["sha256"].tolist()
    row = other.exclusions[other.exclusions["path"].str.endswith("P99_L_DM_CC.jpg")].iloc[0]
    assert row["kind"] == "not_annotated" and "no row in sheet 'all'" in row["reason"]


def test_malformed_releases_fail_with_the_file_named(replica, tmp_path):
    copy = shutil.copytree(replica, tmp_path / "CDD-CESM")
    (copy / cddcesm.WORKBOOK_NAMES[0]).unlink()
    with pytest.raises(FileNotFoundError, match="annotation workbook"):
        cddcesm.scan(copy)
    pd.DataFrame({"Image_name": ["P1_L_DM_CC"]}).to_excel(copy / cddcesm.WORKBOOK_NAMES[1], sheet_name="all",
                                                          index=False)
    with pytest.raises(ValueError, match=r"Radiology-manual-annotations\.xlsx.*lacks columns"):
        cddcesm.scan(copy)
    with pytest.raises(FileNotFoundError, match="CDD-CESM"):
        cddcesm.scan(tmp_path / "nowhere")


def test_replica_is_deterministic(replica, tmp_path):
    again = writer.write_replica(tmp_path / "CDD-CESM", N_PATIENTS, SEED, SCALE, 0)

    def digests(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    assert LESIONS_FILE in digests(replica) and digests(again) == digests(replica)


def test_sheet_rows_that_contradict_their_image_name_are_excluded(replica, manifest, tmp_path):
    from openpyxl import load_workbook

    copy = shutil.copytree(replica, tmp_path / "CDD-CESM")
    path = copy / cddcesm.WORKBOOK_NAMES[0]
    book = load_workbook(path)
    sheet = book["all"]
    header = [c.value for c in sheet[1]]
    target = manifest.images.iloc[0]
    key = f"{target['patient_id']}_{target['side']}_DM_{target['view']}"
    for row in sheet.iter_rows(min_row=2):
        if str(row[0].value).strip() == key:
            row[header.index("Side")].value = "R" if target["side"] == "L" else "L"
    book.save(path)
    other = cddcesm.scan(copy, write_masks=False)
    conflict = other.exclusions[other.exclusions["kind"] == "annotation_conflict"]
    assert len(conflict) == 1 and f"disagree with Image_name '{key}'" in conflict["reason"].iloc[0]
    assert target["patient_id"] not in other.patients
    assert len(other.patients) == len(manifest.patients) - 1


def test_a_listed_image_missing_on_disk_excludes_its_patient(replica, manifest, tmp_path):
    copy = shutil.copytree(replica, tmp_path / "CDD-CESM")
    target = manifest.images.iloc[-1]
    (copy / target["path"]).unlink()
    other = cddcesm.scan(copy, write_masks=False)
    missing = other.exclusions[other.exclusions["kind"] == "file_missing"]
    assert len(missing) == 1 and missing["patient_id"].iloc[0] == target["patient_id"]
    incomplete = other.exclusions[(other.exclusions["patient_id"] == target["patient_id"])
                                  & (other.exclusions["path"] == "")]
    assert incomplete["reason"].str.contains("exam incomplete").any()
    assert target["patient_id"] not in other.patients


def test_a_replica_the_profile_does_not_describe_is_refused(replica, tmp_path):
    from cemlib.core.settings import build_settings
    from cemlib.study import steps as study

    other_seed = {"patients": N_PATIENTS, "seed": SEED + 1}
    cfg = build_settings({"name": "t", "runs": str(tmp_path / "runs"), "data": {"synth": {"scale": SCALE}},
                          "external": {"cddcesm": {"root": str(replica), "synth": other_seed}}})
    with pytest.raises(ValueError, match=r"replica.json records a cohort written with seed 0, but the "
                                         r"profile asks for seed 1: delete .*CDD-CESM and the manifest"):
        study.prepare_external(cfg, "cddcesm")
