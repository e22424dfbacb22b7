"""The report a reader gets: paper formatting, no reprs or stderr, title page, contents, tidy folders."""

from __future__ import annotations

import math
import re
import shutil
import subprocess

import nbformat
import numpy as np
import pandas as pd
import pytest

from cemlib.results import report


@pytest.mark.parametrize(
    ("value", "printed"),
    [(0.118, "0.118"), (162.8, "162.8"), (-0.24, "-0.24"), (3.0, "3"), (np.int64(180), "180"),
     (math.nan, "n/a"), (np.float64(0.1234567), "0.123"), (True, "yes"),
     ("0.92 (0.88, 0.96)", "0.92 (0.88, 0.96)")],
)
def test_cells_print_as_the_paper_prints_them(value, printed):
    assert report.format_cell(value) == printed


def test_styled_table_has_no_six_decimal_floats_and_keeps_number_cells_on_one_line():
    table = pd.DataFrame({"Model": ["CEM MF fusion (concatenation)"], "AUC": ["0.92 (0.88, 0.96)"],
                          "P": ["< .001"], "Z": [-4.26], "val loss": [0.118]})
    html = report.style_table(table).to_html()
    assert "0.118000" not in html and "-4.260000" not in html
    assert ">0.118<" in html and ">-4.26<" in html
    found = re.findall(r'<td [^>]*class="([^"]*)"[^>]*>([^<]*)</td>', html)
    cells = {text: classes for classes, text in found}
    assert "num" in cells["0.92 (0.88, 0.96)"] and "num" in cells["&lt; .001"]
    assert "num" not in cells["CEM MF fusion (concatenation)"]
    assert "white-space: nowrap" in html


def _executed(tmp_path, name="00_cohort"):
    params = nbformat.v4.new_code_cell('profile = "smoke"')
    params.metadata["tags"] = ["parameters"]
    shown = nbformat.v4.new_code_cell("x")
    shown.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="train: 10%|# | 1/10\rtrain: 100%|###|\n"),
        nbformat.v4.new_output("stream", name="stdout", text="patients kept: 12\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "PosixPath('/home/me/runs/x')"},
                               execution_count=1),
        nbformat.v4.new_output("display_data", data={"text/html": "<table><tr><td>0.92</td></tr></table>"}),
    ]
    hidden = nbformat.v4.new_code_cell("model = 1")
    hidden.metadata["tags"] = ["explore"]
    hidden.outputs = [nbformat.v4.new_output("stream", name="stdout", text="only in the notebook\n")]
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(f"# {name}\n\nIntro."), params,
        nbformat.v4.new_markdown_cell("## Table 1: patients"), shown, hidden])
    notebook.metadata["papermill"] = {"input_path": str(tmp_path / "notebooks" / f"{name}.ipynb"),
                                      "output_path": "/elsewhere/executed/x.ipynb"}
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(notebook, str(path))
    return path


def test_cleaning_an_executed_notebook_moves_stderr_beside_it_and_drops_machine_paths(tmp_path):
    path = _executed(tmp_path)
    taken = report.clean_executed(path, project_root=tmp_path)
    assert "100%" in taken and "\r" not in taken
    notebook = nbformat.read(str(path), as_version=4)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not any(o.get("name") == "stderr" for o in outputs)
    assert any(o.get("text") == "patients kept: 12\n" for o in outputs)
    assert path.with_suffix(".stderr.txt").read_text() == taken
    expected = {"input_path": "notebooks/00_cohort.ipynb", "output_path": "x.ipynb"}
    assert notebook.metadata["papermill"] == expected


def test_report_html_has_title_page_contents_and_only_what_a_study_shows(tmp_path):
    paths = [_executed(tmp_path, "00_cohort"), _executed(tmp_path, "01_preprocessing")]
    profile = {"name": "smoke", "device": "cpu", "reports": str(tmp_path)}
    page = report.report_html(profile, paths)
    assert f"<title>{report.STUDY_TITLE}" in page and "Notebook" not in page
    for fact in ("Profile", "Date", "git commit", "Python", "torch", "CPU", "threads", "Kernel settings",
                 "GPU"):
        assert fact in page
    headings = re.findall(r'<h([12]) id="(s\d+)">([^<]*)</h\1>', page)
    assert [text for _, _, text in headings] == ["00_cohort", "Table 1: patients", "01_preprocessing",
                                                 "Table 1: patients", "Appendix: run log"]
    for _, anchor, text in headings:
        assert f'<a href="#{anchor}">{text}</a>' in page
    # printed lines never open a section: they are kept for the run-log appendix, after every section
    assert page.count("patients kept: 12") == 2 and "<td>0.92</td>" in page
    assert page.index("patients kept: 12") > page.index('<h1 id="s5">Appendix: run log</h1>')
    for unwanted in ("PosixPath", "10%|", "only in the notebook", "anchor-link", 'profile = "smoke"'):
        assert unwanted not in page


