"""The study report as a reader gets it: HTML and PDF built from the executed notebooks and the run's files.

The report opens with a title page (study, profile, date, commit, environment, `cem check`'s verdict) and a
one-page summary written from the run's own numbers (cemlib.results.narrative), then a table of contents
with page numbers. Each notebook section follows with its text, a methods paragraph, and its tables and
figures as the run wrote them (cemlib.results.sections): tables with a note of their unit, CI method and
threshold, figures at full resolution with a numbered caption. Limitations generated from the run close
the report, before two appendices: the reporting checklists and the run log (the lines the notebooks
printed). Standard error (progress bars, warnings) and bare Python reprs never reach the report. Tables
are shown as the paper prints them (see `format_cell`), and the print stylesheet keeps headings with what
follows, figures whole on their page, and table rows unsplit.

Also here: the tidying of executed notebooks (stderr moved to a text file beside them, machine paths
taken out of papermill's metadata) and the bookkeeping that keeps reports/<profile>/figures and tables
to what the current run made.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cemlib.core.environment import ENVIRONMENT_FILE, describe_environment, environment_facts
from cemlib.core.fileio import atomic_path, atomic_write_bytes, atomic_write_text
from cemlib.core.vocab import model_label
from cemlib.results import narrative
from cemlib.results.runfacts import RunFacts, load_run
from cemlib.results.sections import NUMERIC_CELL, SHORT_CELL, Assembly, collapse_carriage_returns, inline

STUDY_TITLE = ("Multi-feature fusion of contrast-enhanced mammography for breast-cancer diagnosis: "
               "a reproduction of Qian et al.")
STUDY_REFERENCE = "Qian et al., Eur Radiol 2024;34:917-927 (doi:10.1007/s00330-023-10170-9)"
OUTPUT_DIRS = ("figures", "tables")


# ---------------------------------------------------------------------------------------------------
# tables as the paper prints them


def format_cell(value: Any) -> str:
    """One table value as printed: integers plain, floats without trailing zeros (at most 3 decimals)."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not math.isfinite(float(value)):
            return "n/a"
        if float(value).is_integer():
            return str(int(value))
        return f"{round(float(value), 3):g}"
    return str(value)


