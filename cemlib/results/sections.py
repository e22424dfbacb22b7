"""The notebook sections of the report: the notebooks' text, with their results taken from the run's files.

The executed notebooks give each section its headings and prose. What a section shows comes from what the
run wrote: under a heading that `OUTLINE` knows, its tables are read from reports/<profile>/tables (and
shown as cemlib.results.presentation makes them) and its figures from reports/<profile>/figures, at full
resolution with a numbered caption from cemlib.results.narrative. Under any other heading the notebook's
own outputs are kept. Printed lines (the profile, run-log lines such as the tensor cache's counts or a
checkpoint's path) never open a section: they are gathered for the report's run-log appendix, and a
heading that starts with "Appendix" is moved to the end of the report.
"""

from __future__ import annotations

import base64
import fnmatch
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cemlib.core.vocab import MODELS, dataset_key, model_label
from cemlib.results import checklist, narrative
from cemlib.results.presentation import Shown, named, shown_table
from cemlib.results.runfacts import RunFacts

#: Cells holding only numbers as the paper prints them: '0.92 (0.88, 0.96)', '< .001', '138 (30.7%)'.
NUMERIC_CELL = re.compile(r"^[\s\d.,:()%<>=±+\-–]*\d[\s\d.,:()%<>=±+\-–]*$|^n/a$")
#: Text cells up to this length stay on one line ('AUC 0.93 vs 0.90', 'inconclusive'); longer ones wrap.
SHORT_CELL = 18
#: Cells the report leaves out: papermill's parameters and the notebooks' "to explore" cells.
HIDDEN_TAGS = {"parameters", "injected-parameters", "explore"}
#: The printed page's content box (A4 less the margins), and the most a figure may take of its height.
CONTENT_WIDTH_MM = 182.0
FIGURE_HEIGHT_MM = 215.0


@dataclass(frozen=True)
class Item:
    """What a section shows: a table (file stem), figures (file-stem pattern), the notebook's own outputs
    (tables and notes, never printed lines or images), or a generated paragraph."""

    kind: str
    name: str = ""


def T(stem: str) -> Item:
    return Item("table", stem)


def F(pattern: str) -> Item:
    return Item("figure", pattern)


def G(name: str) -> Item:
    return Item("text", name)


N = Item("notebook")

#: (notebook number, heading) -> what the section shows; None: the text under the notebook's title.
OUTLINE: dict[tuple[str, str | None], tuple[Item, ...]] = {
    ("00", "Fig. 1: exclusions"): (F("fig1_flow"), N),
    ("00", "Table 1: patient characteristics"): (T("table1_characteristics"),),
    ("00", "Table 2: patients per class and split"): (T("table2_patient_classes"),),
    ("01", "QC: raw vs preprocessed"): (F("qc_preprocessing*"),),
    ("01", "Internal and external images"): (F("intensity_histograms"),),
    ("01", "What the loader serves"): (F("loader_batch"),),
    ("01", "What a reader can see: the image-attainable ceiling"): (T("image_ceiling"),),
    ("02", "Learning curves"): (F("learning_curves_*"), N),
    ("03", "Table 3: LE inputs"): (T("table3_le"),),
    ("03", "Table 4: CEM inputs"): (T("table4_cem"),),
    ("03", "Table 5: DeLong tests"): (T("table5_delong"),),
    ("03", "Fig. 4: ROC curves"): (F("fig4_roc"),),
    ("03", "Replicates: the spread across training seeds"): (G("replicates"), T("replicates"),
                                                             F("replicates_auc")),
    ("03", "Accuracy by BI-RADS group"): (T("table_birads_groups"), F("birads_scores")),
    ("03", "Errors: confusion counts and misclassified breasts by density"): (T("table_confusion"),
                                                                              T("table_density")),
    ("03", "Calibration"): (T("calibration_internal"), F("reliability_internal")),
    ("03", "Operating points chosen on the validation split"): (T("operating_points_internal"),),
    ("03", "Decision curve"): (T("decision_curve_internal"), F("decision_curve_internal")),
    ("03", "Subgroups"): (T("subgroups_recorded_internal"), T("subgroups_internal"), F("forest_internal")),
    ("03", "The unit of analysis: breasts within patients"): (G("clustering_internal"),
                                                              T("clustering_internal")),
    ("03", "Failure analysis: the most confident errors"): (T("errors_internal"), F("errors_internal_*")),
    ("04", "Class composition"): (N,),
    ("04", "AUC, ACC, SEN, SPE with 95% CIs"): (T("table_external"),),
    ("04", "ROC curves"): (F("external_roc"),),
    ("04", "The paper's values beside this run"): (T("table_comparison"),),
    ("04", "The paper's claims against this run"): (T("scorecard"),),
    ("04", "Calibration on the external sets"): (T("calibration_external"), F("reliability_external")),
    ("04", "Operating points on the external sets"): (T("operating_points_external"),),
    ("04", "Decision curves on the external sets"): (T("decision_curve_external"),
                                                     F("decision_curve_external")),
    ("04", "Subgroups of the external sets"): (T("subgroups_recorded_external"), T("subgroups_external"),
                                               F("forest_external")),
    ("04", "The unit of analysis on the external sets"): (G("clustering_external"), T("clustering_external")),
    ("04", "Failure analysis on CDD-CESM"): (T("errors_external"), F("errors_cddcesm_*")),
    ("05", None): (T("pointing_game"),),
    ("05", "Lesion occlusion"): (T("occlusion"),),
    ("05", "Fig. 5: internal cases"): (F("fig5_cams_internal_*"), G("fig5_missing")),
    ("05", "Fig. 6: external cases"): (F("fig6_cams_*"), G("fig6_missing")),
}


