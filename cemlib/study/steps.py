"""The study's steps as the notebooks run them: one function per notebook section, writing to reports/.

Each function takes a loaded profile (`load`) and is idempotent: finished work (cohort on disk,
manifest, tensor cache, trained checkpoints, predictions) is reused, so a notebook can be rerun cheaply
and the pipeline resumes where it stopped. Notebooks only call these and display what they return.

Where things go, for a profile P:
- runs/P/models/<INPUTS>_stage1, runs/P/models/<INPUTS>_<fusion>: checkpoints and training logs;
- runs/P/predictions/<model>__<dataset>.csv: per-breast scores;
- runs/P/replicates/<k>/models, .../predictions: the same for replicate k >= 1 (training seed base + k);
- reports/P/tables, reports/P/figures: the paper's tables (CSV, Markdown, LaTeX) and figures (PNG, PDF).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from cemlib import training
from cemlib.core.devices import init_distributed, use_threads
from cemlib.core.fileio import atomic_write_text, save_figure
from cemlib.core.settings import Settings, describe_variant, load_profile
from cemlib.core.views import VIEW_ORDER
from cemlib.core.vocab import FUSIONS, INPUTS, dataset_name, model_name, patient_classes
from cemlib.data import datasets as data
from cemlib.data.cache import TensorCache
from cemlib.data.manifest import Manifest
from cemlib.data.manifest import describe as describe_manifest
from cemlib.inference import scoring as evaluation
from cemlib.model.checkpoints import checkpoint_digest
from cemlib.pixels import qc
from cemlib.results import build as results
from cemlib.results import figures as plots
from cemlib.results import report, runfacts, stats, tables
from cemlib.study import prepare
from cemlib.synthetic import qc as synthetic_qc
from cemlib.training import tracking

#: The paper's main model, and the model each external dataset is scored with (INbreast is FFDM: LE).
MAIN_MODEL = ("mf_concat", "cem")
EXTERNAL_MODELS = {"inbreast": ("mf_concat", "le"), "cddcesm": ("mf_concat", "cem")}
EXTERNAL_NAMES = {name: prepare.DATASET_NAMES[name] for name in EXTERNAL_MODELS}


def load(profile: str | Path = "smoke", overrides: dict[str, Any] | None = None) -> Settings:
    """The profile's settings tree with absolute paths (a notebook's first call); sets its thread count."""
    cfg = load_profile(profile, overrides)
    use_threads(cfg.threads)
    return cfg


def show_profile(cfg: Settings) -> None:
    """Print the settings that shape the results (no paths, which differ per machine), and, for settings
    that differ from the profile file, the folders this run keeps for itself (relative to the project)."""
    if (variant := describe_variant(cfg)) is not None:
        print(variant)
    model, train, pre = cfg.model, cfg.train, cfg.preprocess
    size = list(pre.size) if pre.size is not None else None
    print(
        f"profile {cfg.name}: device {cfg.device}, seed {cfg.seed}, "
        f"dataset {cfg.data.dataset}; input {size} ({pre.window} window); "
        f"VGG16-BN width {model.width}, head {list(model.head)}, "
        f"global pool {model.global_pool}; "
        f"SGD lr {train.lr}, batch {train.batch_size}, epochs "
        f"{train.stage1_epochs}+{train.stage2_epochs}, patience {train.patience}"
    )


def tables_dir(cfg: Settings) -> Path:
    """reports/<profile>/tables: CSV, Markdown and LaTeX tables."""
    return Path(cfg.reports) / "tables"


def figures_dir(cfg: Settings) -> Path:
    """reports/<profile>/figures: PNG and PDF figures."""
    return Path(cfg.reports) / "figures"


def predictions_dir(cfg: Settings) -> Path:
    """runs/<profile>/predictions: per-breast scores of every model on every dataset."""
    return Path(cfg.runs) / "predictions"


def model_label(fusion: str, inputs: str) -> str:
    """The name a model has in tables and figures, e.g. 'CEM mf_concat'."""
    return model_name(fusion, inputs)


def dataset_label(cfg: Settings, name: str) -> str:
    """A dataset as figures and tables name it: 'synthetic replica of CDD-CESM' when the kit writes it."""
    spec = cfg.external.get(name) if name in cfg.external else None
    return dataset_name(name, replica=spec is not None and spec.synth is not None)


def show_note(text: str):
    """A sentence of results for display in a notebook or the report (Markdown, not a printed line)."""
    from IPython.display import Markdown

    return Markdown(text)


def keep_figure(cfg: Settings, figure, name: str):
    """Write a figure as PNG and PDF into reports/<profile>/figures and return it for display."""
    save_figure(figure, figures_dir(cfg) / name, formats=("png", "pdf"))
    return figure


def show_table(table: pd.DataFrame | None, empty: str = "No rows in this run."):
    """A table for display in a notebook or the report: numbers as the paper prints them, no row index.

    A missing table, or one without rows, is said in words (`empty`) instead of a bare header.
    """
    from IPython.display import Markdown

    if table is None:
        return Markdown("*Not available for this run.*")
    if table.empty:
        return Markdown(f"*{empty}*")
    return report.style_table(table)


def show_figure(cfg: Settings, name: str):
    """Display a saved figure (PNG) inline."""
    from IPython.display import Image

    return Image(filename=str(figures_dir(cfg) / f"{name}.png"), width=900)


# ---------------------------------------------------------------------------------------------------
# 00 cohort


def prepare_manifest(cfg: Settings):
    """The profile's manifest: writes the synthetic cohort and scans the dataset when missing."""
    return prepare.prepare_manifest(cfg)


