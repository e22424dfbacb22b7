"""The notebook steps of the evaluation a radiology journal asks for (the last sections of notebooks 03
and 04): calibration, operating points, decision curves, subgroups, the unit of analysis, the most
confident errors and the reporting checklists.

`where="internal"` evaluates the internal test split (notebook 03), `where="external"` each external
dataset (notebook 04); tables and figures carry that word in their names. Whatever is chosen or fitted
(thresholds, a recalibration) uses the internal validation split only, which is scored here for every
model (runs/<profile>/predictions/<model>__internal_val.csv).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cemlib.core.devices import inference_device
from cemlib.core.progress import note
from cemlib.core.settings import Settings
from cemlib.core.vocab import FUSIONS, INPUTS, model_label, model_name
from cemlib.data import datasets as data
from cemlib.inference import cams
from cemlib.model.checkpoints import load_model
from cemlib.results import build as results
from cemlib.results import checklist, evaluation, tables
from cemlib.results import evaluation_figures as plots
from cemlib.results.report import pseudonym
from cemlib.study import prepare, steps
from cemlib.synthetic.cohort import LESIONS_FILE

#: The model whose errors the gallery shows (the paper's main model), and the gallery's size per kind.
ERRORS_MODEL = model_name(*steps.MAIN_MODEL)
GALLERY_CASES = 2
CAPTIONS = {
    "calibration": "Calibration: Brier score, ECE, calibration intercept and slope (95% CI), as trained and "
                   "after recalibration fitted on the validation split",
    "reliability": "Reliability diagram bins (10 equal-width bins, with counts and exact 95% CIs)",
    "operating_points": "Operating points chosen on the validation split, applied unchanged (exact 95% CIs)",
    "decision_curve": "Net benefit at threshold probabilities of a biopsy decision (Vickers & Elkin 2006)",
    "subgroups": "AUC per breast by subgroup (95% DeLong CI); subgroups too small are shown as such",
    "clustering": "The unit of analysis: per-breast AUC CIs that ignore and that respect the patient, "
                  "and the per-patient AUC",
    "errors": "The most confident errors of the CEM MF concatenation model at the paper's 0.5 threshold",
}


def validation_scores(cfg: Settings) -> pd.DataFrame:
    """Every internal model's scores on the validation split (scored once, then reused)."""
    manifest, cache = prepare.prepare_data(cfg)
    models = [(fusion, inputs) for inputs in INPUTS for fusion in FUSIONS]
    frames = []
    for k, (fusion, inputs) in enumerate(models, start=1):
        note(f"validation scores: model {k} of {len(models)}, {model_name(fusion, inputs)}")
        frames.append(steps.score_model(cfg, steps.train_model(cfg, fusion, inputs, manifest, cache), fusion,
                                        inputs, manifest, cache, "val", "internal_val"))
    return pd.concat(frames, ignore_index=True)


def lesions_table(root: str | Path) -> pd.DataFrame | None:
    """The data root's lesions.csv (one row per finding: the phantom's truth), or None where absent."""
    path = Path(root) / LESIONS_FILE
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype={"patient_id": str, "side": str, "birads": str})


def _manifests(cfg: Settings, where: str) -> list[tuple[Any, Path]]:
    """(manifest, data root) of the internal cohort or of each external dataset in the profile."""
    if where == "internal":
        return [(prepare.prepare_manifest(cfg), prepare.plan_dataset(cfg).root)]
    return [(steps.prepare_external(cfg, name)[0], prepare.plan_dataset(cfg, name).root)
            for name in steps.EXTERNAL_MODELS if name in cfg.external]


