"""The report laid out by a real renderer: no table, figure or image runs past the page's right edge.

WeasyPrint (the renderer that writes report.pdf; no browser is installed here) lays the HTML out on A4 with
the report's print stylesheet, and every table, figure, image and preformatted block's border box is
compared with the page's content box. The run laid out is the smoke run committed in reports/smoke (its
tables and figures), under the sections of the study notebooks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cemlib.core.environment import describe_environment
from cemlib.core.resources import notebooks_dir
from cemlib.core.settings import load_profile
from cemlib.results import report
from cemlib.study.pipeline import STEPS

COMMITTED_RUN = Path(__file__).resolve().parents[1] / "reports" / "smoke"
CHECKED_TAGS = ("table", "img", "figure", "pre")


def overflowing_boxes(html_path: Path) -> tuple[int, list[tuple[int, str, float]]]:
    """(pages, [(page, tag, points past the right edge of the content box)]) of a laid-out HTML file."""
    import weasyprint

    document = weasyprint.HTML(filename=str(html_path)).render()
    found = []
    for number, page in enumerate(document.pages, start=1):
        box = page._page_box
        right = box.content_box_x() + box.width
        for child in box.descendants():
            tag = getattr(child, "element_tag", None)
            if tag in CHECKED_TAGS and hasattr(child, "border_box_x"):
                past = child.border_box_x() + child.border_width() - right
                if past > 0.5:
                    found.append((number, tag, round(past, 1)))
    return len(document.pages), found


@pytest.fixture(scope="module")
def laid_out(tmp_path_factory) -> Path:
    if not (COMMITTED_RUN / "tables" / "metrics.csv").is_file():
        pytest.skip("no committed smoke run beside the tests")
    profile = load_profile("smoke", {"reports": str(COMMITTED_RUN)})
    notebooks = [notebooks_dir() / f"{name}.ipynb" for name in STEPS]
    page = report.report_html(profile, notebooks, env=describe_environment())
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(page)
    return path


@pytest.mark.slow
def test_no_table_or_figure_runs_off_the_page(laid_out):
    pages, found = overflowing_boxes(laid_out)
    assert pages > 10
    assert not found, f"boxes past the right edge (page, tag, points): {sorted(set(found))}"


@pytest.mark.slow
def test_every_figure_has_a_numbered_caption_and_alt_text(laid_out):
    page = laid_out.read_text()
    figures = re.findall(r"<figure>.*?</figure>", page, flags=re.S)
    assert figures
    numbers = [int(n) for n in re.findall(r"<b>Figure (\d+)\.</b>", page)]
    assert numbers == list(range(1, len(figures) + 1))
    alts = re.findall(r'<img [^>]*alt="([^"]*)"', page)
    assert len(alts) == len(figures) and all(len(alt) > 20 and alt != "figure" for alt in alts)