def describe(manifest: Manifest) -> str:
    """Readable counts of a manifest (patients, breasts, images, exclusions, split by class)."""
    return describe_manifest(manifest)


def flow_counts(manifest: Manifest) -> pd.DataFrame:
    """Fig. 1 numbers: patients found, excluded per reason, kept, and per split."""
    found = set(manifest.breasts["patient_id"]) | set(manifest.exclusions["patient_id"])
    excluded = set(manifest.excluded_patients())
    rows = [("patients found", len(found))]
    patient_rows = manifest.exclusions[manifest.exclusions["patient_id"].isin(excluded)]
    for kind, count in patient_rows.drop_duplicates("patient_id")["kind"].value_counts().items():
        rows.append((f"excluded: {str(kind).replace('_', ' ')}", int(count)))
    rows.append(("patients kept", len(manifest.patients)))
    per_split = manifest.breasts.drop_duplicates("patient_id")["split"].value_counts()
    for split in ("train", "val", "test", "external"):
        if split in per_split:
            rows.append((f"{split}", int(per_split[split])))
    return pd.DataFrame(rows, columns=["step", "patients"])


def flow_figure(cfg: Settings, manifest: Manifest):
    """Fig. 1: the exclusion flow diagram (found -> excluded by reason -> kept -> split)."""
    return keep_figure(cfg, plots.flow_figure(flow_counts(manifest)), "fig1_flow")


def exclusion_examples(manifest, limit: int = 15) -> pd.DataFrame:
    """The first exclusions with their reasons (pseudonymous ids only)."""
    columns = [c for c in ("patient_id", "side", "kind", "reason") if c in manifest.exclusions]
    return manifest.exclusions[columns].head(limit)


def cohort_tables(cfg: Settings, manifest: Manifest) -> dict[str, pd.DataFrame]:
    """Table 1, Table 2 and the Fig. 1 counts, written to reports/<profile>/tables."""
    out = {
        "table1_characteristics": tables.table1_characteristics(manifest.breasts),
        "table2_patient_classes": tables.table2_patient_classes(manifest.breasts),
        "fig1_flow_counts": flow_counts(manifest),
    }
    for name, table in out.items():
        results.write_table(table, tables_dir(cfg), name, results.CAPTIONS.get(name, ""))
    return {"table1": out["table1_characteristics"], "table2": out["table2_patient_classes"],
            "flow": out["fig1_flow_counts"]}


