"""The report laid out by real renderers: no table, figure or image runs past the page's right edge.

WeasyPrint (the renderer that writes report.pdf) lays the HTML out on A4 with the report's print
stylesheet, and every table, figure, image and preformatted block's border box is compared with the page's
content box. A headless Chromium (where one is installed: `apt-get install chromium`) lays the same HTML
out as a screen at the widths a reader uses, measures every such element's box in the page (a script the
test adds to a copy), and saves a full-page screenshot beside it. The run laid out is the smoke run
committed in reports/smoke (its tables and figures), under the sections of the study notebooks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
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


#: Added to a copy of the report: after the layout, every checked element's right edge against the page's
#: width, written into the DOM that Chromium dumps.
MEASURE = """<script>
window.addEventListener("load", () => {
  const width = document.documentElement.clientWidth;
  const boxes = [...document.querySelectorAll("table, img, figure, pre")];
  const wide = boxes
    .map((el, i) => [el.tagName.toLowerCase(), i, Math.round(el.getBoundingClientRect().right)])
    .filter(([, , right]) => right > width + 1);
  const scroll = document.documentElement.scrollWidth > width + 1;
  const out = document.createElement("pre");
  out.id = "layout-measure";
  const height = document.documentElement.scrollHeight;
  out.textContent = JSON.stringify({width, height, checked: boxes.length, wide, scroll});
  document.body.appendChild(out);
});
</script>"""


MAX_SCREENSHOT = 16_384


def chromium() -> str | None:
    """A headless-capable Chromium or Chrome on this machine (None when there is none)."""
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


def browser_layout(html_path: Path, width: int, browser: str) -> dict:
    """Chromium's layout of the report at a window `width` px: the elements past the right edge."""
    measured = html_path.with_name(f"measured_{width}.html")
    measured.write_text(html_path.read_text().replace("</body>", MEASURE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--virtual-time-budget=20000"]
    dom = subprocess.run([browser, *flags, f"--window-size={width},1000", "--dump-dom", measured.as_uri()],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    found = re.search(r'<pre id="layout-measure">(.*?)</pre>', dom, flags=re.S)
    assert found, "the measuring script did not run"
    layout = json.loads(found.group(1).replace("&quot;", '"'))
    # The whole page in one picture, up to the tallest screenshot Chromium takes.
    tall = min(int(layout["height"]), MAX_SCREENSHOT)
    subprocess.run([browser, *flags, f"--window-size={width},{tall}",
                    f"--screenshot={html_path.with_name(f'screen_{width}.png')}", measured.as_uri()],
                   capture_output=True, timeout=300, check=True)
    return layout


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 1024])
def test_no_table_or_figure_runs_off_a_browser_window(laid_out, width):
    browser = chromium()
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    layout = browser_layout(laid_out, width, browser)
    assert layout["checked"] > 50 and layout["width"] <= width
    assert not layout["wide"] and not layout["scroll"], layout
    assert laid_out.with_name(f"screen_{width}.png").stat().st_size > 10_000


@pytest.mark.slow
def test_the_browser_check_sees_a_table_wider_than_the_window(tmp_path):
    """The check itself: a table of 40 wide columns is caught at 1024 px."""
    browser = chromium()
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    cells = "".join(f"<td>column {k} of a table that does not fit</td>" for k in range(40))
    page = tmp_path / "wide.html"
    page.write_text(f"<html><body><table><tr>{cells}</tr></table></body></html>")
    layout = browser_layout(page, 1024, browser)
    assert layout["wide"] and layout["scroll"]
