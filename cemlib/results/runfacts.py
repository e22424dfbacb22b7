"""What a run found, read back from its tables, for the sentences of the report (cemlib.results.narrative).

A report is built after the notebooks ran, from what they left in reports/<profile>/tables (and, where
there, the per-epoch training logs in runs/<profile>/models). `load_run` gathers it into `RunFacts`;
`facts_from_tables` does the same from tables in memory (as cemlib.results.build makes them), so that a
test can write two runs with opposite outcomes and read the sentences each one gets.

The findings the sentences rest on are functions of these facts: which models sit at chance or call one
class at the threshold (`model_findings`), which learning curves stayed flat (`flat_training`), which
claims hold on tiny differences between weak models (`weak_holds`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from cemlib.core.vocab import (
    DATASETS,
    FUSIONS,
    MODELS,
    PAPER_INPUT_SIZE,
    dataset_key,
    model_label,
    model_name,
)
from cemlib.results import check

#: The paper's main model and the model each external set is scored with (INbreast is FFDM: LE).
MAIN_MODEL = model_name("mf_concat", "cem")
EXTERNAL_MODELS = {"inbreast": model_name("mf_concat", "le"), "cddcesm": model_name("mf_concat", "cem")}
#: A model whose AUC lies below this discriminates poorly whatever its CI (the paper's models: 0.90-0.96).
WEAK_AUC = 0.75
#: A learning curve is flat when its validation AUC never leaves chance +- this and its validation loss
#: moves less than FLAT_LOSS (relative) from the first epoch.
FLAT_AUC = 0.1
FLAT_LOSS = 0.02
#: Training logs as the training loop writes them (cemlib.training.loop.LOG_COLUMNS).
LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "val_auc")
#: The report's record of the training logs (one row per model, stage and epoch).
TRAINING_TABLE = "training_log"


@dataclass(frozen=True)
class RunFacts:
    """A run's results and settings as the report's sentences need them."""

    profile: str
    metrics: pd.DataFrame  # metrics.csv: dataset, model, n_breasts, n_malignant, threshold, metric, ...
    scorecard: pd.DataFrame | None = None
    replicates: pd.DataFrame | None = None  # replicates.csv (two or more replicates)
    replicate_count: int = 1
    seeds: tuple[int, ...] = (0,)
    training: pd.DataFrame | None = None  # one row per model, stage and epoch (TRAINING_TABLE)
    check: check.CheckOutcome | None = None
    synthetic: bool = True  # the internal cohort is the kit's phantom
    replicas: Mapping[str, bool] = field(default_factory=dict)  # external key -> a replica the kit wrote
    settings: Mapping[str, Any] = field(default_factory=dict)  # profile facts (size, width, epochs, ...)
    cohort: pd.DataFrame | None = None  # Table 2
    pointing: pd.DataFrame | None = None
    occlusion: pd.DataFrame | None = None
    flow: pd.DataFrame | None = None
    ceiling: pd.DataFrame | None = None  # image_ceiling.csv: a reader told where every finding is
    earlier: tuple[tuple[str, pd.DataFrame], ...] = ()  # replaced references of the profile: (label, table)
    des_window: pd.DataFrame | None = None  # des_window.csv: this run's DES window rule comparison, or
    des_window_from_reference: bool = False  # its reference run's (data_manifest/des_window_<profile>.csv)
    ci_method: str = "clopper-pearson"
    level: float = 0.95

    def metric(self, model: str, metric: str, dataset: str = "internal") -> pd.Series | None:
        """The metrics.csv row of one model, metric and dataset (key or name); None when absent."""
        key = dataset_key(dataset) or dataset
        rows = self.metrics[(self.metrics["model"] == model) & (self.metrics["metric"] == metric)
                            & (self.metrics["dataset"].map(lambda d: dataset_key(d) or d) == key)]
        return None if rows.empty else rows.iloc[0]

    def internal_aucs(self, inputs: str) -> dict[str, float]:
        """Internal test AUC of each model fed `inputs` ("CEM" or "LE") that this run scored."""
        rows = {model: self.metric(model, "auc") for model in MODELS if model.startswith(inputs + " ")}
        return {model: float(row["estimate"]) for model, row in rows.items() if row is not None}

    @property
    def threshold(self) -> float:
        """The operating threshold of the paper's tables (metrics.csv; the paper's rule is 0.5)."""
        column = self.metrics.get("threshold", pd.Series(dtype=float))
        values = pd.to_numeric(column, errors="coerce").dropna()
        return float(values.iloc[0]) if len(values) else 0.5

    def external_sets(self) -> list[str]:
        """The external dataset keys this run scored, in the study's order."""
        seen = {dataset_key(d) for d in self.metrics["dataset"]}
        return [key for key in DATASETS if key != "internal" and key in seen]