# ---------------------------------------------------------------------------------------------------
# 01 preprocessing


def prepare_cache(cfg: Settings):
    """(manifest, cache, fill summary): the tensor cache filled for the profile's manifest."""
    manifest = prepare.prepare_manifest(cfg)
    cache, result = prepare.fill_cache(cfg, manifest)
    return manifest, cache, result.summary()


def qc_figure(cfg: Settings, manifest, patients: int = 2) -> list[Figure]:
    """Raw vs preprocessed panels for a benign and a malignant exam of the training split, one figure per
    exam (qc_preprocessing_1, _2, ...: each fits a page at its drawn size)."""
    breasts = manifest.breasts[manifest.breasts["split"] == "train"]
    malignant = breasts.loc[breasts["label"] == 1, "patient_id"].drop_duplicates().head(patients - 1)
    benign = sorted(set(breasts["patient_id"]) - set(breasts.loc[breasts["label"] == 1, "patient_id"]))[:1]
    figures = []
    for k, pid in enumerate([*benign, *malignant.tolist()], start=1):
        # Panels name patients by the study's pseudonym (a manifest id can be a folder name).
        exam = report.pseudonym(manifest.dataset, pid)
        views = [replace(view, label=f"{exam} {key}") for view, key
                 in zip(qc.manifest_views(manifest, [pid]), VIEW_ORDER, strict=True)]
        figure = qc.qc_figure_from_views(views, prepare.preprocess_settings(cfg), panel_inches=1.45)
        figures.append(keep_figure(cfg, plots.tidy_qc_figure(figure, exam), f"qc_preprocessing_{k}"))
    return figures


def window_rules(cache) -> pd.DataFrame:
    """How each image's window was chosen: number of images per rule, LE and DES (the cache's record)."""
    record = cache.windows()
    rows = []
    for energy in ("LE", "DES"):
        column = record.get(f"{energy.lower()}_window_rule", pd.Series(dtype=str))
        counts = column[column != ""].value_counts()
        rows += [{"energy": energy, "rule": rule, "images": int(n)} for rule, n in counts.items()]
    return pd.DataFrame(rows, columns=["energy", "rule", "images"])


def intensity_figure(cfg: Settings, manifest: Manifest, cache: TensorCache, images: int = 40):
    """Raw grey levels of the internal cohort and each external dataset side by side, then preprocessed."""
    manifests, settings = {"internal cohort": manifest}, {"internal cohort": cache.settings}
    for name in EXTERNAL_MODELS:
        if name in cfg.external:
            external_manifest, external_cache = prepare_external(cfg, name)
            manifests[dataset_label(cfg, name)] = external_manifest
            settings[dataset_label(cfg, name)] = external_cache.settings
    figure = synthetic_qc.intensity_histograms(manifests, settings, n_images=images, seed=cfg.seed)
    return keep_figure(cfg, figure, "intensity_histograms")


def batch_figure(cfg: Settings, manifest: Manifest, cache: TensorCache, patients: int = 2):
    """A few augmented training exams as the loader serves them (LE row, DES row per patient)."""
    dataset = data.PatientDataset(manifest, cache, "train", inputs="cem",
                                  augment=data.Augment.from_profile(cfg), seed=cfg.seed)
    items = [dataset[p] for p in range(patients)]
    cases = [report.pseudonym(manifest.dataset, item["patient_id"]) for item in items]
    return keep_figure(cfg, plots.batch_figure(items, cases), "loader_batch")


# ---------------------------------------------------------------------------------------------------
# 02 training and 03 ablations


