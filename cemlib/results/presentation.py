"""The tables as the report shows them: one name per model and dataset, one mark for a value that is not
there, long tables made wide, and under each a note of its unit, CI method and threshold.

The CSV files keep the tidy long form (one row per model and group); `shown_table` turns one of them into
what a reader gets, by its file stem. Cells may hold line breaks ("\\n"), which the report renders as such,
so that an estimate and its CI stack instead of widening a column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from cemlib.core.vocab import dataset_key, model_label
from cemlib.results.claims import EQUIVALENCE_MARGIN, IODINE, MIN_CASES, NOT_ESTIMABLE
from cemlib.results.narrative import CI_METHODS, dataset_text
from cemlib.results.runfacts import EXTERNAL_MODELS, MAIN_MODEL, RunFacts
from cemlib.results.tables import NOT_AVAILABLE, format_ci

#: Marks of a value that is not there, as the tables of earlier runs wrote them; all shown as NOT_AVAILABLE.
ABSENT = {"", "missing", "nan", "NaN", "None", "n/a"}
MODEL_COLUMNS = ("Model", "model")
DATASET_COLUMNS = ("Dataset", "dataset")
PLATT = "Platt scaling (logistic on logit score), fitted on validation"


@dataclass
class Shown:
    """A table as shown: cells as text, an optional header row of column groups, a caption and a note."""

    table: pd.DataFrame
    caption: str = ""
    note: str = ""
    groups: list[tuple[str, int]] = field(default_factory=list)  # (label, columns spanned), left to right


def cell_text(value) -> str:
    """A cell as printed: integers plain, floats to at most 3 decimals, absent values as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_AVAILABLE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{round(value, 3):g}"
    text = str(value)
    return NOT_AVAILABLE if text.strip() in ABSENT else text


def named(table: pd.DataFrame, run: RunFacts) -> pd.DataFrame:
    """Every cell as text, models in their label form and datasets as the report names them."""
    out = table.copy().astype(object).map(cell_text)
    for column in out.columns:
        if column in MODEL_COLUMNS:
            out[column] = out[column].map(model_label)
        elif column in DATASET_COLUMNS:
            out[column] = out[column].map(lambda d: dataset_text(run, dataset_key(d) or d) if dataset_key(d)
                                          else d)
    return out


def _constant(out: pd.DataFrame, columns=MODEL_COLUMNS + DATASET_COLUMNS) -> tuple[pd.DataFrame, list[str]]:
    """Drop the model and dataset columns that hold one value in every row; returns what they held."""
    said = []
    if len(out) < 2:
        return out, said
    for column in [c for c in out.columns if c in columns]:
        values = set(out[column])
        if len(values) == 1:
            said.append(values.pop())
            out = out.drop(columns=column)
    return out, said


def _drop_empty(out: pd.DataFrame) -> pd.DataFrame:
    return out[[c for c in out.columns if not (out[c] == NOT_AVAILABLE).all() or c in MODEL_COLUMNS]]


#: An estimate with its CI as the tables print it: '0.85 (0.73, 0.97)'.
WITH_CI = re.compile(r"^-?[\d.]+ \(-?[\d.]+, -?[\d.]+\)$")
#: A table with this many columns of estimates and CIs gets each CI under its estimate, to fit the page.
STACK_FROM = 4


def stack_cis(out: pd.DataFrame) -> pd.DataFrame:
    """Each CI under its estimate in every column of estimates, when the table has STACK_FROM or more."""
    columns = [c for c in out.columns if out[c].map(lambda v: bool(WITH_CI.match(str(v)))).mean() >= 0.5]
    if len(columns) < STACK_FROM and len(out.columns) <= 10:
        return out
    out = out.copy()
    for column in columns:
        out[column] = out[column].map(lambda v: stacked(v) if WITH_CI.match(str(v)) else v)
    return out


def stacked(text: str) -> str:
    """'0.85 (0.73, 0.97)' -> '0.85\\n(0.73, 0.97)': the CI under its estimate."""
    head, sep, tail = str(text).partition(" (")
    return f"{head}\n({tail}" if sep else str(text)