def setting(profile: Mapping[str, Any] | None, dotted: str, default: Any = None) -> Any:
    """A profile value by dotted key ('train.stage1_epochs'), `default` where unset."""
    node: Any = profile
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def profile_facts(profile: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings the sentences quote: input size, network width, epochs planned, optimiser, seed."""
    size = setting(profile, "preprocess.size") or PAPER_INPUT_SIZE
    return {
        "size": tuple(int(v) for v in size), "width": float(setting(profile, "model.width", 1.0)),
        "stage1_epochs": setting(profile, "train.stage1_epochs"),
        "stage2_epochs": setting(profile, "train.stage2_epochs"),
        "patience": setting(profile, "train.patience"), "lr": setting(profile, "train.lr"),
        "batch_size": setting(profile, "train.batch_size"), "seed": setting(profile, "train.seed",
                                                                            setting(profile, "seed", 0)),
        "split": setting(profile, "data.split"), "window": setting(profile, "preprocess.window"),
        "window_range": setting(profile, "preprocess.window_range"),
        "des_window": setting(profile, "preprocess.des_window"), "device": setting(profile, "device", "cpu"),
        "patients": setting(profile, "data.synth.patients"),
    }


def replica_flags(profile: Mapping[str, Any] | None) -> dict[str, bool]:
    """Per external dataset of the profile: True when the kit writes it from the phantom (`synth` set)."""
    external = setting(profile, "external") or {}
    return {str(name): setting(spec, "synth") is not None for name, spec in dict(external).items()}


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / f"{name}.csv"
    return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.is_file() else None


def training_logs(runs: str | Path | None) -> pd.DataFrame | None:
    """Every stage log under runs/<profile>/models (model folder, stage, epoch, losses, AUC), or None.

    A stage-1 CNN keeps its log in models/<inputs>_stage1/log.csv, a fusion model its stage 2 in
    models/<inputs>_<fusion>/stage2/log.csv (cemlib.training.stages).
    """
    models = Path(runs) / "models" if runs is not None else None
    if models is None or not models.is_dir():
        return None
    frames = []
    for path in sorted([*models.glob("*/log.csv"), *models.glob("*/stage*/log.csv")]):
        log = pd.read_csv(path)
        if not set(LOG_COLUMNS) <= set(log.columns):
            continue
        nested = path.parent.name.startswith("stage")
        folder = path.parents[1].name if nested else path.parent.name
        stage = path.parent.name if nested else ("stage1" if folder.endswith("_stage1") else "stage2")
        frames.append(log[list(LOG_COLUMNS)].assign(model=folder, stage=stage))
    return pd.concat(frames, ignore_index=True) if frames else None


def load_run(reports: str | Path, profile: Mapping[str, Any] | None = None,
             reference: str | Path | None = None) -> RunFacts:
    """The facts of the run whose tables lie in reports/tables (its profile's settings beside them).

    `reference`: the file `cem check` compares with (default: the kit's reference of the profile, when
    there is one); the check is made here from the same function, so the report carries its verdict.
    """
    tables = Path(reports) / "tables"
    metrics = _read(tables, "metrics")
    if metrics is None:
        raise FileNotFoundError(f"{tables / 'metrics.csv'}: no metrics of a finished run here")
    name = str(setting(profile, "name", ""))
    reference = Path(reference) if reference is not None else (check.reference_path(name) if name else None)
    outcome = None
    if reference is not None and reference.is_file():
        try:
            outcome = check.check_tables(tables, reference, name)
        except (ValueError, FileNotFoundError) as exc:
            outcome = check.CheckOutcome(False, f"not made: {exc}", reference=str(reference))
    training = _read(tables, TRAINING_TABLE)
    if training is None:
        training = training_logs(setting(profile, "runs"))
    count = int(setting(profile, "replicates", 1) or 1)
    base = setting(profile, "train.seed", setting(profile, "seed", 0)) or 0
    facts = facts_from_tables(
        {stem: _read(tables, stem) for stem in ("scorecard", "replicates", "table2_patient_classes",
                                                 "pointing_game", "occlusion", "fig1_flow_counts",
                                                 "image_ceiling")}
        | {"metrics": metrics}, profile=profile, training=training, check_outcome=outcome,
        replicate_count=count, seeds=tuple(int(base) + k for k in range(count)))
    des_window, from_reference = _read(tables, "des_window"), False
    if des_window is None and name and check.des_window_reference_path(name).is_file():
        des_window, from_reference = pd.read_csv(check.des_window_reference_path(name)), True
    return replace(facts, earlier=tuple(check.earlier_references(name)), des_window=des_window,
                   des_window_from_reference=from_reference)


def facts_from_tables(tables: Mapping[str, pd.DataFrame | None], profile: Mapping[str, Any] | None = None,
                      training: pd.DataFrame | None = None, check_outcome: check.CheckOutcome | None = None,
                      replicate_count: int | None = None, seeds: tuple[int, ...] | None = None) -> RunFacts:
    """RunFacts from tables keyed by file stem (metrics, scorecard, replicates, ...: cemlib.results.build's
    names); `profile` gives the settings. A frame of metrics without "dataset" internal rows is refused."""
    metrics = tables["metrics"]
    if metrics is None or "internal" not in set(metrics["dataset"]):
        raise ValueError("a run's facts need its internal metrics (metrics.csv)")
    replicates = tables.get("replicates")
    measured = replicates is not None and len(replicates)
    count = replicate_count or (int(replicates["n"].max()) if measured else 1)
    return RunFacts(
        profile=str(setting(profile, "name", "")), metrics=metrics, scorecard=tables.get("scorecard"),
        replicates=replicates, replicate_count=count, seeds=seeds or tuple(range(count)), training=training,
        check=check_outcome, synthetic=setting(profile, "data.dataset", "synthetic") == "synthetic",
        replicas=replica_flags(profile), settings=profile_facts(profile),
        cohort=tables.get("table2_patient_classes"), pointing=tables.get("pointing_game"),
        occlusion=tables.get("occlusion"), flow=tables.get("fig1_flow_counts"),
        ceiling=tables.get("image_ceiling"))


# ---------------------------------------------------------------------------------------------------
# findings


@dataclass(frozen=True)
class ModelFinding:
    """One model on one dataset: its AUC with CI, and how it calls breasts at the threshold."""

    model: str
    dataset: str
    auc: float
    low: float
    high: float
    sen: float
    spe: float
    n_breasts: int
    n_malignant: int

    @property
    def at_chance(self) -> bool:
        """Its AUC's CI takes in 0.5: the run cannot tell it from a model that ignores the images."""
        return not math.isnan(self.auc) and self.low <= 0.5 <= self.high

    @property
    def weak(self) -> bool:
        return not math.isnan(self.auc) and self.auc < WEAK_AUC

    @property
    def one_class(self) -> str | None:
        """'benign' when it calls every breast benign at the threshold, 'malignant' for the converse."""
        if self.sen == 0.0 and self.spe == 1.0:
            return "benign"
        if self.sen == 1.0 and self.spe == 0.0:
            return "malignant"
        return None


def model_findings(run: RunFacts, dataset: str = "internal") -> list[ModelFinding]:
    """Every model scored on a dataset, the paper's eight in table order first."""
    key = dataset_key(dataset) or dataset
    rows = run.metrics[run.metrics["dataset"].map(lambda d: dataset_key(d) or d) == key]
    order = [m for m in (model_name(f, i) for i in ("le", "cem") for f in FUSIONS) if m in set(rows["model"])]
    order += [m for m in dict.fromkeys(rows["model"]) if m not in order]
    found = []
    for model in order:
        part = rows[rows["model"] == model].set_index("metric")
        if "auc" not in part.index:
            continue
        auc = part.loc["auc"]
        rate = {m: float(part.loc[m, "estimate"]) if m in part.index else float("nan")
                for m in ("sen", "spe")}
        found.append(ModelFinding(model, key, float(auc["estimate"]), float(auc["low"]), float(auc["high"]),
                                  rate["sen"], rate["spe"], int(auc["n_breasts"]), int(auc["n_malignant"])))
    return found


@dataclass(frozen=True)
class StageCurve:
    """One training stage of one model: epochs run, the kept epoch, and whether it learnt anything."""

    model: str  # the run folder's name, e.g. cem_mf_concat, cem_stage1
    stage: str
    epochs: int
    best_epoch: int
    best_val_auc: float
    first_val_loss: float
    best_val_loss: float
    auc_range: tuple[float, float]

    @property
    def flat(self) -> bool:
        """Validation AUC stayed within chance +- FLAT_AUC and the loss barely moved."""
        low, high = self.auc_range
        near_chance = abs(low - 0.5) <= FLAT_AUC and abs(high - 0.5) <= FLAT_AUC
        still = self.first_val_loss - self.best_val_loss <= FLAT_LOSS * abs(self.first_val_loss)
        return near_chance or (still and self.best_val_auc < 0.5 + FLAT_AUC)


def stage_curves(training: pd.DataFrame | None) -> list[StageCurve]:
    """Per model folder and stage of a training record: epochs run, kept epoch (lowest validation loss)."""
    if training is None or training.empty:
        return []
    curves = []
    for (model, stage), log in training.groupby(["model", "stage"], sort=True):
        log = log.sort_values("epoch")
        val = pd.to_numeric(log["val_loss"], errors="coerce")
        auc = pd.to_numeric(log["val_auc"], errors="coerce")
        if val.dropna().empty:
            continue
        best = log.loc[val.idxmin()]
        curves.append(StageCurve(str(model), str(stage), len(log), int(best["epoch"]),
                                 float(best["val_auc"]), float(val.dropna().iloc[0]), float(val.min()),
                                 (float(auc.min()), float(auc.max()))))
    return sorted(curves, key=lambda c: (c.stage, c.model))


def folder_label(folder: str) -> str:
    """A run folder as the report names its model: 'cem_stage1' -> 'CEM stage-1 CNN',
    'cem_mf_concat' -> 'CEM MF fusion (concatenation)'."""
    inputs, _, fusion = folder.partition("_")
    if fusion == "stage1":
        return f"{inputs.upper()} stage-1 CNN"
    return model_label(model_name(fusion, inputs)) if fusion else folder


def flat_training(run: RunFacts) -> list[StageCurve]:
    """The stages whose learning curves stayed flat."""
    return [curve for curve in stage_curves(run.training) if curve.flat]


@dataclass(frozen=True)
class ClaimNote:
    """A claim of the scorecard with its verdict and the two AUCs behind it."""

    claim: str
    verdict: str
    first_auc: float
    second_auc: float
    shown: str


def scorecard_claims(run: RunFacts) -> list[ClaimNote]:
    """The scorecard's claims (its count rows left out) with the AUCs this run shows for each."""
    if run.scorecard is None:
        return []
    notes = []
    for row in run.scorecard.itertuples(index=False):
        verdict = str(getattr(row, "Verdict", "") or "")
        if not verdict or verdict == "nan":
            continue
        shown = str(row[2])
        numbers = shown.replace(",", " ").split()
        aucs = [float(t) for t in numbers[1:4:2] if _is_number(t)] if shown.startswith("AUC") else []
        first, second = [*aucs, math.nan, math.nan][:2]
        notes.append(ClaimNote(str(row[0]), verdict, first, second, shown))
    return notes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def weak_holds(run: RunFacts) -> list[ClaimNote]:
    """Claims that hold although both models behind them discriminate poorly (AUC < WEAK_AUC)."""
    return [note for note in scorecard_claims(run) if note.verdict == "holds"
            and max(note.first_auc, note.second_auc) < WEAK_AUC]
