"""What a profile's results were before: its replaced references (data_manifest/earlier/) set beside a run."""

from __future__ import annotations

from collections.abc import Iterable

from cemlib.results.runfacts import RunFacts

INPUTS = ("CEM", "LE")


def earlier_sentence(run: RunFacts) -> str:
    """What the profile's replaced references gave beside this run's internal AUCs ('' without any)."""
    parts = []
    now = {inputs: list(run.internal_aucs(inputs).values()) for inputs in INPUTS}
    for label, table in run.earlier:
        rows = table[table["metric"] == "internal auc"]
        then = {inputs: rows[rows["model"].str.startswith(inputs + " ")]["mean"] for inputs in INPUTS}
        shown = [f"{inputs} {span(then[inputs])} then, {span(now[inputs])} here" for inputs in INPUTS
                 if len(then[inputs]) and now[inputs]]
        if shown:
            parts.append(f"under the {label} reference ({int(rows['n'].max())} seeds), internal AUC means "
                         + "; ".join(shown))
    if not parts:
        return ""
    return ("This profile's results moved: " + "; ".join(parts) + ". What changed between them, and the "
            "measurements that say why the results moved, are in the kit's docs/training.md.")


def span(values: Iterable[float]) -> str:
    """'0.62-0.63' for the values' range at two decimals, or '0.62' when both ends print alike."""
    values = [float(v) for v in values]
    low, high = f"{min(values):.2f}", f"{max(values):.2f}"
    return low if low == high else f"{low}-{high}"
