"""The journal's evaluation tables on synthetic predictions, and the checklist's links to the notebooks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cemlib.results import checklist, evaluation, stats
from cemlib.results import evaluation_figures as plots
from cemlib.study.pipeline import notebooks_dir


def predictions(seed: int = 0, patients: int = 60) -> pd.DataFrame:
    """Two models, val and test splits of an internal set, and one external set; two breasts per patient."""
    rng = np.random.default_rng(seed)
    frames = []
    sets = (("val", "syn", patients // 2), ("test", "syn", patients), ("external", "ext", 30))
    for split, dataset, n in sets:
        ids = [f"{split}{i}" for i in range(n)]
        y = (rng.random(2 * n) < 0.35).astype(int)
        for model, noise in (("CEM mf_concat", 0.8), ("LE mf_concat", 1.5)):
            score = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(0, noise, 2 * n))))
            frames.append(pd.DataFrame({"dataset": dataset, "patient_id": np.repeat(ids, 2),
                                        "side": ["L", "R"] * n, "label": y, "score": score, "model": model,
                                        "split": split}))
    return pd.concat(frames, ignore_index=True)


def test_calibration_table_fits_recalibration_on_validation_only():
    preds = predictions()
    summary, bins = evaluation.calibration_table(preds, "internal")
    platt = "Platt scaling (logistic on logit score), fitted on validation"
    assert len(summary) == 4 and set(summary["Scores"]) == {"as trained", platt}
    assert (bins.groupby(["model", "scores"])["n"].sum() == 120).all()
    external, _ = evaluation.calibration_table(preds, "external")
    assert set(external["Dataset"]) == {"ext"}
    no_val = preds[preds["split"] != "val"]
    summary, _ = evaluation.calibration_table(no_val, "internal")
    assert summary["Note"].str.contains("no validation scores").sum() == 2


def test_operating_points_use_the_validation_threshold_on_test():
    preds = predictions()
    table = evaluation.operating_points_table(preds, "internal")
    assert list(table["Rule"][:3]) == ["youden", "sensitivity 0.90", "paper 0.5"]
    val = preds[(preds["split"] == "val") & (preds["model"] == "CEM mf_concat")]
    test = preds[(preds["split"] == "test") & (preds["model"] == "CEM mf_concat")]
    youden = stats.youden_threshold(val["label"], val["score"])
    row = table[(table["Model"] == table["Model"].iloc[0]) & (table["Rule"] == "youden")].iloc[0]
    counts = stats.confusion_counts(test["label"], test["score"], youden)
    assert [row[k.upper()] for k in ("tp", "fp", "tn", "fn")] == [counts[k] for k in ("tp", "fp", "tn", "fn")]


def test_decision_curves_hold_treat_all_none_and_each_model():
    curves = evaluation.decision_curves(predictions(), "internal")
    assert set(curves["strategy"]) >= {"treat all", "treat none"} and curves["strategy"].nunique() == 4
    table = evaluation.decision_table(curves)
    assert list(table["Threshold probability"]) == ["2%", "5%", "10%", "15%", "20%", "30%", "40%", "50%"]
    plots.decision_curve_figure(curves)


def test_subgroups_keep_too_small_groups_and_say_what_is_absent():
    preds = predictions()
    breasts = preds[preds["model"] == "CEM mf_concat"][["dataset", "patient_id", "side", "label"]].copy()
    breasts["density"] = np.where(np.arange(len(breasts)) % 7 == 0, "a", "c")
    breasts["birads"], breasts["age"] = "4A", 50
    lesions = pd.DataFrame({"patient_id": ["test0", "test1"], "side": ["L", "R"], "label": [1, 0],
                            "breast_label": [1, 0], "kind": ["mass", "asymmetry"], "size_mm": [12.0, 55.0],
                            "bpe": ["mild", "marked"], "enhancement": ["rim", "none"]})
    attributes, absent = evaluation.subgroup_attributes(breasts, lesions)
    assert absent == []
    by_breast = attributes.set_index(["patient_id", "side"])
    assert by_breast.loc[("test0", "L"), "finding"] == "mass"
    assert by_breast.loc[("test0", "R"), "bpe"] == "mild"
    assert by_breast.loc[("test0", "R"), "finding"] == "no finding"
    assert by_breast.loc[("test5", "L"), "finding"] == "not recorded"
    joined = preds.merge(attributes.drop(columns="label"), on=["dataset", "patient_id", "side"], how="left")
    table = evaluation.subgroup_table(joined, "internal")
    mass = table[(table["Subgroup"] == "mass") & (table["Model"] == table["Model"].iloc[0])]
    assert mass["AUC"].iloc[0].startswith("not estimable")
    assert set(table["Characteristic"]) == set(evaluation.SUBGROUPS.values())
    _, absent = evaluation.subgroup_attributes(breasts, None)
    assert absent == ["finding kind", "lesion size", "background enhancement"]
    plots.forest_plot(table[table["Model"] == table["Model"].iloc[0]])


def test_clustering_table_gives_three_cis_and_the_patient_auc():
    table = evaluation.clustering_table(predictions(), "internal", n_boot=200)
    assert len(table) == 2 and (table["Patients"] == 60).all()
    assert table["Clustered CI wider"].isin(["yes", "no"]).all()
    assert "of 2 model(s)" in evaluation.clustering_summary(table)


def test_confident_errors_are_the_lowest_malignant_and_highest_benign_scores():
    preds = predictions()
    errors = evaluation.confident_errors(preds, "CEM mf_concat", "internal", per_kind=2, truth=False)
    test = preds[(preds["split"] == "test") & (preds["model"] == "CEM mf_concat")]
    fn = test[(test["label"] == 1) & (test["score"] < 0.5)]["score"].nsmallest(2).round(3).tolist()
    assert errors[errors["Error"] == "false negative"]["Score"].tolist() == fn
    assert errors["Case"].str.match(r"^P-[0-9a-f]{8}$").all()
    assert "finding" not in errors


# --------------------------------------------------------------------------------------------------
# the checklist


def notebook_headings() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(notebooks_dir().glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for line in "".join(cell["source"]).splitlines():
                    if line.startswith("#"):
                        found.add((path.name[:2], line.lstrip("#").strip()))
    return found


def test_every_section_the_checklist_points_at_exists():
    missing = checklist.section_references() - notebook_headings()
    assert not missing, f"checklist items point at sections that do not exist: {sorted(missing)}"


def test_answered_items_point_somewhere_and_every_item_has_a_status():
    table = checklist.checklist_table()
    assert set(table["Status"]) <= {checklist.ANSWERED, checklist.PARTLY, checklist.NOT_APPLICABLE,
                                    checklist.NOT_FROM_RUN}
    for *_, status, where in checklist.ITEMS:
        if status == checklist.ANSWERED:
            assert not isinstance(where, str) and where
    assert set(table["Guideline"]) == {"CLAIM 2024", "TRIPOD+AI"}


@pytest.mark.parametrize("bad", [("section", "03", "No such heading")])
def test_a_link_to_a_missing_section_is_caught(bad):
    items = (("CLAIM 2024", "1", "x", checklist.ANSWERED, [bad]),)
    assert checklist.section_references(items) - notebook_headings() == {("03", "No such heading")}


def test_clustering_table_of_a_model_that_separates_perfectly():
    """The positive control's models reach AUC 1.0, where every CI collapses: the table says the width
    ratio is not available instead of dividing by zero."""
    preds = predictions()
    preds["score"] = preds["label"] * 0.8 + 0.1  # every malignant breast above every benign one
    table = evaluation.clustering_table(preds, "internal", n_boot=50)
    assert len(table) == 2
    assert (table["Clustered / DeLong CI width"] == evaluation.NOT_AVAILABLE).all()
    wide, narrow = stats.Interval(0.7, 0.6, 0.8), stats.Interval(0.7, 0.65, 0.75)
    assert evaluation.ci_width_ratio(wide, narrow) == pytest.approx(2)


def test_the_clustering_sentence_names_datasets_as_a_reader_reads_them():
    table = pd.DataFrame({"Dataset": ["cddcesm", "internal"], "Model": ["CEM MF fusion (concatenation)"] * 2,
                          "Clustered CI wider": ["yes", "yes"]})
    plain = evaluation.clustering_summary(table)
    assert "(CDD-CESM)" in plain and "(internal test set)" in plain and "cddcesm" not in plain
    named = evaluation.clustering_summary(table, {"cddcesm": "synthetic replica of CDD-CESM"})
    assert "(synthetic replica of CDD-CESM)" in named
