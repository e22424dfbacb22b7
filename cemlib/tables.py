"""The paper's tables from per-breast predictions and the manifest's breasts table.

Predictions: one row per breast per model with columns dataset, patient_id, side, label, score, model,
split; model names are "<inputs> <fusion>", e.g. "CEM mf_concat" or "LE none". Breasts: the manifest's
breasts table (dataset, patient_id, side, label, birads, pathology, age, density, split).

Every table is written as CSV, Markdown and LaTeX. Models that are absent are listed and marked
"missing" instead of failing, so a partial run (two of eight models) still gets its tables.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cemlib import stats
from cemlib.fileio import atomic_write_text

INPUTS = ("LE", "CEM")
FUSIONS = ("none", "left_right", "mf_average", "mf_concat")
FUSION_LABELS = {
    "none": "No fusion",
    "left_right": "Left-right fusion",
    "mf_average": "MF fusion (average)",
    "mf_concat": "MF fusion (concatenation)",
}
MODELS = tuple(f"{inputs} {fusion}" for inputs in INPUTS for fusion in FUSIONS)
#: The eight DeLong comparisons of the paper's Table 5, in its order.
PAPER_PAIRS = (
    ("LE none", "LE left_right"),
    ("LE mf_average", "LE mf_concat"),
    ("CEM none", "CEM left_right"),
    ("CEM mf_average", "CEM mf_concat"),
    ("LE none", "CEM none"),
    ("LE mf_average", "CEM mf_average"),
    ("LE left_right", "CEM left_right"),
    ("LE mf_concat", "CEM mf_concat"),
)
METRIC_NAMES = {"auc": "AUC", "acc": "ACC", "sen": "SEN", "spe": "SPE", "ppv": "PPV", "npv": "NPV"}
BIRADS_ORDER = ("0", "1", "2", "3", "3-4A", "4A", "4B", "4C", "5", "6")
BIRADS_GROUPS = {"1, 2, 3, 5": ("1", "2", "3", "5"), "4 (3-4A, 4A, 4B, 4C)": ("3-4A", "4A", "4B", "4C")}
SPLIT_LABELS = {"train": "Training", "val": "Validation", "test": "Test", "external": "External"}
PATIENT_CLASSES = ("bilateral benign", "unilateral malignant", "bilateral malignant")
PREDICTION_COLUMNS = ("dataset", "patient_id", "side", "label", "score", "model", "split")
BREAST_KEY = ["dataset", "patient_id", "side"]
MISSING = "missing"
NOT_AVAILABLE = "n/a"
SIGNIFICANCE = 0.05
DEFAULT_REFERENCE = Path(__file__).resolve().parents[1] / "data_manifest" / "paper_reference.csv"


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
    df["label"], df["score"] = labels.astype(int), scores.astype(float)
    duplicated = df.duplicated(["model", *BREAST_KEY])
    if duplicated.any():
        first = df[duplicated].iloc[0]
        raise ValueError(
            f"{source}: {int(duplicated.sum())} duplicated breast row(s) "
            f"(first: model {first['model']}, {first['patient_id']} {first['side']})"
        )
    return df


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


def _with_breast_info(predictions: pd.DataFrame, breasts: pd.DataFrame) -> pd.DataFrame:
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


def _model_label(model: str) -> str:
    inputs, _, fusion = model.partition(" ")
    return f"{inputs} {FUSION_LABELS.get(fusion, fusion)}" if fusion else model


def _models_in_order(present: Iterable[str], wanted: Sequence[str] | None = None) -> list[str]:
    """The paper's eight models first (whether present or not), then any other model seen."""
    present = list(dict.fromkeys(present))
    base = list(wanted) if wanted is not None else list(MODELS)
    return base + [m for m in present if m not in base and wanted is None]


# ----------------------------------------------------------------------------------------------------
# Tables 1 and 2 (the cohort)
# ----------------------------------------------------------------------------------------------------


