"""Every table and figure of a run from its predictions, written as files, and the `cem tables` verb.

Tables are written as CSV, Markdown and LaTeX (`write_table`), figures as PNG and PDF
(cemlib.core.fileio.save_figure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cemlib.core.fileio import atomic_write_text, save_figure
from cemlib.core.resources import paper_reference_path
from cemlib.results import check
from cemlib.results import figures as plots
from cemlib.results.claims import claim_pairs, claims_replicates, load_reference, scorecard, table_comparison
from cemlib.results.tables import (
    PAPER_PAIRS,
    delong_pairs,
    metrics_frame,
    table1_characteristics,
    table2_patient_classes,
    table5_delong,
    table_birads_groups,
    table_confusion,
    table_density,
    table_external,
    table_performance,
    thresholds_for,
    validate_predictions,
    with_breast_info,
)


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
    "replicates": "Spread of each metric across replicates (training seeds): n, mean, SD, range",
    "claims_replicates": "Each claim's verdict under every training seed",
}
#: Tables written as CSV only (full-precision numbers behind the others).
NUMERIC_TABLES = ("metrics", "delong", "replicate_metrics", "claims_replicates")


def build_tables(
    predictions: pd.DataFrame,
    breasts: pd.DataFrame | None = None,
    split: str = "test",
    threshold: float | str = 0.5,
    level: float = 0.95,
    ci_method: str = "clopper-pearson",
    reference: pd.DataFrame | None = None,
    replicates: Sequence[pd.DataFrame] | None = None,
    seeds: Sequence[int] | None = None,
) -> dict[str, pd.DataFrame]:
    """All tables as DataFrames, keyed by file stem (cohort tables only when breasts is given).

    `replicates`: the predictions of every replicate of the run, replicate 0 (`predictions`) first; with
    two or more, the spread of each metric (replicates.csv), each claim's share of replicates and its
    verdict per replicate (claims_replicates.csv, under `seeds`: each replicate's training seed, default
    0 .. N-1).
    """
    predictions = validate_predictions(predictions)
    if reference is None and paper_reference_path().is_file():
        reference = load_reference()
    thresholds = thresholds_for(predictions, threshold)
    metrics = metrics_frame(predictions, split, threshold, level, ci_method)
    metrics_external = metrics_frame(predictions, "external", threshold, level, ci_method)
    delong = delong_pairs(predictions, PAPER_PAIRS, split)
    per_replicate = [(metrics, metrics_external, delong_pairs(predictions, claim_pairs(), split))]
    if replicates is not None and len(replicates) > 1:
        per_replicate += [replicate_results(validate_predictions(r), split, threshold, level, ci_method)
                          for r in replicates[1:]]
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
        joined = with_breast_info(predictions, breasts)
        tables["table_birads_groups"] = table_birads_groups(joined, thresholds, split, level, ci_method)
        tables["table_density"] = table_density(joined, thresholds, split)
    if reference is not None:
        tables["table_comparison"] = table_comparison(metrics, metrics_external, reference)
        tables["scorecard"] = scorecard(metrics, per_replicate[0][2], reference,
                                        [(m, d) for m, _, d in per_replicate], tables["table_comparison"])
    tables["metrics"] = metrics_frame_for_csv(metrics, metrics_external)
    tables["delong"] = delong
    if len(per_replicate) > 1:
        values = [check.metric_rows(metrics_frame_for_csv(m, e)) for m, e, _ in per_replicate]
        tables["replicates"] = check.summarise_replicates(values)
        tables["replicate_metrics"] = pd.concat([v.assign(replicate=k) for k, v in enumerate(values)],
                                                ignore_index=True)
        tables["claims_replicates"] = claims_replicates([d for _, _, d in per_replicate],
                                                        None if seeds is None else list(seeds))
    return tables


def replicate_results(
    predictions: pd.DataFrame, split: str, threshold: float | str, level: float, ci_method: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(internal metrics, external metrics, DeLong tests of the claim pairs) of one replicate's scores."""
    return (metrics_frame(predictions, split, threshold, level, ci_method),
            metrics_frame(predictions, "external", threshold, level, ci_method),
            delong_pairs(predictions, claim_pairs(), split))


def metrics_frame_for_csv(metrics: pd.DataFrame, metrics_external: pd.DataFrame) -> pd.DataFrame:
    """Internal and external metrics in one numeric table (full precision)."""
    return pd.concat([metrics, metrics_external], ignore_index=True)


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """Write built tables: the numeric ones as CSV, the paper's as CSV, Markdown and LaTeX."""
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for name, table in tables.items():
        if name in NUMERIC_TABLES:
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
    predictions = validate_predictions(predictions)
    tables = build_tables(predictions, breasts, split, threshold, level, ci_method, reference)
    written = write_tables(tables, out_dir)
    figure = plots.roc_figure(predictions, split)
    written.update({p.name: p for p in save_figure(figure, Path(figure_dir or out_dir) / "fig4_roc",
                                                  formats=("png", "pdf"))})
    return written
