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


#: The fewest cases a rate must rest on before the comparison counts it: positive calls for PPV, negative
#: calls for NPV, positives for SEN, negatives for SPE. Accuracy needs a model that calls both classes.
MIN_CASES = 10
NOT_ESTIMABLE = "not estimable here"


def _run_rows(metrics: pd.DataFrame, metrics_external: pd.DataFrame, ref_row) -> pd.DataFrame:
    """This run's metric rows of the reference row's dataset and model."""
    if ref_row.dataset == "internal":
        source = metrics[metrics["dataset"] == "internal"]
    else:
        source = metrics_external[
            metrics_external["dataset"].map(_normalise_name) == _normalise_name(ref_row.dataset)
        ]
    return source[source["model"] == ref_row.model]


def _positive_calls(rows: pd.DataFrame, n_pos: int, n_neg: int) -> int:
    """Breasts called malignant, from a model's sensitivity and specificity (TP + FP)."""
    rate = rows.set_index("metric")["estimate"]
    tp = round(float(rate["sen"]) * n_pos) if n_pos else 0
    fp = round((1.0 - float(rate["spe"])) * n_neg) if n_neg else 0
    return int(tp + fp)


def estimate_basis(rows: pd.DataFrame, metric: str) -> tuple[bool, str]:
    """(does the estimate rest on enough cases to compare?, the cases it rests on) for one model's rows."""
    first = rows.iloc[0]
    n, n_pos = int(first["n_breasts"]), int(first["n_malignant"])
    n_neg = n - n_pos
    if metric == "auc":
        return n_pos > 0 and n_neg > 0, f"{n_pos} positives, {n_neg} negatives"
    if metric == "sen":
        return n_pos >= MIN_CASES, f"{n_pos} positives"
    if metric == "spe":
        return n_neg >= MIN_CASES, f"{n_neg} negatives"
    called = _positive_calls(rows, n_pos, n_neg)
    if metric == "ppv":
        return called >= MIN_CASES, f"{called} positive call" + ("" if called == 1 else "s")
    if metric == "npv":
        return n - called >= MIN_CASES, f"{n - called} negative call" + ("" if n - called == 1 else "s")
    return 0 < called < n, f"{called} positive, {n - called} negative calls"


def table_comparison(
    metrics: pd.DataFrame, metrics_external: pd.DataFrame, reference: pd.DataFrame
) -> pd.DataFrame:
    """Each published AUC/ACC/SEN/SPE/PPV/NPV beside this run's value; is it inside this run's CI?

    A value counts only where this run's estimate rests on enough cases (`estimate_basis`, `MIN_CASES`);
    the others are marked "not estimable here".
    """
    rows = []
    for r in reference[reference["metric"].isin(list(METRIC_NAMES))].itertuples():
        found = _run_rows(metrics, metrics_external, r)
        mine = found[found["metric"] == r.metric]
        row = {
            "Table": r.table,
            "Dataset": r.dataset,
            "Model": model_label(r.model),
            "Metric": METRIC_NAMES[r.metric],
            "Paper": format_ci(r.value, r.ci_low, r.ci_high),
        }
        if mine.empty or math.isnan(mine["estimate"].iloc[0]):
            row.update({"This run": MISSING, "Cases behind this run's value": MISSING, "Difference": MISSING,
                        "Paper value within this run's CI": MISSING})
            rows.append(row)
            continue
        mine = mine.iloc[0]
        estimable, basis = estimate_basis(found, r.metric)
        inside = mine["low"] - 0.005 <= r.value <= mine["high"] + 0.005  # the paper rounds to 2 digits
        row.update({
            "This run": format_ci(mine["estimate"], mine["low"], mine["high"]),
            "Cases behind this run's value": basis,
            "Difference": f"{mine['estimate'] - r.value:+.2f}",
            "Paper value within this run's CI": ("yes" if inside else "no") if estimable else NOT_ESTIMABLE,
        })
        rows.append(row)
    return pd.DataFrame(rows)


def _auc_of(metrics: pd.DataFrame, model: str) -> float:
    hit = metrics[
        (metrics["model"] == model) & (metrics["metric"] == "auc") & (metrics["dataset"] == "internal")
    ]
    return float(hit["estimate"].iloc[0]) if not hit.empty else float("nan")


