"""The report's generated sentences follow the run that made it: two runs with opposite outcomes (CEM beats
LE, and LE beats CEM; models at chance or learning; flat or moving learning curves) get different summaries,
limitations and captions, and the tables a reader sees name each model and dataset one way."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from cemlib.core import vocab
from cemlib.core.environment import describe_environment
from cemlib.results import build as results
from cemlib.results import (
    check,
    checklist,
    claims,
    faithfulness,
    history,
    narrative,
    presentation,
    report,
    runfacts,
    sections,
)
from tests.test_tables import REFERENCE, make_breasts

PROFILE = {"name": "smoke", "data": {"dataset": "synthetic"}, "preprocess": {"size": [128, 64]},
           "model": {"width": 0.125}, "train": {"stage1_epochs": 8, "stage2_epochs": 5, "patience": 5},
           "external": {"cddcesm": {"root": "x", "synth": {"patients": 40}}}}


def _scores(breasts: pd.DataFrame, model: str, learns: bool, rng: np.random.Generator) -> pd.DataFrame:
    """One model's scores: strongly tied to the labels, or at chance just under the threshold (a model
    that predicts about the prevalence: every breast called benign at 0.5)."""
    labels = breasts["label"].to_numpy()
    if learns:
        score = 1 / (1 + np.exp(-(1.2 * (labels - 0.5) * 2 + rng.normal(0, 1.0, len(labels)))))
    else:
        score = rng.uniform(0.30, 0.40, len(labels))
    frame = breasts[["dataset", "patient_id", "side", "label", "split"]].copy()
    return frame.assign(score=score, model=model)


def _run(learner: str, training: pd.DataFrame | None = None) -> runfacts.RunFacts:
    """A run in which the models of `learner` inputs ('LE', 'CEM' or 'both') learn and the others do not."""
    rng = np.random.default_rng(7)
    breasts = make_breasts(300)
    external = make_breasts(60, seed=3).assign(dataset="cddcesm", split="external")
    frames = [_scores(breasts, model, learner in (model.split()[0], "both"), rng) for model in vocab.MODELS]
    frames.append(_scores(external, "CEM mf_concat", learner in ("CEM", "both"), rng))
    predictions = pd.concat(frames, ignore_index=True)
    tables = results.build_tables(predictions, breasts, reference=claims.load_reference(REFERENCE))
    return runfacts.facts_from_tables(tables, profile=PROFILE, training=training)


@pytest.fixture(scope="module")
def cem_wins() -> runfacts.RunFacts:
    return _run("CEM")


@pytest.fixture(scope="module")
def le_wins() -> runfacts.RunFacts:
    return _run("LE")


def _text(blocks: list[tuple[str, list[str]]]) -> str:
    return "\n".join(line for _, lines in blocks for line in lines)


def test_the_summary_says_which_models_call_one_class_and_which_claims_hold(cem_wins, le_wins):
    cem, le = _text(narrative.summary(cem_wins)), _text(narrative.summary(le_wins))
    assert re.search(r"LE No fusion, .*call every breast benign \(SEN 0\.00, SPE 1\.00\)", cem)
    assert re.search(r"CEM No fusion, .*call every breast benign \(SEN 0\.00, SPE 1\.00\)", le)
    one_class = narrative.one_class_sentence(cem_wins, runfacts.model_findings(cem_wins))
    assert "CEM" not in one_class.split("call every breast benign")[0]
    assert "Holds: CEM beats LE (No fusion)" in cem and "Holds: CEM beats LE" not in le
    holds = {run: int(re.search(r"claims about pairs of models, (\d+) hold", text).group(1))
             for run, text in (("cem", cem), ("le", le))}
    assert holds["cem"] >= 4 and holds["le"] < holds["cem"]
    contradicted = re.search(r"(\d+) (is|are) contradicted", le).group(1)
    assert int(contradicted) >= 4  # every "CEM beats LE" claim goes the other way


def test_chance_sentences_follow_the_aucs(cem_wins):
    learnt = _run("both")
    assert "4 models of 8 cannot be told from chance" in _text(narrative.summary(cem_wins))
    both = _text(narrative.summary(learnt))
    assert "Every model's AUC on the internal test set excludes chance" in both
    assert "call every breast benign" not in both
    assert not any("call every breast benign" in p for p in narrative.limitations(learnt))
    assert any("call every breast benign" in p for p in narrative.limitations(cem_wins))


def test_headline_results_carry_the_run_s_cis_and_the_external_set_is_named_a_replica(cem_wins):
    lines = narrative.headline_results(cem_wins)
    auc = cem_wins.metric("CEM mf_concat", "auc")
    assert any(f"AUC {auc['estimate']:.2f} (95% CI {auc['low']:.2f} to {auc['high']:.2f})" in line
               for line in lines)
    assert any("synthetic replica of CDD-CESM" in line for line in lines)
    assert "synthetic replica of CDD-CESM" in narrative.figure_caption("external_roc", cem_wins)


def _log(model: str, stage: str, aucs: list[float], losses: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(aucs) + 1), "train_loss": losses, "val_loss": losses,
                         "val_auc": aucs, "model": model, "stage": stage})


def test_flat_learning_curves_are_said_so_and_moving_ones_are_not():
    flat = pd.concat([_log("cem_stage1", "stage1", [0.5, 0.52, 0.49, 0.51], [0.65, 0.65, 0.649, 0.65]),
                      _log("cem_mf_concat", "stage2", [0.5, 0.51, 0.5], [1.3, 1.3, 1.29])])
    moving = pd.concat([_log("cem_stage1", "stage1", [0.6, 0.75, 0.85, 0.9], [0.65, 0.5, 0.4, 0.35]),
                        _log("cem_mf_concat", "stage2", [0.8, 0.9, 0.92], [1.0, 0.8, 0.7])])
    flat_run, moving_run = _run("CEM", flat), _run("CEM", moving)
    flat_points = narrative.limitations(flat_run)
    assert any(p.startswith("Flat learning curves: CEM stage-1 CNN stage 1") for p in flat_points)
    assert not any(p.startswith("Flat learning curves") for p in narrative.limitations(moving_run))
    assert "Flat: stage 1, stage 2" in narrative.figure_caption("learning_curves_cem_mf_concat", flat_run)
    assert "Neither stage's curve is flat" in narrative.figure_caption("learning_curves_cem_mf_concat",
                                                                         moving_run)
    assert "stage 1 ran 4 of 8 epochs (kept epoch 4" in narrative.epochs_run(moving_run)
    assert "Epochs actually run" in narrative.methods("02", moving_run)


def test_a_hold_between_two_weak_models_is_commented():
    """Two weak models with all but the same scores: "MF average and MF concatenation do not differ" holds,
    and the summary says what little that means; between two strong models it is not commented."""
    rng = np.random.default_rng(3)
    breasts = make_breasts(300)
    labels = breasts["label"].to_numpy()

    def run_with(strength: float) -> runfacts.RunFacts:
        base = strength * (labels - 0.5) * 2 + rng.normal(0, 1.0, len(labels))
        frames = []
        for model in vocab.MODELS:
            noise = rng.normal(0, 0.01 if "mf_" in model else 1.0, len(labels))
            frame = breasts[["dataset", "patient_id", "side", "label", "split"]].copy()
            frames.append(frame.assign(score=1 / (1 + np.exp(-(base + noise))), model=model))
        tables = results.build_tables(pd.concat(frames, ignore_index=True), breasts,
                                      reference=claims.load_reference(REFERENCE))
        return runfacts.facts_from_tables(tables, profile=PROFILE)

    weak, strong = run_with(0.4), run_with(2.5)
    notes = runfacts.weak_holds(weak)
    assert any(n.claim.startswith("MF fusion (average) and MF fusion (concatenation)") for n in notes)
    text = _text(narrative.summary(weak))
    assert "rest on weak models" in text or "rests on two weak models" in text
    assert not runfacts.weak_holds(strong)
    assert "weak models" not in _text(narrative.summary(strong))


def test_one_replicate_says_what_replicates_are_and_how_to_run_them(cem_wins):
    text = narrative.replicates_explained(cem_wins)
    assert "A replicate is the whole set of models trained again under another training seed" in text
    assert "--replicates 5" in text and "One replicate" not in text.split(".")[0]


def test_the_report_opens_with_the_summary_and_closes_with_limitations(cem_wins, tmp_path):
    page = report.report_html({"name": "smoke", "reports": str(tmp_path)}, [], env=describe_environment(),
                              run=cem_wins)
    assert page.index('<section class="summary">') < page.index('<nav class="toc">')
    assert page.index('<section class="limitations">') > page.index('<nav class="toc">')
    assert "call every breast benign" in page and "Check against the reference" in page


def test_shown_tables_name_models_and_datasets_once_and_mark_absence_one_way(cem_wins):
    breasts = make_breasts(300)
    rng = np.random.default_rng(0)
    predictions = pd.concat([_scores(breasts, m, "CEM" in m, rng) for m in vocab.MODELS], ignore_index=True)
    built = results.build_tables(predictions, breasts, reference=claims.load_reference(REFERENCE))
    birads = presentation.shown_table("table_birads_groups", built["table_birads_groups"], cem_wins)
    assert len(birads.table) == 8 and birads.groups and "BI-RADS 4" in birads.groups[-1][0]
    assert "category 4 (subcategories 3-4A to 4C)" in birads.note
    density = presentation.shown_table("table_density", built["table_density"], cem_wins)
    assert len(density.table) == 8
    comparison = presentation.shown_table("table_comparison", built["table_comparison"], cem_wins)
    assert len(comparison.table) == 10  # eight internal models, two external sets
    html = "".join(sections.table_html(presentation.shown_table(stem, built[stem], cem_wins))
                   for stem in ("table3_le", "table_comparison", "scorecard", "table_confusion"))
    assert "missing" not in html and "n/a" in html
    assert "mf_concat" not in html and "LE MF fusion (concatenation)" in html
    for stem in ("table3_le", "table_external", "table5_delong", "table_density", "table_comparison"):
        note = presentation.table_note(stem, cem_wins)
        assert "Unit: breast" in note
    assert "threshold 0.5" in presentation.table_note("table3_le", cem_wins)
    assert "Clopper-Pearson" in presentation.table_note("table3_le", cem_wins)


def test_notebook_tables_get_the_same_names():
    row = '<table><tr><td class="x">CEM mf_concat</td><td>cddcesm</td><td>missing</td></tr></table>'
    run = _run("CEM")
    shown = sections.normalise_cells(row, run)
    assert "CEM MF fusion (concatenation)" in shown and "synthetic replica of CDD-CESM" in shown
    assert "missing" not in shown and ">n/a<" in shown


def test_claim_2024_items_are_numbered_one_to_44_with_their_source():
    numbers = [int(item) for guideline, item, *_ in checklist.ITEMS if guideline == checklist.CLAIM]
    assert numbers == list(range(1, 45))
    topics = {int(item): topic for guideline, item, topic, *_ in checklist.ITEMS
              if guideline == checklist.CLAIM}
    assert topics[13].startswith("Image acquisition") and topics[34].startswith("Clinical trial")
    assert "e240300" in checklist.CLAIM_SOURCE and "2024" in checklist.CLAIM_SOURCE


def test_the_notebooks_prose_names_a_replica_as_such_outside_code():
    run = _run("CEM")  # its profile writes CDD-CESM from the phantom and points at a real INbreast
    prose = ("<p>The LE model on INbreast and the CEM model on CDD-CESM; point <code>external.cddcesm.root"
             "</code> at the download.</p><h2>Failure analysis on CDD-CESM</h2>")
    named = sections.name_sets(prose, run)
    assert "the CEM model on the synthetic replica of CDD-CESM;" in named
    assert "<h2>Failure analysis on the synthetic replica of CDD-CESM</h2>" in named
    assert "on INbreast" in named and "<code>external.cddcesm.root</code>" in named


def test_training_logs_are_read_where_the_training_stages_write_them(tmp_path):
    models = tmp_path / "models"
    for folder in ("cem_stage1", "cem_mf_concat/stage2"):
        (models / folder).mkdir(parents=True)
        log = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.7, 0.6], "val_loss": [0.7, 0.65],
                            "val_auc": [0.6, 0.7], "lr": [0.01, 0.01], "seconds": [1.0, 1.0]})
        log.to_csv(models / folder / "log.csv", index=False)
    logs = runfacts.training_logs(tmp_path)
    assert set(zip(logs["model"], logs["stage"], strict=True)) == {("cem_stage1", "stage1"),
                                                                   ("cem_mf_concat", "stage2")}


def _ceiling(cem: float, le: float, half: float = 0.08) -> pd.DataFrame:
    rows = [("network input 128 x 64", inputs, 180, 63, auc, auc - half, min(auc + half, 1.0))
            for inputs, auc in (("LE", le), ("CEM", cem))]
    columns = ["resolution", "inputs", "breasts", "malignant", "auc", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def test_the_ceiling_sentence_sets_the_best_model_against_what_the_images_allow(cem_wins):
    """A phantom whose best reader stays far under real CEM reading is called harder than real exams; one
    that reaches it is not; the best CEM model is placed below or within the reader's CI as it lies."""
    from dataclasses import replace

    hard = narrative.ceiling_sentence(replace(cem_wins, ceiling=_ceiling(0.74, 0.65)))
    easy = narrative.ceiling_sentence(replace(cem_wins, ceiling=_ceiling(0.97, 0.90)))
    assert "reaches a per-breast AUC of 0.74 (0.66-0.82) from LE and DES and 0.65" in hard
    assert "harder than real exams" in hard and "harder than real exams" not in easy
    best_auc = max(cem_wins.metric(m, "auc")["estimate"] for m in vocab.MODELS if m.startswith("CEM"))
    assert 0.9 < best_auc < 0.98  # the learning CEM models of this run
    assert f"reaches {best_auc:.2f}, above that reader's CI" in hard
    assert f"reaches {best_auc:.2f}, within that reader's CI" in easy
    tight = narrative.ceiling_sentence(replace(cem_wins, ceiling=_ceiling(0.995, 0.9, half=0.005)))
    assert f"reaches {best_auc:.2f}, below that reader's CI" in tight
    assert narrative.ceiling_sentence(cem_wins) == ""  # no ceiling table (real data): no sentence


