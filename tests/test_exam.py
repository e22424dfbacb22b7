"""Tests of single-exam inference (`cem predict STUDY`): finding views, scores equal to the manifest path,
overlays and report, clear errors for bad exam folders, and no patient identifiers in what is shown."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pydicom
import pytest
import torch
from PIL import Image
from torch import nn

from cemlib import cli
from cemlib.data.sources import build, ge, inbreast
from cemlib.inference import exam, exam_files, exam_report
from cemlib.inference import scoring as evaluation
from cemlib.model import checkpoints
from cemlib.model import networks as models
from cemlib.study import bench
from cemlib.synthetic import cddcesm as cdd_replica
from cemlib.synthetic import grid_shape
from cemlib.synthetic import inbreast as inb_replica
from tests.factories import save_calibrated_checkpoint, tiny_study

SIZE = (64, 32)
ARCH = {"width": 0.0625, "global_pool": True, "head": (16, 8), "input_size": SIZE}
TOLERANCE = 1e-3  # the cache stores views quantised to 16 bits; a study is preprocessed in float32
LINE = re.compile(r"^([LR]) \((?:left|right) breast\): p\(malignant\) = ([0-9.]+) -> (malignant|benign)",
                  re.MULTILINE)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A 4-patient synthetic cohort at scale 0.05, its manifest and a 64 x 32 cache."""
    return tiny_study(tmp_path_factory.mktemp("tiny_exam"), patients=4, seed=5, scale=0.05, size=SIZE)


def saved(model: nn.Module, tiny: dict, name: str, inputs: str = "cem") -> Path:
    """Batch norm calibrated on real views (as after training), saved with the metadata cem train records."""
    return save_calibrated_checkpoint(model, tiny, name, inputs, SIZE)


@pytest.fixture(scope="module")
def cem_checkpoint(tiny) -> Path:
    torch.manual_seed(1)
    return saved(models.build_model("mf_concat", 2, **ARCH), tiny, "concat")


@pytest.fixture(scope="module")
def le_checkpoint(tiny) -> Path:
    torch.manual_seed(2)
    return saved(models.build_model("mf_concat", 1, **ARCH), tiny, "concat_le", inputs="le")


def manifest_scores(checkpoint: Path, built, cache, patient: str) -> dict[str, float]:
    """The reference: evaluation.predict's per-breast scores of one patient through the tensor cache."""
    table = evaluation.predict(checkpoint, built, cache, progress=False)
    rows = table[table["patient_id"] == patient].set_index("side")["score"]
    return {side: float(rows[side]) for side in ("L", "R")}


def private_values(folder: Path) -> list[str]:
    """The fake PatientName (whole and in parts), PatientID and birth date of an exam's DICOM headers."""
    values = set()
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        name = str(ds.get("PatientName", ""))
        values |= {name, *name.split("^"), str(ds.get("PatientID", "")), str(ds.get("PatientBirthDate", ""))}
    return sorted(v for v in values if len(v) >= 3)


def without_images(page: str) -> str:
    """The HTML with its inline base64 images removed (their text could hold any letters)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)


def copy_exam(source: Path, target: Path, names: dict[str, str] | None = None) -> Path:
    """Copy an exam folder's images, optionally renaming them (old name -> new name)."""
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.is_file():
            shutil.copy(path, target / (names or {}).get(path.name, path.name))
    return target


@pytest.fixture(autouse=True)
def in_scratch_folder(tmp_path, monkeypatch):
    """One-exam reports go to the current folder by default: make it a scratch one."""
    monkeypatch.chdir(tmp_path)


