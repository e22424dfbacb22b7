"""Check a run's results against the replicated reference of its profile.

Training on a CPU or GPU is not bit-identical across machines (kernels differ by vector extension), and
a model's test AUC moves with the training seed. So a run is checked against bands, not single numbers:
the reference holds, per model and metric, the mean, standard deviation and range over several training
seeds (`replicates.csv`), and a metric is *within* when it lies inside

    [min(ref_min, mean - 3 sd) - margin, max(ref_max, mean + 3 sd) + margin]   (clipped to [0, 1])

with `margin` = 0.02. Headline metrics (the AUCs) decide the exit code; the others are shown.

A band wide enough to take in a model at chance checks nothing. So each headline AUC also gets the
probability that a model at chance (true AUC 0.5) lands inside its band, from the Hanley-McNeil null SE
at its test set's size, sqrt((n1 + n0 + 1) / (12 n1 n0)); above `CHANCE_LIMIT` the metric is
*uninformative*: inside its band it is neither a pass nor a failure. A run fails when a headline metric
lies outside its band or is missing, when fewer headline metrics are informative than the reference's own
test-set sizes promise, or when none is (a reference that checks nothing). A reference is refused when
it lacks a headline metric the run has or was made for another profile (`reference_problems`).

The reference file holds `REPLICATE_COLUMNS` and, since they were added, `profile`, `n_pos` and `n_neg`
(the test set's positives and negatives behind each metric); a file without them still reads, its sizes
then come from the run's metrics.csv.

`cem check --profile smoke` compares the latest run (reports/smoke/tables) with the reference shipped
in data_manifest/reference_smoke.csv; `--make-reference` writes a replicated run's replicates.csv there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cemlib.core.fileio import atomic_write_text
from cemlib.core.resources import DATA_MANIFEST, resource_dir
from cemlib.results.stats import auc_null_se, chance_inside

REPLICATE_COLUMNS = ("model", "metric", "n", "mean", "sd", "min", "max")
#: Written by `make_reference` after REPLICATE_COLUMNS; optional when reading.
REFERENCE_EXTRA_COLUMNS = ("profile", "n_pos", "n_neg")
#: The fewest replicates a reference is made of (`--make-reference`).
MIN_REFERENCE_REPLICATES = 5
HEADLINE_METRICS = ("internal auc", "cddcesm auc", "inbreast auc")
SHOWN_METRICS = ("internal sen", "internal spe", "pointing game")
BAND_SD = 3.0
BAND_MARGIN = 0.02
#: A headline metric whose band a model at chance lands inside with a higher probability is uninformative.
CHANCE_LIMIT = 0.05


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


def run_sizes(tables_dir: str | Path) -> pd.DataFrame:
    """The test-set size behind each metric of a run's `metrics.csv` (`test_set_sizes`)."""
    return test_set_sizes(pd.read_csv(Path(tables_dir) / "metrics.csv"))