@pytest.mark.skipif(shutil.which("gs") is None, reason="reads the PDF's text with Ghostscript")
def test_pdf_has_numbered_pages_but_an_unnumbered_title_page(tmp_path):
    paths = [_executed(tmp_path, "00_cohort")]
    out = report.export_report({"name": "smoke", "reports": str(tmp_path)}, paths)
    pages = []
    for number in (1, 2, 3):
        command = ["gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=txtwrite", f"-dFirstPage={number}",
                   f"-dLastPage={number}", "-sOutputFile=-", str(out["pdf"])]
        text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        pages.append(text)
    assert "supplementary report" in pages[0].lower() and "/ 3" not in pages[0]
    assert "Contents" in pages[1] and "2 / 3" in pages[1]
    assert "Table 1: patients" in pages[2] and "3 / 3" in pages[2]


def test_outputs_an_earlier_run_left_are_removed(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "tables").mkdir()
    for name in ("figures/fig5.png", "figures/fig6_old.png", "tables/t.csv"):
        (tmp_path / name).write_text("x")
    before = report.output_files(tmp_path)
    (tmp_path / "figures" / "fig5.png").write_text("new")
    (tmp_path / "tables" / "u.csv").write_text("new")
    written = report.written_between(before, report.output_files(tmp_path))
    assert written == ["figures/fig5.png", "tables/u.csv"]
    removed = report.remove_stale(tmp_path, {*written, "tables/t.csv"})
    assert removed == ["figures/fig6_old.png"]
    assert sorted(report.output_files(tmp_path)) == ["figures/fig5.png", "tables/t.csv", "tables/u.csv"]


def test_pseudonym_is_stable_and_hides_the_patient_id():
    first = report.pseudonym("ge", "Doe^Jane_1961")
    assert first == report.pseudonym("ge", "Doe^Jane_1961")
    assert re.fullmatch(r"P-[0-9a-f]{8}", first)
    assert first != report.pseudonym("ge", "Doe^John_1960")
    assert "Doe" not in first


def test_raw_qc_panels_are_windowed_on_the_breast_not_the_background():
    from matplotlib.figure import Figure

    from cemlib.results.figures import breast_display_range, tidy_qc_figure

    rng = np.random.default_rng(0)
    des = np.full((64, 48), 250.0)  # the detector's background
    des[8:56, :30] = 2000 + rng.normal(0, 20, (48, 30))  # the breast, in a narrow band far above it
    low, high = breast_display_range(des)
    assert 1900 < low < 2000 < high < 2100
    figure = Figure()
    ax = figure.subplots()
    ax.imshow(des, vmin=des.min(), vmax=des.max())
    ax.set_title("P-1 LCC\nDES raw")
    tidy_qc_figure(figure, "P-1")
    assert ax.get_title() == "LCC\nDES raw" and figure.get_suptitle() == "P-1"
    assert ax.get_images()[0].get_clim() == pytest.approx((low, high))


def test_the_summary_picture_is_the_report_page_it_names(tmp_path):
    """page_picture renders the asked page of a PDF (pdfium), at the width asked, with its text dark on
    white: the README's picture of a report page is the report's own page."""
    import weasyprint
    from PIL import Image

    from cemlib.results.report import page_picture

    html = ("<html><body><h1>Title page</h1><div style='page-break-after: always'></div>"
            "<h1 style='font-size: 60pt'>Summary</h1><p>" + "line of text " * 200 + "</p></body></html>")
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(weasyprint.HTML(string=html).write_pdf())
    first, second = (Image.open(page_picture(pdf, tmp_path / f"p{k}.png", page=k, width_px=600)).convert("L")
                     for k in (0, 1))
    assert first.size[0] == second.size[0] == 600 and first.size[1] > 800
    dark = [int((np.asarray(image) < 128).sum()) for image in (first, second)]
    assert dark[1] > 3 * dark[0] > 0  # the summary page holds far more text than the title page


def _png(width: int, height: int, seed: int) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(120, 40, (height, width, 3)), 0, 255).astype(np.uint8)  # a photo-like figure
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_pdf_prints_wide_figures_narrower_and_the_html_keeps_them(tmp_path):
    import base64
    import io

    from PIL import Image

    wide, narrow = _png(2400, 900, 0), _png(600, 300, 1)
    page = "".join(f'<p><img src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'
                   for png in (wide, narrow))
    printed = report.print_figures(page)
    sources = re.findall(r'src="data:image/(png|jpeg);base64,([^"]+)"', printed)
    first = Image.open(io.BytesIO(base64.b64decode(sources[0][1])))
    assert first.size == (report.PDF_FIGURE_WIDTH, 450) and len(base64.b64decode(sources[0][1])) < len(wide)
    assert sources[1] == ("png", base64.b64encode(narrow).decode())  # narrow enough: untouched
    html_path = tmp_path / "report.html"
    html_path.write_text(f"<html><body>{page}</body></html>", encoding="utf-8")
    pdf = report.html_to_pdf(html_path, tmp_path / "report.pdf")
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size < len(wide)
    assert html_path.read_text(encoding="utf-8").count(base64.b64encode(wide).decode()) == 1
