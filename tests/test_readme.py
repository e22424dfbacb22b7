"""The README quotes no result by hand: numbers a run produces live in the generated reports, so the
README cannot drift from them."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
#: An AUC, accuracy or other share written with two decimals, as the tables print them.
RESULT_NUMBER = re.compile(r"(?<![\d.])0\.\d\d(?![\d])")
#: Thresholds and rules the kit states (not results of a run).
STATED = {"0.95", "0.05", "0.50"}


def results_section(text: str) -> str:
    """The README's Results section (up to the next level-2 heading)."""
    start = text.index("## Results\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def test_the_results_section_quotes_no_result_number():
    section = results_section(README.read_text())
    quoted = sorted(set(RESULT_NUMBER.findall(section)) - STATED)
    assert not quoted, f"README's Results section quotes result numbers {quoted}; point to reports/ instead"


def test_the_check_catches_a_copied_auc():
    section = "## Results\nCEM MF concatenation AUC 0.61 (0.52, 0.69).\n"
    assert set(RESULT_NUMBER.findall(section)) - STATED == {"0.61", "0.52", "0.69"}
