"""What one-exam mode shows: the lines `cem predict STUDY` prints and the self-contained HTML report with
the Grad-CAM++ overlays, named only as cemlib.inference.exam_files shows files and exams."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from cemlib import __version__
from cemlib.core.fileio import atomic_write_text, save_figure
from cemlib.core.views import SIDES
from cemlib.inference.cams import plot_exam_cams
from cemlib.inference.exam import THRESHOLD, ExamPrediction
from cemlib.inference.predict import LoadedModel

MAP_NOTE = (
    "Each overlay is a Grad-CAM++ map (Chattopadhay et al., 2018) computed on the last convolutional "
    "block of the network for its own breast's malignancy score (the log-odds of malignant vs benign). "
    "Warm colours mark the image regions whose features raise that score most. Maps are scaled to [0, 1] "
    "per view, so they show where the network looks, not how certain it is: a breast called benign "
    "still has a map, and its peak is not a finding. Right-breast views are shown in radiological "
    "orientation; the network saw them mirrored so that every breast faces the same way."
)
RESEARCH_NOTE = (
    "Research tool, not a medical device. The probabilities come from a model trained on the data named "
    "in its checkpoint and have not been validated for clinical use; they must not guide the care of a "
    "patient."
)


def describe_model(loaded: LoadedModel) -> str:
    """One line on the model: name, backbone width, head, input size, checkpoint file."""
    arch = loaded.arch
    head = "global pool" if arch.global_pool else "flatten"
    size = " x ".join(str(s) for s in arch.input_size)
    epoch = f", epoch {loaded.epoch}" if loaded.epoch is not None else ""
    return (f"{loaded.name} (VGG16-BN width {arch.width:g}, {head} head "
            f"{list(arch.head)}, input {size}; checkpoint {loaded.path.name}{epoch})")


def summary_lines(result: ExamPrediction) -> list[str]:
    """What `cem predict STUDY` prints: exam, model, each breast's probability and call, views."""
    exam = result.exam
    energies = "LE + DES" if result.model.inputs == "cem" else "LE"
    lines = [f"exam {exam.label()}: {len(exam.files)} image(s) found ({', '.join(exam.layouts)} names), "
             f"{energies} used",
             f"model {describe_model(result.model)}"]
    if result.model.inputs == "le" and "DES" in exam.energies:
        lines.append("note: an LE model; the exam's DES images are not used")
    lines += [f"note: left out {exam.redact(s)}" for s in exam.skipped]
    if exam.unrecognised:
        lines.append(f"note: {len(exam.unrecognised)} file(s) with names of no known layout left out: "
                     f"{', '.join(exam.show(p) for p in exam.unrecognised[:8])}")
    for side in SIDES:
        name = "left" if side == "L" else "right"
        lines.append(f"{side} ({name} breast): p(malignant) = {result.breast[side]:.4f} -> "
                     f"{result.call(side)} (threshold {THRESHOLD:g})")
    if result.per_view is not None:
        lines.append("per view: " + ", ".join(f"{k} {p:.4f}" for k, p in result.per_view.items()))
    return lines


def _png_data_uri(path: Path) -> str:
    """An image file as a data: URI for a self-contained HTML page."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(result: ExamPrediction, figure: Path | None) -> str:
    """The one-page, self-contained HTML report (images inline as base64)."""
    esc = html.escape
    exam, loaded = result.exam, result.model
    label = exam.label()
    rows = "".join(
        f"<tr><td>{'Left' if s == 'L' else 'Right'} ({s})</td><td>{result.breast[s]:.4f}</td>"
        f"<td class='{result.call(s)}'>{result.call(s)}</td></tr>" for s in SIDES)
    view_rows = ""
    if result.per_view is not None:
        view_rows = ("<h2>Per view</h2><table><tr><th>View</th><th>p(malignant)</th></tr>"
                     + "".join(f"<tr><td>{k}</td><td>{p:.4f}</td></tr>" for k, p in result.per_view.items())
                     + "</table><p class='small'>A breast's probability is the mean of its CC and MLO "
                       "views.</p>")
    files = "".join(
        f"<tr><td>{key}</td><td>{esc(exam.shown_name(le))}</td>"
        f"<td>{esc(exam.shown_name(des)) if des is not None else '&mdash;'}</td></tr>"
        for key, (le, des) in result.views.items())
    skipped = "".join(f"<li>{esc(exam.redact(s))}</li>" for s in exam.skipped)
    skipped_block = f"<p class='small'>Left out:</p><ul class='small'>{skipped}</ul>" if skipped else ""
    image = (f"<img alt='LE, DES and Grad-CAM++ overlays of the four views' src='{_png_data_uri(figure)}'>"
             if figure is not None else "<p>Grad-CAM++ maps were not computed for this report.</p>")
    arch = loaded.arch
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>CEM exam report: {esc(label)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 1.5em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
td, th {{ border: 1px solid #bbb; padding: 0.25em 0.7em; text-align: left; }}
.malignant {{ color: #b00; font-weight: bold; }} .benign {{ color: #060; }}
.small {{ font-size: 0.85em; color: #555; }} img {{ max-width: 100%; }}
.note {{ background: #f4f4f4; padding: 0.6em 1em; border-left: 4px solid #999; }}
</style></head><body>
<h1>CEM exam report: {esc(label)}</h1>
<p>Model: <b>{esc(loaded.name)}</b> &mdash; fusion {esc(arch.fusion)}, inputs {esc(loaded.inputs)}
({'LE + DES' if loaded.inputs == 'cem' else 'LE only'}), VGG16-BN width {arch.width:g},
head {esc(str(list(arch.head)))}, input {arch.input_size[0]} x {arch.input_size[1]};
checkpoint {esc(loaded.path.name)}; preprocessing {esc(loaded.settings.window)} window, settings
{esc(loaded.settings.digest())}.</p>
<h2>Malignancy probability per breast</h2>
<table><tr><th>Breast</th><th>p(malignant)</th><th>Call (threshold {THRESHOLD:g})</th></tr>{rows}</table>
{view_rows}
<h2>Where the network looks</h2>
{image}
<p class="note">{esc(MAP_NOTE)}</p>
<h2>Images used</h2>
<table><tr><th>View</th><th>LE</th><th>DES</th></tr>{files}</table>
<p class="small">Recognised by {esc(', '.join(exam.layouts))} names.</p>
{skipped_block}
<p class="note"><b>{esc(RESEARCH_NOTE)}</b></p>
<p class="small">cemlib {esc(__version__)}</p>
</body></html>
"""


def write_report(result: ExamPrediction, out: str | os.PathLike) -> dict[str, Path]:
    """Write the overlay figure (cams.png, when maps exist) and report.html into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if result.cams is not None:
        fig = plot_exam_cams(result.x, result.cams, result.breast, mirror_right=True)
        written["cams"] = save_figure(fig, out / "cams.png", dpi=150, tight=True)[0]
    atomic_write_text(out / "report.html", render_html(result, written.get("cams")))
    written["html"] = out / "report.html"
    return written
