"""DICOM header checks and file helpers every DICOM layout adapter shares.

A file is used only when its header agrees with what its name says (modality MG, laterality, view, low
energy vs recombined) and the file is complete. Only header tags are read (pixels are skipped); patient
identifiers in the header (PatientName, PatientID, birth date) are never copied anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from cemlib.data.manifest import exclusion, map_files
from cemlib.pixels import sizecap


class ImageRejected(Exception):
    """A file that cannot be used, with a short kind and a readable reason."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class Candidate:
    """An image an adapter found by its file name, before its header is checked."""

    patient_id: str
    side: str
    view: str
    energy: str
    path: str  # relative to the dataset root
    mask_path: str = ""


#: ViewPosition values accepted for each view. ML/LM (true laterals) are different projections from
#: MLO and are rejected; XCCL/XCCM (exaggerated CC) are not the standard CC view either.
VIEW_POSITIONS = {"CC": {"CC"}, "MLO": {"MLO"}}
#: ViewCodeSequence codes (DICOM CID 4014, SNOMED-RT and SNOMED CT) used when ViewPosition is empty.
VIEW_CODES = {"R-10242": "CC", "399162004": "CC", "R-10226": "MLO", "399368009": "MLO"}
ENERGY_PATTERNS = {
    "LE": re.compile(r"LOW[_ ]?ENERGY"),
    "DES": re.compile(r"RECOMBINED|SUBTRACT"),
    "HE": re.compile(r"HIGH[_ ]?ENERGY"),
}
ENERGY_NAMES = {"LE": "low energy", "DES": "recombined (DES)", "HE": "high energy"}
#: Header elements larger than this are not loaded (pixel data); their offset and length are kept.
_DEFER_BYTES = 4096


def header_text(value) -> str:
    """A tag value as upper-case text (multi-valued tags joined by backslashes)."""
    if value is None:
        return ""
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value).upper()
    return str(value).strip().upper()


