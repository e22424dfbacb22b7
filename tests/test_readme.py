"""The README stays a newcomer's page: short, two commands, no result quoted by hand (numbers a run
produces live in the generated reports, so the README cannot drift from them), and every relative link in
it and in docs/ leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
#: The README's length limit: what a newcomer reads first; the details live in docs/.
MAX_README_LINES = 150
#: The commands the README gives a newcomer, in this order, in its first code block.
NEWCOMER_COMMANDS = ("make reproduce", "make test")
#: An AUC, accuracy or other share written with two decimals, as the tables print them.
RESULT_NUMBER = re.compile(r"(?<![\d.])0\.\d\d(?![\d])")
#: An AUC written with a number after it, in any form (".92", "92%", "AUC 0.9").
AUC_VALUE = re.compile(r"\bAUCs?\b\s*(?:of|=|:)?\s*\(?\s*[.\d]", re.IGNORECASE)
#: Thresholds and rules the kit states (not results of a run).
STATED = {"0.95", "0.05", "0.50"}
#: Markdown links and images: [text](target) and ![alt](target), target without its title.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def results_section(text: str) -> str:
    """The README's Results section (up to the next level-2 heading)."""
    start = text.index("## Results\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def quoted_results(text: str) -> list[str]:
    """Result numbers a text quotes: two-decimal shares other than stated rules, and AUC values."""
    return sorted(set(RESULT_NUMBER.findall(text)) - STATED) + AUC_VALUE.findall(text)


def relative_links(path: Path) -> list[tuple[str, Path]]:
    """(link as written, file it points to) for every relative link of a Markdown file."""
    links = []
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)  # code blocks hold no links
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor in the same page
        file_part = unquote(target.split("#", 1)[0])
        links.append((target, (path.parent / file_part).resolve()))
    return links


def test_the_readme_stays_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines, more than {MAX_README_LINES}: move details to docs/, link them")


def test_the_readme_gives_a_newcomer_exactly_the_two_commands():
    text = README.read_text()
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no code block with the newcomer's commands"
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert tuple(c for c in commands if c) == NEWCOMER_COMMANDS, (
        f"README.md's first code block should give exactly {NEWCOMER_COMMANDS}, got {commands}")
    sections = re.split(r"\n## ", text)
    first_steps = next(s for s in sections if s.startswith("Two commands"))
    assert all(command in first_steps for command in NEWCOMER_COMMANDS)


def test_the_readme_quotes_no_result_number():
    text = README.read_text()
    assert not quoted_results(text), (
        f"README.md quotes result numbers {quoted_results(text)}; point to reports/ instead")


def test_the_results_section_points_to_the_generated_report():
    section = results_section(README.read_text())
    for report in ("reports/smoke/report.pdf", "reports/smoke/report.html", "reports/smoke/README.md"):
        assert report in section


def test_the_check_catches_a_copied_result():
    section = "## Results\nCEM MF concatenation AUC 0.61 (0.52, 0.69).\n"
    assert set(RESULT_NUMBER.findall(section)) - STATED == {"0.61", "0.52", "0.69"}
    assert quoted_results("The CEM model reached an AUC of .92 on CDD-CESM.")
    assert quoted_results("AUC: 92% on the test set")
    assert not quoted_results("a per-breast AUC with its DeLong 95% CI; P < 0.05; 1,500 views/s")


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file():
    broken = [f"{path.relative_to(ROOT)}: {target}"
              for path in [README, *DOCS] for target, file in relative_links(path)
              if not file.exists()]
    assert not broken, f"links to files that do not exist: {broken}"


def test_the_link_check_sees_links_and_skips_urls(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[a](missing.md) ![b](img/x.png) [c](https://example.org) [d](#top) [e](page.md#x)\n"
                    "```\n[f](inside_code.md)\n```\n")
    assert [target for target, _ in relative_links(page)] == ["missing.md", "img/x.png", "page.md#x"]
    assert (tmp_path / "page.md") in [file for _, file in relative_links(page)]


def test_the_readme_links_every_page_of_docs():
    linked = {file for _, file in relative_links(README)}
    missing = [doc.name for doc in DOCS if doc.resolve() not in linked]
    assert not missing, f"docs/ pages the README does not link: {missing}"