def test_set_sizes(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per checked model and metric: positives (n_pos) and negatives (n_neg) of its test set.

    Empty when the `metrics.csv` frame has no n_breasts and n_malignant columns.
    """
    if not {"n_breasts", "n_malignant"} <= set(metrics.columns):
        return pd.DataFrame(columns=["model", "metric", "n_pos", "n_neg"])
    sizes = pd.DataFrame({
        "model": metrics["model"],
        "metric": metrics["dataset"].astype(str) + " " + metrics["metric"].astype(str),
        "n_pos": metrics["n_malignant"].astype(int),
        "n_neg": (metrics["n_breasts"] - metrics["n_malignant"]).astype(int),
    })
    wanted = set(HEADLINE_METRICS) | set(SHOWN_METRICS)
    return sizes[sizes["metric"].isin(wanted)].drop_duplicates(["model", "metric"]).reset_index(drop=True)


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


def chance_probability(banded: pd.DataFrame) -> pd.Series:
    """Per row of `bands` with n_pos and n_neg: the probability that a model at chance lands in the band.

    NaN for a metric that is not an AUC or whose test-set size is unknown.
    """
    n_pos, n_neg = (pd.to_numeric(banded[c], errors="coerce").astype(float) for c in ("n_pos", "n_neg"))
    rows = zip(banded["metric"].astype(str), banded["low"], banded["high"], n_pos, n_neg, strict=True)
    chance = [chance_inside(low, high, auc_null_se(int(n_pos), int(n_neg)))
              if metric.endswith(" auc") and not (np.isnan(n_pos) or np.isnan(n_neg)) else float("nan")
              for metric, low, high, n_pos, n_neg in rows]
    return pd.Series(chance, index=banded.index, dtype=float)


def informative(chance: pd.Series) -> pd.Series:
    """A headline metric informs when a model at chance lands in its band with probability <= CHANCE_LIMIT."""
    return chance.notna() & (chance <= CHANCE_LIMIT)


def promised(reference: pd.DataFrame) -> int | None:
    """How many headline metrics are informative at the reference's own test-set sizes (None without them)."""
    if not {"n_pos", "n_neg"} <= set(reference.columns):
        return None
    banded = bands(reference[reference["metric"].isin(HEADLINE_METRICS)])
    return int(informative(chance_probability(banded)).sum())


def compare(run: pd.DataFrame, reference: pd.DataFrame, sizes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each reference metric beside this run's value, whether it lies inside the band, and whether the band
    informs (a model at chance lands in it with probability `chance` <= CHANCE_LIMIT).

    `sizes` (`test_set_sizes` of the run) gives each metric's test set; where it has none, the
    reference's n_pos and n_neg do. Verdicts: within, outside, missing, or uninformative (a headline
    metric inside a band that admits chance: neither a pass nor a failure).
    """
    banded = bands(reference)
    for column in ("n_pos", "n_neg"):
        if column not in banded.columns:
            banded[column] = np.nan
    if sizes is not None and not sizes.empty:
        mine = banded[["model", "metric"]].merge(sizes, on=["model", "metric"], how="left")
        for column in ("n_pos", "n_neg"):
            banded[column] = mine[column].fillna(banded[column]).to_numpy()
    joined = banded.merge(run, on=["model", "metric"], how="left")
    joined["headline"] = joined["metric"].isin(HEADLINE_METRICS)
    joined["chance"] = chance_probability(joined)
    joined["informative"] = joined["headline"] & informative(joined["chance"])
    inside = (joined["value"] >= joined["low"]) & (joined["value"] <= joined["high"])
    verdict = np.where(joined["value"].isna(), "missing", np.where(inside, "within", "outside"))
    # Inside a band that admits chance says nothing, but lying outside even such a band is still a failure.
    joined["verdict"] = np.where(joined["headline"] & ~joined["informative"] & (verdict == "within"),
                                 "uninformative", verdict)
    order = ["headline", "metric", "model"]
    joined = joined.sort_values(order, ascending=[False, True, True]).reset_index(drop=True)
    columns = ["model", "metric", "headline", "value", "mean", "low", "high", "n", "chance", "informative"]
    return joined[[*columns, "verdict"]]


def failed(comparison: pd.DataFrame) -> pd.DataFrame:
    """Headline rows missing from the run or outside their band (informative or not)."""
    return comparison[comparison["headline"] & comparison["verdict"].isin(["missing", "outside"])]


def reference_problems(run: pd.DataFrame, reference: pd.DataFrame, profile_name: str) -> list[str]:
    """Why a reference cannot check this run: made for another profile, or lacking a headline metric the
    run has (each named); empty when it can."""
    problems = []
    if "profile" in reference.columns:
        made_for = sorted(set(reference["profile"].dropna().astype(str)))
        if made_for and made_for != [profile_name]:  # blank: a reference of no named profile
            problems.append(f"the reference was made for profile {', '.join(made_for)}, not {profile_name}")
    headline = run[run["metric"].isin(HEADLINE_METRICS) & run["value"].notna()]
    known = set(zip(reference["model"], reference["metric"], strict=True))
    lacking = [f"{m} {k}" for m, k in zip(headline["model"], headline["metric"], strict=True)
               if (m, k) not in known]
    if lacking:
        problems.append(f"the reference lacks {len(lacking)} headline metric(s) the run has: "
                        + "; ".join(lacking))
    if headline.empty:
        problems.append("the run has no headline metric (" + ", ".join(HEADLINE_METRICS) + ")")
    return problems


def verdict_summary(comparison: pd.DataFrame, promise: int | None) -> tuple[bool, str]:
    """(passed?, the summary line) of a comparison, given how many informative metrics the reference
    promises (`promised`; None: as many as this run has)."""
    headline = comparison[comparison["headline"]]
    told = int(headline["informative"].sum())
    promise = told if promise is None else promise
    head = (f"{told} of {len(headline)} headline metrics informative (a model at chance inside the band "
            f"with probability <= {CHANCE_LIMIT})")
    if promise == 0:
        return False, (f"{head}; the reference checks nothing: every headline band admits a model at "
                       "chance")
    bad = failed(comparison)
    if len(bad):
        return False, f"{head}; {len(bad)} outside their bands or missing"
    if told < promise:
        return False, f"{head}; the reference promises {promise} at its test-set sizes"
    return True, f"{head}; all {told} within their bands"


@dataclass(frozen=True)
class CheckOutcome:
    """What `cem check` says of a run: passed or not, its summary line, the comparison behind it, and why
    the reference could not check the run (`problems`, then nothing was compared)."""

    passed: bool
    line: str
    comparison: pd.DataFrame | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)
    reference: str = ""


def check_tables(tables_dir: str | Path, reference: str | Path, profile_name: str) -> CheckOutcome:
    """The check of a run's tables against a reference file, as `cem check` makes it (exit code 0 when
    `passed`): refused when the reference cannot check the run, else compared metric by metric."""
    run, expected = run_metrics(tables_dir), read_reference(reference)
    problems = reference_problems(run, expected, profile_name)
    if problems:
        return CheckOutcome(False, "refused: " + "; ".join(problems), None, tuple(problems), str(reference))
    comparison = compare(run, expected, run_sizes(tables_dir))
    passed, line = verdict_summary(comparison, promised(expected))
    return CheckOutcome(passed, line, comparison, (), str(reference))


def format_comparison(comparison: pd.DataFrame) -> str:
    """A plain-text table: metric, model, this run, reference mean and band, chance inside it, verdict."""
    lines = [f"{'metric':<14} {'model':<18} {'this run':>8} {'ref mean':>8} {'band':>15} {'chance':>7}  "
             "verdict"]
    for row in comparison.itertuples(index=False):
        value = "-" if pd.isna(row.value) else f"{row.value:.3f}"
        band = f"{row.low:.3f}..{row.high:.3f}"
        chance = "-" if pd.isna(row.chance) else f"{row.chance:.3f}"
        mark = "" if row.headline else " (shown)"
        lines.append(f"{row.metric:<14} {row.model:<18} {value:>8} {row.mean:>8.3f} {band:>15} {chance:>7}  "
                     f"{row.verdict}{mark}")
    return "\n".join(lines)


def reference_path(profile_name: str) -> Path:
    """data_manifest/reference_<profile>.csv: the replicated reference shipped with the kit."""
    return resource_dir(DATA_MANIFEST) / f"reference_{profile_name}.csv"


def des_window_reference_path(profile_name: str) -> Path:
    """data_manifest/des_window_<profile>.csv: the DES window rule comparison of the profile's reference run
    (per rule, CEM model and training seed; cemlib.study.window_rules)."""
    return resource_dir(DATA_MANIFEST) / f"des_window_{profile_name}.csv"


#: Replaced references of a profile, kept to say what its results were (reference_<profile>_<what>.csv).
EARLIER_FOLDER = "earlier"


def earlier_references(profile_name: str, folder: str | Path | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(what changed since, table) of each replaced reference of a profile, oldest name first; `folder`
    defaults to the kit's data_manifest/earlier/."""
    where = Path(folder) if folder is not None else resource_dir(DATA_MANIFEST) / EARLIER_FOLDER
    prefix = f"reference_{profile_name}_"
    return [(path.stem.removeprefix(prefix).replace("-", " "), read_reference(path))
            for path in sorted(where.glob(f"{prefix}*.csv"))] if profile_name else []


def make_reference(tables_dir: str | Path, out: str | Path, min_replicates: int = MIN_REFERENCE_REPLICATES,
                   profile_name: str = "") -> pd.DataFrame:
    """Write a replicated run's `replicates.csv` as a reference of `profile_name`, with each metric's
    test-set size from the run's metrics.csv, refusing one of too few replicates."""
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
    sizes = run_sizes(tables_dir).astype({"n_pos": "Int64", "n_neg": "Int64"})
    summary = summary[list(REPLICATE_COLUMNS)].merge(sizes, on=["model", "metric"], how="left")
    summary["profile"] = profile_name
    summary = summary[[*REPLICATE_COLUMNS, *REFERENCE_EXTRA_COLUMNS]]
    atomic_write_text(Path(out), summary.to_csv(index=False))
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