def read_header(path: Path) -> pydicom.Dataset:
    """The header of a DICOM file, pixel data deferred; ImageRejected if unreadable, truncated or too large.

    A deflated file is first inflated piece by piece only to count its length (``cemlib.pixels.sizecap``):
    one that inflates past the size cap is refused before pydicom inflates it whole.
    """
    try:
        inflated = sizecap.deflated_length(path, sizecap.inflate_limit())
    except ValueError as exc:
        raise ImageRejected("unreadable", f"{path.name} is a damaged DICOM file ({exc})") from exc
    problem = sizecap.inflated_problem(inflated)
    if problem:
        raise ImageRejected("too_large", f"{path.name}: {problem}")
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES)
    except InvalidDicomError as exc:
        raise ImageRejected("unreadable", f"{path.name} is not a DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on damaged files; all mean the same here
        raise ImageRejected("unreadable", f"{path.name} is a damaged DICOM file "
                                          f"({type(exc).__name__}: {exc})") from exc
    check_complete(ds, path, inflated)
    return ds


def check_complete(ds: pydicom.Dataset, path: Path, inflated: int | None = None) -> None:
    """ImageRejected when the pixel data is absent, runs past the end of the file or is too large.

    ``inflated`` is the length of a deflated file's inflated data set (``sizecap.deflated_length``): the
    pixel data's offset is then one in that data set, not in the file. Decoded pixel data larger than
    the size cap (all frames and samples) is refused as too large; a single plane above the cap is left
    to the manifest's size check, which names its Rows x Columns.
    """
    keyword = next((k for k in sizecap.PIXEL_KEYWORDS if k in ds), None)
    if keyword is None:
        raise ImageRejected("unreadable", f"{path.name} has no pixel data (truncated or not an image)")
    for tag in ("Rows", "Columns"):
        if tag not in ds:
            raise ImageRejected("unreadable", f"{path.name} has no {tag} tag")
    if sizecap.plane_problem(int(ds.Rows), int(ds.Columns)) is None:
        problem = sizecap.pixel_bytes_problem(ds)
        if problem:
            raise ImageRejected("too_large", f"{path.name}: {problem}")
    raw = ds.get_item(keyword, keep_deferred=True)
    length = getattr(raw, "length", None)
    offset = getattr(raw, "value_tell", None)
    if length is None or offset is None or length == 0xFFFFFFFF:
        return  # encapsulated pixel data was parsed fully by dcmread, so it is complete
    size = path.stat().st_size if inflated is None else inflated
    if offset + length > size:
        raise ImageRejected("unreadable", f"{path.name} is truncated: pixel data needs {length} bytes, "
                                          f"the file holds {max(size - offset, 0)}")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and not syntax.is_compressed:
        expected = sizecap.decoded_bytes(ds)
        if length < expected:
            raise ImageRejected("unreadable", f"{path.name}: pixel data holds {length} bytes, "
                                              f"{ds.Rows} x {ds.Columns} pixels need {expected}")


def header_view(ds: pydicom.Dataset) -> tuple[str, str] | None:
    """(view the header states or the raw value, tag name), or None when the header says nothing."""
    position = header_text(ds.get("ViewPosition"))
    if position:
        view = next((v for v, accepted in VIEW_POSITIONS.items() if position in accepted), position)
        return view, f"ViewPosition {position!r}"
    for item in ds.get("ViewCodeSequence", []) or []:
        code = str(item.get("CodeValue", "")).strip()
        if code in VIEW_CODES:
            return VIEW_CODES[code], f"ViewCodeSequence code {code}"
    return None


def header_energies(ds: pydicom.Dataset) -> set[str]:
    """Energies (LE, DES, HE) that ImageType and SeriesDescription name."""
    text = f"{header_text(ds.get('ImageType'))} {header_text(ds.get('SeriesDescription'))}"
    return {energy for energy, pattern in ENERGY_PATTERNS.items() if pattern.search(text)}


def check_mg_header(path: str | Path, side: str, view: str, energy: str) -> tuple[int, int]:
    """(rows, cols) of an MG DICOM whose tags agree with its file name; ImageRejected otherwise."""
    path = Path(path)
    ds = read_header(path)
    modality = header_text(ds.get("Modality"))
    if modality != "MG":
        stated = f"is {modality!r}" if modality else "is missing"
        raise ImageRejected("not_mg", f"{path.name}: Modality {stated}, expected MG (mammography)")
    for keyword in ("ImageLaterality", "Laterality"):
        laterality = header_text(ds.get(keyword))
        if laterality:
            if laterality != side:
                raise ImageRejected("tag_mismatch", f"{path.name}: {keyword} {laterality!r} disagrees with "
                                                    f"the file name's side {side}")
            break
    stated_view = header_view(ds)
    if stated_view is not None and stated_view[0] != view:
        raise ImageRejected("tag_mismatch", f"{path.name}: {stated_view[1]} disagrees with the file "
                                            f"name's view {view}")
    stated = header_energies(ds)
    if len(stated) > 1:
        names = " and ".join(ENERGY_NAMES[e] for e in sorted(stated))
        raise ImageRejected("tag_mismatch", f"{path.name}: ImageType/SeriesDescription name both {names}")
    if stated and stated != {energy}:
        raise ImageRejected("tag_mismatch", f"{path.name}: ImageType/SeriesDescription say "
                                            f"{ENERGY_NAMES[stated.pop()]}, the file name says "
                                            f"{ENERGY_NAMES[energy]}")
    return int(ds.Rows), int(ds.Columns)


def check_candidates(root: Path, candidates: Sequence[Candidate],
                     workers: int | None = None) -> tuple[list[dict], list[dict]]:
    """Header-check candidates in parallel: (image rows with rows/cols, exclusion rows for rejects)."""
    results = map_files(lambda c: check_mg_header(root / c.path, c.side, c.view, c.energy),
                        list(candidates), workers, desc="DICOM headers")
    images, rejected = [], []
    for candidate, result in zip(candidates, results, strict=True):
        if isinstance(result, ImageRejected):
            rejected.append(exclusion(candidate.patient_id, result.reason, result.kind, candidate.side,
                                      candidate.path))
        elif isinstance(result, Exception):
            rejected.append(exclusion(candidate.patient_id, f"{Path(candidate.path).name} cannot be read "
                                      f"({type(result).__name__}: {result})", "unreadable", candidate.side,
                                      candidate.path))
        else:
            rows, cols = result
            images.append({"patient_id": candidate.patient_id, "side": candidate.side,
                           "view": candidate.view, "energy": candidate.energy, "path": candidate.path,
                           "rows": rows, "cols": cols, "mask_path": candidate.mask_path})
    return images, rejected


def dicom_files(folder: Path) -> list[Path]:
    """Visible files ending in .dcm (any case) directly inside `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() == ".dcm")


def rel(path: Path, root: Path) -> str:
    """`path` relative to `root`, with forward slashes."""
    return path.relative_to(root).as_posix()


def default_mask_dir(root: str | Path) -> Path:
    """Where an external adapter writes lesion masks by default: `<ROOT>_masks` beside the release."""
    root = Path(root).resolve()
    return root.parent / f"{root.name}_masks"
