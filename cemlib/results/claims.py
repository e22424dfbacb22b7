"""A run checked against the paper: its published values beside this run's, and its claims scored.

The reference values are data_manifest/paper_reference.csv (shipped in the package, found through
cemlib.core.resources).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import scipy.stats as sps

from cemlib.core.resources import paper_reference_path
from cemlib.core.vocab import FUSION_LABELS, FUSIONS, INPUTS, model_label, model_name
from cemlib.results.tables import METRIC_NAMES, MISSING, SIGNIFICANCE, format_ci, format_p


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


#: Power and two-sided level of the detectable AUC difference given beside each "no difference" claim.
POWER = 0.80
ALPHA = 0.05
#: Why the phantom makes a claim true by construction (cemlib/synthetic/CARD.md, "What is built in").
IODINE = "yes: cancers take up iodine, seen in DES only"


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims about a pair of models (each pair appears once).

    kind "beats": `first` has the higher AUC (significantly so when the paper's DeLong P says so);
    kind "same": the paper's DeLong test finds no significant difference between `first` and `second`.
    """

    text: str
    first: str
    second: str
    kind: str
    built_in: str = ""


def paper_claims() -> tuple[Claim, ...]:
    """The paper's claims on the internal test set, each model pair once, in the paper's order."""
    claims = [Claim(f"CEM beats LE ({FUSION_LABELS[f]})", model_name(f, "cem"), model_name(f, "le"), "beats",
                    IODINE) for f in FUSIONS]
    for inputs in INPUTS:
        tag = inputs.upper()
        claims += [Claim(f"{FUSION_LABELS[f]} beats no fusion ({tag})", model_name(f, inputs),
                         model_name("none", inputs), "beats") for f in FUSIONS[1:]]
        claims += [Claim(f"{FUSION_LABELS[f]} beats left-right fusion ({tag})", model_name(f, inputs),
                         model_name("left_right", inputs), "beats") for f in ("mf_average", "mf_concat")]
        claims.append(Claim(f"MF fusion (average) and MF fusion (concatenation) do not differ significantly "
                            f"({tag}, DeLong)", model_name("mf_average", inputs),
                            model_name("mf_concat", inputs), "same"))
    return tuple(claims)


def difference_se(ci_low: float, ci_high: float, level: float = 0.95) -> float:
    """The SE of an AUC difference from its normal CI (DeLong's paired covariance gives the CI's width)."""
    return (ci_high - ci_low) / (2.0 * float(sps.norm.ppf(0.5 + level / 2.0)))


