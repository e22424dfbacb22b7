"""The paper's tables from per-breast predictions and the manifest's breasts table.

Predictions: one row per breast per model with columns dataset, patient_id, side, label, score, model,
split; model names are "<inputs> <fusion>", e.g. "CEM mf_concat" or "LE none". Breasts: the manifest's
breasts table (dataset, patient_id, side, label, birads, pathology, age, density, split).

Models that are absent are listed and marked "n/a" instead of failing, so a partial run (two of eight
models) still gets its tables; "n/a" also marks a rate without a denominator (PPV when no breast is
called malignant): one mark for a value that is not there, whichever the reason. The paper's published
values are compared in cemlib.results.claims; every table is built and written (CSV, Markdown, LaTeX) by
cemlib.results.build.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cemlib.core.vocab import (
    FUSIONS,
    INPUTS,
    MODELS,
    PATIENT_CLASSES,
    model_label,
    model_name,
    patient_classes,
)
from cemlib.results import stats

#: How the tables name the two inputs (Table 3: LE, Table 4: CEM).
TABLE_INPUTS = tuple(inputs.upper() for inputs in INPUTS)
#: The eight DeLong comparisons of the paper's Table 5, in its order.
PAPER_PAIRS = tuple(
    (model_name(a, ia), model_name(b, ib))
    for (a, ia), (b, ib) in (
        (("none", "le"), ("left_right", "le")),
        (("mf_average", "le"), ("mf_concat", "le")),
        (("none", "cem"), ("left_right", "cem")),
        (("mf_average", "cem"), ("mf_concat", "cem")),
        (("none", "le"), ("none", "cem")),
        (("mf_average", "le"), ("mf_average", "cem")),
        (("left_right", "le"), ("left_right", "cem")),
        (("mf_concat", "le"), ("mf_concat", "cem")),
    )
)
METRIC_NAMES = {"auc": "AUC", "acc": "ACC", "sen": "SEN", "spe": "SPE", "ppv": "PPV", "npv": "NPV"}
BIRADS_ORDER = ("0", "1", "2", "3", "3-4A", "4A", "4B", "4C", "5", "6")
BIRADS_GROUPS = {"1, 2, 3, 5": ("1", "2", "3", "5"), "4 (3-4A, 4A, 4B, 4C)": ("3-4A", "4A", "4B", "4C")}
SPLIT_LABELS = {"train": "Training", "val": "Validation", "test": "Test", "external": "External"}
PREDICTION_COLUMNS = ("dataset", "patient_id", "side", "label", "score", "model", "split")
BREAST_KEY = ["dataset", "patient_id", "side"]
NOT_AVAILABLE = "n/a"
MISSING = NOT_AVAILABLE
SIGNIFICANCE = 0.05


# ----------------------------------------------------------------------------------------------------
# loading and validation
# ----------------------------------------------------------------------------------------------------


def validate_predictions(predictions: pd.DataFrame, source: str = "predictions") -> pd.DataFrame:
    """Checked copy of a predictions table (columns, 0/1 labels, finite scores, one row per breast/model)."""
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected {list(PREDICTION_COLUMNS)}")
    df = predictions.copy()
    for column in ("dataset", "patient_id", "side", "model", "split"):
        df[column] = df[column].astype(str)
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad_label = ~labels.isin((0, 1))
    if bad_label.any():
        raise ValueError(
            f"{source}: {int(bad_label.sum())} row(s) with a label other than 0/1 "
            f"(first: {df.loc[bad_label, 'label'].iloc[0]!r})"
        )
    scores = pd.to_numeric(df["score"], errors="coerce")
    bad_score = ~np.isfinite(scores.to_numpy(dtype=float))
    if bad_score.any():
        raise ValueError(
            f"{source}: {int(bad_score.sum())} row(s) with a missing or non-numeric score "
            f"(first breast: {df.loc[bad_score, 'patient_id'].iloc[0]} "
            f"{df.loc[bad_score, 'side'].iloc[0]}, model {df.loc[bad_score, 'model'].iloc[0]})"
        )
    outside = (scores < 0) | (scores > 1)
    if outside.any():
        first = df[outside].iloc[0]
        raise ValueError(
            f"{source}: {int(outside.sum())} row(s) with a score outside [0, 1] (first: {breast_key(first)}, "
            f"model {first['model']}, score {scores[outside].iloc[0]:g}); scores are malignancy probabilities"
        )
    df["label"], df["score"] = labels.astype(int), scores.astype(float)
    duplicated = df.duplicated(["model", *BREAST_KEY])
    if duplicated.any():
        first = df[duplicated].iloc[0]
        raise ValueError(
            f"{source}: {int(duplicated.sum())} duplicated breast row(s) "
            f"(first: model {first['model']}, {first['patient_id']} {first['side']})"
        )
    return df


def breast_key(row: pd.Series | dict) -> str:
    """A breast as messages name it: dataset/patient_id/side (pseudonymous ids)."""
    return f"{row['dataset']}/{row['patient_id']}/{row['side']}"


def check_coverage(predictions: pd.DataFrame, breasts: pd.DataFrame, source: str = "predictions",
                   allow_missing: bool = False) -> int:
    """ValueError unless `predictions` score exactly the manifest's breasts, split for split.

    A breast absent from the manifest, or in another split there, is always refused. Each model must
    score every manifest breast of each (dataset, split) it scores; with `allow_missing` the missing
    ones are only counted. Returns the number of missing (model, breast) rows.
    """
    manifest = breasts[[*BREAST_KEY, "split"]].astype(str).drop_duplicates(BREAST_KEY)
    manifest = manifest.rename(columns={"split": "manifest_split"})
    merged = predictions.merge(manifest, on=BREAST_KEY, how="left")
    _refuse(merged[merged["manifest_split"].isna()], source, "breast row(s) not in the manifest")
    _refuse(merged[merged["manifest_split"].notna() & (merged["manifest_split"] != merged["split"])],
            source, "breast row(s) in another split than the manifest's")
    scored = predictions[["model", "split", *BREAST_KEY]].drop_duplicates()
    groups = scored[["model", "dataset", "split"]].drop_duplicates()
    expected = groups.merge(manifest.rename(columns={"manifest_split": "split"}), on=["dataset", "split"])
    missing = expected.merge(scored, on=["model", "split", *BREAST_KEY], how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"]
    if not allow_missing:
        _refuse(missing, source, "breast(s) of the manifest have no prediction")
    return len(missing)


def _refuse(rows: pd.DataFrame, source: str, what: str) -> None:
    """A ValueError naming the count of `rows` and the first one's breast and model, when there are any."""
    if len(rows):
        first = rows.iloc[0]
        raise ValueError(f"{source}: {len(rows)} {what} (first: {breast_key(first)}, "
                         f"model {first['model']}, split {first['split']})")


