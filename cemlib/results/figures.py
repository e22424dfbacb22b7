"""The study's figures, drawn from tables and arrays: the exclusion flow (Fig. 1), the ROC curves of the LE
models (a) and the CEM models (b) (Fig. 4), learning curves, a loader batch and the replicate spread.

Builders take numbers, not files, and return a matplotlib Figure; cemlib.core.fileio.save_figure writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_curve

from cemlib.core.views import VIEW_ORDER
from cemlib.core.vocab import FUSION_LABELS, FUSIONS, model_label, model_name
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
            missing.append(model_label(model))
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
            label=f"{model_label(model)} (AUC = {auc:.2f})",
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


SPLITS = ("train", "val", "test", "external")


def flow_figure(counts: pd.DataFrame) -> Figure:
    """Fig. 1: the exclusion flow diagram from its counts (found -> excluded by reason -> kept -> split)."""
    steps = list(counts.itertuples(index=False))
    figure = Figure(figsize=(6.5, 0.55 * len(steps) + 0.6), layout="constrained")
    ax = figure.subplots()
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(-len(steps), 1)
    for row, (step, patients) in enumerate(steps):
        excluded = step.startswith("excluded")
        split = step in SPLITS
        x = 0.72 if excluded else (0.3 if split else 0.35)
        ax.text(x, -row, f"{step}: {patients}", ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round", "facecolor": "#fde0dd" if excluded else "#e0ecf4"})
        if row and not excluded:
            ax.annotate("", xy=(0.35, -row + 0.3), xytext=(0.35, -row + 0.7),
                        arrowprops={"arrowstyle": "->", "color": "#555"})
    ax.set_title("Fig. 1: patients found, excluded (with reason), kept and split", fontsize=10)
    return figure


def batch_figure(items: Sequence[Mapping], cases: Sequence[str]) -> Figure:
    """Exams as a loader serves them: an LE row and a DES row of the four views per exam, labels in titles.

    `items` are loader items (x of shape (4, 2, H, W), y of (2,) per breast); `cases` their pseudonyms.
    """
    figure = Figure(figsize=(8, 2.3 * 2 * len(items)), layout="constrained")
    axes = figure.subplots(2 * len(items), 4, squeeze=False)
    for p, (item, case) in enumerate(zip(items, cases, strict=True)):
        for v, view in enumerate(VIEW_ORDER):
            for c, energy in enumerate(("LE", "DES")):
                ax = axes[2 * p + c, v]
                ax.imshow(np.asarray(item["x"][v, c]), cmap="gray", vmin=0, vmax=1)
                label = int(item["y"][v // 2])
                ax.set_title(f"{case} {view} {energy} (label {label})", fontsize=7)
                ax.set_axis_off()
    return figure


def learning_curve_figure(logs: Mapping[str, pd.DataFrame], prior_losses: Mapping[str, float]) -> Figure:
    """Loss of each stage against the prior's loss, and validation AUC, per epoch; the kept epoch marked.

    `logs` maps "stage 1" / "stage 2" to a training log (epoch, train_loss, val_loss, val_auc);
    `prior_losses` the loss of predicting the prevalence in each stage.
    """
    figure = Figure(figsize=(10, 3.2), layout="constrained")
    axes = figure.subplots(1, 3)
    colours = {"stage 1": "tab:blue", "stage 2": "tab:orange"}
    for ax, stage in zip(axes[:2], ("stage 1", "stage 2"), strict=True):
        log = logs.get(stage)
        ax.set(xlabel="epoch", ylabel="cross-entropy", title=f"{stage} loss")
        if log is None:
            continue
        ax.plot(log["epoch"], log["train_loss"], "-o", ms=3, color=colours[stage], label="training")
        ax.plot(log["epoch"], log["val_loss"], "--o", ms=3, color=colours[stage], alpha=0.6,
                label="validation")
        ax.axhline(prior_losses[stage], color="grey", lw=1, label="prior (predicts prevalence)")
        kept = int(log.loc[log["val_loss"].idxmin(), "epoch"])
        ax.axvline(kept, color="black", ls=":", lw=1, label=f"kept (epoch {kept})")
        ax.legend(fontsize=7)
    for stage, log in logs.items():
        axes[2].plot(log["epoch"], log["val_auc"], "-o", ms=3, color=colours.get(stage), label=stage)
    axes[2].axhline(0.5, color="grey", lw=1, label="chance")
    axes[2].set(xlabel="epoch", ylabel="AUC", title="validation AUC (per breast)", ylim=(0.3, 1.0))
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def replicate_figure(values: pd.DataFrame | None) -> Figure | None:
    """Internal test AUC of each model in every replicate (points) with mean and SD, LE and CEM panels.

    `values` holds one row per replicate, model, metric and value (results' "replicate_metrics");
    None or a run of one replicate gives no figure.
    """
    import seaborn as sns  # only this figure needs it; importing it costs a second

    if values is None or values["replicate"].nunique() < 2:
        return None
    auc = values[values["metric"] == "internal auc"].copy()
    auc["inputs"] = auc["model"].str.split().str[0]
    auc["fusion"] = auc["model"].str.split().str[1].map(FUSION_LABELS)
    order = [FUSION_LABELS[f] for f in FUSIONS]
    figure = Figure(figsize=(9, 3.8), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    for ax, inputs in zip(axes, ("LE", "CEM"), strict=True):
        part = auc[auc["inputs"] == inputs]
        sns.stripplot(data=part, x="fusion", y="value", order=order, ax=ax, color="#888", size=5, jitter=0.15)
        sns.pointplot(data=part, x="fusion", y="value", order=order, ax=ax, errorbar="sd", color="C0",
                      linestyle="none", markers="D", capsize=0.2)
        ax.set(title=f"{inputs} models", xlabel="", ylabel="internal test AUC")
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    replicates = values["replicate"].nunique()
    figure.suptitle(f"AUC across {replicates} training seeds (points: replicates; diamond and bar: mean, SD)",
                    fontsize=10)
    return figure


#: Percentiles of a raw panel's breast pixels that bound its display range.
RAW_DISPLAY = (1.0, 99.5)


def breast_display_range(pixels: np.ndarray, percentiles: tuple[float, float] = RAW_DISPLAY
                         ) -> tuple[float, float]:
    """A raw image's display range from its breast alone: the percentiles of the pixels above the midpoint
    between the background and the brightest tissue. A window over the whole image lets the detector
    background set the low end, and a DES image, whose breast sits in a narrow band far above it, then
    shows as a uniform white shape."""
    values = np.asarray(pixels, dtype=np.float64)[::2, ::2].ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, percentiles)
    tissue = values[values > (low + high) / 2.0]
    if tissue.size >= 64:
        low, high = np.percentile(tissue, percentiles)
    return float(low), float(max(high, low + 1e-6))


def tidy_qc_figure(figure: Figure, exam: str, title_size: float = 8.0) -> Figure:
    """A raw-versus-preprocessed QC figure of one exam made readable: each raw panel windowed on its breast
    (`breast_display_range`), the exam's name once above the panels instead of in every title."""
    for ax in figure.axes:
        title = ax.get_title()
        if title.startswith(exam):
            title = title[len(exam):].strip()
        ax.set_title(title, fontsize=title_size)
        if "raw" in title.split("\n")[-1]:
            for image in ax.get_images():
                image.set_clim(*breast_display_range(np.asarray(image.get_array())))
    figure.suptitle(exam, fontsize=title_size + 1)
    return figure
