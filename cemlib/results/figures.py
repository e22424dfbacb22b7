"""Figures of the paper: Fig. 4, ROC curves of the LE models (a) and the CEM models (b).

Figures are written by cemlib.core.fileio.save_figure.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from cemlib.core.vocab import FUSION_LABELS, FUSIONS, model_name
from cemlib.results import stats

FUSION_STYLES = {
    "none": ("tab:gray", ":"),
    "left_right": ("tab:blue", "-."),
    "mf_average": ("tab:orange", "--"),
    "mf_concat": ("tab:red", "-"),
}


def roc_panel(ax, predictions: pd.DataFrame, inputs: str, split: str = "test", title: str = "",
              fusions: tuple[str, ...] = FUSIONS) -> list[str]:
    """Draw the ROC curves of one input type's models on ax; returns the models drawn (AUC in the legend).

    `fusions`: the models the panel is meant to show; any of them without scores is named as missing.
    """
    part = predictions[predictions["split"] == split]
    drawn, missing = [], []
    for fusion in fusions:
        model = model_name(fusion, inputs.lower())
        rows = part[part["model"] == model]
        y = rows["label"].to_numpy()
        if rows.empty or y.min() == y.max():
            missing.append(FUSION_LABELS[fusion])
            continue
        fpr, tpr, _ = roc_curve(y, rows["score"].to_numpy())
        auc = stats.roc_auc(y, rows["score"].to_numpy())
        colour, style = FUSION_STYLES[fusion]
        ax.plot(
            fpr,
            tpr,
            color=colour,
            linestyle=style,
            linewidth=1.6,
            label=f"{FUSION_LABELS[fusion]} (AUC = {auc:.2f})",
        )
        drawn.append(model)
    ax.plot([0, 1], [0, 1], color="lightgray", linewidth=0.8, zorder=0)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.005)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - Specificity")
    ax.set_ylabel("Sensitivity")
    ax.set_title(title)
    if drawn:
        ax.legend(loc="lower right", fontsize=7, frameon=False)
    if missing:
        ax.text(
            0.98,
            0.45 if drawn else 0.5,
            "missing: " + ", ".join(missing),
            ha="right",
            va="center",
            fontsize=6,
            color="dimgray",
            transform=ax.transAxes,
            wrap=True,
        )
    return drawn


def roc_figure(predictions: pd.DataFrame, split: str = "test") -> Figure:
    """Fig. 4: panel a, LE models; panel b, CEM models (per-breast ROC curves on one split)."""
    fig = Figure(figsize=(9.0, 4.4), constrained_layout=True)
    axes = fig.subplots(1, 2)
    roc_panel(axes[0], predictions, "LE", split, "(a) LE models")
    roc_panel(axes[1], predictions, "CEM", split, "(b) CEM models")
    return fig
