"""A run checked against the paper: its published values beside this run's, and its claims scored.

The reference values are data_manifest/paper_reference.csv (shipped in the package, found through
cemlib.resources).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from cemlib.resources import paper_reference_path
from cemlib.tables import METRIC_NAMES, MISSING, SIGNIFICANCE, format_ci, format_p
from cemlib.vocab import FUSION_LABELS, FUSIONS, INPUTS, model_label, model_name


def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's published values (data_manifest/paper_reference.csv)."""
    path = Path(path) if path is not None else paper_reference_path()
    if not path.is_file():
        raise FileNotFoundError(f"paper reference table not found: {path}")
    ref = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("value", "ci_low", "ci_high"):
        ref[column] = pd.to_numeric(ref[column], errors="coerce")
    return ref


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
            "Model": model_label(r.model),
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
        auc_claim(f"CEM beats LE ({FUSION_LABELS[fusion]})", model_name(fusion, "cem"),
                  model_name(fusion, "le"))
    for inputs in INPUTS:
        for fusion in FUSIONS[1:]:
            auc_claim(
                f"{FUSION_LABELS[fusion]} beats no fusion ({inputs.upper()})", model_name(fusion, inputs),
                model_name("none", inputs)
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
                "Claim": f"{model_label(r.model_a)} {what} {model_label(r.model_b)} (DeLong)",
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
