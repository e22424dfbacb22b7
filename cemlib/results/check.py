"""Check a run's results against the replicated reference of its profile.

Training on a CPU or GPU is not bit-identical across machines (kernels differ by vector extension), and
a model's test AUC moves with the training seed. So a run is checked against bands, not single numbers:
the reference holds, per model and metric, the mean, standard deviation and range over several training
seeds (`replicates.csv`), and a metric is *within* when it lies inside

    [min(ref_min, mean - 3 sd) - margin, max(ref_max, mean + 3 sd) + margin]   (clipped to [0, 1])

with `margin` = 0.02. Headline metrics (the AUCs) decide the exit code; the others are shown.

`cem check --profile smoke` compares the latest run (reports/smoke/tables) with the reference shipped
in data_manifest/reference_smoke.csv; `--make-reference` writes a replicated run's replicates.csv there.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from cemlib.core.fileio import atomic_write_text
from cemlib.core.resources import DATA_MANIFEST, resource_dir

REPLICATE_COLUMNS = ("model", "metric", "n", "mean", "sd", "min", "max")
#: The fewest replicates a reference is made of (`--make-reference`).
MIN_REFERENCE_REPLICATES = 5
HEADLINE_METRICS = ("internal auc", "cddcesm auc", "inbreast auc")
SHOWN_METRICS = ("internal sen", "internal spe", "pointing game")
BAND_SD = 3.0
BAND_MARGIN = 0.02


def run_metrics(tables_dir: str | Path) -> pd.DataFrame:
    """One row per (model, metric, value) from a run's `metrics.csv` and `pointing_game.csv`."""
    tables_dir = Path(tables_dir)
    metrics_path = tables_dir / "metrics.csv"
    if not metrics_path.exists():
        raise FileNotFoundError(f"{metrics_path}: no metrics of a finished run here (run the study first)")
    metrics = pd.read_csv(metrics_path)
    missing = {"dataset", "model", "metric", "estimate"} - set(metrics.columns)
    if missing:
        raise ValueError(f"{metrics_path}: missing columns {sorted(missing)}")
    pointing_path = tables_dir / "pointing_game.csv"
    pointing = pd.read_csv(pointing_path) if pointing_path.exists() else None
    return metric_rows(metrics, pointing)


def metric_rows(metrics: pd.DataFrame, pointing: pd.DataFrame | None = None) -> pd.DataFrame:
    """The checked metrics of a run (`metrics.csv` frame, pointing-game table) as model, metric, value."""
    rows = pd.DataFrame({
        "model": metrics["model"],
        "metric": metrics["dataset"].astype(str) + " " + metrics["metric"].astype(str),
        "value": metrics["estimate"].astype(float),
    })
    if pointing is not None and {"model", "pointing game"} <= set(pointing.columns):
        rows = pd.concat([rows, pd.DataFrame({
            "model": pointing["model"], "metric": "pointing game",
            "value": pd.to_numeric(pointing["pointing game"], errors="coerce"),
        })], ignore_index=True)
    wanted = set(HEADLINE_METRICS) | set(SHOWN_METRICS)
    return rows[rows["metric"].isin(wanted)].reset_index(drop=True)