def train_model(cfg: Settings, fusion: str, inputs: str, manifest: Manifest | None = None,
                cache: TensorCache | None = None) -> Path:
    """Train (or resume, or reuse) stage 1 for `inputs` and stage 2 for `fusion`; the best checkpoint.

    Pass the internal (manifest, cache) when already prepared, so it is not prepared again.
    """
    manifest, cache = prepare.data_for(cfg, manifest, cache, init_distributed(cfg.device))
    return training.train_with_shared_stage1(cfg, fusion, inputs, manifest, cache)


def training_logs(cfg: Settings, fusion: str, inputs: str) -> dict[str, pd.DataFrame]:
    """Per-epoch logs of stage 1 and stage 2 of a model."""
    logs = {}
    folders = (("stage 1", training.stage1_dir(cfg, inputs)),
               ("stage 2", training.fusion_dir(cfg, fusion, inputs)))
    for stage, folder in folders:
        found = sorted(folder.rglob("log.csv"))
        if found:
            logs[stage] = pd.read_csv(found[0])
    return logs


def prior_entropy(cfg: Settings) -> float:
    """The cross-entropy of predicting the training breasts' prevalence."""
    breasts = prepare.prepare_manifest(cfg).breasts
    return stats.binary_entropy(float(breasts.loc[breasts["split"] == "train", "label"].mean()))


def prior_loss(entropy: float, fusion: str, stage: str) -> float:
    """The loss of a model that predicts the training prevalence: the floor a model must get under.

    Stage 1 and the per-view fusions average one cross-entropy per image; the multi-feature fusions sum
    the left and right breasts' (the authors' CE + CE), so their floor is twice the entropy.
    """
    per_view = stage == "stage 1" or fusion in ("none", "left_right")
    return entropy if per_view else 2 * entropy


def write_training_record(cfg: Settings) -> Path | None:
    """tables/training_log.csv: every model's per-epoch log (model folder, stage), for the report."""
    record = runfacts.training_logs(cfg.runs)
    if record is None:
        return None
    path = tables_dir(cfg) / f"{runfacts.TRAINING_TABLE}.csv"
    atomic_write_text(path, record.to_csv(index=False))
    return path


def learning_curves(cfg: Settings, fusion: str, inputs: str):
    """Loss of each stage against the prior's loss, and validation AUC, per epoch; the kept epoch marked."""
    entropy = prior_entropy(cfg)
    priors = {stage: prior_loss(entropy, fusion, stage) for stage in ("stage 1", "stage 2")}
    figure = plots.learning_curve_figure(training_logs(cfg, fusion, inputs), priors)
    return keep_figure(cfg, figure, f"learning_curves_{inputs}_{fusion}")


def training_summary(cfg: Settings, fusion: str, inputs: str) -> pd.DataFrame:
    """Best epoch, validation loss and AUC, and time of each stage."""
    rows = []
    for stage, log in training_logs(cfg, fusion, inputs).items():
        best = log.loc[log["val_loss"].idxmin()]
        rows.append({"stage": stage, "epochs run": len(log), "best epoch": int(best["epoch"]),
                     "val loss": round(float(best["val_loss"]), 4),
                     "val AUC": round(float(best["val_auc"]), 3),
                     "seconds": round(float(log["seconds"].sum()), 1)})
    return pd.DataFrame(rows)


def predictions_path(cfg: Settings, fusion: str, inputs: str, dataset: str) -> Path:
    """Where one model's per-breast scores on one dataset are kept."""
    return predictions_dir(cfg) / f"{model_name(fusion, inputs, form='folder')}__{dataset}.csv"