def breast_attributes(cfg: Settings, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(breasts with their subgroup columns, which characteristics each dataset does not record)."""
    frames, absent = [], []
    for manifest, root in _manifests(cfg, where):
        attributes, missing = evaluation.subgroup_attributes(manifest.breasts, lesions_table(root))
        frames.append(attributes)
        absent.append({"Dataset": manifest.dataset, "Lesions table": "yes" if lesions_table(root) is not None
                       else "no", "Not recorded": ", ".join(missing) or "none"})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(absent)


def _joined(predictions: pd.DataFrame, attributes: pd.DataFrame) -> pd.DataFrame:
    """Predictions with each breast's subgroup columns (val rows keep theirs empty: never evaluated)."""
    keep = [*tables.BREAST_KEY, "birads", *evaluation.SUBGROUPS, "size_mm", "lesion_enhancement"]
    info = attributes[[c for c in keep if c in attributes]].copy()
    for column in tables.BREAST_KEY:
        info[column] = info[column].astype(str)
    return predictions.merge(info.drop_duplicates(tables.BREAST_KEY), on=tables.BREAST_KEY, how="left")


def _write(cfg: Settings, table: pd.DataFrame, name: str, where: str) -> None:
    results.write_table(table, steps.tables_dir(cfg), f"{name}_{where}", CAPTIONS.get(name, ""))


def journal_evaluation(cfg: Settings, where: str = "internal") -> dict[str, Any]:
    """Every table and figure of the journal's evaluation for one side of the study; returns them."""
    validation_scores(cfg)
    predictions = tables.validate_predictions(steps.all_predictions(cfg))
    summary, bins = evaluation.calibration_table(predictions, where)
    operating = evaluation.operating_points_table(predictions, where)
    curves = evaluation.decision_curves(predictions, where)
    attributes, recorded = breast_attributes(cfg, where)
    joined = _joined(predictions, attributes)
    subgroups = evaluation.subgroup_table(joined, where)
    clustering = evaluation.clustering_table(predictions, where, seed=cfg.seed)
    truth = any(lesions_table(root) is not None for _, root in _manifests(cfg, where))
    errors = evaluation.confident_errors(joined, ERRORS_MODEL, where, truth=truth)
    written = {"calibration": summary, "reliability": bins, "operating_points": operating,
               "decision_curve": evaluation.decision_table(curves), "subgroups": subgroups.drop(
                   columns=["auc", "low", "high"]), "clustering": clustering,
               "errors": errors.drop(columns="patient_id").rename(columns=evaluation.TRUTH_HEADINGS),
               "subgroups_recorded": recorded}
    for name, table in written.items():
        _write(cfg, table, name, where)
    results.write_table(curves, steps.tables_dir(cfg), f"decision_curve_full_{where}")
    names = {"internal": "internal test set"} | {key: steps.dataset_label(cfg, key) for key in cfg.external}
    steps.keep_figure(cfg, plots.reliability_figure(bins, names=names), f"reliability_{where}")
    steps.keep_figure(cfg, plots.decision_curve_figure(curves, names=names), f"decision_curve_{where}")
    # Internal: the paper's main model; external: the one model each dataset is scored with.
    main = [ERRORS_MODEL] if where == "internal" else [model_name(*m) for m in steps.EXTERNAL_MODELS.values()]
    shown = subgroups[subgroups["Model"].isin({model_label(m) for m in main})]
    steps.keep_figure(cfg, plots.forest_plot(shown, f"AUC by subgroup ({where})", names), f"forest_{where}")
    return {**written, "subgroups_main": shown.drop(columns=["auc", "low", "high"]),
            "clustering_note": evaluation.clustering_summary(clustering, names), "errors_full": errors}


def failure_gallery(cfg: Settings, errors: pd.DataFrame, where: str = "internal",
                    cases: int = GALLERY_CASES) -> list:
    """LE, DES and Grad-CAM++ per view of the most confident false negatives and false positives of the
    CEM MF concatenation model, named by pseudonym (no truth columns in the figure)."""
    internal = prepare.prepare_data(cfg)
    sources = [(internal[0], internal[1], "internal")] if where == "internal" else [
        (*steps.prepare_external(cfg, name), name) for name, model in steps.EXTERNAL_MODELS.items()
        if model == steps.MAIN_MODEL and name in cfg.external]
    model = load_model(steps.train_model(cfg, *steps.MAIN_MODEL, *internal))
    model.to(inference_device(cfg.device)).eval()
    figures = []
    for manifest, cache, name in sources:
        dataset = data.PatientDataset(manifest, cache, None, inputs=steps.MAIN_MODEL[1])
        index = {patient: i for i, patient in enumerate(dataset.patients)}
        for error in ("false negative", "false positive"):
            chosen = errors[errors["Error"] == error].drop_duplicates("patient_id").head(cases)
            for k, row in enumerate(chosen.itertuples()):
                if row.patient_id not in index:
                    continue
                item = dataset[index[row.patient_id]]
                explained = cams.explain_exam(model, item["x"])
                figure = cams.plot_exam_cams(item["x"], explained["own"], explained["scores"])
                figure.suptitle(f"{error}, case {pseudonym(manifest.dataset, row.patient_id)} "
                                f"({row.Side} breast, score {row.Score:.2f})", fontsize=10)
                stem = f"errors_{name}_{'fn' if error == 'false negative' else 'fp'}_{k + 1}"
                figures.append(steps.keep_figure(cfg, figure, stem))
    if not figures:
        print("No error of the CEM MF concatenation model to show in this run.")
    return figures


def checklist_table(cfg: Settings) -> pd.DataFrame:
    """The CLAIM 2024 and TRIPOD+AI items with where this study answers each (or why it does not)."""
    table = checklist.checklist_table()
    results.write_table(table, steps.tables_dir(cfg), "checklist",
                        "Reporting checklists: CLAIM 2024, TRIPOD+AI")
    return table