def test_the_ceiling_table_is_shown_with_its_auc_and_ci_in_one_cell(cem_wins):
    shown = presentation.shown_table("image_ceiling", _ceiling(0.74, 0.65).astype(str), cem_wins)  # as read
    assert list(shown.table.columns) == ["Images", "Inputs", "Breasts", "Malignant", "AUC (95% CI)"]
    assert shown.table["AUC (95% CI)"].tolist() == ["0.65 (0.57, 0.73)", "0.74 (0.66, 0.82)"]
    assert "reader told where every finding is" in shown.caption


def test_a_replaced_reference_is_set_beside_this_run(cem_wins, tmp_path):
    earlier = pd.DataFrame([{"model": model, "metric": "internal auc", "n": 5, "mean": mean, "sd": 0.01,
                             "min": mean - 0.01, "max": mean + 0.01, "profile": "smoke", "n_pos": 63,
                             "n_neg": 117}
                            for model, mean in [("CEM none", 0.611), ("CEM mf_concat", 0.634),
                                                ("LE none", 0.521), ("LE mf_concat", 0.528)]])
    earlier.to_csv(tmp_path / "reference_smoke_phantom-v5.csv", index=False)
    earlier.to_csv(tmp_path / "reference_control_other.csv", index=False)
    found = check.earlier_references("smoke", tmp_path)
    assert [label for label, _ in found] == ["phantom v5"]
    assert history.earlier_sentence(cem_wins) == ""
    text = history.earlier_sentence(dataclasses.replace(cem_wins, earlier=tuple(found)))
    cem_now = [float(cem_wins.metric(m, "auc")["estimate"]) for m in ("CEM none", "CEM left_right",
                                                                       "CEM mf_average", "CEM mf_concat")]
    assert "phantom v5 reference (5 seeds)" in text and "CEM 0.61-0.63 then" in text
    assert f"{min(cem_now):.2f}-{max(cem_now):.2f} here" in text and "LE 0.52-0.53 then" in text