def printed_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every cell formatted as text (`format_cell`), index dropped; models in a model column
    by their label form ('CEM MF fusion (concatenation)') and 'missing' as 'n/a', as the report names them."""
    text = table.reset_index(drop=True).astype(object).map(format_cell)
    for column in text.columns:
        if str(column).lower() == "model":
            text[column] = text[column].map(model_label)
    return text.replace({"missing": "n/a"})


def style_table(table: pd.DataFrame):
    """A pandas Styler for notebooks and the report: no index, paper formatting, number cells unwrapped."""
    text = printed_table(table)
    classes = text.map(lambda cell: "num" if NUMERIC_CELL.match(cell) else
                       ("short" if len(cell) <= SHORT_CELL else ""))
    return (
        text.style.hide(axis="index")
        .format(escape="html")
        .set_td_classes(classes)
        .set_table_styles([{"selector": "td.num", "props": "white-space: nowrap; text-align: right;"},
                           {"selector": "td.short", "props": "white-space: nowrap;"},
                           {"selector": "th", "props": "text-align: left;"}])
    )


def pseudonym(dataset: str, patient_id: str) -> str:
    """The study's name for a patient in figures: 'P-' + 8 hex digits of sha256('dataset/patient_id').

    Stable across runs, and never a folder name or header value (which a manifest id can be).
    """
    digest = hashlib.sha256(f"{dataset}/{patient_id}".encode()).hexdigest()
    return f"P-{digest[:8]}"


# ---------------------------------------------------------------------------------------------------
# executed notebooks


def clean_executed(path: Path, project_root: Path | None = None) -> str:
    """Move stderr (progress bars, warnings) out of an executed notebook into NAME.stderr.txt beside it.

    Also replaces papermill's absolute input/output paths in the notebook metadata by relative ones.
    Returns the stderr text taken out (carriage-return redraws collapsed).
    """
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    removed = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                removed.append(collapse_carriage_returns(output.get("text", "")))
            else:
                kept.append(output)
        cell.outputs = kept
    meta = notebook.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = _relative(Path(meta[key]), project_root)
    atomic_write_text(path, nbformat.writes(notebook))
    text = "".join(removed)
    log = path.with_suffix(".stderr.txt")
    if text.strip():
        atomic_write_text(log, text)
    elif log.exists():
        log.unlink()
    return text


def _relative(path: Path, root: Path | None) -> str:
    """path relative to root when inside it, else its name alone (never a machine's absolute path)."""
    if root is not None:
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return Path(path).name


# ---------------------------------------------------------------------------------------------------
# outputs of a run


def output_files(reports: Path) -> dict[str, int]:
    """Every file under reports/<profile>/{figures,tables}: relative path -> modification time (ns)."""
    found = {}
    for folder in OUTPUT_DIRS:
        for path in sorted((Path(reports) / folder).glob("*")):
            if path.is_file():
                found[path.relative_to(reports).as_posix()] = path.stat().st_mtime_ns
    return found


def written_between(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """Files new or rewritten between two `output_files` snapshots."""
    return sorted(name for name, mtime in after.items() if before.get(name) != mtime)


def remove_stale(reports: Path, current: set[str]) -> list[str]:
    """Delete files in figures/ and tables/ that the current run did not make; returns their names."""
    stale = sorted(set(output_files(reports)) - set(current))
    for name in stale:
        (Path(reports) / name).unlink()
    return stale


# ---------------------------------------------------------------------------------------------------
# title page facts


def title_facts(profile: dict[str, Any], env: dict[str, Any], when: datetime | None = None) -> dict[str, str]:
    """The title page's table: profile, date, commit and the machine (`cemlib.core.environment`'s record)."""
    when = when or datetime.now(UTC)
    commit = env.get("commit") or "unknown (not a git checkout)"
    if commit.endswith("-dirty"):
        commit = commit[:12] + " + local changes"
    facts = {
        "Profile": str(profile.get("name", "")),
        "Date": when.strftime("%Y-%m-%d %H:%M UTC"),
        "Code": f"cemlib {env.get('cemlib', '')}, git commit {commit[:40]}".replace("  ", " "),
    }
    facts.update(environment_facts(env))
    facts["Device used"] = str(profile.get("device", "cpu"))
    return facts


# ---------------------------------------------------------------------------------------------------
# notebooks -> report HTML


def _number_headings(body: str, headings: list[tuple[int, str, str]]) -> str:
    """Give h1/h2 stable ids (s1, s2, ...) and record (level, id, text) for the table of contents."""
    def replace(match: re.Match) -> str:
        level, inner = int(match.group(1)), match.group(3)
        anchor = f"s{len(headings) + 1}"
        headings.append((level, anchor, re.sub(r"<[^>]+>", "", inner).strip()))
        return f'<h{level} id="{anchor}">{inner}</h{level}>'

    return re.sub(r"<h([12])(\s[^>]*)?>(.*?)</h\1>", replace, body, flags=re.S)


def notebook_sections(paths: list[Path], reports: Path | None = None, run: RunFacts | None = None
                      ) -> tuple[str, Assembly]:
    """The notebooks' sections as HTML (code hidden, stderr and reprs left out) and what they set aside
    (the run log, the appendix blocks); `reports` and `run` give the run's tables and figures."""
    assembly = Assembly(reports, run)
    return "\n".join(assembly.notebook(path) for path in paths), assembly


def _title_page(profile: dict[str, Any], facts: dict[str, str]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts.items())
    return (
        '<section class="title-page">'
        f'<p class="kind">Supplementary report</p><h1 class="title">{html.escape(STUDY_TITLE)}</h1>'
        f'<p class="reference">Reproducing {html.escape(STUDY_REFERENCE)} with cemlib, profile '
        f'<b>{html.escape(str(profile.get("name", "")))}</b>.</p>'
        f'<table class="facts">{rows}</table>'
        '<p class="how">Generated by <code>cem reproduce</code> from the six study notebooks (executed with '
        "papermill, code hidden) and the tables and figures they wrote. Tables as CSV, Markdown and LaTeX "
        "and figures as PNG and PDF are in the <code>tables/</code> and <code>figures/</code> folders beside "
        "this report.</p>"
        "</section>"
    )


def run_facts(run: RunFacts | None) -> dict[str, str]:
    """The title page's lines about the run's results: data, replicates and `cem check`'s verdict."""
    if run is None:
        return {}
    facts = {"Data": "synthetic (the kit's phantom and replicas of the public releases)" if run.synthetic
             else "the profile's datasets",
             "Replicates": f"{run.replicate_count} (training seed{'s' if run.replicate_count > 1 else ''} "
                           f"{', '.join(str(s) for s in run.seeds)})"}
    facts["cem check"] = narrative.check_verdict(run).replace("`", "")
    return facts


def _summary(run: RunFacts) -> str:
    blocks = []
    for heading, lines in narrative.summary(run):
        if not lines:
            continue
        if len(lines) > 1:
            body = "<ul>" + "".join(f"<li>{inline(line)}</li>" for line in lines) + "</ul>"
        else:
            body = f"<p>{inline(lines[0])}</p>"
        blocks.append(f"<h3>{html.escape(heading)}</h3>{body}")
    return f'<section class="summary"><h1>Summary</h1>{"".join(blocks)}</section>'


def _limitations(run: RunFacts) -> str:
    items = "".join(f"<li>{inline(point)}</li>" for point in narrative.limitations(run))
    return (f'<section class="limitations"><h1>Limitations</h1><p>Each point is written from this run\'s '
            f"results.</p><ul>{items}</ul></section>")


def _run_log(profile: dict[str, Any], assembly: Assembly) -> str:
    if not assembly.run_log:
        return ""
    parts, last = [], None
    for title, text in assembly.run_log:
        if title != last:
            parts.append(f"<h3>{html.escape(re.sub(r'<[^>]+>', '', title))}</h3>")
            last = title
        parts.append(f'<pre class="stdout">{html.escape(text)}</pre>')
    return (f'<section class="appendix"><h1>Appendix: run log</h1><p>What the notebooks printed while the '
            f"{html.escape(str(profile.get('name', '')))} profile ran: its settings, the tensor cache's "
            f"counts and the checkpoints kept.</p>{''.join(parts)}</section>")


def _contents(headings: list[tuple[int, str, str]]) -> str:
    items = "".join(f'<li class="toc{level}"><a href="#{anchor}">{html.escape(text)}</a></li>'
                    for level, anchor, text in headings)
    return f'<nav class="toc"><h2 class="toc-title">Contents</h2><ul>{items}</ul></nav>'


REPORT_CSS = """
@page { size: A4; margin: 16mm 14mm 18mm 14mm;
        @bottom-center { content: counter(page) " / " counter(pages); font-size: 8pt; color: #555; }
        @top-right { content: string(section); font-size: 7.5pt; color: #777; } }
@page :first { @bottom-center { content: none; } @top-right { content: none; } }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 9pt; line-height: 1.35; color: #111;
       max-width: 182mm; margin: 0 auto; }
h1, h2, h3 { break-after: avoid; page-break-after: avoid; line-height: 1.2; }
h1 { font-size: 15pt; margin: 0 0 6pt; string-set: section content(); }
h2 { font-size: 11.5pt; margin: 12pt 0 4pt; }
.notebook { break-before: page; page-break-before: always; }
.title-page { break-after: page; page-break-after: always; padding-top: 30mm; }
.title-page .kind { font-size: 10pt; color: #555; text-transform: uppercase; letter-spacing: 0.1em; }
.title-page .title { font-size: 20pt; string-set: none; }
.title-page table.facts { margin-top: 14mm; width: 100%; font-size: 9pt; }
.title-page .facts th { width: 32%; }
.toc { break-after: page; page-break-after: always; }
.toc ul { list-style: none; padding: 0; }
.toc-title { string-set: section "Contents"; }
.toc li { margin: 2pt 0; }
.toc li.toc1 { font-weight: bold; margin-top: 7pt; }
.toc li.toc2 { margin-left: 6mm; }
.toc a { color: #111; text-decoration: none; }
.toc a::after { content: leader('.') target-counter(attr(href), page); }
.keep { break-inside: avoid; page-break-inside: avoid; }
.block { margin: 4pt 0; }
figure { margin: 4pt 0 8pt; break-inside: avoid; page-break-inside: avoid; text-align: center; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 8pt; text-align: left; margin-top: 3pt; }
p.methods { font-size: 8.5pt; background: #f3f5f8; padding: 3pt 5pt; border-left: 2pt solid #9ab; }
p.generated { margin: 3pt 0; }
.table .caption { font-weight: bold; margin: 6pt 0 2pt; }
.table .note { font-size: 7.5pt; color: #333; margin: 2pt 0 6pt; }
table.data.wide { font-size: 7pt; }
th.group { text-align: center; }
.summary { break-after: page; page-break-after: always; font-size: 8.6pt; line-height: 1.3; }
.summary h3 { font-size: 9.5pt; margin: 7pt 0 2pt; }
.summary ul { margin: 2pt 0; padding-left: 12pt; }
.summary p { margin: 2pt 0; }
.limitations, .appendix { break-before: page; page-break-before: always; }
.limitations li { margin: 3pt 0; }
pre { white-space: pre-wrap; font-size: 8pt; background: #f6f6f6; padding: 4pt; margin: 4pt 0; }
.table { margin: 4pt 0; }
table { border-collapse: collapse; font-size: 7.5pt; max-width: 100%; margin: 2pt 0; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
td, th { border: 0.6pt solid #bbb; padding: 1.5pt 3pt; vertical-align: top; }
th { background: #eef2f6; text-align: left; }
td.num { white-space: nowrap; text-align: right; }
td.short { white-space: nowrap; }
code { font-size: 8pt; }
"""


def report_html(profile: dict[str, Any], executed: list[Path], when: datetime | None = None,
                env: dict[str, Any] | None = None, run: RunFacts | None = None) -> str:
    """The whole report as one HTML document: title page, summary, contents, the notebooks' sections,
    limitations and the appendices. `run` (default: read from the profile's reports folder when it holds
    a finished run's tables) gives the generated text and the tables and figures."""
    env = env if env is not None else describe_environment()
    reports = Path(profile["reports"]) if profile.get("reports") else None
    if run is None and reports is not None and (reports / "tables" / "metrics.csv").is_file():
        run = load_run(reports, profile)
    headings: list[tuple[int, str, str]] = []
    sections, assembly = notebook_sections(executed, reports, run)
    summary = _summary(run) if run is not None else ""
    closing = (_limitations(run) if run is not None else "") + "".join(assembly.appendix) + _run_log(
        profile, assembly)
    summary = _number_headings(summary, headings)
    body = _number_headings(sections + closing, headings)
    title = f"{STUDY_TITLE} ({profile.get('name', '')} profile)"
    facts = title_facts(profile, env, when) | run_facts(run)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{REPORT_CSS}</style></head><body>"
        f"{_title_page(profile, facts)}{summary}{_contents(headings)}{body}</body></html>\n"
    )


#: The PDF's figures: at most this many pixels wide (about 180 dpi across the page's text width), stored as
#: JPEG of this quality where that is smaller than the PNG. WeasyPrint stores every PNG as full RGB, so
#: the 300 dpi figures made the smoke report a 9 MB file; the HTML keeps the figures as they were drawn.
PDF_FIGURE_WIDTH = 1200
PDF_JPEG_QUALITY = 85
_EMBEDDED_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _print_figure(match: re.Match) -> str:
    """One embedded PNG as the PDF stores it: narrowed to PDF_FIGURE_WIDTH, JPEG where that is smaller."""
    import base64
    import io

    from PIL import Image

    original = base64.b64decode(match.group(1))
    with Image.open(io.BytesIO(original)) as image:
        if image.width <= PDF_FIGURE_WIDTH:
            return match.group(0)
        rgb = image.convert("RGB")
    height = max(1, round(rgb.height * PDF_FIGURE_WIDTH / rgb.width))
    narrow = rgb.resize((PDF_FIGURE_WIDTH, height), Image.Resampling.LANCZOS)
    encoded = {}
    for kind, options in (("png", {"optimize": True}), ("jpeg", {"quality": PDF_JPEG_QUALITY,
                                                                   "optimize": True, "subsampling": 0})):
        buffer = io.BytesIO()
        narrow.save(buffer, format=kind.upper(), **options)
        encoded[kind] = buffer.getvalue()
    kind = min(encoded, key=lambda k: len(encoded[k]))
    return f"data:image/{kind};base64," + base64.b64encode(encoded[kind]).decode("ascii")


def print_figures(page: str) -> str:
    """An HTML page with its embedded PNG figures as the PDF stores them (`_print_figure`)."""
    return _EMBEDDED_PNG.sub(_print_figure, page)


def html_to_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Render an HTML file to PDF with WeasyPrint (needs no browser and no LaTeX), its figures narrowed
    for print (`print_figures`)."""
    import weasyprint

    page = print_figures(Path(html_path).read_text(encoding="utf-8"))
    document = weasyprint.HTML(string=page, base_url=str(Path(html_path).parent))
    atomic_write_bytes(pdf_path, document.write_pdf())
    return pdf_path


#: The page of report.pdf a picture of the report shows (0: the title page, 1: the summary).
SUMMARY_PAGE = 1
SUMMARY_PICTURE = "report-summary.png"


def page_picture(pdf_path: Path, png_path: Path, page: int = SUMMARY_PAGE, width_px: int = 900) -> Path:
    """One page of a PDF as a PNG `width_px` wide (pdfium's rendering), e.g. the summary for a README."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf_path))
    try:
        pdf_page = document[min(page, len(document) - 1)]
        image = pdf_page.render(scale=width_px / pdf_page.get_width()).to_pil()
    finally:
        document.close()
    with atomic_path(png_path) as tmp:
        image.convert("RGB").save(tmp, format="PNG", optimize=True)
    return png_path


def export_report(profile: dict[str, Any], executed: list[Path]) -> dict[str, Path]:
    """Write reports/<profile>/report.html, report.pdf and a picture of its summary page from the executed
    notebooks."""
    if not executed:
        raise FileNotFoundError("no executed notebooks to build a report from")
    reports = Path(profile["reports"])
    record = reports / ENVIRONMENT_FILE
    env = json.loads(record.read_text()) if record.is_file() else describe_environment()
    html_path = reports / "report.html"
    atomic_write_text(html_path, report_html(profile, executed, env=env))
    pdf_path = html_to_pdf(html_path, reports / "report.pdf")
    picture = page_picture(pdf_path, reports / SUMMARY_PICTURE)
    return {"html": html_path, "pdf": pdf_path, "summary": picture}