def load_predictions(path: str | Path) -> pd.DataFrame:
    """Read and validate a predictions CSV."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    frame = pd.read_csv(path, dtype={"patient_id": str, "dataset": str, "side": str})
    return validate_predictions(frame, source=str(path))


def load_breasts(manifest_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """The breasts tables of one or more manifest folders, concatenated (birads read as text)."""
    frames = []
    for folder in manifest_dirs:
        path = Path(folder) / "breasts.csv"
        if not path.is_file():
            raise FileNotFoundError(f"manifest breasts table not found: {path}")
        frame = pd.read_csv(
            path,
            dtype={
                "patient_id": str,
                "dataset": str,
                "side": str,
                "birads": str,
                "pathology": str,
                "density": str,
                "split": str,
            },
            keep_default_na=False,
            na_values={"age": [""]},
        )
        needed = {"dataset", "patient_id", "side", "label", "birads", "pathology", "age", "density", "split"}
        if missing := sorted(needed - set(frame.columns)):
            raise ValueError(f"{path}: missing column(s) {missing}")
        frames.append(frame)
    if not frames:
        raise ValueError("no manifest folder given")
    return pd.concat(frames, ignore_index=True)


def with_breast_info(predictions: pd.DataFrame, breasts: pd.DataFrame) -> pd.DataFrame:
    """Predictions joined with birads/pathology/age/density; labels must agree with the manifest."""
    info = breasts[[*BREAST_KEY, "label", "birads", "pathology", "age", "density"]].copy()
    for column in BREAST_KEY:
        info[column] = info[column].astype(str)
    info = info.drop_duplicates(BREAST_KEY).rename(columns={"label": "manifest_label"})
    merged = predictions.merge(info, on=BREAST_KEY, how="left")
    known = merged["manifest_label"].notna()
    disagree = known & (pd.to_numeric(merged["manifest_label"], errors="coerce") != merged["label"])
    if disagree.any():
        first = merged[disagree].iloc[0]
        raise ValueError(
            f"{int(disagree.sum())} breast label(s) differ between predictions and manifest "
            f"(first: {first['dataset']} {first['patient_id']} {first['side']})"
        )
    for column in ("birads", "pathology", "density"):
        merged[column] = merged[column].fillna("").astype(str)
    merged["in_manifest"] = known
    return merged.drop(columns="manifest_label")


# ----------------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------------


def format_ci(estimate: float, low: float, high: float, digits: int = 2) -> str:
    """'0.96 (0.95, 0.97)' as in the paper; 'n/a' when undefined."""
    if any(v is None or math.isnan(v) for v in (estimate, low, high)):
        return NOT_AVAILABLE if estimate is None or math.isnan(estimate) else f"{estimate:.{digits}f}"
    # adding 0.0 turns a rounded -0.0 into 0.0, so no "-0.00" is printed
    estimate, low, high = (round(v, digits) + 0.0 for v in (estimate, low, high))
    return f"{estimate:.{digits}f} ({low:.{digits}f}, {high:.{digits}f})"


def format_p(p: float) -> str:
    """P value as in the paper: '< .001', '.003', '.91' (no leading zero)."""
    if p is None or math.isnan(p):
        return NOT_AVAILABLE
    if p < 0.001:
        return "< .001"
    digits = 3 if p < 0.01 or (round(p, 2) == SIGNIFICANCE and p < SIGNIFICANCE) else 2
    text = f"{p:.{digits}f}"
    if float(text) >= 1.0:
        return "> .99"
    return text.lstrip("0")


def _count_pct(count: int, total: int, digits: int = 1) -> str:
    return f"{count} ({100.0 * count / total:.{digits}f}%)" if total else f"{count}"


def _models_in_order(present: Iterable[str], wanted: Sequence[str] | None = None) -> list[str]:
    """The paper's eight models first (whether present or not), then any other model seen."""
    present = list(dict.fromkeys(present))
    base = list(wanted) if wanted is not None else list(MODELS)
    return base + [m for m in present if m not in base and wanted is None]


