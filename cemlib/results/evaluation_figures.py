"""Figures of the journal's evaluation: reliability diagrams, decision curves and subgroup forest plots.

Each takes the numeric table `cemlib.results.evaluation` builds, so a figure shows what its table holds;
`names` maps a dataset key to the name a reader reads (a caller that knows the profile says "synthetic
replica of CDD-CESM"), the vocabulary's name otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cemlib.core.vocab import dataset_name, model_label
from cemlib.results.evaluation import AS_TRAINED


def _grid(count: int, columns: int = 4, size: float = 2.6) -> tuple[Figure, list]:
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    figure = Figure(figsize=(size * columns + 0.4, size * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_axis_off()
    return figure, list(axes[:count])


def _name(dataset: str, names: Mapping[str, str] | None) -> str:
    return (names or {}).get(dataset) or dataset_name(dataset)


def reliability_figure(bins: pd.DataFrame, title: str = "", names: Mapping[str, str] | None = None) -> Figure:
    """One panel per set and model: observed share malignant against mean predicted probability per bin,
    as trained and recalibrated, with the breasts per bin (as trained) as bars on the bottom."""
    panels = list(dict.fromkeys(zip(bins["dataset"], bins["model"], strict=True))) if not bins.empty else []
    figure, axes = _grid(len(panels) or 1)
    if not panels:
        axes[0].text(0.5, 0.5, "no scores to calibrate", ha="center", va="center")
        return figure
    for ax, (dataset, model) in zip(axes, panels, strict=True):
        part = bins[(bins["dataset"] == dataset) & (bins["model"] == model)]
        ax.plot([0, 1], [0, 1], color="lightgray", lw=0.8)
        for (scores, rows), style in zip(part.groupby("scores", sort=False), ("o-", "s--"), strict=False):
            used = rows[rows["n"] > 0]
            label = "as trained" if scores == AS_TRAINED else "recalibrated"
            ax.plot(used["mean_predicted"], used["observed"], style, ms=3, lw=1, label=label)
        trained = part[part["scores"] == AS_TRAINED]
        counts = ax.twinx()
        counts.bar((trained["low"] + trained["high"]) / 2, trained["n"], width=0.09, color="tab:gray",
                   alpha=0.25)
        counts.set_ylim(0, max(trained["n"].max(), 1) * 4)
        counts.set_yticks([])
        for row in trained[trained["n"] > 0].itertuples():
            counts.text((row.low + row.high) / 2, row.n, str(row.n), ha="center", va="bottom", fontsize=5)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted", ylabel="observed malignant")
        ax.set_title(f"{model_label(model)}\n{_name(dataset, names)}", fontsize=8)
        ax.legend(fontsize=6, loc="upper left", frameon=False)
    figure.suptitle(title or "Reliability diagrams (10 equal-width bins; bars: breasts per bin)", fontsize=9)
    return figure


def decision_curve_figure(curves: pd.DataFrame, title: str = "", names: Mapping[str, str] | None = None
                          ) -> Figure:
    """Net benefit against threshold probability per set: treat all, treat none and each model."""
    datasets = list(dict.fromkeys(curves["dataset"])) if not curves.empty else []
    figure, axes = _grid(len(datasets) or 1, columns=2, size=4.2)
    for ax, dataset in zip(axes, datasets, strict=False):
        part = curves[curves["dataset"] == dataset]
        top = 0.0
        for strategy, rows in part.groupby("strategy", sort=False):
            reference = strategy in ("treat all", "treat none")
            ax.plot(rows["threshold"], rows["net_benefit"], lw=1.6 if reference else 1.1,
                    color={"treat all": "black", "treat none": "gray"}.get(strategy),
                    ls="-" if reference else "--", label=strategy if reference else model_label(strategy))
            top = max(top, float(rows["net_benefit"].max()))
        ax.set(xlabel="threshold probability", ylabel="net benefit", title=_name(dataset, names),
               ylim=(-0.05, max(top, 0.05) * 1.1))
        ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
        ax.legend(fontsize=6, frameon=False)
    figure.suptitle(title or "Decision curves over the biopsy range (Vickers & Elkin 2006)", fontsize=9)
    return figure


def forest_plot(subgroups: pd.DataFrame, title: str = "", names: Mapping[str, str] | None = None) -> Figure:
    """AUC with its 95% CI per subgroup, one panel per set and model (stacked); a subgroup too small is
    labelled, not dropped."""
    sets = list(dict.fromkeys(zip(subgroups["Dataset"], subgroups["Model"], strict=True))) or [("", "")]
    sizes = [max(int(((subgroups["Dataset"] == d) & (subgroups["Model"] == m)).sum()), 1) for d, m in sets]
    figure = Figure(figsize=(7.2, 0.19 * sum(sizes) + 0.75 * len(sets) + 0.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(len(sets), 1, squeeze=False, height_ratios=sizes).ravel())
    for ax, (dataset, model) in zip(axes, sets, strict=True):
        chosen = (subgroups["Dataset"] == dataset) & (subgroups["Model"] == model)
        rows = subgroups[chosen].reset_index(drop=True)
        ys = np.arange(len(rows))[::-1]
        for y, r in zip(ys, rows.itertuples(), strict=True):
            if np.isfinite(r.auc):
                ax.errorbar(r.auc, y, xerr=[[r.auc - r.low], [r.high - r.auc]], fmt="o", ms=3,
                            color="tab:blue", capsize=2, lw=1)
            else:
                ax.text(0.5, y, "not estimable", va="center", ha="center", fontsize=7, color="dimgray")
        labels = [f"{r.Characteristic}: {r.Subgroup} (n={r.Breasts})" for r in rows.itertuples()]
        ax.axvline(0.5, color="gray", lw=0.8, ls=":")
        ax.set_yticks(ys, labels, fontsize=7.5)
        ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
        ax.set(xlim=(0, 1), xlabel="AUC per breast (95% DeLong CI)")
        ax.set_title(f"{_name(str(dataset), names)}\n{model_label(str(model))}", fontsize=8.5)
    figure.suptitle(title or "AUC by subgroup", fontsize=9)
    return figure