#: The three verdicts on a claim (`outcome`), and the mark of a claim whose models this run lacks.
HOLDS, CONTRADICTED, INCONCLUSIVE = "holds", "contradicted", "inconclusive"
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE)
NOT_ASSESSABLE = "not assessable"
#: A "no difference" claim holds when the 95% CI of the AUC difference lies inside +- this margin.
EQUIVALENCE_MARGIN = 0.05
#: Power and two-sided level of the detectable AUC difference given beside each claim.
POWER = 0.80
ALPHA = 0.05
#: Why the phantom makes a claim true by construction (cemlib/synthetic/CARD.md, "What is built in").
IODINE = "yes: cancers take up iodine, seen in DES only"


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims about a pair of models (each pair appears once).

    kind "beats": `first` has the higher AUC; kind "same": `first` and `second` do not differ (the paper's
    DeLong test finds no significant difference; here it takes equivalence within a margin, `outcome`).
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


@dataclass(frozen=True)
class Outcome:
    """One claim tested on one replicate: the verdict and the paired DeLong test behind it."""

    verdict: str
    delta_auc: float = float("nan")
    p: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")

    @property
    def detectable(self) -> float:
        """The AUC difference this replicate's test detects with 80% power at a two-sided 0.05."""
        if math.isnan(self.ci_low):
            return float("nan")
        return detectable_difference(difference_se(self.ci_low, self.ci_high))


def test_of(claim: Claim) -> str:
    """The rule a claim's verdict follows, in words."""
    if claim.kind == "same":
        return (f"holds when the 95% CI of the AUC difference lies inside +-{EQUIVALENCE_MARGIN:.2f}; "
                f"contradicted when it lies beyond")
    return "paired DeLong P < .05: holds when higher as claimed, contradicted when lower"


def outcome(claim: Claim, delong: pd.DataFrame) -> Outcome:
    """The verdict on a claim from the paired DeLong test of its pair (`delong` holds every claim pair).

    A superiority claim holds only with P < 0.05 in the claimed direction and is contradicted by P < 0.05
    in the other; a "no difference" claim holds only when the 95% CI of the difference lies inside
    +-EQUIVALENCE_MARGIN and is contradicted when the CI lies wholly beyond it. Anything else is
    inconclusive: a point estimate alone never holds, nor does a test too weak to see a difference.
    """
    test = _delong_row(delong, claim.first, claim.second)
    if test is None or any(math.isnan(float(test[c])) for c in ("auc_a", "auc_b", "p_value", "ci_low")):
        return Outcome(NOT_ASSESSABLE)
    delta, p = float(test["auc_a"] - test["auc_b"]), float(test["p_value"])
    low, high = float(test["ci_low"]), float(test["ci_high"])
    if claim.kind == "same":
        margin = EQUIVALENCE_MARGIN
        verdict = HOLDS if -margin <= low and high <= margin else (
            CONTRADICTED if low > margin or high < -margin else INCONCLUSIVE)
    elif p < SIGNIFICANCE:
        verdict = HOLDS if delta > 0 else CONTRADICTED
    else:
        verdict = INCONCLUSIVE
    return Outcome(verdict, delta, p, low, high)


def _shown(claim: Claim, delong: pd.DataFrame, result: Outcome) -> str:
    """What this run shows for a claim: both AUCs and the test's P (and CI of the difference)."""
    if result.verdict == NOT_ASSESSABLE:
        return MISSING
    test = _delong_row(delong, claim.first, claim.second)
    shown = f"AUC {test['auc_a']:.3f} vs {test['auc_b']:.3f}, {_p_text(result.p)}"
    if claim.kind == "same":
        shown += (f", difference {result.delta_auc:+.3f} "
                  f"(95% CI {result.ci_low:+.3f} to {result.ci_high:+.3f})")
    return shown


def claim_pairs() -> tuple[tuple[str, str], ...]:
    """The model pair (first, second) of every claim, in the claims' order: the DeLong tests they need."""
    return tuple((c.first, c.second) for c in paper_claims())