# ---------------------------------------------------------------------------------------------------
# notes


def rates_note(run: RunFacts) -> str:
    level = f"{run.level * 100:g}%"
    return (f"Unit: breast. AUC with its DeLong {level} CI; ACC, SEN, SPE, PPV and NPV at the fixed "
            f"threshold {run.threshold:g} on the predicted probability of malignancy (the paper's rule, not "
            f"tuned on this run) with {CI_METHODS.get(run.ci_method, run.ci_method)} {level} CIs. n/a: not "
            "defined (no denominator, e.g. PPV when no breast is called malignant) or not available in this "
            "run.")


def counts_note(run: RunFacts) -> str:
    return (f"Unit: breast. Counts at the fixed threshold {run.threshold:g} on the predicted probability of "
            "malignancy (the paper's rule).")


BIRADS_NOTE = ("BI-RADS groups as the paper reports them: category 4 (subcategories 3-4A to 4C), the "
               "suspicious range where the decision to biopsy is uncertain, against categories 1, 2, 3 "
               "and 5, read with confidence as benign, probably benign or highly suggestive of malignancy. "
               "Breasts of category 0 (incomplete) and 6 (known cancer) are in neither group.")


def table_note(stem: str, run: RunFacts) -> str:
    """The note under a table: its unit, CI method and threshold, and what its marks mean."""
    kind = _kind(stem)
    if kind in ("table3_le", "table4_cem", "table_external"):
        return rates_note(run)
    if kind == "table_birads_groups":
        return rates_note(run) + " " + BIRADS_NOTE
    if kind == "table5_delong":
        return ("Unit: breast, both models scoring the same internal test breasts. AUC difference = first "
                "model minus second, with its paired DeLong 95% CI, Z and two-sided P; P (paper): the "
                "paper's P for the same pair.")
    if kind in ("table_confusion", "table_density"):
        return counts_note(run) + (" Each cell: misclassified breasts (share of the density group), then "
                                   "false positives and false negatives." if kind == "table_density" else "")
    if kind == "table_comparison":
        return (f"Each cell: the paper's value; this run's with its 95% CI (DeLong for AUC; "
                f"{CI_METHODS.get(run.ci_method, run.ci_method)} for the rates at threshold "
                f"{run.threshold:g}); whether the paper's value lies inside this run's CI. Not estimable: "
                f"this run's value rests on fewer than {MIN_CASES} cases (positives for SEN, negatives for "
                "SPE, positive calls for PPV, negative calls for NPV, calls of both classes for ACC). Unit: "
                "breast.")
    if kind == "scorecard":
        return ("Unit: breast; paired DeLong tests on the internal test set. A claim that one model beats "
                "another holds with P < .05 in the claimed direction and is contradicted by P < .05 in the "
                "other; a claim that two models do not differ holds when the 95% CI of their AUC difference "
                f"lies inside ±{EQUIVALENCE_MARGIN:.2f} and is contradicted when it lies wholly beyond; "
                "anything else is inconclusive. Detectable difference: the smallest AUC difference the test "
                "detects with 80% power at two-sided .05. Built in: the phantom makes the claim true by "
                "construction (cancers take up iodine, seen in DES only).")
    if kind == "calibration":
        return ("Unit: breast. Brier score; ECE over 10 equal-width bins; intercept and slope of the "
                "logistic recalibration with Wald 95% CIs (ideal 0 and 1). Platt (validation): Platt scaling "
                "fitted on the internal validation split, applied unchanged.")
    if kind == "operating_points":
        return ("Unit: breast. Thresholds fixed on the model's internal validation split (Youden; the "
                "highest threshold keeping SEN 0.90) or the paper's 0.5, applied unchanged; "
                f"{CI_METHODS.get(run.ci_method, run.ci_method)} 95% CIs. n/a: not defined.")
    if kind == "decision_curve":
        return ("Unit: breast. Net benefit NB = TP/n - FP/n × pt / (1 - pt) at threshold probability pt "
                "(Vickers & Elkin 2006). n/a: the model was not scored on this set.")
    if kind == "subgroups_recorded":
        return ("Finding kind, lesion size and background enhancement come from a dataset's lesions table "
                "(the phantom's truth); a characteristic a dataset does not record is not a subgroup of it.")
    if kind == "subgroups":
        return ("Unit: breast. AUC with its DeLong 95% CI; not estimable: fewer than two malignant or two "
                "benign breasts in the subgroup.")
    if kind == "clustering":
        return ("Unit: breast (first three AUC columns) with patients as clusters (Obuchowski) or resampled "
                "whole (bootstrap, 2000 resamples); per patient: the larger breast score against the "
                "patient's label.")
    if kind == "errors":
        return (f"The {model_label(MAIN_MODEL)} model's lowest-scored malignant breasts (false negatives) "
                f"and highest-scored benign breasts (false positives) at threshold {run.threshold:g}; cases "
                "by pseudonym; the finding columns are the phantom's truth.")
    if kind == "pointing_game":
        return (f"Unit: view of a correctly called malignant breast (score at least {run.threshold:g}) with "
                "a lesion mask; n/a: the model called no malignant breast malignant, so there is no view to "
                "score.")
    if kind == "occlusion":
        return (f"Unit: correctly called malignant breast (score at least {run.threshold:g}); probabilities "
                "before and after its lesions are covered with the breast's median; n/a: no such breast.")
    if kind in ("table1_characteristics", "table2_patient_classes"):
        return "Unit: patient for patient counts and age, breast for BI-RADS, biopsy result and pathology."
    if kind == "replicates":
        return "Per model and metric over the training seeds: number of replicates, mean, SD and range."
    return ""