def _pointing(game: float, brightest: float, randomised: float = 0.06) -> pd.DataFrame:
    return pd.DataFrame([{"model": "LE mf_concat", "views scored": 0, "peak inside lesion": 0},
                         {"model": "CEM mf_concat", "views scored": 50,
                          "peak inside lesion": round(game * 50), "pointing game": game,
                          "randomised weights": randomised, "brightest DES baseline": brightest,
                          "random point baseline": 0.02}])


def test_the_summary_says_where_the_main_model_looks_beside_its_controls(cem_wins):
    assert faithfulness.looks_sentences(cem_wins) == []  # no maps in this run: nothing said
    occlusion = pd.DataFrame([{"model": "CEM mf_concat", "breasts": 25, "mean_p": 0.78,
                               "mean_p_occluded": 0.19, "drop": 0.59}])
    above = dataclasses.replace(cem_wins, pointing=_pointing(0.96, 0.94), occlusion=occlusion)
    text = " ".join(dict(narrative.summary(above))["Where the main model looks"])
    assert "48 of 50 views" in text and "above the brightest DES point of the same views (0.94)" in text
    assert "with its weights randomised in 0.06" in text and "a random point in 0.02" in text
    assert "25 correctly called malignant breasts moves their mean probability from 0.78 to 0.19" in text
    below = faithfulness.pointing_sentence(dataclasses.replace(cem_wins, pointing=_pointing(0.86, 0.94)))
    assert "below the brightest DES point" in below
    older = _pointing(0.86, 0.94).drop(columns="randomised weights")  # a table from before the control
    assert "randomised" not in faithfulness.pointing_sentence(dataclasses.replace(cem_wins, pointing=older))