def scorecard(metrics: pd.DataFrame, delong: pd.DataFrame, reference: pd.DataFrame,
              replicates: list[tuple[pd.DataFrame, pd.DataFrame]] | None = None,
              comparison: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's claims (`paper_claims`) against this run: each claim's verdict (`outcome`) with its test.

    `delong` holds the paired DeLong test of every claim pair (`claim_pairs`); `replicates`: (internal
    metrics, DeLong tests) of every replicate, this run first (default: this run alone). Beside each claim
    stand the rule its verdict follows, the share of replicates where it holds and the smallest AUC
    difference this run's test detects with 80% power. `comparison` (`table_comparison`) adds how many
    of the paper's values lie inside this run's CIs, among those this run can estimate.
    """
    replicates = replicates or [(metrics, delong)]
    paper_auc = {
        r.model: r.value
        for r in reference[(reference["metric"] == "auc") & (reference["dataset"] == "internal")].itertuples()
    }
    rows = []
    for claim in paper_claims():
        paper_p = _paper_p(reference, claim.first, claim.second)
        paper = (f"AUC {paper_auc.get(claim.first, float('nan')):.2f} vs "
                 f"{paper_auc.get(claim.second, float('nan')):.2f}")
        if paper_p is not None:
            paper += f", {_p_text(*paper_p)}"
        result = outcome(claim, delong)
        verdicts = [outcome(claim, d).verdict for _, d in replicates]
        assessed = [v for v in verdicts if v != NOT_ASSESSABLE]
        share = f"{assessed.count(HOLDS)} of {len(assessed)}" if assessed else MISSING
        rows.append({
            "Claim": claim.text, "Paper": paper, "This run": _shown(claim, delong, result),
            "Verdict": result.verdict, "Test": test_of(claim),
            "Replicates where it holds": share,
            "Built into the phantom": claim.built_in or "no",
            "Smallest detectable AUC difference (80% power)":
                MISSING if math.isnan(result.detectable) else f"{result.detectable:.3f}",
        })
    table = pd.DataFrame(rows)
    summary = pd.DataFrame(_summary_rows(table, comparison, table.columns))
    return pd.concat([table, summary], ignore_index=True)


def claims_replicates(replicates: list[pd.DataFrame], seeds: list[int] | None = None) -> pd.DataFrame:
    """Each claim's verdict on every replicate (its DeLong tests), one row per claim and training seed."""
    seeds = list(range(len(replicates))) if seeds is None else list(seeds)
    if len(seeds) != len(replicates):
        raise ValueError(f"{len(replicates)} replicates but {len(seeds)} seeds")
    rows = []
    for claim in paper_claims():
        for seed, delong in zip(seeds, replicates, strict=True):
            result = outcome(claim, delong)
            rows.append({"claim": claim.text, "seed": seed, "verdict": result.verdict,
                         "delta_auc": result.delta_auc, "p": result.p})
    return pd.DataFrame(rows, columns=["claim", "seed", "verdict", "delta_auc", "p"])


def _summary_rows(table: pd.DataFrame, comparison: pd.DataFrame | None, columns) -> list[dict[str, str]]:
    """Counts below the claims: claims per verdict, those that hold among the claims the phantom does not
    build in, and the paper's values inside this run's CIs among those this run can estimate."""
    assessed = table["Verdict"] != NOT_ASSESSABLE
    chance = table["Built into the phantom"] == "no"
    of = f"{assessed.sum()} assessable"
    counts = [("Claims that hold", (table["Verdict"] == HOLDS).sum(), of),
              ("Claims contradicted", (table["Verdict"] == CONTRADICTED).sum(), of),
              ("Claims inconclusive", (table["Verdict"] == INCONCLUSIVE).sum(), of),
              ("Claims that hold, not built into the phantom", ((table["Verdict"] == HOLDS) & chance).sum(),
               f"{(assessed & chance).sum()} assessable")]
    if comparison is not None and not comparison.empty:
        inside = comparison["Paper value within this run's CI"]
        counts.append(("Paper values inside this run's 95% CI", (inside == "yes").sum(),
                       f"{inside.isin(['yes', 'no']).sum()} estimable here "
                       f"({(inside == NOT_ESTIMABLE).sum()} not estimable here)"))
    rows = []
    for claim, k, of in counts:
        row = dict.fromkeys(columns, "")
        row.update({"Claim": claim, "This run": f"{int(k)} of {of}"})
        rows.append(row)
    return rows
