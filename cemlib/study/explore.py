"""Objects a notebook leaves a researcher: numeric results, datasets, a loaded model, a few figures.

The study functions (`cemlib.study.steps`) write the paper's tables as display text; these give the numbers
behind them and the data and model they came from, so a cell added in JupyterLab can plot or slice
them without running the study again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from cemlib.core.settings import Settings
from cemlib.data import datasets as data
from cemlib.data.cache import TensorCache
from cemlib.data.manifest import Manifest
from cemlib.model import checkpoints
from cemlib.results import report

#: The main model of each input type, as named in the predictions tables.
MAIN_MODELS = ("LE mf_concat", "CEM mf_concat")
#: The metrics in the order the paper's tables give them.
PAPER_METRICS = ("auc", "acc", "sen", "spe", "ppv", "npv")


def display_path(path: str | Path, cfg: Settings) -> str:
    """A path as a notebook shows it: relative to the project (or to the runs folder), never absolute."""
    path = Path(path).resolve()
    for base in (cfg.root, cfg.runs):
        if base and path.is_relative_to(Path(base).resolve()):
            prefix = "" if base == cfg.root else "<runs>/"
            return prefix + path.relative_to(Path(base).resolve()).as_posix()
    return path.name


def load_model(checkpoint: str | Path):
    """The trained network of a checkpoint, on the CPU in evaluation mode (digest-verified loading)."""
    return checkpoints.load_model(checkpoint).eval()


def datasets(manifest: Manifest, cache: TensorCache, inputs: str = "cem") -> dict[str, Any]:
    """The internal splits as the network sees them: split name -> PatientDataset (no augmentation)."""
    present = set(manifest.breasts["split"])
    return {split: data.PatientDataset(manifest, cache, split, inputs=inputs)
            for split in ("train", "val", "test") if split in present}


def _table(cfg: dict[str, Any], name: str) -> pd.DataFrame:
    path = Path(cfg["reports"]) / "tables" / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run notebook 03 first")
    return pd.read_csv(path)


def metrics(cfg: dict[str, Any]) -> pd.DataFrame:
    """Every metric of this run as numbers: dataset, split, model, metric, estimate, low, high (95% CI)."""
    return _table(cfg, "metrics")


def metrics_wide(cfg: dict[str, Any]) -> pd.DataFrame:
    """The metrics one row per (dataset, model): columns auc, auc_low, auc_high, acc, ... (numbers)."""
    long = metrics(cfg)
    keys = ["dataset", "split", "model", "n_breasts", "metric"]
    wide = long.set_index(keys)[["estimate", "low", "high"]].unstack("metric")
    wide.columns = [m if kind == "estimate" else f"{m}_{kind}" for kind, m in wide.columns]
    names = [m for m in PAPER_METRICS if m in set(long["metric"])]
    names += sorted(set(long["metric"]) - set(names))
    return wide[[c for m in names for c in (m, f"{m}_low", f"{m}_high")]].reset_index()


def delong(cfg: dict[str, Any]) -> pd.DataFrame:
    """The DeLong comparisons as numbers: AUCs, z, p value and the CI of the AUC difference."""
    return _table(cfg, "delong")


def _birads_key(category: str) -> tuple[int, str]:
    match = re.match(r"\d+", category)
    return (int(match.group()) if match else 99, category)


def birads_scores(predictions: pd.DataFrame, breasts: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per-breast scores of the main models on a split with each breast's BI-RADS and pathology."""
    part = predictions[(predictions["split"] == split) & predictions["model"].isin(MAIN_MODELS)]
    info = breasts[["dataset", "patient_id", "side", "birads"]].astype(str).drop_duplicates()
    joined = part.astype({"patient_id": str}).merge(info, on=["dataset", "patient_id", "side"], how="left")
    joined["birads"] = joined["birads"].fillna("unknown").replace({"": "unknown", "nan": "unknown"})
    joined["pathology"] = joined["label"].map({0: "benign", 1: "malignant"})
    return joined


def birads_figure(predictions: pd.DataFrame, breasts: pd.DataFrame, split: str = "test") -> Figure:
    """Malignancy scores by BI-RADS category and pathology, LE and CEM main models side by side."""
    import seaborn as sns

    joined = birads_scores(predictions, breasts, split)
    order = sorted(joined["birads"].unique(), key=_birads_key)
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    axes = figure.subplots(1, len(MAIN_MODELS), sharey=True, squeeze=False)[0]
    palette = {"benign": "#4c72b0", "malignant": "#c44e52"}
    for ax, model in zip(axes, MAIN_MODELS, strict=True):
        rows = joined[joined["model"] == model]
        sns.boxplot(data=rows, x="birads", y="score", hue="pathology", order=order, palette=palette,
                    hue_order=list(palette), fliersize=0, linewidth=0.8, ax=ax)
        sns.stripplot(data=rows, x="birads", y="score", hue="pathology", order=order, palette=palette,
                      hue_order=list(palette), dodge=True, size=2.2, alpha=0.6, legend=False, ax=ax)
        ax.axhline(0.5, color="gray", linewidth=0.7, linestyle=":")
        ax.set(xlabel="BI-RADS", ylabel="p(malignant)", ylim=(0, 1), title=f"{model.split()[0]} model")
        ax.legend(title=None, fontsize=7, loc="upper left")
    figure.suptitle("Scores per breast by BI-RADS category (internal test set; dotted: threshold 0.5)",
                    fontsize=9)
    return figure


def pseudonyms(manifest: Manifest) -> pd.DataFrame:
    """patient_id -> the case name the figures use (`report.pseudonym`), to find a figure's exam here."""
    ids = sorted(set(manifest.breasts["patient_id"].astype(str)))
    return pd.DataFrame({"patient_id": ids, "case": [report.pseudonym(manifest.dataset, i) for i in ids]})