def patient_classes(breasts: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: dataset, patient_id, split, n_breasts, n_malignant, patient_class."""
    grouped = breasts.assign(label=pd.to_numeric(breasts["label"]).astype(int)).groupby(
        ["dataset", "patient_id"], sort=False
    )
    patients = grouped.agg(
        split=("split", "first"), n_breasts=("label", "size"), n_malignant=("label", "sum")
    ).reset_index()

    def name(row) -> str:
        if row.n_breasts != 2:
            return f"{row.n_breasts} breast(s) recorded"
        return PATIENT_CLASSES[int(row.n_malignant)]

    patients["patient_class"] = [name(r) for r in patients.itertuples()]
    return patients


def _split_columns(splits: Iterable[str]) -> list[str]:
    present = list(dict.fromkeys(splits))
    return [s for s in SPLIT_LABELS if s in present] + [s for s in present if s not in SPLIT_LABELS]


def table2_patient_classes(breasts: pd.DataFrame) -> pd.DataFrame:
    """Table 2: patients per class (bilateral benign / unilateral / bilateral malignant) per split."""
    patients = patient_classes(breasts)
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
        row = {"Model": _model_label(model)}
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
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    wanted = [f"{inputs} {fusion}" for fusion in FUSIONS]
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
    paper = _paper_p_values(reference)
    rows = []
    for r in delong.itertuples():
        present = r.n_breasts > 0
        rows.append(
            {
                "Comparison": f"{_model_label(r.model_a)} vs {_model_label(r.model_b)}",
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
            row = {"Model": _model_label(model), "BI-RADS": group}
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
        row = {"Model": _model_label(model)}
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
                    "Model": _model_label(model),
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


# ----------------------------------------------------------------------------------------------------
# the paper's published values: comparison and scorecard
# ----------------------------------------------------------------------------------------------------


def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's published values (data_manifest/paper_reference.csv)."""
    path = Path(path) if path is not None else DEFAULT_REFERENCE
    if not path.is_file():
        raise FileNotFoundError(f"paper reference table not found: {path}")
    ref = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("value", "ci_low", "ci_high"):
        ref[column] = pd.to_numeric(ref[column], errors="coerce")
    return ref


def _paper_p_values(reference: pd.DataFrame | None) -> dict[tuple[str, str], str]:
    if reference is None:
        return {}
    rows = reference[reference["metric"] == "delong_p"]
    return {
        (r.model, r.model_b): ("< " if r.relation == "<" else "") + format_p(r.value).lstrip("< ")
        for r in rows.itertuples()
    }


def _normalise_name(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def _run_value(metrics: pd.DataFrame, metrics_external: pd.DataFrame, ref_row) -> pd.Series | None:
    if ref_row.dataset == "internal":
        source = metrics[metrics["dataset"] == "internal"]
    else:
        source = metrics_external[
            metrics_external["dataset"].map(_normalise_name) == _normalise_name(ref_row.dataset)
        ]
    hit = source[(source["model"] == ref_row.model) & (source["metric"] == ref_row.metric)]
    return None if hit.empty else hit.iloc[0]


def table_comparison(
    metrics: pd.DataFrame, metrics_external: pd.DataFrame, reference: pd.DataFrame
) -> pd.DataFrame:
    """Each published AUC/ACC/SEN/SPE/PPV/NPV beside this run's value; is it inside this run's CI?"""
    rows = []
    for r in reference[reference["metric"].isin(list(METRIC_NAMES))].itertuples():
        mine = _run_value(metrics, metrics_external, r)
        row = {
            "Table": r.table,
            "Dataset": r.dataset,
            "Model": _model_label(r.model),
            "Metric": METRIC_NAMES[r.metric],
            "Paper": format_ci(r.value, r.ci_low, r.ci_high),
        }
        if mine is None or math.isnan(mine["estimate"]):
            row.update(
                {"This run": MISSING, "Difference": MISSING, "Paper value within this run's CI": MISSING}
            )
        else:
            inside = mine["low"] - 0.005 <= r.value <= mine["high"] + 0.005  # the paper rounds to 2 digits
            row.update(
                {
                    "This run": format_ci(mine["estimate"], mine["low"], mine["high"]),
                    "Difference": f"{mine['estimate'] - r.value:+.2f}",
                    "Paper value within this run's CI": "yes" if inside else "no",
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _auc_of(metrics: pd.DataFrame, model: str) -> float:
    hit = metrics[
        (metrics["model"] == model) & (metrics["metric"] == "auc") & (metrics["dataset"] == "internal")
    ]
    return float(hit["estimate"].iloc[0]) if not hit.empty else float("nan")


def _verdict(ok: bool | None) -> str:
    return "not assessable" if ok is None else ("holds" if ok else "does not hold")


def scorecard(metrics: pd.DataFrame, delong: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims (CEM beats LE, fusion beats no fusion, Table 5 significances) against this run."""
    paper_auc = {
        r.model: r.value
        for r in reference[(reference["metric"] == "auc") & (reference["dataset"] == "internal")].itertuples()
    }
    rows = []

    def auc_claim(claim: str, better: str, worse: str) -> None:
        mine_b, mine_w = _auc_of(metrics, better), _auc_of(metrics, worse)
        ok = None if math.isnan(mine_b) or math.isnan(mine_w) else bool(mine_b > mine_w)
        paper_b, paper_w = paper_auc.get(better, float("nan")), paper_auc.get(worse, float("nan"))
        rows.append(
            {
                "Claim": claim,
                "Paper": f"AUC {paper_b:.2f} vs {paper_w:.2f}",
                "This run": MISSING if ok is None else f"AUC {mine_b:.3f} vs {mine_w:.3f}",
                "Verdict": _verdict(ok),
            }
        )

    for fusion in FUSIONS:
        auc_claim(f"CEM beats LE ({FUSION_LABELS[fusion]})", f"CEM {fusion}", f"LE {fusion}")
    for inputs in INPUTS:
        for fusion in FUSIONS[1:]:
            auc_claim(
                f"{FUSION_LABELS[fusion]} beats no fusion ({inputs})", f"{inputs} {fusion}", f"{inputs} none"
            )

    paper_p = reference[reference["metric"] == "delong_p"].set_index(["model", "model_b"])
    for r in delong.itertuples():
        key = (r.model_a, r.model_b)
        if key not in paper_p.index:
            continue
        ref = paper_p.loc[key]
        paper_sig = ref["relation"] == "<" or ref["value"] < SIGNIFICANCE
        paper_text = ("P < " if ref["relation"] == "<" else "P = ") + format_p(ref["value"]).lstrip("< ")
        if math.isnan(r.p_value):
            ok, mine = None, MISSING
        else:
            run_sig = r.p_value < SIGNIFICANCE
            same_direction = np.sign(r.auc_b - r.auc_a) == np.sign(
                paper_auc.get(r.model_b, np.nan) - paper_auc.get(r.model_a, np.nan)
            )
            ok = bool(run_sig == paper_sig and (not paper_sig or same_direction))
            p_text = format_p(r.p_value)  # '< .001' and '> .99' carry their own relation
            mine = (
                f"P {p_text if p_text[0] in '<>' else '= ' + p_text}, "
                f"AUC {r.auc_a:.3f} vs {r.auc_b:.3f}"
            )
        what = "differs significantly from" if paper_sig else "does not differ significantly from"
        rows.append(
            {
                "Claim": f"{_model_label(r.model_a)} {what} {_model_label(r.model_b)} (DeLong)",
                "Paper": paper_text,
                "This run": mine,
                "Verdict": _verdict(ok),
            }
        )
    table = pd.DataFrame(rows)
    assessed = table["Verdict"] != "not assessable"
    summary = {
        "Claim": "Claims that hold",
        "Paper": "",
        "This run": f"{int((table['Verdict'] == 'holds').sum())} of {int(assessed.sum())} assessable",
        "Verdict": "",
    }
    return pd.concat([table, pd.DataFrame([summary])], ignore_index=True)


# ----------------------------------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------------------------------


def _cell(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    header = [str(c).replace("|", "\\|") for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"$<$",
    ">": r"$>$",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: pd.DataFrame, caption: str = "") -> str:
    """A booktabs tabular (first column left-aligned, the rest centred)."""
    spec = "l" + "c" * (len(table.columns) - 1)
    lines = [r"\begin{table}[ht]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    lines += [
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(str(c)) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    lines += [
        " & ".join(latex_escape(_cell(v)) for v in row) + r" \\" for row in table.itertuples(index=False)
    ]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, out_dir: str | Path, name: str, caption: str = "") -> dict[str, Path]:
    """Write name.csv, name.md and name.tex atomically; returns {file name: path}."""
    out_dir = Path(out_dir)
    written = {}
    for suffix, text in (
        ("csv", table.to_csv(index=False)),
        ("md", to_markdown(table)),
        ("tex", to_latex(table, caption)),
    ):
        path = out_dir / f"{name}.{suffix}"
        atomic_write_text(path, text)
        written[path.name] = path
    return written


CAPTIONS = {
    "table1_characteristics": "Table 1. Patient characteristics",
    "table2_patient_classes": "Table 2. Patients per class and split",
    "table3_le": "Table 3. Performance of the LE models on the internal test set (95% CI)",
    "table4_cem": "Table 4. Performance of the CEM models on the internal test set (95% CI)",
    "table5_delong": "Table 5. DeLong tests between models (AUC difference = first minus second)",
    "table_external": "External validation (95% CI)",
    "table_birads_groups": "Performance by BI-RADS group (95% CI)",
    "table_confusion": "Confusion counts per model",
    "table_density": "Misclassified breasts by breast density",
    "table_comparison": "The paper's values beside this run's",
    "scorecard": "The paper's claims checked against this run",
}


def build_tables(
    predictions: pd.DataFrame,
    breasts: pd.DataFrame | None = None,
    split: str = "test",
    threshold: float | str = 0.5,
    level: float = 0.95,
    ci_method: str = "clopper-pearson",
    reference: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """All tables as DataFrames, keyed by file stem (cohort tables only when breasts is given)."""
    predictions = validate_predictions(predictions)
    if reference is None and DEFAULT_REFERENCE.is_file():
        reference = load_reference()
    thresholds = thresholds_for(predictions, threshold)
    metrics = metrics_frame(predictions, split, threshold, level, ci_method)
    metrics_external = metrics_frame(predictions, "external", threshold, level, ci_method)
    delong = delong_pairs(predictions, PAPER_PAIRS, split)
    tables: dict[str, pd.DataFrame] = {}
    if breasts is not None:
        tables["table1_characteristics"] = table1_characteristics(breasts)
        tables["table2_patient_classes"] = table2_patient_classes(breasts)
    tables["table3_le"] = table_performance(metrics, "LE")
    tables["table4_cem"] = table_performance(metrics, "CEM")
    tables["table5_delong"] = table5_delong(delong, reference)
    tables["table_external"] = table_external(metrics_external)
    tables["table_confusion"] = table_confusion(predictions, thresholds, split)
    if breasts is not None:
        joined = _with_breast_info(predictions, breasts)
        tables["table_birads_groups"] = table_birads_groups(joined, thresholds, split, level, ci_method)
        tables["table_density"] = table_density(joined, thresholds, split)
    if reference is not None:
        tables["table_comparison"] = table_comparison(metrics, metrics_external, reference)
        tables["scorecard"] = scorecard(metrics, delong, reference)
    tables["metrics"] = metrics_frame_for_csv(metrics, metrics_external)
    tables["delong"] = delong
    return tables


def metrics_frame_for_csv(metrics: pd.DataFrame, metrics_external: pd.DataFrame) -> pd.DataFrame:
    """Internal and external metrics in one numeric table (full precision)."""
    return pd.concat([metrics, metrics_external], ignore_index=True)


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """Write built tables: the numeric ones as CSV, the paper's as CSV, Markdown and LaTeX."""
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for name, table in tables.items():
        if name in ("metrics", "delong"):
            path = out_dir / f"{name}.csv"
            atomic_write_text(path, table.to_csv(index=False))
            written[path.name] = path
        else:
            written.update(write_table(table, out_dir, name, CAPTIONS.get(name, "")))
    return written


def write_all(
    predictions: pd.DataFrame,
    breasts: pd.DataFrame | None,
    out_dir: str | Path,
    split: str = "test",
    threshold: float | str = 0.5,
    level: float = 0.95,
    ci_method: str = "clopper-pearson",
    reference: pd.DataFrame | None = None,
    figure_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Write every table (CSV, Markdown, LaTeX) and Fig. 4 (PNG, PDF); returns {file name: path}."""
    from cemlib import plots

    predictions = validate_predictions(predictions)
    tables = build_tables(predictions, breasts, split, threshold, level, ci_method, reference)
    written = write_tables(tables, out_dir)
    figure = plots.roc_figure(predictions, split)
    written.update(plots.save_figure(figure, figure_dir or out_dir, "fig4_roc"))
    return written


# ----------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem tables`."""
    parser.add_argument("--predictions", required=True, type=Path, help="per-breast predictions CSV")
    parser.add_argument(
        "--manifest",
        action="append",
        type=Path,
        default=[],
        help="manifest folder (its breasts.csv); repeat for external datasets",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for tables and figures")
    parser.add_argument("--split", default="test", help="internal split to evaluate (default: test)")
    parser.add_argument(
        "--threshold",
        default="0.5",
        help="malignant-probability threshold, or 'youden' (chosen on the val split)",
    )
    parser.add_argument(
        "--ci-method",
        default="clopper-pearson",
        choices=stats.CI_METHODS,
        help="binomial CI for ACC/SEN/SPE/PPV/NPV",
    )
    parser.add_argument("--level", type=float, default=0.95, help="confidence level")
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="paper reference values (default: data_manifest/paper_reference.csv)",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run `cem tables`."""
    predictions = load_predictions(args.predictions)
    breasts = load_breasts(args.manifest) if args.manifest else None
    reference = load_reference(args.reference) if args.reference else None
    threshold = args.threshold if args.threshold == "youden" else stats.choose_threshold(args.threshold)
    written = write_all(
        predictions, breasts, args.out, args.split, threshold, args.level, args.ci_method, reference
    )
    for name in sorted(written):
        print(written[name])
    return 0
