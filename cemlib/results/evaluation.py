"""The evaluation a radiology journal asks for, as tables from per-breast predictions: calibration,
operating points fixed on validation, decision curves, subgroups, the unit of analysis and the most
confident errors.

Every table has one block per evaluation set: `where="internal"` is the internal test split (one set),
`where="external"` each external dataset. Whatever is fitted or chosen (a recalibration, a threshold) is
fitted on the same model's internal validation split only, then applied unchanged to the evaluation set.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from cemlib.core.vocab import DATASET_LABELS, model_label
from cemlib.results import calibration, clustered, decision, stats
from cemlib.results.report import pseudonym
from cemlib.results.tables import MISSING, NOT_AVAILABLE, format_ci

RECALIBRATION = "platt"
AS_TRAINED = "as trained"
#: Net benefit is tabulated at these threshold probabilities; the figure draws the whole BIOPSY_RANGE.
DECISION_TABLE_THRESHOLDS = (0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50)
#: Subgroup characteristics in the order of the table and forest plot: column -> heading.
SUBGROUPS = {"density": "Density", "bpe": "Background enhancement", "finding": "Finding kind",
             "size_band": "Lesion size", "birads_group": "BI-RADS group", "age_band": "Age band"}
NOT_RECORDED = "not recorded"
NO_FINDING = "no finding"
FINDING_KINDS = ("mass", "calcifications", "non-mass enhancement", "asymmetry")
SIZE_BANDS = ((10.0, "< 10 mm"), (20.0, "10-19 mm"), (50.0, "20-49 mm"), (math.inf, ">= 50 mm"))
AGE_BANDS = ((45, "< 45 y"), (60, "45-59 y"), (math.inf, ">= 60 y"))
BIRADS_FOUR = "4 (3-4A to 4C)"
BIRADS_BANDS = {"0": "0-3", "1": "0-3", "2": "0-3", "3": "0-3", "3-4A": BIRADS_FOUR, "4A": BIRADS_FOUR,
                "4B": BIRADS_FOUR, "4C": BIRADS_FOUR, "5": "5-6", "6": "5-6"}
LEVEL_ORDER = {"density": ("a", "b", "c", "d"), "bpe": ("minimal", "mild", "moderate", "marked"),
               "finding": (*FINDING_KINDS, NO_FINDING),
               "size_band": (*[b for _, b in SIZE_BANDS], NO_FINDING),
               "birads_group": ("0-3", BIRADS_FOUR, "5-6"), "age_band": tuple(b for _, b in AGE_BANDS)}
#: The phantom's truth about each finding, shown beside the errors only where a lesions table exists.
TRUTH_COLUMNS = ("finding", "size_mm", "density", "bpe", "lesion_enhancement")
TRUTH_HEADINGS = {"finding": "Finding", "size_mm": "Size (mm)", "density": "Density",
                  "bpe": "Background enhancement", "lesion_enhancement": "Lesion enhancement"}


# ---------------------------------------------------------------------------------------------------
# the evaluation sets


def evaluation_sets(predictions: pd.DataFrame, where: str = "internal"
                    ) -> Iterator[tuple[str, str, pd.DataFrame, pd.DataFrame]]:
    """(dataset, model, evaluation rows, the model's internal validation rows) for each set and model."""
    if where not in ("internal", "external"):
        raise ValueError(f"where must be 'internal' or 'external', got {where!r}")
    val = predictions[predictions["split"] == "val"]
    split = "test" if where == "internal" else "external"
    part = predictions[predictions["split"] == split]
    keys = ["model"] if where == "internal" else ["dataset", "model"]
    for key, rows in part.groupby(keys, sort=False):
        dataset, model = ("internal", key[0]) if where == "internal" else key
        yield dataset, model, rows, val[val["model"] == model]


def _both_classes(frame: pd.DataFrame) -> bool:
    return 0 < int(frame["label"].sum()) < len(frame)


def _ci(interval: stats.Interval, digits: int = 2) -> str:
    return format_ci(interval.estimate, interval.low, interval.high, digits)


# ---------------------------------------------------------------------------------------------------
# calibration


def recalibrated(rows: pd.DataFrame, val: pd.DataFrame, method: str = RECALIBRATION) -> np.ndarray | str:
    """The rows' scores after a recalibration fitted on `val`, or the reason it could not be fitted."""
    if val.empty:
        return "no validation scores"
    if not _both_classes(val):
        return "validation split holds one class"
    try:
        return calibration.fit_recalibration(val["label"], val["score"], method)(rows["score"].to_numpy())
    except ValueError as error:
        return str(error)


def calibration_table(predictions: pd.DataFrame, where: str = "internal", method: str = RECALIBRATION,
                      n_bins: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, reliability bins): Brier, ECE, calibration intercept and slope (95% CI), as trained and
    after the recalibration fitted on validation; the bins of every reliability diagram with counts."""
    rows, bins = [], []
    after = f"{calibration.RECALIBRATION_NAMES[method]}, fitted on validation"
    for dataset, model, part, val in evaluation_sets(predictions, where):
        versions = [(AS_TRAINED, part["score"].to_numpy()), (after, recalibrated(part, val, method))]
        for scores_name, scores in versions:
            row = {"Dataset": dataset, "Model": model_label(model), "Scores": scores_name,
                   "Breasts": len(part), "Malignant": int(part["label"].sum())}
            if isinstance(scores, str):
                rows.append({**row, **dict.fromkeys(["Brier", "ECE", "Intercept", "Slope"], NOT_AVAILABLE),
                             "Note": f"not recalibrated: {scores}"})
                continue
            summary = calibration.calibration_summary(part["label"], scores, n_bins)
            rows.append({**row, "Brier": f"{summary['brier']:.3f}", "ECE": f"{summary['ece']:.3f}",
                         "Intercept": _ci(summary["intercept"]), "Slope": _ci(summary["slope"]), "Note": ""})
            table = calibration.reliability_table(part["label"], scores, n_bins)
            bins.append(table.assign(dataset=dataset, model=model, scores=scores_name))
    columns = ["Dataset", "Model", "Scores", "Breasts", "Malignant", "Brier", "ECE", "Intercept", "Slope",
               "Note"]
    bins_frame = pd.concat(bins, ignore_index=True) if bins else pd.DataFrame()
    if not bins_frame.empty:
        bins_frame = bins_frame[["dataset", "model", "scores", *[c for c in bins_frame.columns
                                                                 if c not in ("dataset", "model", "scores")]]]
    return pd.DataFrame(rows, columns=columns), bins_frame


# ---------------------------------------------------------------------------------------------------
# operating points


def operating_points_table(predictions: pd.DataFrame, where: str = "internal",
                           rules: Sequence[str] = decision.RULES, level: float = 0.95) -> pd.DataFrame:
    """Each rule's threshold, chosen on the model's validation split, applied to the evaluation set:
    the confusion matrix and SEN, SPE, PPV, NPV with exact (Clopper-Pearson) CIs."""
    rows = []
    for dataset, model, part, val in evaluation_sets(predictions, where):
        for rule in rules:
            row = {"Dataset": dataset, "Model": model_label(model), "Rule": rule}
            try:
                threshold = decision.rule_threshold(rule, val["label"].to_numpy(), val["score"].to_numpy())
            except ValueError as error:
                rows.append({**row, "Threshold": NOT_AVAILABLE, "Note": str(error)})
                continue
            point = decision.operating_point(part["label"], part["score"], threshold, level)
            rows.append({**row, "Threshold": f"{threshold:.3g}", "TP": point["tp"], "FP": point["fp"],
                         "TN": point["tn"], "FN": point["fn"],
                         **{name.upper(): _ci(point[name]) for name in ("sen", "spe", "ppv", "npv")},
                         "Note": ""})
    columns = ["Dataset", "Model", "Rule", "Threshold", "TP", "FP", "TN", "FN", "SEN", "SPE", "PPV", "NPV",
               "Note"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------------
# decision curves


def decision_curves(predictions: pd.DataFrame, where: str = "internal",
                    thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Net benefit per threshold probability: treat all, treat none and each model, per evaluation set."""
    grid = decision.threshold_grid() if thresholds is None else np.asarray(thresholds, dtype=float)
    frames, seen = [], set()
    for dataset, model, part, _ in evaluation_sets(predictions, where):
        if dataset not in seen:
            seen.add(dataset)
            all_nb = decision.net_benefit_treat_all(part["label"].to_numpy(), grid)
            frames += [pd.DataFrame({"dataset": dataset, "strategy": "treat all", "threshold": grid,
                                     "net_benefit": all_nb}),
                       pd.DataFrame({"dataset": dataset, "strategy": "treat none", "threshold": grid,
                                     "net_benefit": 0.0})]
        nb = decision.net_benefit(part["label"], part["score"], grid)
        frames.append(pd.DataFrame({"dataset": dataset, "strategy": model_label(model), "threshold": grid,
                                    "net_benefit": nb}))
    columns = ["dataset", "strategy", "threshold", "net_benefit"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def decision_table(curves: pd.DataFrame, thresholds: Sequence[float] = DECISION_TABLE_THRESHOLDS
                   ) -> pd.DataFrame:
    """Net benefit at a few threshold probabilities: a row per set and threshold, a column per strategy."""
    if curves.empty:
        return pd.DataFrame(columns=["Dataset", "Threshold probability"])
    keep = curves[np.isin(np.round(curves["threshold"], 6), np.round(thresholds, 6))]
    wide = keep.pivot_table(index=["dataset", "threshold"], columns="strategy", values="net_benefit",
                            sort=False).reset_index()
    wide["threshold"] = [f"{t:.0%}" for t in wide["threshold"]]
    strategies = list(dict.fromkeys(curves["strategy"]))
    wide = wide[["dataset", "threshold", *strategies]].round(3)
    return wide.rename(columns={"dataset": "Dataset", "threshold": "Threshold probability"})


# ---------------------------------------------------------------------------------------------------
# subgroups


def _band(value, bands) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_RECORDED
    return next(label for upper, label in bands if float(value) < upper)


def breast_findings(lesions: pd.DataFrame) -> pd.DataFrame:
    """One row per breast with a finding: the finding that explains the breast's label (the largest)."""
    found = lesions.copy()
    found["size_mm"] = pd.to_numeric(found.get("size_mm"), errors="coerce")
    if "breast_label" in found and "label" in found:
        found["_explains"] = (found["label"] == found["breast_label"]).astype(int)
    else:
        found["_explains"] = 0
    found = found.sort_values(["_explains", "size_mm"], ascending=False, na_position="last")
    first = found.drop_duplicates(["patient_id", "side"]).drop(columns="_explains")
    return first.rename(columns={"kind": "finding"})


def subgroup_attributes(breasts: pd.DataFrame, lesions: pd.DataFrame | None = None
                        ) -> tuple[pd.DataFrame, list[str]]:
    """(breasts with the subgroup columns of SUBGROUPS, the characteristics this data does not record).

    Density, BI-RADS and age come from the manifest's breasts table; finding kind, size and background
    enhancement from a lesions table (one row per finding, joined on patient_id and side). A breast of a
    patient in the lesions table without a finding of its own is 'no finding'; background enhancement is
    the patient's, so it is taken from the patient's other breast where this one has no finding.
    """
    out = breasts.copy()
    for column in ("patient_id", "side"):
        out[column] = out[column].astype(str)
    absent = []
    blank = pd.Series("", index=out.index)
    density = out.get("density", blank).fillna("").astype(str).str.strip().str.lower()
    out["density"] = density.where(density != "", NOT_RECORDED)
    birads = out.get("birads", blank).fillna("").astype(str).str.strip().str.upper()
    out["birads_group"] = birads.map(BIRADS_BANDS).fillna(NOT_RECORDED)
    ages = pd.to_numeric(out.get("age", pd.Series(np.nan, index=out.index)), errors="coerce")
    out["age_band"] = [_band(a, AGE_BANDS) for a in ages]
    for column, name in (("density", "density"), ("birads_group", "BI-RADS"), ("age_band", "age")):
        if (out[column] == NOT_RECORDED).all():
            absent.append(name)
    lesions = None if lesions is None or lesions.empty else lesions.copy()
    have = set() if lesions is None else set(lesions.columns)
    if lesions is not None:
        for column in ("patient_id", "side"):
            lesions[column] = lesions[column].astype(str)
        findings = breast_findings(lesions)
        keep = ["patient_id", "side", *[c for c in ("finding", "size_mm", "enhancement") if c in findings]]
        out = out.merge(findings[keep].rename(columns={"enhancement": "lesion_enhancement"}),
                        on=["patient_id", "side"], how="left")
        known = out["patient_id"].isin(set(lesions["patient_id"]))
    else:
        known = pd.Series(False, index=out.index)
    if "finding" in out:
        out["finding"] = out["finding"].fillna("").astype(str)
        unknown = np.where(known, NO_FINDING, NOT_RECORDED)
        out["finding"] = np.where(out["finding"] != "", out["finding"], unknown)
    else:
        out["finding"] = NOT_RECORDED
        absent.append("finding kind")
    if "size_mm" in out:
        sizes = [_band(v, SIZE_BANDS) for v in out["size_mm"]]
        out["size_band"] = np.where(out["finding"] == NO_FINDING, NO_FINDING, sizes)
    else:
        out["size_band"] = NOT_RECORDED
        absent.append("lesion size")
    if "bpe" in have:
        bpe = lesions.drop_duplicates("patient_id").set_index("patient_id")["bpe"].astype(str)
        out["bpe"] = out["patient_id"].map(bpe).fillna(NOT_RECORDED)
    else:
        out["bpe"] = NOT_RECORDED
        absent.append("background enhancement")
    return out, absent


def _ordered_levels(column: str, values: pd.Series) -> list[str]:
    present = list(dict.fromkeys(values))
    order = [v for v in LEVEL_ORDER.get(column, ()) if v in present]
    return order + sorted(v for v in present if v not in order)


def subgroup_table(joined: pd.DataFrame, where: str = "internal", level: float = 0.95,
                   models: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-breast AUC with its DeLong CI per subgroup level; a level too small to estimate (fewer than two
    malignant or two benign breasts) is listed as such, never dropped."""
    rows = []
    for dataset, model, part, _ in evaluation_sets(joined, where):
        if models is not None and model not in models:
            continue
        for column, heading in SUBGROUPS.items():
            values = part[column] if column in part else pd.Series(NOT_RECORDED, index=part.index)
            for value in _ordered_levels(column, values):
                group = part[values == value]
                n_pos = int(group["label"].sum())
                n_neg = len(group) - n_pos
                row = {"Dataset": dataset, "Model": model_label(model), "Characteristic": heading,
                       "Subgroup": value, "Breasts": len(group), "Malignant": n_pos}
                if n_pos >= 2 and n_neg >= 2:
                    auc = stats.auc_ci(group["label"], group["score"], level=level)
                    row.update(AUC=_ci(auc), auc=auc.estimate, low=auc.low, high=auc.high)
                else:
                    row.update(AUC=f"not estimable ({n_pos} malignant, {n_neg} benign)",
                               auc=np.nan, low=np.nan, high=np.nan)
                rows.append(row)
    columns = ["Dataset", "Model", "Characteristic", "Subgroup", "Breasts", "Malignant", "AUC", "auc", "low",
               "high"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------------
# the unit of analysis


def ci_width_ratio(wider: stats.Interval, base: stats.Interval) -> float:
    """How many times wider one CI is than another; NaN when the base has no width (an AUC of 0 or 1,
    where both intervals collapse) or either is missing."""
    base_width = base.high - base.low
    if not (np.isfinite(base_width) and base_width > 0):
        return float("nan")
    return float((wider.high - wider.low) / base_width)


def clustering_table(predictions: pd.DataFrame, where: str = "internal", level: float = 0.95,
                     n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per-breast AUC with the paper's DeLong CI beside two CIs that keep a patient's breasts together
    (Obuchowski's clustered variance, a patient-level bootstrap), and the per-patient AUC."""
    rows = []
    for dataset, model, part, _ in evaluation_sets(predictions, where):
        y, s = part["label"].to_numpy(), part["score"].to_numpy()
        patients = part["dataset"].astype(str) + "/" + part["patient_id"].astype(str)
        per_patient = clustered.patient_scores(part)
        row = {"Dataset": dataset, "Model": model_label(model), "Breasts": len(part),
               "Patients": len(per_patient)}
        if not _both_classes(part):
            rows.append({**row, "Note": "one class only"})
            continue
        delong = stats.auc_ci(y, s, level=level)
        obuchowski = clustered.obuchowski_auc_ci(y, s, patients.to_numpy(), level)
        boot = stats.auc_ci(y, s, "bootstrap", level, n_boot=n_boot, groups=patients.to_numpy(), seed=seed)
        patient_auc = (stats.auc_ci(per_patient["label"], per_patient["score"], level=level)
                       if _both_classes(per_patient) else stats.Interval(np.nan, np.nan, np.nan))
        ratio = ci_width_ratio(obuchowski, delong)
        rows.append({**row, "AUC per breast, DeLong (paper)": _ci(delong),
                     "Obuchowski clustered": _ci(obuchowski), "Patient bootstrap": _ci(boot),
                     "Clustered / DeLong CI width": (round(float(ratio), 2) if np.isfinite(ratio)
                                                     else NOT_AVAILABLE),
                     "Clustered CI wider": "yes" if ratio > 1.0 else "no",
                     "AUC per patient (larger breast score)": _ci(patient_auc), "Note": ""})
    columns = ["Dataset", "Model", "Breasts", "Patients", "AUC per breast, DeLong (paper)",
               "Obuchowski clustered", "Patient bootstrap", "Clustered / DeLong CI width",
               "Clustered CI wider", "AUC per patient (larger breast score)", "Note"]
    return pd.DataFrame(rows, columns=columns)


def clustering_summary(table: pd.DataFrame, names: Mapping[str, str] | None = None) -> str:
    """One sentence on where the clustered CI is wider than the per-breast DeLong CI; `names` shows each
    dataset key as the reader reads it (e.g. 'synthetic replica of CDD-CESM')."""
    if table.empty or "Clustered CI wider" not in table or table["Clustered CI wider"].isna().all():
        return "No model had both classes to estimate a clustered CI."
    wider = table[table["Clustered CI wider"] == "yes"]
    shown = {**DATASET_LABELS, **(names or {})}
    names = ", ".join(f"{r.Model} ({shown.get(r.Dataset, r.Dataset)})" for r in wider.itertuples())
    total = int(table["Clustered CI wider"].notna().sum())
    return (f"The clustered (Obuchowski) CI is wider than the per-breast DeLong CI for {len(wider)} of "
            f"{total} model(s)" + (f": {names}." if names else "."))


# ---------------------------------------------------------------------------------------------------
# the most confident errors


def confident_errors(joined: pd.DataFrame, model: str, where: str = "internal", threshold: float = 0.5,
                     per_kind: int = 5, truth: bool = True) -> pd.DataFrame:
    """The most confident false negatives (lowest malignant scores) and false positives (highest benign
    scores) of one model at a threshold, by pseudonymous case; the phantom's truth beside them if asked."""
    rows = []
    for dataset, name, part, _ in evaluation_sets(joined, where):
        if name != model:
            continue
        called = part["score"] >= threshold
        fn = part[(part["label"] == 1) & ~called].sort_values("score").head(per_kind)
        fp = part[(part["label"] == 0) & called].sort_values("score", ascending=False).head(per_kind)
        for error, frame in (("false negative", fn), ("false positive", fp)):
            for r in frame.to_dict("records"):
                row = {"Dataset": dataset, "Case": pseudonym(str(r["dataset"]), str(r["patient_id"])),
                       "Side": r["side"], "Error": error, "Score": round(float(r["score"]), 3),
                       "BI-RADS": r.get("birads", ""), "patient_id": str(r["patient_id"])}
                if truth:
                    row.update({c: r.get(c, NOT_RECORDED) for c in TRUTH_COLUMNS})
                rows.append(row)
    columns = ["Dataset", "Case", "Side", "Error", "Score", "BI-RADS", *(TRUTH_COLUMNS if truth else ()),
               "patient_id"]
    return pd.DataFrame(rows, columns=columns)


def missing_model_table(model: str) -> pd.DataFrame:
    """A one-row table saying a model has no scores in this run."""
    return pd.DataFrame([{"Model": model_label(model), "Note": MISSING}])
