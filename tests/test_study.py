"""The whole study through papermill at a tiny scale: every table exists and holds sane values."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from cemlib.study import pipeline
from cemlib.study import steps as study

TINY_PROFILE = Path(__file__).parent / "data" / "tiny_profile.yaml"


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    """Run all six notebooks on the tiny profile, with every path inside a temporary folder."""
    root = tmp_path_factory.mktemp("study")
    profile = root / "tiny.yaml"
    profile.write_text(TINY_PROFILE.read_text())
    results = pipeline.run_pipeline(profile)
    return root, results


def read_table(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / "reports" / "tables" / f"{name}.csv")


def test_every_notebook_ran_and_the_report_exists(study_run):
    root, results = study_run
    assert [r.name for r in results] == list(pipeline.STEPS)
    assert all(r.status == "ran" and r.output.exists() for r in results)
    assert (root / "reports" / "report.pdf").read_bytes().startswith(b"%PDF")
    assert (root / "reports" / "report-summary.png").stat().st_size > 10_000  # the README's picture
    page = (root / "reports" / "report.html").read_text()
    assert "Table 4" in page and "image-attainable ceiling" in page
    env = json.loads((root / "reports" / "environment.json").read_text())
    assert env["torch"]["version"] in page and env["cpu"]["model"] in page  # the title page shows it
    assert env["kernel_variables"]["MKL_CBWR"] == "COMPATIBLE" and "numpy" in env["packages"]
    figures = ("fig1_flow", "fig4_roc", "external_roc", "learning_curves_cem_mf_concat", "qc_preprocessing_1",
               "qc_preprocessing_2", "intensity_histograms")
    for figure in figures:
        assert (root / "reports" / "figures" / f"{figure}.png").stat().st_size > 1000
        assert (root / "reports" / "figures" / f"{figure}.pdf").exists()
    cams = [p.name for p in (root / "reports" / "figures").glob("fig[56]_cams_*.png")]
    assert all(name.startswith("fig5_cams_internal") == ("_internal_" in name) for name in cams), cams


def test_tables_hold_sane_values(study_run):
    root, _ = study_run
    metrics = read_table(root, "metrics")
    internal = metrics[metrics["split"] == "test"] if "split" in metrics else metrics
    assert set(metrics["model"]) >= {f"{i} {f}" for i in ("LE", "CEM")
                                     for f in ("none", "left_right", "mf_average", "mf_concat")}
    for column in [c for c in metrics.columns if c.endswith(("estimate", "low", "high"))]:
        values = metrics[column].dropna()
        assert ((values >= 0) & (values <= 1)).all(), column
    assert len(internal) >= 8
    for name in ("table1_characteristics", "table2_patient_classes", "table3_le", "table4_cem",
                 "table5_delong", "table_external", "table_birads_groups", "table_confusion",
                 "table_density", "scorecard", "pointing_game", "fig1_flow_counts", "image_ceiling"):
        for suffix in ("csv", "md", "tex"):
            assert (root / "reports" / "tables" / f"{name}.{suffix}").exists(), (name, suffix)


JOURNAL_TABLES = ("calibration", "reliability", "operating_points", "decision_curve", "subgroups",
                  "clustering", "errors", "subgroups_recorded")


def test_the_journal_evaluation_has_its_tables_figures_and_checklist(study_run):
    root, _ = study_run
    tables, figures = root / "reports" / "tables", root / "reports" / "figures"
    for where in ("internal", "external"):
        for name in JOURNAL_TABLES:
            for suffix in ("csv", "md", "tex"):
                assert (tables / f"{name}_{where}.{suffix}").exists(), (name, where, suffix)
        for figure in ("reliability", "decision_curve", "forest"):
            assert (figures / f"{figure}_{where}.png").stat().st_size > 1000, (figure, where)
    operating = read_table(root, "operating_points_internal")
    assert set(operating["Rule"]) == {"youden", "sensitivity 0.90", "paper 0.5"}
    assert len(read_table(root, "calibration_internal")) == 16  # eight models, as trained and recalibrated
    assert set(read_table(root, "calibration_external")["Dataset"]) == {"inbreast", "cddcesm"}
    assert read_table(root, "clustering_internal")["Patients"].min() > 0
    recorded = read_table(root, "subgroups_recorded_internal")
    assert (recorded["Lesions table"] == "yes").all()
    checklist = read_table(root, "checklist")
    assert {"CLAIM 2024", "TRIPOD+AI"} == set(checklist["Guideline"])
    page = (root / "reports" / "report.html").read_text()
    for heading in ("Calibration", "Decision curve", "The unit of analysis: breasts within patients",
                    "Appendix: reporting checklists", "Age band"):  # the main model's subgroup rows
        assert heading in page, heading


def test_the_pointing_game_sits_beside_its_no_model_baselines(study_run):
    root, _ = study_run
    table = read_table(root, "pointing_game")
    assert {"randomised weights", "brightest DES baseline", "random point baseline"} <= set(table.columns)
    scored = table[table["views scored"] > 0]
    assert ((scored["random point baseline"] > 0) & (scored["random point baseline"] < 0.5)).all()
    assert scored["randomised weights"].between(0, 1).all()


def test_the_des_window_ablation_trains_both_rules_on_the_same_seeds(study_run):
    root, _ = study_run
    table = read_table(root, "des_window")
    assert set(zip(table["rule"], table["role"], strict=True)) == {("image", "study"), ("exam", "ablation")}
    assert sorted(set(table["model"])) == ["CEM mf_concat", "CEM none"] and set(table["seed"]) == {0}
    assert table["auc"].between(0, 1).all() and (table["auc_low"] <= table["auc_high"]).all()
    assert (root / "runs" / "des_window-exam" / "models" / "cem_mf_concat").is_dir()  # not the study's
    page = (root / "reports" / "report.html").read_text()
    assert "DES window rule" in page and "measured in this run" in page


def test_counts_add_up(study_run):
    root, _ = study_run
    table2 = read_table(root, "table2_patient_classes")
    body = table2[table2.iloc[:, 0].astype(str).str.lower() != "total"]
    total_row = table2[table2.iloc[:, 0].astype(str).str.lower() == "total"]
    overall = next(c for c in table2.columns if c.lower().startswith("overall"))
    assert body[overall].astype(str).str.split(" ").str[0].astype(int).sum() == 30
    assert str(total_row[overall].iloc[0]).split(" ")[0] == "30"
    confusion = read_table(root, "table_confusion")
    counted = confusion["TP"] + confusion["FN"] + confusion["TN"] + confusion["FP"]
    assert (counted == confusion["Breasts"]).all()
    flow = read_table(root, "fig1_flow_counts").set_index("step")["patients"]
    assert flow["patients found"] == 30 and flow["patients kept"] == flow[["train", "val", "test"]].sum()


def fake_phi(root: Path) -> set[str]:
    """The fake patient ids and names (as written in the header and as a person would write them)."""
    values = set()
    for path in sorted((root / "data" / "synthetic").rglob("*.dcm"))[:80]:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        family, _, given = str(header.PatientName).partition("^")
        values |= {str(header.PatientID), str(header.PatientName), f"{given} {family}", f"{family}, {given}"}
    return values


def test_no_fake_phi_reaches_any_output(study_run):
    root, _ = study_run
    phi = fake_phi(root)
    assert phi, "the synthetic headers should carry fake PHI to look for"
    outputs = [p for folder in ("reports", "runs") for p in (root / folder).rglob("*") if p.is_file()]
    outputs += list((root / "data" / "synthetic" / "manifest").glob("*"))
    assert len(outputs) > 50
    for path in outputs:
        if path.suffix in {".pt", ".npy"}:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        leaked = [value for value in phi if value in text]
        assert not leaked, f"{path} contains header identifiers {leaked}"


def test_notebooks_and_report_hold_no_noise_and_training_left_event_files(study_run):
    root, results = study_run
    for result in results:
        executed = result.output.read_text()
        assert '"name": "stderr"' not in executed, result.name
    html = (root / "reports" / "report.html").read_text()
    assert "Contents" in html and "Supplementary report" in html
    for noise in ("PosixPath", "%|", "Warning", "<title>Notebook"):
        assert noise not in html, noise
    logs = sorted((root / "runs").rglob("log.csv"))
    assert logs
    for log in logs:
        assert list(log.parent.glob("events.out.tfevents.*")), log.parent


def test_window_rules_count_images_per_rule():
    class Cache:
        def windows(self):
            raw, own = "adaptive raw 1500..3300", "adaptive image 10..250"
            return pd.DataFrame({"le_window_rule": [raw, raw, raw, own],
                                 "des_window_rule": [raw, raw, "", ""]})

    table = study.window_rules(Cache())
    assert table.to_dict("records") == [
        {"energy": "LE", "rule": "adaptive raw 1500..3300", "images": 3},
        {"energy": "LE", "rule": "adaptive image 10..250", "images": 1},
        {"energy": "DES", "rule": "adaptive raw 1500..3300", "images": 2},
    ]