def _kind(stem: str) -> str:
    if stem in CAPTIONS:
        return stem
    for suffix in ("_internal", "_external"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


# ---------------------------------------------------------------------------------------------------
# wide forms of the long tables


def wide_birads(table: pd.DataFrame) -> Shown:
    """BI-RADS groups side by side: one row per model, ACC / SEN / SPE under each group."""
    groups = list(dict.fromkeys(table["BI-RADS"]))
    rows = []
    for model, part in table.groupby("Model", sort=False):
        row = {"Model": model}
        for k, group in enumerate(groups):
            hit = part[part["BI-RADS"] == group]
            for metric in ("ACC", "SEN", "SPE"):
                row[f"{metric}{' ' * k}"] = stacked(hit[metric].iloc[0]) if len(hit) else NOT_AVAILABLE
        rows.append(row)
    labels = []
    for group in groups:
        first = table[table["BI-RADS"] == group].iloc[0]
        labels.append((f"BI-RADS {group}: {first['Breasts']} breasts, {first['Malignant']} malignant", 3))
    return Shown(pd.DataFrame(rows), groups=[("", 1), *labels])


def wide_density(table: pd.DataFrame) -> Shown:
    """Density groups side by side: one row per model, misclassified (FP, FN) under each density."""
    densities = list(dict.fromkeys(table["Density"]))
    rows = []
    for model, part in table.groupby("Model", sort=False):
        row = {"Model": model}
        for density in densities:
            hit = part[part["Density"] == density]
            if hit.empty:
                row[density] = NOT_AVAILABLE
                continue
            r = hit.iloc[0]
            row[density] = f"{r['Misclassified']}\n{r['False positive']} FP, {r['False negative']} FN"
        rows.append(row)
    out = pd.DataFrame(rows)
    sizes = {d: table[table["Density"] == d]["Breasts"].iloc[0] for d in densities}
    out = out.rename(columns={d: f"Density {d} ({sizes[d]} breasts)" for d in densities})
    return Shown(out)


def wide_comparison(table: pd.DataFrame) -> Shown:
    """The paper's values beside this run's: one row per table, dataset and model, one column per metric."""
    keys = ["Table", "Dataset", "Model"]
    metrics = list(dict.fromkeys(table["Metric"]))
    rows = []
    for key, part in table.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True))
        for metric in metrics:
            hit = part[part["Metric"] == metric]
            row[metric] = _comparison_cell(hit.iloc[0]) if len(hit) else ""
        rows.append(row)
    return Shown(pd.DataFrame(rows))


