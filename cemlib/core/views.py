"""Names of sides, views and energies, and the fixed order of the four views of an exam."""

from dataclasses import dataclass

SIDES = ("L", "R")
VIEWS = ("CC", "MLO")
ENERGIES = ("LE", "DES")

#: Order of the four views along the view axis of every patient-level tensor (batch, 4, C, H, W).
VIEW_ORDER = ("LCC", "LMLO", "RCC", "RMLO")


def view_key(side: str, view: str) -> str:
    """The view's name in VIEW_ORDER, e.g. ('L', 'CC') -> 'LCC'."""
    key = f"{side}{view}"
    if key not in VIEW_ORDER:
        raise ValueError(f"unknown side/view {side!r}/{view!r}; expected one of {VIEW_ORDER}")
    return key


def view_index(side: str, view: str) -> int:
    """Position of (side, view) along the view axis."""
    return VIEW_ORDER.index(view_key(side, view))


def contralateral(side: str) -> str:
    """The other breast's side."""
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; expected 'L' or 'R'")
    return "R" if side == "L" else "L"


@dataclass(frozen=True)
class NamedView:
    """What an image file's name says: side, view, energy, and the patient key it carries ('' if none)."""

    side: str
    view: str
    energy: str
    patient_key: str = ""
