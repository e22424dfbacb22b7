"""Quality-control figure: raw versus preprocessed LE and DES panels of the four views of a few exams."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cemlib.core.views import VIEW_ORDER
from cemlib.pixels.imaging import exam_des_bounds, preprocess_pair, read_pixels
from cemlib.pixels.settings import PreprocessSettings
from cemlib.pixels.window import PreprocessError


@dataclass(frozen=True)
class QcView:
    """One view of one exam: its label (e.g. 'SYN0001 LCC'), LE and optional DES file, breast side."""

    label: str
    le_path: Path | None
    des_path: Path | None
    side: str


def manifest_views(manifest, patient_ids: Sequence[str]) -> list[QcView]:
    """The four views (VIEW_ORDER) of each patient as QcView rows; absent files stay None."""
    images = manifest.images
    views = []
    for patient_id in patient_ids:
        rows = images[images["patient_id"].astype(str) == str(patient_id)]
        if rows.empty:
            raise ValueError(f"patient {patient_id!r} is not in the manifest's images table")
        for key in VIEW_ORDER:
            side, view = key[0], key[1:]
            paths = {}
            for energy in ("LE", "DES"):
                match = rows[(rows["side"] == side) & (rows["view"] == view) & (rows["energy"] == energy)]
                paths[energy] = manifest.image_path(match.iloc[0]) if len(match) else None
            views.append(QcView(f"{patient_id} {key}", paths["LE"], paths["DES"], side))
    return views


def qc_figure(manifest, patient_ids: Sequence[str], settings: PreprocessSettings,
              panel_inches: float = 1.6) -> Figure:
    """Raw vs preprocessed panels (LE and DES, 4 views) for the given patients of a manifest.

    Titles use the manifest's patient_id only, never a DICOM header field.
    """
    return qc_figure_from_views(manifest_views(manifest, patient_ids), settings, panel_inches)


def qc_figure_from_views(views: Sequence[QcView], settings: PreprocessSettings,
                         panel_inches: float = 1.6) -> Figure:
    """One row per view: raw LE, preprocessed LE, raw DES, preprocessed DES; failures shown as text.

    A preprocessed panel's title carries its window bounds and the rule that chose them.
    """
    if not views:
        raise ValueError("qc_figure needs at least one view")
    fig = Figure(figsize=(4 * panel_inches, len(views) * panel_inches * 1.25), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(views), 4, squeeze=False))
    titles = ("LE raw", "LE preprocessed", "DES raw", "DES preprocessed")
    shared = _exam_windows(views, settings)
    for row, view in zip(axes, views, strict=True):
        record: dict = {}
        panels = _view_panels(view, settings, record, shared.get(_exam_of(view)))
        notes = ("", _window_note(record, "le"), "", _window_note(record, "des"))
        for ax, title, panel, note in zip(row, titles, panels, notes, strict=True):
            ax.set_axis_off()
            ax.set_title(f"{view.label}\n{title}{note}", fontsize=7)
            if isinstance(panel, str):
                ax.text(0.5, 0.5, panel, ha="center", va="center", fontsize=6, wrap=True,
                        transform=ax.transAxes)
            else:
                low, high = (0.0, 1.0) if "preprocessed" in title else _display_range(panel)
                ax.imshow(panel, cmap="gray", vmin=low, vmax=high, interpolation="antialiased")
    return fig


def _window_note(record: dict, energy: str) -> str:
    """'\n1577..2906 (adaptive raw 1500..3300)' for a preprocessed panel, empty when it failed."""
    if f"{energy}_window" not in record:
        return ""
    low, high = record[f"{energy}_window"]
    return f"\n{low:g}..{high:g} ({record[f'{energy}_window_rule']})"


def _exam_of(view: QcView) -> str:
    """The exam a QC view belongs to (its label without the view name)."""
    return view.label.rsplit(" ", 1)[0]


def _exam_windows(views: Sequence[QcView], settings: PreprocessSettings) -> dict[str, tuple[float, float]]:
    """Under des_window "exam": each exam's shared DES window (exams with an unreadable DES left out)."""
    if settings.des_window != "exam":
        return {}
    by_exam: dict[str, list[Path]] = {}
    for view in views:
        if view.des_path is not None:
            by_exam.setdefault(_exam_of(view), []).append(view.des_path)
    shared = {}
    for exam, paths in by_exam.items():
        try:
            images = [read_pixels(path, expected_range=settings.checked_range()) for path in paths]
            shared[exam] = exam_des_bounds(images, settings, exam)
        except (PreprocessError, FileNotFoundError):
            continue  # the view's own panel shows the reason
    return shared


def _view_panels(view: QcView, settings: PreprocessSettings, record: dict | None = None,
                 des_bounds: tuple[float, float] | None = None
                 ) -> list[np.ndarray | str]:
    """[raw LE, LE01, raw DES, DES01]; a string where an image is missing or fails, with the reason."""
    raw: list[np.ndarray | str] = []
    for path in (view.le_path, view.des_path):
        if path is None:
            raw.append("missing")
            continue
        try:
            raw.append(read_pixels(path, expected_range=settings.checked_range()))
        except (PreprocessError, FileNotFoundError) as exc:
            raw.append(_short(exc, path, view.label))
    le, des = raw
    if isinstance(le, str):
        return [le, le, des, "no LE image" if not isinstance(des, str) else des]
    try:
        le01, des01 = preprocess_pair(le, des if not isinstance(des, str) else None, view.side, settings,
                                      source=view.label, record=record, des_bounds=des_bounds)
    except PreprocessError as exc:
        reason = _short(exc, view.le_path, view.label)
        return [le, reason, des, reason if not isinstance(des, str) else des]
    return [le, le01, des, des01 if des01 is not None else des]


def _display_range(pixels: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(pixels[::4, ::4], [1.0, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _short(exc: Exception, path: Path, label: str, width: int = 40) -> str:
    """A panel's reason in lines of `width`, the file named by the view's label (a path may hold a name)."""
    text = str(exc).replace(str(path), label)
    return "\n".join(text[i:i + width] for i in range(0, min(len(text), 4 * width), width))