# ----------------------------------------------------------------------------------------------------
# Tables 1 and 2 (the cohort)
# ----------------------------------------------------------------------------------------------------


def _split_columns(splits: Iterable[str]) -> list[str]:
    present = list(dict.fromkeys(splits))
    return [s for s in SPLIT_LABELS if s in present] + [s for s in present if s not in SPLIT_LABELS]


def table2_patient_classes(breasts: pd.DataFrame) -> pd.DataFrame:
    """Table 2: patients per class (bilateral benign / unilateral / bilateral malignant) per split."""
    patients = patient_classes(breasts, by=("dataset", "patient_id"))
    splits = _split_columns(patients["split"])
    classes = list(PATIENT_CLASSES) + sorted(set(patients["patient_class"]) - set(PATIENT_CLASSES))
    counts = pd.crosstab(patients["patient_class"], patients["split"]).reindex(
        index=classes, columns=splits, fill_value=0
    )
    total = len(patients)
    rows = []
    for cls in classes:
        row = {"Patient class": cls.capitalize()}
        row.update({SPLIT_LABELS.get(s, s): int(counts.loc[cls, s]) for s in splits})
        row["Overall"] = _count_pct(int(counts.loc[cls].sum()), total)
        rows.append(row)
    total_row = {"Patient class": "Total"}
    total_row.update({SPLIT_LABELS.get(s, s): int(counts[s].sum()) for s in splits})
    total_row["Overall"] = str(total)
    rows.append(total_row)
    return pd.DataFrame(rows)


def _age_summary(breasts: pd.DataFrame) -> str:
    ages = pd.to_numeric(breasts.groupby(["dataset", "patient_id"])["age"].first(), errors="coerce").dropna()
    if ages.empty:
        return NOT_AVAILABLE
    sd = ages.std(ddof=1) if len(ages) > 1 else 0.0
    return f"{ages.mean():.0f} ± {sd:.0f} ({ages.min():.0f}-{ages.max():.0f})"