def scores_key(checkpoint: Path, manifest: Manifest, cache: TensorCache, split: str | None) -> str:
    """What a predictions file depends on: the checkpoint's content digest, the preprocessing and the images.

    The checkpoint counts by the digest it was saved with (not its path or time stamp: a model trained again
    under the same name gives new scores); every image by its sha256; every breast by its label and split.
    """
    images = manifest.images
    breasts = manifest.breasts
    parts = [checkpoint_digest(checkpoint), cache.settings.digest(), str(split),
             *sorted(images["patient_id"].astype(str) + ":" + images["side"].astype(str) + ":"
                     + images["view"].astype(str) + ":" + images["energy"].astype(str) + ":"
                     + images["sha256"].astype(str)),
             *sorted(breasts["dataset"].astype(str) + ":" + breasts["patient_id"].astype(str) + ":"
                     + breasts["side"].astype(str) + ":" + breasts["label"].astype(str) + ":"
                     + breasts["split"].astype(str))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def score_model(cfg: Settings, checkpoint: Path, fusion: str, inputs: str, manifest: Manifest,
                cache: TensorCache, split: str | None, dataset: str) -> pd.DataFrame:
    """Per-breast scores of one trained model on a manifest, reused while nothing they depend on changed."""
    path = predictions_path(cfg, fusion, inputs, dataset)
    key_path = path.with_suffix(".key")
    key = scores_key(checkpoint, manifest, cache, split)
    if path.exists() and key_path.exists() and key_path.read_text() == key:
        return pd.read_csv(path, dtype={"patient_id": str})
    tracking.note(f"model {inputs}_{fusion}: scoring {dataset} breasts")
    scores = evaluation.predict(checkpoint, manifest, cache, split=split, inputs=inputs,
                                device=cfg.device)
    atomic_write_text(path, scores.to_csv(index=False))
    atomic_write_text(key_path, key)
    return scores


def run_ablations(cfg: Settings) -> pd.DataFrame:
    """Train the eight models (two stage-1 CNNs, eight fusions) and score the internal test set.

    With `replicates` N > 1 the eight models are trained and scored again under training seeds
    base + 1 .. base + N - 1 (see `replicate_settings`); the frame returned is replicate 0's.
    """
    manifest, cache = prepare.prepare_data(cfg)
    predictions = _internal_scores(cfg, manifest, cache)
    for k in range(1, replicate_count(cfg)):
        replicate = replicate_settings(cfg, k)
        tracking.note(f"replicate {k + 1} of {replicate_count(cfg)}: training seed {replicate.train.seed}")
        _internal_scores(replicate, manifest, cache)
    return predictions


def _internal_scores(cfg: Settings, manifest: Manifest, cache: TensorCache) -> pd.DataFrame:
    """The eight models of one replicate trained (or reused) and scored on the internal test set."""
    models = [(fusion, inputs) for inputs in INPUTS for fusion in FUSIONS]
    frames = []
    for k, (fusion, inputs) in enumerate(models, start=1):
        tracking.note(f"model {k} of {len(models)}: {model_label(fusion, inputs)}, internal test set")
        frames.append(score_model(cfg, train_model(cfg, fusion, inputs, manifest, cache), fusion, inputs,
                                  manifest, cache, "test", "internal"))
    return pd.concat(frames, ignore_index=True)


def all_predictions(cfg: Settings) -> pd.DataFrame:
    """Every per-breast score computed so far (internal and external)."""
    paths = sorted(predictions_dir(cfg).glob("*.csv"))
    if not paths:
        raise FileNotFoundError(f"no predictions in {predictions_dir(cfg)}: run notebook 03 first")
    return pd.concat([pd.read_csv(p, dtype={"patient_id": str}) for p in paths], ignore_index=True)


def replicate_count(cfg: Settings) -> int:
    """How many replicates the profile asks for (its `replicates` key, at least 1)."""
    if cfg.replicates < 1:
        raise ValueError(f"profile {cfg.name!r}: replicates must be at least 1, got {cfg.replicates}")
    return cfg.replicates


def replicate_settings(cfg: Settings, k: int) -> Settings:
    """Replicate k: every model trained under seed base + k, cohort, split and cache unchanged.

    The base is train.seed, or the top-level seed when that is unset. Replicate 0 is the run itself;
    replicate k >= 1 keeps its models and predictions in runs/<profile>/replicates/<k>/.
    """
    if k == 0:
        return cfg
    return replace(cfg, runs=str(Path(cfg.runs) / "replicates" / str(k)),
                   train=replace(cfg.train, seed=replicate_seeds(cfg)[0] + k))


def replicate_seeds(cfg: Settings) -> list[int]:
    """The training seed of every replicate, replicate 0 first: train.seed (else seed) + k."""
    base = cfg.seed if cfg.train.seed is None else cfg.train.seed
    return [base + k for k in range(max(cfg.replicates, 1))]


def replicate_predictions(cfg: Settings) -> list[pd.DataFrame]:
    """Every replicate's per-breast scores on disk, replicate 0 (this run) first."""
    return [tables.validate_predictions(all_predictions(replicate_settings(cfg, k)))
            for k in range(replicate_count(cfg))]


def replicate_figure(cfg: Settings, values: pd.DataFrame | None) -> Figure | None:
    """Internal test AUC of each model in every replicate with mean and SD (None for one replicate)."""
    figure = plots.replicate_figure(values)
    return None if figure is None else keep_figure(cfg, figure, "replicates_auc")


def ablation_tables(cfg: Settings) -> dict[str, pd.DataFrame]:
    """Tables 1-5, the external table, BI-RADS, errors, scorecard and Fig. 4 from every score on disk.

    With several replicates, also their spread (replicates.csv), the share of replicates in which each
    of the paper's claims holds and each claim's verdict per training seed (claims_replicates.csv);
    every other table is replicate 0's.
    """
    predictions = tables.validate_predictions(all_predictions(cfg))
    replicates = replicate_predictions(cfg) if replicate_count(cfg) > 1 else None
    # Cohort tables (1, 2, BI-RADS, density) describe the internal cohort; external datasets enter
    # only through their predictions (the external table).
    built = results.build_tables(predictions, prepare.prepare_manifest(cfg).breasts, replicates=replicates,
                                 seeds=replicate_seeds(cfg) if replicates else None)
    results.write_tables(built, tables_dir(cfg))
    write_training_record(cfg)
    keep_figure(cfg, plots.roc_figure(predictions, "test"), "fig4_roc")
    return {
        "table3": built["table3_le"], "table4": built["table4_cem"], "table5": built["table5_delong"],
        "external": built["table_external"], "birads": built.get("table_birads_groups"),
        "confusion": built["table_confusion"], "density": built.get("table_density"),
        "scorecard": built.get("scorecard"), "comparison": built.get("table_comparison"),
        "replicates": built.get("replicates", pd.DataFrame()).round(3),
        "replicate_metrics": built.get("replicate_metrics"),
    }


# ---------------------------------------------------------------------------------------------------
# 04 external validation


def external_manifest_dir(cfg: Settings, name: str) -> Path:
    """Where an external dataset's manifest is written (beside the runs, never inside a release)."""
    return prepare.external_manifest_dir(cfg, name)


def prepare_external(cfg: Settings, name: str):
    """(manifest, cache) of an external dataset; writes its replica first when the profile asks for one."""
    return prepare.prepare_data(cfg, name=name)


def class_composition(manifest: Manifest) -> pd.DataFrame:
    """Patients per class (bilateral benign / unilateral malignant / bilateral malignant)."""
    patients = patient_classes(manifest.breasts, count_breasts=False, sort=True)
    classes = patients["patient_class"].value_counts()
    return classes.rename_axis("patient class").reset_index(name="patients")


def external_validation(cfg: Settings) -> dict[str, Any]:
    """Score the LE model on INbreast and the CEM model on CDD-CESM; tables and ROC curves."""
    internal = prepare.prepare_data(cfg)
    compositions, frames = [], []
    for k, (name, (fusion, inputs)) in enumerate(EXTERNAL_MODELS.items(), start=1):
        count = len(EXTERNAL_MODELS)
        tracking.note(f"model {k} of {count}: {model_label(fusion, inputs)}, {EXTERNAL_NAMES[name]}")
        manifest, cache = prepare_external(cfg, name)
        composition = class_composition(manifest)
        composition.insert(0, "dataset", dataset_label(cfg, name))
        compositions.append(composition)
        checkpoint = train_model(cfg, fusion, inputs, *internal)
        scores = score_model(cfg, checkpoint, fusion, inputs, manifest, cache, None, name)
        scores["dataset"] = EXTERNAL_NAMES[name]
        frames.append(scores)
        for k in range(1, replicate_count(cfg)):
            replicate = replicate_settings(cfg, k)
            score_model(replicate, train_model(replicate, fusion, inputs, *internal), fusion, inputs,
                        manifest, cache, None, name)
    external = pd.concat(frames, ignore_index=True)
    results = ablation_tables(cfg)
    figure = Figure(figsize=(9, 4.2), layout="constrained")
    for ax, frame, name in zip(figure.subplots(1, 2), frames, EXTERNAL_MODELS, strict=True):
        inputs = "LE" if frame["model"].iloc[0].startswith("LE") else "CEM"
        title = f"{dataset_label(cfg, name)}\n{model_name(*EXTERNAL_MODELS[name], form='label')}"
        plots.roc_panel(ax, frame, inputs, "external", title, fusions=(EXTERNAL_MODELS[name][0],))
    keep_figure(cfg, figure, "external_roc")
    return {"composition": pd.concat(compositions, ignore_index=True), "table": results["external"],
            "comparison": results["comparison"], "scorecard": results["scorecard"], "predictions": external}


# ---------------------------------------------------------------------------------------------------
# Index of a run's results


INDEX_TABLES = (
    ("Table 2: patients per class and split", "table2_patient_classes"),
    ("Table 3: LE models, internal test set", "table3_le"),
    ("Table 4: CEM models, internal test set", "table4_cem"),
    ("Table 5: DeLong tests", "table5_delong"),
    ("External validation", "table_external"),
    ("Grad-CAM++ pointing game", "pointing_game"),
    ("Lesion occlusion of called malignant breasts", "occlusion"),
    ("The paper's claims against this run", "scorecard"),
    ("Replicates: mean, SD and range across training seeds", "replicates"),
    ("Grad-CAM++ pointing game of every replicate", "pointing_game_replicates"),
)


def write_index(cfg: Settings, seconds: float | None = None) -> Path:
    """reports/<profile>/README.md: the run's key tables inline and a link to every file."""
    reports = Path(cfg.reports)
    lines = [f"# Results of the `{cfg.name}` profile", ""]
    if seconds is not None:
        lines += [f"`cem reproduce --profile {cfg.name}` ran in {seconds / 60:.1f} minutes.", ""]
    lines += ["Full report: [report.pdf](report.pdf); each run also writes `report.html` beside it (the same "
              "report as one web page, not kept in git). "
              "Everything below is regenerated by the study notebooks.", ""]
    for title, name in INDEX_TABLES:
        table = tables_dir(cfg) / f"{name}.md"
        if table.exists():
            lines += [f"## {title}", "", table.read_text().strip(), ""]
    figures = sorted(figures_dir(cfg).glob("*.png"))
    if figures:
        lines += ["## Figures", ""]
        lines += [f"- [{p.stem}](figures/{p.name}) ([PDF](figures/{p.stem}.pdf))" for p in figures]
        lines.append("")
    other = sorted(p.name for p in tables_dir(cfg).glob("*.csv"))
    if other:
        lines += ["## All tables (CSV; Markdown and LaTeX beside each)", ""]
        lines += [f"- [{name}](tables/{name})" for name in other]
        lines.append("")
    path = reports / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path