# ---------------------------------------------------------------------------------------------------
# HTML pieces


def markdown_html(source: str) -> str:
    from nbconvert.filters.markdown import markdown2html

    return re.sub(r'<a class="anchor-link" href="[^"]*">[^<]*</a>', "", markdown2html(source))


def inline(text: str) -> str:
    """Generated text as HTML: escaped, with `code` spans set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def collapse_carriage_returns(text: str) -> str:
    """What a terminal would show of stream text: each line's last carriage-return segment."""
    return "\n".join(([part for part in line.split("\r") if part] or [""])[-1] for line in text.split("\n"))


def _cell_class(text: str) -> str:
    lines = text.split("\n")
    if all(NUMERIC_CELL.match(line) or line.startswith("(") for line in lines):
        return "num"
    return "short" if max(len(line) for line in lines) <= SHORT_CELL else ""


def table_html(shown: Shown) -> str:
    """A shown table as HTML: caption, optional header row of column groups, body, note."""
    head = ""
    if shown.groups:
        head += "<tr>" + "".join(f'<th colspan="{span}" class="group">{html.escape(label)}</th>'
                                 for label, span in shown.groups) + "</tr>"
    head += "<tr>" + "".join(f"<th>{html.escape(str(c).strip())}</th>" for c in shown.table.columns) + "</tr>"
    rows = []
    for row in shown.table.itertuples(index=False):
        cells = []
        for value in row:
            text = str(value)
            kind = _cell_class(text)
            body = "<br>".join(html.escape(line) for line in text.split("\n"))
            cells.append(f'<td class="{kind}">{body}</td>' if kind else f"<td>{body}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    wide = " wide" if len(shown.table.columns) > 8 else ""
    caption = f'<p class="caption">{html.escape(shown.caption)}</p>' if shown.caption else ""
    note = f'<p class="note">{html.escape(shown.note)}</p>' if shown.note else ""
    return (f'<div class="table">{caption}<table class="data{wide}"><thead>{head}</thead>'
            f'<tbody>{"".join(rows)}</tbody></table>{note}</div>')


def image_data(path: Path) -> tuple[str, float, float]:
    """(base64 PNG, width mm, height mm) of a figure file, its size read from the resolution it was saved
    at (300 dpi by cemlib.core.fileio.save_figure: sharp on a high-density screen and in print)."""
    from PIL import Image

    with Image.open(path) as image:
        dpi = float((image.info.get("dpi") or (100.0, 100.0))[0]) or 100.0
        width_mm, height_mm = image.width / dpi * 25.4, image.height / dpi * 25.4
    return base64.b64encode(path.read_bytes()).decode(), width_mm, height_mm


def figure_html(png: str, width_mm: float, height_mm: float, number: int, caption: str) -> str:
    """A figure at its drawn size (shrunk to the page when larger), its numbered caption and alt text."""
    scale = min(1.0, CONTENT_WIDTH_MM / width_mm, FIGURE_HEIGHT_MM / height_mm)
    alt = html.escape(caption.split(". ")[0].rstrip("."), quote=True)
    return (f'<figure><img src="data:image/png;base64,{png}" alt="{alt}" '
            f'style="width: {width_mm * scale:.1f}mm"><figcaption><b>Figure {number}.</b> '
            f"{html.escape(caption)}</figcaption></figure>")


def normalise_cells(table: str, run: RunFacts | None) -> str:
    """A notebook's HTML table with one name per model and dataset and one mark for an absent value."""
    def replace(match: re.Match) -> str:
        text = html.unescape(match.group(2)).strip()
        if text in MODELS:
            text = model_label(text)
        elif run is not None and dataset_key(text) not in (None, "internal"):
            text = narrative.dataset_text(run, dataset_key(text))
        elif text == "missing":
            text = "n/a"
        return f"{match.group(1)}{html.escape(text)}</td>"

    return re.sub(r"(<td[^>]*>)([^<]*)</td>", replace, table)


#: A release's name in the notebooks' prose ('INbreast', 'CDD-CESM'), with an article before it if any.
RELEASE_NAME = re.compile(r"(?<![\w./-])(?:(?:the|The) )?(INbreast|CDD-CESM)(?![\w/-])")


def name_sets(text: str, run: RunFacts | None) -> str:
    """The notebooks' prose (HTML) with each external set the run used named as the report names it
    ('the synthetic replica of CDD-CESM'), outside code spans and tags."""
    if run is None:
        return text
    parts, code = [], False
    for part in re.split(r"(<[^>]+>)", text):
        if part.startswith("<"):
            code = {"<code": True, "</code": False}.get(part.split(">")[0].split()[0], code)
            parts.append(part)
            continue

        def rename(match: re.Match) -> str:
            key = dataset_key(match.group(1))
            if key is None or not run.replicas.get(key):
                return match.group(0)
            article = "The " if match.group(0).startswith("The ") else "the "
            return article + narrative.dataset_text(run, key)

        parts.append(part if code else RELEASE_NAME.sub(rename, part))
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------
# the notebooks


@dataclass
class Assembly:
    """The report's sections built from the executed notebooks and the run's files, with what they set
    aside: the printed lines for the run log, the appendix blocks, and the figures' running number."""

    reports: Path | None
    run: RunFacts | None
    figures: int = 0
    run_log: list[tuple[str, str]] = field(default_factory=list)
    appendix: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------------------------------------
    def notebook(self, path: Path) -> str:
        """One executed notebook as a report section."""
        import nbformat

        notebook = nbformat.read(str(path), as_version=4)
        number = path.name[:2]
        blocks = self._blocks(notebook)
        title = blocks[0][0] if blocks else path.stem
        parts = ['<section class="notebook">']
        for index, (heading, lead, outputs) in enumerate(blocks):
            key = (number, None if index == 0 else heading)
            lead = name_sets(lead, self.run)
            printed = [o for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stdout"]
            for output in printed:
                shown = collapse_carriage_returns(output.get("text", "")).strip("\n")
                if shown.strip():
                    self.run_log.append((title, shown))
            if index == 0 and self.run is not None:
                said = inline(narrative.methods(number, self.run))
                lead += f'<p class="methods"><b>Methods.</b> {said}</p>'
            body = self._shown(key, heading, outputs)
            block = self._join(lead, body)
            if heading.startswith("Appendix"):
                self.appendix.append(self._appendix(lead))
                continue
            parts.append(block)
        parts.append("</section>")
        return "\n".join(parts)

    @staticmethod
    def _blocks(notebook) -> list[tuple[str, str, list]]:
        """(heading, its Markdown as HTML, the outputs under it) per heading of a notebook."""
        blocks: list[tuple[str, str, list]] = []
        for cell in notebook.cells:
            if set(cell.metadata.get("tags", [])) & HIDDEN_TAGS:
                continue
            if cell.cell_type == "markdown":
                found = re.findall(r"^#{1,2}\s+(.+?)\s*$", cell.source, flags=re.M)
                text = markdown_html(cell.source)
                if found or not blocks:
                    blocks.append((found[-1] if found else "", text, []))
                else:
                    heading, lead, outputs = blocks[-1]
                    blocks[-1] = (heading, lead + text, outputs)
            elif cell.cell_type == "code" and blocks:
                blocks[-1][2].extend(cell.outputs)
        return blocks

    @staticmethod
    def _join(lead: str, body: list[str]) -> str:
        if not body:
            return f'<div class="keep">{lead}</div>'
        rest = "".join(f'<div class="block">{b}</div>' for b in body[1:])
        return f'<div class="keep">{lead}{body[0]}</div>{rest}'

    # ------------------------------------------------------------------------------------------------
    def _shown(self, key: tuple[str, str | None], heading: str, outputs: list) -> list[str]:
        items = OUTLINE.get(key)
        if items is None or self.run is None or self.reports is None:
            return self._kept(outputs, heading, images=True)
        shown: list[str] = []
        for item in items:
            if item.kind == "table":
                table = self._table(item.name)
                if table is None:
                    shown += self._kept(outputs, heading, images=False, html_only=True)
                    continue
                shown.append(table)
            elif item.kind == "figure":
                shown += self._figures(item.name)
            elif item.kind == "notebook":
                shown += self._kept(outputs, heading, images=False)
            else:
                text = self._generated(item.name)
                if text:
                    shown.append(f'<p class="generated">{inline(text)}</p>')
        return list(dict.fromkeys(shown))

    def _kept(self, outputs: list, heading: str, images: bool, html_only: bool = False) -> list[str]:
        kept = []
        for output in outputs:
            kind = output.get("output_type")
            if kind == "stream":
                continue
            if kind == "error":
                message = f'{output.get("ename", "")}: {output.get("evalue", "")}'
                kept.append(f'<pre class="error">{html.escape(message)}</pre>')
                continue
            data = output.get("data", {})
            if "image/png" in data and images and not html_only:
                png = data["image/png"]
                self.figures += 1
                kept.append(f'<figure><img src="data:image/png;base64,{str(png).strip()}" '
                            f'alt="{html.escape(heading, quote=True)}"><figcaption><b>Figure {self.figures}.'
                            f"</b> {html.escape(heading)}.</figcaption></figure>")
            elif "text/html" in data:
                kept.append(f'<div class="table">{normalise_cells(data["text/html"], self.run)}</div>')
            elif "text/markdown" in data and not html_only:
                kept.append(f'<div class="note">{markdown_html(data["text/markdown"])}</div>')
        return kept

    def _table(self, stem: str) -> str | None:
        path = self.reports / "tables" / f"{stem}.csv"
        if not path.is_file():
            return None
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        if table.empty:
            return None
        return table_html(shown_table(stem, table, self.run))

    def _figures(self, pattern: str) -> list[str]:
        folder = self.reports / "figures"
        stems = sorted(p.stem for p in folder.glob("*.png") if fnmatch.fnmatch(p.stem, pattern))
        shown = []
        for stem in stems:
            self.figures += 1
            png, width, height = image_data(folder / f"{stem}.png")
            caption = narrative.figure_caption(stem, self.run)
            shown.append(figure_html(png, width, height, self.figures, caption))
        return shown

    def _generated(self, name: str) -> str:
        if name == "replicates":
            return narrative.replicates_explained(self.run)
        if name.startswith("clustering_"):
            path = self.reports / "tables" / f"{name}.csv"
            if path.is_file():
                return narrative.clustering_sentence(named(pd.read_csv(path, dtype=str), self.run))
            return ""
        if name in ("fig5_missing", "fig6_missing"):
            family = name.replace("_missing", "_cams")
            present = [p.stem for p in (self.reports / "figures").glob(f"{family}_*.png")]
            return narrative.missing_figure_note(family, self.run, present)
        return ""

    def _appendix(self, lead: str) -> str:
        """The reporting checklists, from the library (their numbering as published), with the sources."""
        lead = re.sub(r"<(/?)h2", r"<\1h1", lead)
        table = checklist.checklist_table()
        shown = Shown(table, caption="Reporting checklists: CLAIM 2024 (44 items) and TRIPOD+AI",
                      note=f"Sources: {checklist.CLAIM_SOURCE}. {checklist.TRIPOD_SOURCE}.")
        return f'<section class="appendix">{lead}{table_html(shown)}</section>'