def table1_characteristics(breasts: pd.DataFrame) -> pd.DataFrame:
    """Table 1: age (mean ± SD (range), per patient), BI-RADS per breast, biopsy result and pathology."""
    df = breasts.copy()
    df["label"] = pd.to_numeric(df["label"]).astype(int)
    df["birads"] = df["birads"].fillna("").astype(str).str.strip().str.upper()
    df["pathology"] = df["pathology"].fillna("").astype(str).str.strip()
    groups = [("All", df)] + [
        (SPLIT_LABELS.get(s, s), df[df["split"] == s]) for s in _split_columns(df["split"])
    ]
    birads_seen = [b for b in BIRADS_ORDER if b in set(df["birads"])]
    birads_seen += sorted(set(df["birads"]) - set(BIRADS_ORDER) - {""}) + (
        ["unknown"] if (df["birads"] == "").any() else []
    )
    pathologies = sorted(set(df["pathology"]) - {""})

    def rows_for(part: pd.DataFrame) -> dict[str, str]:
        n = len(part)
        out = {
            "Patients, n": str(part.groupby(["dataset", "patient_id"]).ngroups),
            "Breasts, n": str(n),
            "Age, years: mean ± SD (range)": _age_summary(part),
        }
        for b in birads_seen:
            hit = part["birads"] == ("" if b == "unknown" else b)
            out[f"BI-RADS {b}"] = _count_pct(int(hit.sum()), n)
        out["Benign breasts"] = _count_pct(int((part["label"] == 0).sum()), n)
        out["Malignant breasts"] = _count_pct(int((part["label"] == 1).sum()), n)
        for p in pathologies:
            out[f"Pathology: {p}"] = _count_pct(int((part["pathology"] == p).sum()), n)
        return out

    columns = {name: rows_for(part) for name, part in groups}
    table = pd.DataFrame(columns)
    table.index.name = "Characteristic"
    return table.reset_index()


# ----------------------------------------------------------------------------------------------------
# performance (Tables 3 and 4, external results)
# ----------------------------------------------------------------------------------------------------


def thresholds_for(predictions: pd.DataFrame, threshold: float | str = 0.5) -> dict[str, float]:
    """Operating threshold per model: a fixed number, or Youden's on that model's validation split."""
    models = predictions["model"].unique()
    if threshold != "youden":
        value = stats.choose_threshold(threshold)
        return dict.fromkeys(models, value)
    out = {}
    for model in models:
        val = predictions[(predictions["model"] == model) & (predictions["split"] == "val")]
        if val.empty:
            raise ValueError(f"Youden threshold: model {model!r} has no predictions on the validation split")
        out[model] = stats.choose_threshold("youden", val["label"], val["score"])
    return out


def metrics_frame(
    predictions: pd.DataFrame,
    split: str = "test",
    threshold: float | str = 0.5,
    level: float = 0.95,
    ci_method: str = "clopper-pearson",
) -> pd.DataFrame:
    """Numbers behind Tables 3/4 and the external table: one row per (dataset group, model, metric).

    Internal splits are pooled over datasets; each external dataset is its own group.
    Columns: dataset, split, model, n_breasts, n_malignant, threshold, metric, estimate, low, high.
    """
    thresholds = thresholds_for(predictions, threshold)
    rows = []
    for (dataset, model), part in _evaluation_groups(predictions, split):
        y, s = part["label"].to_numpy(), part["score"].to_numpy()
        base = {
            "dataset": dataset,
            "split": part["split"].iloc[0],
            "model": model,
            "n_breasts": len(part),
            "n_malignant": int(y.sum()),
            "threshold": thresholds[model],
        }
        if 0 < y.sum() < len(y):
            auc = stats.auc_ci(y, s, level=level)
        else:
            auc = stats.Interval(float("nan"), float("nan"), float("nan"))
        rows.append({**base, "metric": "auc", **auc._asdict()})
        rates = stats.classification_metrics(y, s, thresholds[model], level, ci_method)
        rows.extend({**base, "metric": name, **value._asdict()} for name, value in rates.items())
    return pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "split",
            "model",
            "n_breasts",
            "n_malignant",
            "threshold",
            "metric",
            "estimate",
            "low",
            "high",
        ],
    )


def _evaluation_groups(predictions: pd.DataFrame, split: str):
    if split == "external":
        part = predictions[predictions["split"] == "external"]
        yield from part.groupby(["dataset", "model"], sort=False)
    else:
        part = predictions[predictions["split"] == split]
        for model, rows in part.groupby("model", sort=False):
            yield ("internal", model), rows


def _performance_rows(
    metrics: pd.DataFrame, models: Sequence[str], dataset: str = "internal"
) -> pd.DataFrame:
    rows = []
    for model in models:
        part = metrics[(metrics["model"] == model) & (metrics["dataset"] == dataset)]
        row = {"Model": model_label(model)}
        if part.empty:
            row.update(dict.fromkeys(["Breasts", *METRIC_NAMES.values()], MISSING))
        else:
            row["Breasts"] = str(int(part["n_breasts"].iloc[0]))
            for metric, label in METRIC_NAMES.items():
                r = part[part["metric"] == metric].iloc[0]
                row[label] = format_ci(r["estimate"], r["low"], r["high"])
        rows.append(row)
    return pd.DataFrame(rows)


