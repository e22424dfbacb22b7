"""Finding the views of one exam in a folder: which file shows which side, view and energy, and how each
file and the exam are named in anything shown (never by a folder or file name that may be a patient's).

STUDY holds the eight CEM images (LE and DES of LCC, LMLO, RCC, RMLO) or the four FFDM images (taken as LE)
of one exam, directly or one folder down (a CDD-CESM exam keeps its LE and subtracted images in two
folders). A file's side, view and energy come from its name when the name follows a known layout: each
source adapter answers for its own file names (cemlib.data.sources.view_from_name), and a named DICOM's
header must agree with its name (data.sources.check_mg_header). Other DICOM files (any name, ``.dcm`` or no
extension) are placed by their tags: ImageLaterality (or Laterality), ViewPosition (or the view code), and
LOW_ENERGY / RECOMBINED in ImageType or SeriesDescription (neither: an FFDM image, taken as LE). Two files
for one view, files of two patients, a missing view, or a CEM model given no DES images raise `ExamError`
naming the files or the views; other views (ML, XCCL, FB), high-energy images and non-MG objects are left
out with a note.

Privacy. The exam is shown only under its layout adapter's pseudonym (MF_MODEL's, or the GE layout's, which
keeps synthetic SYN#### ids); a file is shown by its layout name when that name carries no patient's name
(GE, CDD-CESM, INbreast), with the pseudonym in place of the name part (MF_MODEL), and otherwise by its
place in the folder ("file 3 of 9", in name order). PatientName, PatientID and the birth date are read from
the headers only to replace any occurrence in what is shown by "[redacted]".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cemlib.core.views import SIDES, VIEW_ORDER, VIEWS
from cemlib.core.vocab import INPUT_ENERGIES, check_inputs
from cemlib.data import sources
from cemlib.data.sources import ge
from cemlib.data.sources.dicom import (
    ImageRejected,
    check_mg_header,
    header_energies,
    header_text,
    header_view,
    read_header,
)

#: Default report folder name of one-exam mode (created in the current directory, never in the exam).
REPORT_DIR = "cem_report"
IMAGE_SUFFIXES = {".dcm", ".dicom", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
REDACTED = "[redacted]"
#: Files placed by their DICOM tags rather than by their names.
TAGS = "tags"
#: Layouts whose file names begin with the patient's name (the patient key, replaced when shown).
NAME_KEYED = frozenset({"mfmodel"})
ENERGY_WORDS = {"LE": "low energy (LE)", "DES": "recombined (DES)"}


class ExamError(ValueError):
    """An exam folder that cannot be scored: missing, duplicated or contradictory views (names them)."""


# ------------------------------------------------------------------------------------------ finding views


@dataclass(frozen=True)
class ExamFile:
    """One image of the exam: where it is and what it shows."""

    path: Path
    side: str
    view: str
    energy: str
    layout: str  # the adapter whose names it follows (cemlib.data.sources.ADAPTERS), or TAGS
    exam_key: str = ""  # what the name says about the patient (CDD-CESM number, INbreast hash, MF name)


@dataclass
class ExamFiles:
    """The images found in an exam folder, keyed by (side, view, energy), and notes on files left out."""

    folder: Path
    files: dict[tuple[str, str, str], ExamFile]
    skipped: list[str] = field(default_factory=list)
    unrecognised: list[Path] = field(default_factory=list)  # files of an image type, names of no layout
    private: tuple[str, ...] = ()  # header identifiers, kept only to redact them
    candidates: tuple[Path, ...] = ()  # every file looked at, in name order

    @property
    def energies(self) -> set[str]:
        """Energies present (LE, DES)."""
        return {key[2] for key in self.files}

    @property
    def layouts(self) -> list[str]:
        """Layouts the files were recognised by, as shown to users, in first-seen order."""
        return list(dict.fromkeys(layout_title(f.layout) for f in self.files.values()))

    def label(self) -> str:
        """The exam's name as shown: the pseudonym its layout's manifest gives the folder name."""
        if any(f.layout == "mfmodel" for f in self.files.values()):
            return sources.load_adapter("mfmodel").pseudonym(self.folder.name)
        # The folder name may be a patient's name: shown as the GE layout's pseudonym.
        return ge.pseudonym(self.folder.name)

    def show(self, path: Path) -> str:
        """How a file is named in anything shown: its layout name where that carries no patient's name,
        the pseudonym in place of an MF_MODEL name part, otherwise its place in the folder."""
        item = next((f for f in self.files.values() if f.path == path), None) or _named(path)
        if item is not None and item.layout != TAGS:
            if item.layout not in NAME_KEYED:
                return self.redact_identifiers(path.name)
            return self.redact_identifiers(self.label() + path.name[len(item.exam_key):])
        if path in self.candidates:
            return f"file {self.candidates.index(path) + 1} of {len(self.candidates)} (in name order)"
        return "a file"

    def shown_name(self, item: ExamFile) -> str:
        """A file's name as shown in reports (see `show`)."""
        return self.show(item.path)

    def redact(self, text: str) -> str:
        """`text` with every file path or name in the folder replaced as `show` names it, the folder by the
        exam's pseudonym, then every header identifier (name parts, ID, birth date) by [redacted]."""
        for path in sorted(self.candidates, key=lambda p: len(str(p)), reverse=True):
            text = text.replace(str(path), self.show(path))
        for path in sorted(self.candidates, key=lambda p: len(p.name), reverse=True):
            pattern = rf"(?<![A-Za-z0-9_.-]){re.escape(path.name)}(?![A-Za-z0-9_.-])"
            text = re.sub(pattern, lambda _, path=path: self.show(path), text)
        text = text.replace(str(self.folder), self.label())
        label = self.label()
        text = re.sub(rf"(?:(?<=[/\\])|^){re.escape(self.folder.name)}(?![A-Za-z0-9])", lambda _: label, text)
        return self.redact_identifiers(text)

    def redact_identifiers(self, text: str) -> str:
        """`text` with every header identifier (name parts, ID, birth date) replaced by [redacted]."""
        for token in sorted(self.private, key=len, reverse=True):
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", REDACTED, text,
                          flags=re.IGNORECASE)
        return text