def detectable_difference(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true AUC difference a two-sided test at `alpha` detects with `power`, given its SE."""
    return (float(sps.norm.ppf(1.0 - alpha / 2.0)) + float(sps.norm.ppf(power))) * se


def _delong_row(delong: pd.DataFrame, first: str, second: str) -> pd.Series | None:
    """The DeLong test of a pair in either order, as (first, second): AUCs swapped, CI negated."""
    hit = delong[(delong["model_a"] == first) & (delong["model_b"] == second)]
    if not hit.empty:
        return hit.iloc[0]
    hit = delong[(delong["model_a"] == second) & (delong["model_b"] == first)]
    if hit.empty:
        return None
    row = hit.iloc[0].copy()
    row["auc_a"], row["auc_b"] = row["auc_b"], row["auc_a"]
    row["ci_low"], row["ci_high"] = -hit.iloc[0]["ci_high"], -hit.iloc[0]["ci_low"]
    return row


def _paper_p(reference: pd.DataFrame, first: str, second: str) -> tuple[float, str] | None:
    """(P value, relation '<' or '=') the paper gives for a pair, in either order; None without a test."""
    rows = reference[reference["metric"] == "delong_p"]
    pair = rows[((rows["model"] == first) & (rows["model_b"] == second))
                | ((rows["model"] == second) & (rows["model_b"] == first))]
    return None if pair.empty else (float(pair["value"].iloc[0]), str(pair["relation"].iloc[0]))


def _p_text(p: float, relation: str = "=") -> str:
    text = format_p(p)
    if relation == "<":
        return "P < " + text.lstrip("< ")
    return "P " + text if text[0] in "<>" else "P = " + text


def _assess(claim: Claim, paper_significant: bool | None, metrics: pd.DataFrame,
            delong: pd.DataFrame) -> tuple[bool | None, str, pd.Series | None]:
    """(holds?, what this run shows, its DeLong row) for one claim on one replicate."""
    auc_1, auc_2 = _auc_of(metrics, claim.first), _auc_of(metrics, claim.second)
    test = _delong_row(delong, claim.first, claim.second)
    p = float("nan") if test is None else float(test["p_value"])
    if math.isnan(auc_1) or math.isnan(auc_2) or (paper_significant is not None and math.isnan(p)):
        return None, MISSING, test
    shown = f"AUC {auc_1:.3f} vs {auc_2:.3f}" + ("" if paper_significant is None else f", {_p_text(p)}")
    if claim.kind == "same":
        return bool(p >= SIGNIFICANCE), shown, test
    ok = auc_1 > auc_2 and (not paper_significant or p < SIGNIFICANCE)
    return bool(ok), shown, test


def scorecard(metrics: pd.DataFrame, delong: pd.DataFrame, reference: pd.DataFrame,
              replicates: list[tuple[pd.DataFrame, pd.DataFrame]] | None = None,
              comparison: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's claims (`paper_claims`) against this run, with the share of replicates where each holds.

    `replicates`: (internal metrics, DeLong pairs) of every replicate, this run first (default: this run
    alone). A claim with a DeLong P in the paper holds when this run's test agrees (significant, and in
    the paper's direction; or not significant); "no difference" claims also give the smallest AUC
    difference this run's test could detect (80% power), since a test too weak to see a difference
    cannot confirm there is none. `comparison` (`table_comparison`) adds how many of the paper's values
    lie inside this run's CIs.
    """
    replicates = replicates or [(metrics, delong)]
    paper_auc = {
        r.model: r.value
        for r in reference[(reference["metric"] == "auc") & (reference["dataset"] == "internal")].itertuples()
    }
    rows = []
    for claim in paper_claims():
        paper_p = _paper_p(reference, claim.first, claim.second)
        significant = None if paper_p is None else (paper_p[1] == "<" or paper_p[0] < SIGNIFICANCE)
        paper = (f"AUC {paper_auc.get(claim.first, float('nan')):.2f} vs "
                 f"{paper_auc.get(claim.second, float('nan')):.2f}")
        if paper_p is not None:
            paper += f", {_p_text(*paper_p)}"
        ok, shown, test = _assess(claim, significant, metrics, delong)
        verdicts = [_assess(claim, significant, m, d)[0] for m, d in replicates]
        assessed = [v for v in verdicts if v is not None]
        detectable = MISSING
        if claim.kind == "same" and test is not None and not math.isnan(test["ci_low"]):
            detectable = f"{detectable_difference(difference_se(test['ci_low'], test['ci_high'])):.3f}"
        rows.append({
            "Claim": claim.text, "Paper": paper, "This run": shown, "Verdict": _verdict(ok),
            "Replicates where it holds": f"{sum(assessed)} of {len(assessed)}" if assessed else MISSING,
            "Built into the phantom": claim.built_in or "no",
            "Smallest detectable AUC difference (80% power)": detectable if claim.kind == "same" else "",
        })
    table = pd.DataFrame(rows)
    summary = pd.DataFrame(_summary_rows(table, comparison, table.columns))
    return pd.concat([table, summary], ignore_index=True)


def _summary_rows(table: pd.DataFrame, comparison: pd.DataFrame | None, columns) -> list[dict[str, str]]:
    """Counts below the claims: claims that hold (all, and those the phantom does not build in), and
    the paper's values inside this run's CIs."""
    assessed = table["Verdict"] != "not assessable"
    holds = table["Verdict"] == "holds"
    chance = table["Built into the phantom"] == "no"
    counts = [("Claims that hold", holds.sum(), assessed.sum()),
              ("Claims that hold, not built into the phantom", (holds & chance).sum(),
               (assessed & chance).sum())]
    if comparison is not None and not comparison.empty:
        inside = comparison["Paper value within this run's CI"]
        counts.append(("Paper values inside this run's 95% CI", (inside == "yes").sum(),
                       inside.isin(["yes", "no"]).sum()))
    rows = []
    for claim, k, n in counts:
        row = dict.fromkeys(columns, "")
        row.update({"Claim": claim, "This run": f"{int(k)} of {int(n)}" + (" assessable" if "Claims" in claim
                                                                          else "")})
        rows.append(row)
    return rows