def table_performance(metrics: pd.DataFrame, inputs: str) -> pd.DataFrame:
    """Table 3 (inputs='LE') or Table 4 (inputs='CEM'): AUC, ACC, SEN, SPE, PPV, NPV with 95% CIs."""
    if inputs not in TABLE_INPUTS:
        raise ValueError(f"inputs must be one of {TABLE_INPUTS}, got {inputs!r}")
    wanted = [model_name(fusion, inputs.lower()) for fusion in FUSIONS]
    extra = sorted(m for m in metrics["model"].unique() if m.startswith(f"{inputs} ") and m not in wanted)
    return _performance_rows(metrics, wanted + extra)


def table_external(metrics_external: pd.DataFrame) -> pd.DataFrame:
    """External validation: one row per external dataset and model."""
    columns = ["Dataset", "Model", "Breasts", *METRIC_NAMES.values()]
    if metrics_external.empty:
        return pd.DataFrame([dict.fromkeys(columns, MISSING)], columns=columns)
    frames = []
    for dataset in dict.fromkeys(metrics_external["dataset"]):
        models = list(dict.fromkeys(metrics_external.loc[metrics_external["dataset"] == dataset, "model"]))
        frame = _performance_rows(metrics_external, models, dataset)
        frame.insert(0, "Dataset", dataset)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[columns]


# ----------------------------------------------------------------------------------------------------
# Table 5 (DeLong)
# ----------------------------------------------------------------------------------------------------


def paired_scores(predictions: pd.DataFrame, model_a: str, model_b: str, split: str = "test") -> pd.DataFrame:
    """Breasts scored by both models on a split: label, score_a, score_b (inner join on the breast)."""
    part = predictions[predictions["split"] == split]
    a = part[part["model"] == model_a][[*BREAST_KEY, "label", "score"]]
    b = part[part["model"] == model_b][[*BREAST_KEY, "score"]]
    return a.merge(b, on=BREAST_KEY, suffixes=("_a", "_b"))


def delong_pairs(
    predictions: pd.DataFrame, pairs: Sequence[tuple[str, str]] = PAPER_PAIRS, split: str = "test"
) -> pd.DataFrame:
    """Numbers behind Table 5: paired DeLong test per pair (NaN where a model is missing)."""
    rows = []
    for model_a, model_b in pairs:
        both = paired_scores(predictions, model_a, model_b, split)
        row = {"model_a": model_a, "model_b": model_b, "n_breasts": len(both)}
        y = both["label"].to_numpy()
        if len(both) and 0 < y.sum() < len(y):
            r = stats.delong_test(y, both["score_a"], both["score_b"])
            row.update(
                auc_a=r.auc_a, auc_b=r.auc_b, z=r.z, p_value=r.p_value, ci_low=r.ci_low, ci_high=r.ci_high
            )
        else:
            row.update(dict.fromkeys(["auc_a", "auc_b", "z", "p_value", "ci_low", "ci_high"], float("nan")))
        rows.append(row)
    return pd.DataFrame(rows)