def layout_title(layout: str) -> str:
    """A layout's name as shown to users ('MF_MODEL', 'CDD-CESM', ...; 'DICOM tags' for TAGS)."""
    return "DICOM tags" if layout == TAGS else sources.display_name(layout)


def _named(path: Path) -> ExamFile | None:
    """The ExamFile a known layout's file name makes of `path` (None for any other name)."""
    item = parse_file_name(path)
    return item if isinstance(item, ExamFile) else None


def _candidate_files(folder: Path, exclude: Iterable[Path]) -> list[Path]:
    """Visible files in `folder` and its visible sub-folders (one level), report folders excluded."""
    excluded = {p.resolve() for p in exclude}
    found = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or child.resolve() in excluded:
            continue
        if child.is_file():
            found.append(child)
        elif child.is_dir() and child.name != REPORT_DIR:
            found += [p for p in sorted(child.iterdir()) if p.is_file() and not p.name.startswith(".")]
    return found


def _is_dicom(path: Path) -> bool:
    """A .dcm/.dicom file, or an extension-less file with the DICM preamble."""
    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return True
    if suffix:
        return False
    with path.open("rb") as handle:
        return handle.read(132)[128:132] == b"DICM"


def parse_file_name(path: Path) -> ExamFile | str | None:
    """What a file's name says (a known layout's name), a reason to leave it out, or None for any other."""
    found = sources.view_from_name(path)
    if found is None or isinstance(found, str):
        return found
    layout, named = found
    return ExamFile(path, named.side, named.view, named.energy, layout, named.patient_key)


def _private_values(ds: Any) -> list[str]:
    """PatientName parts, PatientID and birth date of a header (to redact, never to show)."""
    values = [str(ds.get("PatientID", "") or ""), str(ds.get("PatientBirthDate", "") or "")]
    values += re.split(r"[\^\s=,]+", str(ds.get("PatientName", "") or ""))
    return [v.strip() for v in values if len(v.strip()) >= 3]


def _from_tags(path: Path, ds: Any) -> ExamFile | str:
    """Side, view and energy of an unnamed DICOM from its header, or the reason it is left out."""
    modality = header_text(ds.get("Modality"))
    if modality != "MG":
        return f"{path.name}: Modality {modality or 'missing'}, not a mammogram (MG)"
    side = header_text(ds.get("ImageLaterality")) or header_text(ds.get("Laterality"))
    stated = header_view(ds)
    if side not in SIDES:
        raise ExamError(f"{path}: the file name is not one of a known layout and ImageLaterality is "
                        f"{side or 'missing'!s}; cannot tell which breast it shows")
    if stated is None:
        raise ExamError(f"{path}: the file name is not one of a known layout and the header names no view "
                        "(ViewPosition); cannot tell CC from MLO")
    if stated[0] not in VIEWS:
        return f"{path.name}: {stated[1]} is not CC or MLO"
    energies = header_energies(ds)
    if "HE" in energies and len(energies) == 1:
        return f"{path.name}: a high-energy image (only LE and DES are used)"
    energies.discard("HE")
    if len(energies) > 1:
        raise ExamError(f"{path}: ImageType/SeriesDescription name both low energy and recombined")
    return ExamFile(path, side, stated[0], energies.pop() if energies else "LE", TAGS)


def _check_named_header(item: ExamFile, ds: Any) -> None:
    """A named DICOM's header must agree with its name (modality, side, view, energy)."""
    try:
        check_mg_header(item.path, item.side, item.view, item.energy)
    except ImageRejected as exc:
        raise ExamError(f"{item.path}: {exc.reason}") from exc