def test_the_summary_sets_the_authors_des_window_beside_the_studys(cem_wins, tmp_path, monkeypatch):
    rows = [(rule, role, "CEM mf_concat", seed, auc, drop)
            for rule, role, aucs, drops in (("exam", "study", (0.73, 0.74), (0.55, 0.50)),
                                            ("image", "ablation", (0.75, 0.62), (0.53, -0.02)))
            for seed, auc, drop in zip((0, 1), aucs, drops, strict=True)]
    table = pd.DataFrame(rows, columns=["rule", "role", "model", "seed", "auc", "drop"])
    assert faithfulness.window_sentence(cem_wins) == ""  # no comparison: nothing said
    text = faithfulness.window_sentence(dataclasses.replace(cem_wins, des_window=table))
    assert text.startswith("DES window rule (this run, 2 training seeds): under the authors' per-image")
    assert "averaged 0.69 (0.62-0.75) against 0.73 (0.73-0.74) under the exam-wide window" in text
    assert "lower in 1 of 2 seeds" in text and "by less than 0.05 in 1 of 2 seeds" in text
    # a run without the comparison shows its reference run's, and says so
    tables = tmp_path / "reports" / "tables"
    tables.mkdir(parents=True)
    cem_wins.metrics.to_csv(tables / "metrics.csv", index=False)
    kept = tmp_path / "des_window_smoke.csv"
    table.to_csv(kept, index=False)
    monkeypatch.setattr(check, "des_window_reference_path", lambda name: kept)
    facts = runfacts.load_run(tmp_path / "reports", {"name": "smoke"}, reference=tmp_path / "none.csv")
    assert facts.des_window_from_reference and len(facts.des_window) == 4
    assert "(its replicated reference run, 2 training seeds)" in faithfulness.window_sentence(facts)