def table5_delong(delong: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 5: the paper's eight comparisons, P formatted like the paper, with the paper's P beside."""
    paper = paper_p_values(reference)
    rows = []
    for r in delong.itertuples():
        present = r.n_breasts > 0
        rows.append(
            {
                "Comparison": f"{model_label(r.model_a)} vs {model_label(r.model_b)}",
                "Breasts": str(r.n_breasts) if present else MISSING,
                "AUC difference (95% CI)": format_ci(r.auc_a - r.auc_b, r.ci_low, r.ci_high, 3)
                if present
                else MISSING,
                "Z": f"{r.z:.2f}"
                if present and not math.isnan(r.z)
                else (MISSING if not present else NOT_AVAILABLE),
                "P": format_p(r.p_value) if present else MISSING,
                "P (paper)": paper.get((r.model_a, r.model_b), ""),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------
# subgroup tables: BI-RADS, confusion counts, density
# ----------------------------------------------------------------------------------------------------


def _rate_text(k: int, n: int, level: float, method: str) -> str:
    if n == 0:
        return NOT_AVAILABLE
    return format_ci(*stats.binomial_ci(k, n, level, method))


def table_birads_groups(
    joined: pd.DataFrame,
    thresholds: dict[str, float],
    split: str = "test",
    level: float = 0.95,
    ci_method: str = "clopper-pearson",
) -> pd.DataFrame:
    """Accuracy, sensitivity and specificity per BI-RADS group (1, 2, 3, 5 versus 4) and model."""
    part = joined[joined["split"] == split]
    rows = []
    for model in _models_in_order(part["model"]):
        rows_model = part[part["model"] == model]
        for group, categories in BIRADS_GROUPS.items():
            g = rows_model[rows_model["birads"].str.upper().isin(categories)]
            row = {"Model": model_label(model), "BI-RADS": group}
            if rows_model.empty:
                row.update(dict.fromkeys(["Breasts", "Malignant", "ACC", "SEN", "SPE"], MISSING))
            else:
                c = (
                    stats.confusion_counts(g["label"], g["score"], thresholds[model])
                    if len(g)
                    else {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
                )
                row.update(
                    {
                        "Breasts": str(len(g)),
                        "Malignant": str(int(g["label"].sum())),
                        "ACC": _rate_text(c["tp"] + c["tn"], len(g), level, ci_method),
                        "SEN": _rate_text(c["tp"], c["tp"] + c["fn"], level, ci_method),
                        "SPE": _rate_text(c["tn"], c["tn"] + c["fp"], level, ci_method),
                    }
                )
            rows.append(row)
    return pd.DataFrame(rows)


def table_confusion(
    predictions: pd.DataFrame, thresholds: dict[str, float], split: str = "test"
) -> pd.DataFrame:
    """Confusion counts per model; errors also as a share of all breasts (as the paper reports them)."""
    part = predictions[predictions["split"] == split]
    rows = []
    for model in _models_in_order(part["model"]):
        m = part[part["model"] == model]
        row = {"Model": model_label(model)}
        if m.empty:
            row.update(
                dict.fromkeys(
                    [
                        "Breasts",
                        "Threshold",
                        "TP",
                        "FP",
                        "TN",
                        "FN",
                        "Benign called malignant",
                        "Malignant called benign",
                    ],
                    MISSING,
                )
            )
        else:
            c = stats.confusion_counts(m["label"], m["score"], thresholds[model])
            row.update(
                {
                    "Breasts": str(len(m)),
                    "Threshold": f"{thresholds[model]:.3g}",
                    "TP": str(c["tp"]),
                    "FP": str(c["fp"]),
                    "TN": str(c["tn"]),
                    "FN": str(c["fn"]),
                    "Benign called malignant": _count_pct(c["fp"], len(m)),
                    "Malignant called benign": _count_pct(c["fn"], len(m)),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def table_density(joined: pd.DataFrame, thresholds: dict[str, float], split: str = "test") -> pd.DataFrame:
    """Misclassified breasts by breast density (ACR a-d) per model present."""
    part = joined[joined["split"] == split].copy()
    part["density"] = part["density"].str.strip().str.lower().replace("", "unknown")
    densities = [d for d in ("a", "b", "c", "d") if d in set(part["density"])]
    densities += sorted(set(part["density"]) - {"a", "b", "c", "d"})
    rows = []
    for model in dict.fromkeys(m for m in _models_in_order(part["model"]) if m in set(part["model"])):
        m = part[part["model"] == model]
        wrong = (m["score"] >= thresholds[model]).astype(int) != m["label"]
        for density in densities:
            sel = m["density"] == density
            rows.append(
                {
                    "Model": model_label(model),
                    "Density": density,
                    "Breasts": int(sel.sum()),
                    "Misclassified": _count_pct(int((wrong & sel).sum()), int(sel.sum())),
                    "False positive": int((wrong & sel & (m["label"] == 0)).sum()),
                    "False negative": int((wrong & sel & (m["label"] == 1)).sum()),
                }
            )
    columns = ["Model", "Density", "Breasts", "Misclassified", "False positive", "False negative"]
    if not rows:
        return pd.DataFrame([dict.fromkeys(columns, MISSING)], columns=columns)
    return pd.DataFrame(rows, columns=columns)


def paper_p_values(reference: pd.DataFrame | None) -> dict[tuple[str, str], str]:
    """(model a, model b) -> the paper's DeLong P as printed, from the reference table."""
    if reference is None:
        return {}
    rows = reference[reference["metric"] == "delong_p"]
    return {
        (r.model, r.model_b): ("< " if r.relation == "<" else "") + format_p(r.value).lstrip("< ")
        for r in rows.itertuples()
    }