def summarise_replicates(runs: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Per model and metric: number of replicates, mean, sample SD, min and max of `run_metrics` frames."""
    frames = [frame.assign(replicate=i) for i, frame in enumerate(runs)]
    if not frames:
        raise ValueError("no replicate runs to summarise")
    values = pd.concat(frames, ignore_index=True).dropna(subset=["value"])
    grouped = values.groupby(["model", "metric"], sort=True)["value"]
    summary = grouped.agg(n="count", mean="mean", sd="std", min="min", max="max").reset_index()
    summary["sd"] = summary["sd"].fillna(0.0)
    return summary[list(REPLICATE_COLUMNS)]


def read_reference(path: str | Path) -> pd.DataFrame:
    """A replicate summary as written by `summarise_replicates`, validated."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no reference (make one: `cem reproduce --replicates 5`, then "
                                "`cem check --make-reference`)")
    reference = pd.read_csv(path)
    missing = set(REPLICATE_COLUMNS) - set(reference.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return reference


def bands(reference: pd.DataFrame) -> pd.DataFrame:
    """The reference with the accepted interval [low, high] of each metric (see the module docstring)."""
    reference = reference.copy()
    spread = BAND_SD * reference["sd"].fillna(0.0)
    low = np.minimum(reference["min"], reference["mean"] - spread) - BAND_MARGIN
    high = np.maximum(reference["max"], reference["mean"] + spread) + BAND_MARGIN
    reference["low"] = low.clip(0.0, 1.0)
    reference["high"] = high.clip(0.0, 1.0)
    return reference


def compare(run: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Each reference metric beside this run's value and whether it lies inside the band."""
    banded = bands(reference)
    joined = banded.merge(run, on=["model", "metric"], how="left")
    joined["headline"] = joined["metric"].isin(HEADLINE_METRICS)
    inside = (joined["value"] >= joined["low"]) & (joined["value"] <= joined["high"])
    joined["verdict"] = np.where(joined["value"].isna(), "missing", np.where(inside, "within", "outside"))
    order = ["headline", "metric", "model"]
    joined = joined.sort_values(order, ascending=[False, True, True]).reset_index(drop=True)
    return joined[["model", "metric", "headline", "value", "mean", "low", "high", "n", "verdict"]]


def failed(comparison: pd.DataFrame) -> pd.DataFrame:
    """Headline rows outside their band or missing from the run."""
    return comparison[comparison["headline"] & (comparison["verdict"] != "within")]


def format_comparison(comparison: pd.DataFrame) -> str:
    """A plain-text table: metric, model, this run, reference mean and band, verdict."""
    lines = [f"{'metric':<14} {'model':<18} {'this run':>8} {'ref mean':>8} {'band':>15}  verdict"]
    for row in comparison.itertuples(index=False):
        value = "-" if pd.isna(row.value) else f"{row.value:.3f}"
        band = f"{row.low:.3f}..{row.high:.3f}"
        mark = "" if row.headline else " (shown)"
        lines.append(f"{row.metric:<14} {row.model:<18} {value:>8} {row.mean:>8.3f} {band:>15}  "
                     f"{row.verdict}{mark}")
    return "\n".join(lines)


def reference_path(profile_name: str) -> Path:
    """data_manifest/reference_<profile>.csv: the replicated reference shipped with the kit."""
    return resource_dir(DATA_MANIFEST) / f"reference_{profile_name}.csv"


def make_reference(tables_dir: str | Path, out: str | Path, min_replicates: int = MIN_REFERENCE_REPLICATES
                   ) -> pd.DataFrame:
    """Write a replicated run's `replicates.csv` as a reference, refusing one of too few replicates."""
    source = Path(tables_dir) / "replicates.csv"
    if not source.exists():
        raise FileNotFoundError(f"{source}: no replicates in this run (run `cem reproduce --replicates "
                                f"{min_replicates}` first)")
    summary = read_reference(source)
    headline = summary[summary["metric"].isin(HEADLINE_METRICS)]
    if headline.empty:
        raise ValueError(f"{source}: no headline metric ({', '.join(HEADLINE_METRICS)})")
    fewest = int(headline["n"].min())
    if fewest < min_replicates:
        raise ValueError(f"{source}: a headline metric has {fewest} replicates; a reference needs at least "
                         f"{min_replicates}")
    pointing = Path(tables_dir) / "pointing_game_replicates.csv"
    if pointing.exists():
        summary = pd.concat([summary, pointing_summary(pointing)], ignore_index=True)
    atomic_write_text(Path(out), summary[list(REPLICATE_COLUMNS)].to_csv(index=False))
    return summary


def pointing_summary(path: str | Path) -> pd.DataFrame:
    """The pointing game of every replicate (`pointing_game_replicates.csv`) as replicate-summary rows."""
    per_seed = pd.read_csv(path)
    missing = {"model", "replicate", "pointing game"} - set(per_seed.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    runs = [pd.DataFrame({"model": group["model"], "metric": "pointing game",
                          "value": pd.to_numeric(group["pointing game"], errors="coerce")})
            for _, group in per_seed.groupby("replicate", sort=True)]
    return summarise_replicates(runs)
