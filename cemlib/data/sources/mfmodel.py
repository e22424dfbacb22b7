"""The authors' layout (MF_MODEL): a folder per patient and a label workbook.

    ROOT/label.xlsx                                       the workbook (ROOT/<folder>/label.xlsx also read)
    ROOT/<folder>/<name>_<ENERGY>_<VIEW>_<SIDE>.dcm        ENERGY LOW_ENERGY|RECOMBINED, VIEW CC|MLO, SIDE R|L
    (the patient folders may also sit in ROOT/data/, as in the authors' instructions)

label.xlsx, sheet "Sheet1" (or the only sheet): column D holds an image name (the file name without
.dcm, e.g. patient1_LOW_ENERGY_CC_R), column E its label as text, '1' malignant or '0' benign; the first
rows are empty. The sheet has one row per image, and every image of a breast carries that breast's
label, so a breast's label is the one its listed images agree on. Names are matched to files ignoring
case.

Patient ids: folder names in this layout may be patients' names, so the manifest's patient_id is a
pseudonym, "MF" + the first 10 hex digits of the sha256 of the folder name. It is stable (the same folder
always gets the same id) and anyone holding the folder names can recompute it; it keeps names out of
predictions, tables and reports. Exclusion reasons name images by pseudonym, energy, view and side
(e.g. "MF1A2B3C4D5E LE CC L"), never by file name. The path columns store the patient folder and the
file name as tokens (``@MF1A2B3C4D5E/@MF9F8E7D6C5B``, cemlib.data.paths), which cemlib finds again on
disk; the on-disk names are written to the private mappings ``<manifest>/private/patient_names.csv`` and
``private/paths.csv`` for the user alone.

Problems with the workbook as a whole (unreadable, no names in column D, no labels in column E, a
row that is not an image name) raise ValueError naming the workbook (``label.xlsx``, or ``label.xlsx``
of a patient by pseudonym) and the row, never the cell's text or the folder; a bad label of one exam
(not 0/1, breasts' images disagreeing, a breast with no listed image) excludes that patient.
"""

from __future__ import annotations

import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl

from cemlib.core.views import SIDES, NamedView
from cemlib.data import paths
from cemlib.data.manifest import Manifest, assemble, exclusion, parse_label
from cemlib.data.sources.dicom import Candidate, check_candidates, dicom_files, rel

STEM = re.compile(r"^(?P<name>.+)_(?P<energy>LOW_ENERGY|RECOMBINED)_(?P<view>CC|MLO)_(?P<side>[RL])$",
                  re.IGNORECASE)
ENERGY = {"LOW_ENERGY": "LE", "RECOMBINED": "DES"}
#: The layout as shown to users; its file names begin with the patient's name (the patient key).
DISPLAY_NAME = "MF_MODEL"
LABEL_FILE = "label.xlsx"
SHEET = "Sheet1"
NAME_COLUMN, LABEL_COLUMN = 4, 5  # D and E, 1-based
DATASET = "mfmodel"
NUMBER = re.compile(r"^[-+]?\d{1,6}([.,]\d{1,6})?$")


def pseudonym(folder_name: str) -> str:
    """Stable pseudonymous patient id for a folder name."""
    return paths.pseudonym(folder_name, "MF")


def stored_path(rel_path: str) -> str:
    """How the tables store a path: the patient folder and the file name (both may hold a name) as tokens."""
    return paths.tokenise(rel_path, "MF", lambda part: part == "data")


def shown_value(raw: object) -> str:
    """A workbook cell as a reason shows it: a number or a text of one or two characters as it is, any
    longer text withheld (it may hold a name: column D's image names do)."""
    if raw is None:
        return "empty"
    text = str(raw).strip()
    if isinstance(raw, int | float) or NUMBER.match(text) or len(text) <= 2:
        return repr(raw)
    return f"a text of {len(text)} characters (not shown: it may hold a name)"


def shown_workbook(path: Path, root: Path | None = None) -> str:
    """How messages name a workbook: label.xlsx at the root, or of a patient folder by its pseudonym."""
    if root is not None and path.parent != root:
        return f"{path.name} of patient {pseudonym(path.parent.name)}"
    return path.name