def _comparison_cell(row: pd.Series) -> str:
    paper = str(row["Paper"]).partition(" (")[0]
    mine = str(row["This run"])
    if mine in ABSENT:
        return f"paper {paper}\nrun n/a"
    verdict = str(row["Paper value within this run's CI"])
    said = {"yes": "inside CI", "no": "outside CI", NOT_ESTIMABLE: "not estimable"}.get(verdict, verdict)
    head, _, ci = mine.partition(" (")
    return f"paper {paper}\nrun {head}\n({ci}\n{said}" if ci else f"paper {paper}\nrun {head}\n{said}"


def wide_decision(table: pd.DataFrame) -> Shown:
    """Net benefit of several sets side by side: one row per threshold probability, under each set its
    treat-all and treat-none lines and the models scored on it."""
    sets = list(dict.fromkeys(table["Dataset"]))
    key = "Threshold probability"
    out = pd.DataFrame({key: list(dict.fromkeys(table[key]))})
    groups = [("", 1)]
    for k, dataset in enumerate(sets):
        part = table[table["Dataset"] == dataset].set_index(key)
        columns = [c for c in part.columns if c != "Dataset" and not (part[c] == NOT_AVAILABLE).all()]
        for column in columns:
            out[f"{column}{' ' * k}"] = out[key].map(part[column]).fillna(NOT_AVAILABLE)
        groups.append((dataset, len(columns)))
    return Shown(out, groups=groups)


def wide_subgroups(table: pd.DataFrame) -> Shown:
    """Subgroups of several sets side by side: one row per characteristic and subgroup, under each set
    (dataset and model) its breasts (malignant) and AUC."""
    keys = ["Characteristic", "Subgroup"]
    sets = list(dict.fromkeys(zip(table["Dataset"], table["Model"], strict=True)))
    out = table[keys].drop_duplicates().reset_index(drop=True)
    groups = [("", len(keys))]
    for k, (dataset, model) in enumerate(sets):
        part = table[(table["Dataset"] == dataset) & (table["Model"] == model)].set_index(keys)
        index = pd.MultiIndex.from_frame(out[keys])
        counts = (part["Breasts"] + " (" + part["Malignant"] + ")").reindex(index)
        auc = part["AUC"].map(lambda v: "not estimable" if str(v).startswith("not estimable") else v)
        out[f"Breasts (malignant){' ' * k}"] = counts.fillna("").to_numpy()
        out[f"AUC{' ' * k}"] = auc.reindex(index).fillna("").to_numpy()
        groups.append((f"{dataset}, {model}", 2))
    return Shown(out, groups=groups)


def scorecard_shown(table: pd.DataFrame) -> Shown:
    """The claims without their count rows and repeated rule text; the counts go to the caption."""
    claims = table[table["Verdict"].astype(str).str.strip().ne("") & table["Verdict"].notna()].copy()
    claims = claims[~claims["Verdict"].isin([NOT_AVAILABLE])]
    claims = claims.drop(columns=[c for c in ("Test",) if c in claims.columns])
    built = "Built into the phantom"
    if built in claims.columns:
        claims[built] = claims[built].replace({IODINE: "yes (iodine uptake)"})
    claims = claims.rename(columns={"Smallest detectable AUC difference (80% power)": "Detectable difference",
                                    "Replicates where it holds": "Replicates where it holds",
                                    built: "Built in"})
    counts = table[~table.index.isin(claims.index)]
    said = "; ".join(f"{r['Claim']}: {r['This run']}" for _, r in counts.iterrows()
                     if str(r.get("Claim", "")) not in ABSENT)
    return Shown(claims.reset_index(drop=True), caption=said)


# ---------------------------------------------------------------------------------------------------
# by file stem