def _header(path: Path) -> Any:
    """A DICOM header (pixels deferred); ExamError naming the file when unreadable."""
    try:
        return read_header(path)
    except ImageRejected as exc:
        raise ExamError(f"{path}: {exc.reason}") from exc


def find_exam(study: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()) -> ExamFiles:
    """The views of one exam in a folder (see the module docstring); ExamError for contradictions."""
    folder = Path(study)
    if not folder.is_dir():
        raise FileNotFoundError(f"exam folder not found: {folder}")
    candidates = _candidate_files(folder, [Path(p) for p in exclude])
    exam = ExamFiles(folder=folder, files={}, candidates=tuple(candidates))
    patient_ids: dict[str, Path] = {}
    private: set[str] = set()
    try:
        for path in candidates:
            item = parse_file_name(path)
            if isinstance(item, str):
                exam.skipped.append(item)
                continue
            ds = None
            if (item is not None and path.suffix.lower() == ".dcm") or (item is None and _is_dicom(path)):
                ds = _header(path)
                private.update(_private_values(ds))
                _check_same_patient(path, ds, patient_ids)
                if item is not None:
                    _check_named_header(item, ds)
                else:
                    item = _from_tags(path, ds)
                    if isinstance(item, str):
                        exam.skipped.append(item)
                        continue
            if item is None:
                if ds is not None or path.suffix.lower() in IMAGE_SUFFIXES:
                    exam.unrecognised.append(path)
                continue  # not an image (desktop.ini, notes, tables)
            _add(exam, item)
        exam.private = tuple(sorted(private))
        _check_one_exam(exam)
    except ExamError as exc:
        # Messages name files, and file or folder names may hold the patient's name: redact them.
        exam.private = tuple(sorted(private))
        raise ExamError(exam.redact(str(exc))) from None
    return exam


def _check_same_patient(path: Path, ds: Any, seen: dict[str, Path]) -> None:
    """Two DICOMs with different PatientID tags are two patients (the IDs themselves are never shown)."""
    patient = str(ds.get("PatientID", "") or "").strip()
    if not patient:
        return
    if seen and patient not in seen:
        other = next(iter(seen.values()))
        raise ExamError(f"{other} and {path} belong to different patients (their PatientID tags differ); "
                        "STUDY must hold one exam")
    seen.setdefault(patient, path)


def _add(exam: ExamFiles, item: ExamFile) -> None:
    """Add a view; two files for one view raise ExamError naming both."""
    key = (item.side, item.view, item.energy)
    if key in exam.files:
        first = exam.files[key].path
        raise ExamError(f"two files for {item.side}{item.view} {ENERGY_WORDS[item.energy]}: {first} and "
                        f"{item.path}; keep one (STUDY must hold one exam)")
    exam.files[key] = item


def _check_one_exam(exam: ExamFiles) -> None:
    """Names that carry a patient (CDD-CESM number, INbreast hash, MF name) must agree within a layout."""
    first: dict[str, ExamFile] = {}
    for item in exam.files.values():
        if not item.exam_key:
            continue
        seen = first.setdefault(item.layout, item)
        if seen.exam_key.casefold() != item.exam_key.casefold():
            raise ExamError(f"{seen.path.name} and {item.path.name} are named for different patients "
                            f"({item.layout} names); STUDY must hold one exam")


def energies_for(inputs: str) -> tuple[str, ...]:
    """Energies a model's inputs need: ('LE', 'DES') for cem, ('LE',) for le."""
    check_inputs(inputs)
    return INPUT_ENERGIES[inputs]


def select_views(exam: ExamFiles, inputs: str) -> dict[str, tuple[ExamFile, ExamFile | None]]:
    """VIEW_ORDER key -> (LE file, DES file or None) for the model's inputs; ExamError naming what lacks."""
    wanted = energies_for(inputs)
    shown = exam.label()
    if "DES" in wanted and "DES" not in exam.energies and exam.files:
        raise ExamError(f"{shown}: the model takes LE + DES (CEM) images but the folder holds no "
                        "recombined (DES) images; an FFDM exam needs an LE model (inputs le)")
    missing = [f"{side}{view} {energy}" for side in SIDES for view in VIEWS for energy in wanted
               if (side, view, energy) not in exam.files]
    if missing:
        hint = ""
        if exam.unrecognised:
            names = ", ".join(exam.show(p) for p in exam.unrecognised[:6])
            hint = f"; files with names of no known layout: {names}"
        if exam.skipped:
            hint += f"; left out: {'; '.join(exam.redact(s) for s in exam.skipped[:6])}"
        raise ExamError(f"{shown}: missing view(s) {', '.join(missing)} "
                        f"(found {len(exam.files)} usable image(s)){hint}")
    return {
        f"{side}{view}": (exam.files[(side, view, "LE")],
                          exam.files[(side, view, "DES")] if "DES" in wanted else None)
        for side, view in ((k[0], k[1:]) for k in VIEW_ORDER)
    }