@dataclass
class LabelSheet:
    """Image labels read from label workbooks: name (case-folded) -> [(source, raw label)]."""

    entries: dict[str, list[tuple[str, object]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, name: str, source: str, raw: object) -> None:
        """Record one row's label for an image name."""
        self.entries[name.casefold()].append((source, raw))

    def lookup(self, stem: str) -> list[tuple[str, object]]:
        """All (source, raw label) rows naming an image stem."""
        return self.entries.get(stem.casefold(), [])


def _cell(row: tuple, column: int) -> object:
    """Value of a 1-based column of a row tuple; empty strings and missing cells as None."""
    value = row[column - 1] if len(row) >= column else None
    if isinstance(value, str):
        value = value.strip() or None
    return value


def _sheet(path: Path, shown: str):
    """The label worksheet of a workbook: Sheet1, or the only sheet; ValueError naming it as `shown`."""
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{shown}: not a readable .xlsx workbook ({type(exc).__name__})") from exc
    if SHEET in workbook.sheetnames:
        return workbook[SHEET]
    if len(workbook.sheetnames) == 1:
        return workbook.worksheets[0]
    raise ValueError(f"{shown}: no sheet named {SHEET!r} ({len(workbook.sheetnames)} sheets)")


def read_label_sheet(path: Path, into: LabelSheet | None = None, root: Path | None = None) -> LabelSheet:
    """Image labels from one workbook (column D name, column E label); ValueError for a malformed sheet.

    Messages name the workbook by ``shown_workbook`` (relative to `root`) and never show column D's text
    (image names hold the patient's name) nor a text label."""
    sheet = into or LabelSheet()
    seen_names = seen_labels = 0
    first_content_row = True
    shown = shown_workbook(path, root)
    for number, row in enumerate(_sheet(path, shown).iter_rows(values_only=True), start=1):
        name, raw = _cell(row, NAME_COLUMN), _cell(row, LABEL_COLUMN)
        if name is None and raw is None:
            continue
        header_candidate, first_content_row = first_content_row, False
        if name is None:
            raise ValueError(f"{shown} row {number}: label {shown_value(raw)} in column E but no image name "
                             "in column D")
        stem = str(name)
        stem = stem[:-4] if stem.lower().endswith(".dcm") else stem
        if not STEM.match(stem):
            if header_candidate and parse_label(raw) is None:
                continue  # a header row such as "image | label"
            raise ValueError(f"{shown} row {number}: column D holds {shown_value(name)}, not an image name "
                             "like <name>_LOW_ENERGY_CC_R (are the columns shifted?)")
        seen_names += 1
        seen_labels += raw is not None
        sheet.add(stem, f"{shown} row {number}", raw)
    if seen_names == 0:
        raise ValueError(f"{shown}: column D of sheet {SHEET} holds no image names "
                         "(expected <name>_LOW_ENERGY|RECOMBINED_CC|MLO_R|L, one per row)")
    if seen_labels == 0:
        raise ValueError(f"{shown}: column E of sheet {SHEET} holds no labels "
                         "(expected '1' or '0' per image)")
    return sheet


def data_folder(root: Path) -> Path:
    """Where the patient folders are: ROOT/data when it exists, else ROOT."""
    return root / "data" if (root / "data").is_dir() else root


def patient_folders(root: Path) -> list[Path]:
    """Patient folders: sub-folders holding .dcm files (hidden ones and 'manifest' skipped)."""
    base = data_folder(root)
    return [p for p in sorted(base.iterdir())
            if p.is_dir() and not p.name.startswith(".") and p.name != "manifest" and dicom_files(p)]


def label_files(root: Path) -> list[Path]:
    """label.xlsx at the root and in each patient folder (names compared ignoring case)."""
    places = [root, *patient_folders(root)]
    return [p for place in places for p in sorted(place.iterdir())
            if p.is_file() and p.name.lower() == LABEL_FILE]


def detect(root: str | Path) -> bool:
    """True when a label.xlsx is present and a patient folder holds <name>_LOW_ENERGY_CC_R-style files."""
    root = Path(root)
    if not root.is_dir():
        return False
    folders = patient_folders(root)
    named = any(STEM.match(p.stem) for folder in folders[:5] for p in dicom_files(folder))
    return named and bool(label_files(root))


def shown_image(stem: str) -> str:
    """How reasons name an image: its patient's pseudonym, energy, view and side (never the file name)."""
    match = STEM.match(stem)
    if match is None:
        return "an image"
    return (f"{pseudonym(match['name'])} {ENERGY[match['energy'].upper()]} {match['view'].upper()} "
            f"{match['side'].upper()}")


def _breast_label(side: str, stems: list[str], sheet: LabelSheet) -> tuple[int | None, str, str]:
    """(label, kind, reason) of one breast from its images' rows; label None with a reason when unusable.

    Reasons name images by ``shown_image`` (pseudonym, energy, view, side), since file names in this
    layout may hold the patient's name.
    """
    rows = [(stem, source, raw) for stem in stems for source, raw in sheet.lookup(stem)]
    if not rows:
        listed = ", ".join(shown_image(stem) for stem in stems) or "none found"
        return None, "missing_label", (f"no label for breast {side}: none of its images "
                                       f"({listed}) is listed in {LABEL_FILE}")
    for stem, source, raw in rows:
        if parse_label(raw) is None:
            reason = f"{source}: label of {shown_image(stem)} is {shown_value(raw)}, expected '1' or '0'"
            return None, "bad_label", reason
    values = {parse_label(raw) for _, _, raw in rows}
    if len(values) > 1:
        listing = "; ".join(f"{source} {shown_image(stem)}={parse_label(raw)}" for stem, source, raw in rows)
        return None, "label_conflict", f"the images of breast {side} carry different labels: {listing}"
    return values.pop(), "", ""


def scan(root: str | Path, workers: int | None = None, dataset: str | None = None,
         check_views: bool = True) -> Manifest:
    """Manifest of an MF_MODEL-layout folder (split left empty); ``check_views`` as in manifest.assemble."""
    root = Path(root)
    workbooks = label_files(root)
    if not workbooks:
        raise FileNotFoundError(f"{root}: no {LABEL_FILE} (MF_MODEL layout needs the label workbook)")
    sheet = LabelSheet()
    for workbook in workbooks:
        read_label_sheet(workbook, sheet, root)

    candidates: list[Candidate] = []
    rows: list[dict] = []
    breasts: list[dict] = []
    prefixes_on_disk: set[str] = set()
    for folder in patient_folders(root):
        patient_id = pseudonym(folder.name)
        stems_by_side: dict[str, list[str]] = {side: [] for side in SIDES}
        for path in dicom_files(folder):
            match = STEM.match(path.stem)
            if not match:
                rows.append(exclusion(patient_id, "a .dcm file whose name is not "
                                      "<name>_LOW_ENERGY|RECOMBINED_CC|MLO_R|L.dcm (the path column holds "
                                      "it, private/paths.csv its name)",
                                      "unrecognised_name", path=rel(path, root)))
                continue
            side = match["side"].upper()
            stems_by_side[side].append(path.stem)
            prefixes_on_disk.add(match["name"].casefold())
            candidates.append(Candidate(patient_id, side, match["view"].upper(),
                                        ENERGY[match["energy"].upper()], rel(path, root)))
        for side in SIDES:
            label, kind, reason = _breast_label(side, stems_by_side[side], sheet)
            if label is None:
                rows.append(exclusion(patient_id, reason, kind, side))
            else:
                breasts.append({"patient_id": patient_id, "side": side, "label": label})
    rows += _unmatched_sheet_rows(sheet, prefixes_on_disk)

    images, bad_headers = check_candidates(root, candidates, workers)
    for row in bad_headers:  # header reasons start with the file name, which may be the patient's name
        stem = Path(row["path"]).stem
        row["reason"] = row["reason"].replace(Path(row["path"]).name, shown_image(stem))
    manifest = assemble(dataset or DATASET, root, images, breasts, rows + bad_headers, workers=workers,
                        stored_path=stored_path, check_views=check_views)
    manifest.private_names = {pseudonym(f.name): f.name for f in patient_folders(root)}
    return manifest


def _unmatched_sheet_rows(sheet: LabelSheet, prefixes_on_disk: set[str]) -> list[dict]:
    """One exclusion per name prefix listed in the workbook of which no file exists at all."""
    missing: dict[str, list[str]] = defaultdict(list)
    for name, entries in sheet.entries.items():
        prefix = STEM.match(name)["name"]  # type: ignore[index]
        if prefix not in prefixes_on_disk:
            missing[prefix] += [source for source, _ in entries]
    return [exclusion(pseudonym(prefix), f"{LABEL_FILE} lists {len(sources)} image(s) of this patient "
                      f"({sources[0]}{', ...' if len(sources) > 1 else ''}) with no file on disk",
                      "no_images")
            for prefix, sources in sorted(missing.items())]


def view_from_name(path: Path) -> NamedView | None:
    """What an MF_MODEL file name (<name>_LOW_ENERGY_CC_R.dcm) says; the name part is the patient key."""
    match = STEM.match(path.stem) if path.suffix.lower() == ".dcm" else None
    if match is None:
        return None
    return NamedView(match["side"].upper(), match["view"].upper(), ENERGY[match["energy"].upper()],
                     match["name"])