#: What each table shows, by file stem (the "_internal" / "_external" suffix names the evaluation set).
CAPTIONS = {
    "table1_characteristics": "Patient characteristics per partition",
    "table2_patient_classes": "Patients per class and partition",
    "table3_le": "Performance of the LE models on the internal test set",
    "table4_cem": "Performance of the CEM models on the internal test set",
    "table5_delong": "Paired DeLong tests between the models the paper compared",
    "table_external": "Performance on the external sets",
    "table_birads_groups": "Accuracy, sensitivity and specificity by BI-RADS group, internal test set",
    "table_confusion": "Confusion counts per model, internal test set",
    "table_density": "Misclassified breasts by breast density (ACR a-d), internal test set",
    "table_comparison": "The paper's values beside this run's",
    "scorecard": "The paper's claims checked against this run",
    "calibration": "Calibration as trained and after recalibration",
    "operating_points": "Operating points chosen on the validation split",
    "decision_curve": "Net benefit at threshold probabilities of a biopsy decision",
    "subgroups": "AUC by subgroup",
    "subgroups_recorded": "Characteristics each dataset does not record",
    "clustering": "The unit of analysis: CIs that ignore and that respect the patient",
    "errors": "The most confident errors",
    "pointing_game": "Grad-CAM++ pointing game, internal test set",
    "image_ceiling": ("Per-breast AUC (DeLong 95% CI) of a reader told where every finding is, from LE and "
                      "DES contrast and area, cross-validated by patient, internal test set"),
    "occlusion": "Lesion occlusion of correctly called malignant breasts, internal test set",
    "replicates": "Spread of each metric across replicates (training seeds)",
}


def _rename_scores(out: pd.DataFrame) -> pd.DataFrame:
    if "Scores" in out.columns:
        out["Scores"] = out["Scores"].replace({PLATT: "Platt (validation)"})
    return out


def _main_models_only(stem: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    wanted = ({model_label(MAIN_MODEL)} if stem.endswith("internal")
              else {model_label(m) for m in EXTERNAL_MODELS.values()})
    return lambda out: out[out["Model"].isin(wanted)] if "Model" in out.columns else out


def ceiling_shown(table: pd.DataFrame) -> pd.DataFrame:
    """The image-attainable ceiling with its AUC and CI in one cell, as the paper prints AUCs."""
    values = table[["auc", "ci_low", "ci_high"]].apply(pd.to_numeric, errors="coerce")  # CSV cells are text
    auc = [format_ci(*row) for row in values.itertuples(index=False)]
    return pd.DataFrame({"Images": table["resolution"].str.capitalize(), "Inputs": table["inputs"],
                         "Breasts": table["breasts"], "Malignant": table["malignant"], "AUC (95% CI)": auc})


def shown_table(stem: str, table: pd.DataFrame, run: RunFacts) -> Shown:
    """A table of the run (its CSV, by file stem) as the report shows it."""
    kind = _kind(stem)
    out = named(ceiling_shown(table) if kind == "image_ceiling" else table, run)
    if kind == "subgroups":
        out = _main_models_only(stem)(out)
    if kind in ("pointing_game", "occlusion"):
        out = out.rename(columns={"model": "Model", "mean_p": "Mean probability",
                                  "mean_p_occluded": "Mean probability, lesions covered", "drop": "Drop",
                                  "breasts": "Breasts"})
    out = _rename_scores(out)
    if kind == "table_birads_groups":
        shown = wide_birads(out)
    elif kind == "table_density":
        shown = wide_density(out)
    elif kind == "table_comparison":
        shown = wide_comparison(out)
    elif kind == "scorecard":
        shown = scorecard_shown(out)
    elif kind == "decision_curve" and "Dataset" in out.columns and out["Dataset"].nunique() > 1:
        shown = wide_decision(out)
    elif kind == "subgroups" and len(out[["Dataset", "Model"]].drop_duplicates()) > 1:
        shown = wide_subgroups(out)
    else:
        shown = Shown(stack_cis(_drop_empty(out)))
    said: list[str] = []
    if not shown.groups:
        shown.table, said = _constant(shown.table)
    caption = CAPTIONS.get(kind, stem.replace("_", " ").capitalize())
    where = ", ".join(said)
    counts = shown.caption
    shown.caption = caption + (f" ({where})" if where else "")
    shown.note = (f"{counts}. " if counts else "") + table_note(stem, run)
    return shown