def test_cli_scores_a_synthetic_exam_like_the_manifest_and_writes_the_report(tiny, cem_checkpoint, capsys):
    study = tiny["root"] / "SYN0001"
    code = cli.main(["predict", str(study), "--checkpoint", str(cem_checkpoint), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    printed = {side: (float(p), call) for side, p, call in LINE.findall(out)}
    expected = manifest_scores(cem_checkpoint, tiny["manifest"], tiny["cache"], "SYN0001")
    assert set(printed) == {"L", "R"}
    for side in ("L", "R"):
        assert printed[side][0] == pytest.approx(expected[side], abs=TOLERANCE)
        assert printed[side][1] == ("malignant" if expected[side] >= 0.5 else "benign")
    assert "CEM mf_concat" in out and "exam SYN0001" in out
    report = Path.cwd() / f"{exam_files.REPORT_DIR}_SYN0001"  # in the current folder, not in the exam
    assert not any(p.is_dir() for p in study.iterdir())
    wrote = [Path(line[len("wrote "):]) for line in out.splitlines() if line.startswith("wrote ")]
    assert wrote and all(path.is_file() and path.parent == report for path in wrote)
    with Image.open(report / "cams.png") as png:
        assert png.format == "PNG" and png.size[0] > 400
    page = (report / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "SYN0001" in page and "CEM mf_concat" in page and "Research tool" in page
    assert f"{printed['L'][0]:.4f}" in page and f"{printed['R'][0]:.4f}" in page
    assert "src='http" not in page and 'src="http' not in page  # self-contained
    for value in private_values(study):
        assert value.upper() not in out.upper()
        assert value.upper() not in without_images(page).upper()
    # a second run with its report inside the exam folder leaves that folder out of the exam
    inside = ["--out", str(study / "reports")]
    assert cli.main(["predict", str(study), "--checkpoint", str(cem_checkpoint), "--no-cams", *inside]) == 0
    assert cli.main(["predict", str(study), "--checkpoint", str(cem_checkpoint), "--no-cams", *inside]) == 0
    shutil.rmtree(study / "reports")
    assert LINE.findall(capsys.readouterr().out) == 2 * LINE.findall(out)


def test_view_level_model_gives_per_view_probabilities_of_the_manifest_path(tiny, tmp_path):
    torch.manual_seed(3)
    checkpoint = saved(models.build_model("left_right", 2, **ARCH), tiny, "left_right")
    result = exam.predict_exam(tiny["root"] / "SYN0002", checkpoint, device="cpu")
    tables = evaluation.predict_tables(checkpoint, tiny["manifest"], tiny["cache"], progress=False)
    images = tables.images[tables.images["patient_id"] == "SYN0002"]
    for row in images.itertuples():
        assert result.per_view[f"{row.side}{row.view}"] == pytest.approx(row.score, abs=TOLERANCE)
    for side in ("L", "R"):  # breast = mean of its CC and MLO views (hand-computed)
        mean = (result.per_view[f"{side}CC"] + result.per_view[f"{side}MLO"]) / 2
        assert result.breast[side] == pytest.approx(mean, abs=1e-9)
    assert result.cams.shape == (4, *SIZE) and 0 <= result.cams.min() and result.cams.max() <= 1
    plain = exam.predict_exam(tiny["root"] / "SYN0002", checkpoint, device="cpu", cams=False)
    assert plain.cams is None and plain.per_view == pytest.approx(result.per_view, abs=1e-6)
    lines = "\n".join(exam_report.summary_lines(result))
    assert "per view: LCC" in lines


def test_le_model_on_a_cem_exam_uses_only_the_le_images(tiny, le_checkpoint):
    result = exam.predict_exam(tiny["root"] / "SYN0003", le_checkpoint, device="cpu")
    expected = manifest_scores(le_checkpoint, tiny["manifest"], tiny["cache"], "SYN0003")
    assert result.x.shape == (4, 1, *SIZE)
    assert all(des is None for _, des in result.views.values())
    assert result.breast == pytest.approx(expected, abs=TOLERANCE)
    assert "DES images are not used" in "\n".join(exam_report.summary_lines(result))


def test_files_found_by_dicom_tags_or_mfmodel_names_give_the_same_scores(tiny, cem_checkpoint, tmp_path):
    source = tiny["root"] / "SYN0004"
    reference = exam.predict_exam(source, cem_checkpoint, cams=False).breast
    by_tags = copy_exam(source, tmp_path / "tags", {p.name: f"IM{i:04d}" for i, p in
                                                    enumerate(sorted(source.glob("*.dcm")))})
    found = exam_files.find_exam(by_tags)
    assert found.layouts == ["DICOM tags"] and len(found.files) == 8
    assert exam.predict_exam(by_tags, cem_checkpoint, cams=False).breast == pytest.approx(reference, abs=1e-6)
    energy = {"LE": "LOW_ENERGY", "DES": "RECOMBINED"}
    mf_names = {}
    for path in source.glob("*.dcm"):
        side, view, kind = path.stem.split("_")
        mf_names[path.name] = f"Jane Roe_{energy[kind]}_{view}_{side}.dcm"
    mf = copy_exam(source, tmp_path / "Jane Roe", mf_names)
    result = exam.predict_exam(mf, cem_checkpoint, cams=False)
    assert result.exam.layouts == ["MF_MODEL"]
    assert result.breast == pytest.approx(reference, abs=1e-6)
    label = result.exam.label()
    assert label.startswith("MF") and "Roe" not in label  # the adapter's pseudonym, not the folder name
    page = exam_report.render_html(result, None)
    assert "Roe" not in page and "Roe" not in "\n".join(exam_report.summary_lines(result))


def test_folder_named_after_the_patient_is_redacted(tiny, cem_checkpoint, tmp_path, capsys):
    source = tiny["root"] / "SYN0001"
    ds = pydicom.dcmread(source / "L_CC_LE.dcm", stop_before_pixels=True)
    family, given = str(ds.PatientName).split("^")[:2]
    study = copy_exam(source, tmp_path / f"{family}_{given}_{ds.PatientID}")
    assert cli.main(["predict", str(study), "--checkpoint", str(cem_checkpoint), "--out",
                     str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    page = without_images((tmp_path / "report" / "report.html").read_text())
    for value in (family, given, str(ds.PatientID), str(ds.PatientBirthDate)):
        assert value.upper() not in out.upper() and value.upper() not in page.upper()
    alias = ge.pseudonym(study.name)  # the exam is named only by the GE layout's pseudonym
    assert f"exam {alias}" in out and alias in page


def test_cdd_cesm_exam_copied_out_of_a_replica(tiny, cem_checkpoint, tmp_path):
    root = cdd_replica.write_replica(tmp_path / "cdd", patients=2, seed=0, scale=0.06, workers=1)
    built, _ = build(root, "cddcesm", workers=1)
    assert tiny["cache"].fill(built, workers=1, progress=False).failed == 0
    patient = sorted(set(built.images["patient_id"]))[0]
    study = tmp_path / "exam"
    for row in built.images[built.images["patient_id"] == patient].itertuples():
        source = root / row.path  # keep the release's two folders, one level down
        (study / source.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, study / source.parent.name / source.name)
    result = exam.predict_exam(study, cem_checkpoint, device="cpu")
    assert result.exam.layouts == ["CDD-CESM"] and len(result.exam.files) == 8
    expected = manifest_scores(cem_checkpoint, built, tiny["cache"], patient)
    assert result.breast == pytest.approx(expected, abs=TOLERANCE)
    written = exam_report.write_report(result, tmp_path / "report")
    assert written["cams"].is_file() and "CDD-CESM" in written["html"].read_text()


def test_inbreast_exam_copied_out_of_a_replica(tiny, le_checkpoint, cem_checkpoint, tmp_path):
    root = inb_replica.write_replica(tmp_path / "inb", patients=2, seed=0, scale=0.05, workers=1)
    built, _ = build(root, "inbreast", workers=1)
    assert tiny["cache"].fill(built, workers=1, progress=False).failed == 0
    by_patient: dict[str, list[Path]] = {}
    for path in sorted((root / inbreast.DICOM_DIR).glob("*.dcm")):
        by_patient.setdefault(inbreast.parse_dicom_name(path.name).patient_id, []).append(path)
    complete = next(p for p, files in by_patient.items() if len(files) == 5)  # four views and an FB view
    study = tmp_path / "exam"
    study.mkdir()
    for path in by_patient[complete]:
        shutil.copy(path, study / path.name)
    result = exam.predict_exam(study, le_checkpoint, device="cpu")
    assert result.exam.layouts == ["INbreast"]
    assert any("FB is not CC or MLO" in note for note in result.exam.skipped)
    expected = manifest_scores(le_checkpoint, built, tiny["cache"], complete)
    assert result.breast == pytest.approx(expected, abs=TOLERANCE)
    with pytest.raises(exam_files.ExamError, match=r"holds no recombined \(DES\) images.*LE model"):
        exam.predict_exam(study, cem_checkpoint)
    one_breast = next(p for p, files in by_patient.items() if len(files) == 2)
    single = tmp_path / "single"
    single.mkdir()
    for path in by_patient[one_breast]:
        shutil.copy(path, single / path.name)
    side = "R" if "_MG_L_" in by_patient[one_breast][0].name else "L"
    with pytest.raises(exam_files.ExamError, match=rf"missing view\(s\) {side}CC LE, {side}MLO LE"):
        exam.predict_exam(single, le_checkpoint)


def test_errors_about_a_folder_named_after_the_patient_are_redacted(tiny, cem_checkpoint, tmp_path, capsys):
    source = tiny["root"] / "SYN0001"
    ds = pydicom.dcmread(source / "L_CC_LE.dcm", stop_before_pixels=True)
    family, given = str(ds.PatientName).split("^")[:2]
    study = copy_exam(source, tmp_path / f"{family}_{given}")
    shutil.copy(study / "L_CC_LE.dcm", study / f"{family}_extra")  # a second LCC LE, found by its tags
    assert cli.main(["predict", str(study), "--checkpoint", str(cem_checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "two files for LCC" in err and "L_CC_LE.dcm and file 9 of 9 (in name order)" in err
    assert family.upper() not in err.upper() and given.upper() not in err.upper()
    (study / f"{family}_extra").unlink()
    (study / "R_MLO_DES.dcm").unlink()
    assert cli.main(["predict", str(study), "--checkpoint", str(cem_checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "missing view(s) RMLO DES" in err and family.upper() not in err.upper()


def test_file_names_of_no_layout_never_reach_a_message_even_when_the_header_names_no_one(
        tiny, cem_checkpoint, tmp_path, capsys):
    """A file named after the patient whose header was anonymised (nothing to redact by) is shown only by
    its place in the folder; so is the folder, by its pseudonym."""
    study = copy_exam(tiny["root"] / "SYN0002", tmp_path / "DOE JANE 19700315")
    ds = pydicom.dcmread(study / "L_CC_LE.dcm")
    ds.PatientName, ds.PatientBirthDate = "ANON", ""
    ds.save_as(study / "DOE JANE 19700315.dcm")
    assert cli.main(["predict", str(study), "--checkpoint", str(cem_checkpoint), "--no-cams"]) == 1
    err = capsys.readouterr().err
    assert "two files for LCC" in err and "file 1 of 9 (in name order)" in err
    assert "DOE" not in err and "JANE" not in err and "19700315" not in err
    (study / "L_CC_LE.dcm").unlink()
    assert cli.main(["predict", str(study), "--checkpoint", str(cem_checkpoint), "--no-cams"]) == 0
    out = capsys.readouterr().out
    shown = out.replace(str(Path.cwd()), "")  # the report folder's own path is the user's
    assert "DOE" not in shown and "19700315" not in shown


def test_missing_view_is_an_error_naming_it(tiny, cem_checkpoint, tmp_path, capsys):
    study = copy_exam(tiny["root"] / "SYN0002", tmp_path / "exam")
    (study / "R_MLO_DES.dcm").unlink()
    code = cli.main(["predict", str(study), "--checkpoint", str(cem_checkpoint)])
    captured = capsys.readouterr()
    assert code == 1
    assert "missing view(s) RMLO DES" in captured.err
    assert not (study / exam_files.REPORT_DIR / "report.html").exists()


def test_duplicated_view_is_an_error_naming_both_files(tiny, cem_checkpoint, tmp_path):
    study = copy_exam(tiny["root"] / "SYN0002", tmp_path / "exam")
    shutil.copy(study / "L_CC_LE.dcm", study / "IM_extra")  # found by its tags: L CC low energy
    with pytest.raises(exam_files.ExamError, match=r"two files for LCC low energy \(LE\): ") as caught:
        exam.predict_exam(study, cem_checkpoint)
    message = str(caught.value)
    # the layout-named file by its name, the other by its place in the folder; no path, no folder name
    assert "file 1 of 9 (in name order) and L_CC_LE.dcm" in message
    assert str(study) not in message and "IM_extra" not in message


def test_contradictory_files_are_errors(tiny, cem_checkpoint, tmp_path):
    source = tiny["root"] / "SYN0002"
    wrong_side = copy_exam(source, tmp_path / "side")
    shutil.copy(source / "L_CC_LE.dcm", wrong_side / "R_CC_LE.dcm")
    with pytest.raises(exam_files.ExamError,
                       match=r"R_CC_LE\.dcm: ImageLaterality 'L' disagrees with the file name's side R"):
        exam_files.find_exam(wrong_side)
    two_patients = copy_exam(source, tmp_path / "mixed")
    shutil.copy(tiny["root"] / "SYN0003" / "L_CC_DES.dcm", two_patients / "L_CC_DES.dcm")
    with pytest.raises(exam_files.ExamError, match="belong to different patients"):
        exam_files.find_exam(two_patients)
    with pytest.raises(FileNotFoundError, match="exam folder not found"):
        exam_files.find_exam(tmp_path / "nowhere")


def test_checkpoint_without_preprocessing_settings_is_refused(tiny, tmp_path):
    torch.manual_seed(4)
    bare = checkpoints.save_model(models.build_model("mf_concat", 2, **ARCH), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="records no preprocessing settings"):
        exam.predict_exam(tiny["root"] / "SYN0001", bare)


def test_benchmark_exam_times_each_step(tmp_path):
    result = bench.benchmark_exam(scale=0.05, width=0.0625, size=SIZE, repeat=1, workdir=tmp_path)
    assert result["model"] == "CEM mf_concat" and result["input_size"] == list(SIZE)
    assert result["image_shape"] == list(grid_shape(0.05))
    for key in ("median_preprocess_s", "median_model_s", "median_model_and_cams_s", "exam_with_cams_s"):
        assert result[key] > 0
    assert result["exam_with_cams_s"] >= result["median_model_and_cams_s"]


def test_rescale_set_on_unrescaled_pixels_is_refused_for_one_exam_as_in_the_cache(tiny, cem_checkpoint,
                                                                                   tmp_path, capsys):
    study = copy_exam(tiny["root"] / "SYN0002", tmp_path / "exam")
    ds = pydicom.dcmread(study / "L_CC_LE.dcm")
    ds.RescaleSlope, ds.RescaleIntercept = 2, 1000  # header changed, pixels left as stored
    ds.save_as(study / "L_CC_LE.dcm")
    code = cli.main(["predict", str(study), "--checkpoint", str(cem_checkpoint), "--no-cams"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "RescaleSlope 2 / RescaleIntercept 1000 contradict the pixels" in err
    assert not (study / exam_files.REPORT_DIR / "report.html").exists()
