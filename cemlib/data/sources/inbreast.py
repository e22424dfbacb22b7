"""INbreast (Moreira et al., Acad Radiol 2012): the release's folders read into a manifest.

Release layout (ROOT is the folder that holds AllDICOMs/, e.g. `INbreast Release 1.0/`):

    ROOT/AllDICOMs/<FileName>_<16-hex patient hash>_MG_<L|R>_<CC|ML>_ANON.dcm   14-bit FFDM, no patient tags
    ROOT/AllXML/<FileName>.xml        OsiriX ROIs (Apple plist), only for images with findings
    ROOT/INbreast.csv                 `;`-delimited: Patient ID;Patient age;Laterality;View;
                                      Acquisition date;File Name;ACR;Bi-Rads
    ROOT/INbreast.xls                 the same table plus findings (17 columns), two total rows at the end
    ROOT/AllROI/, ROOT/MedicalReports/  not used

The patient is the hash in the file name (the DICOM headers carry no patient id, date, laterality or
view: side and view come from the file name only; ML in names is the MLO view). Images join the table
on the first name token = `File Name`. Either table is enough; with both, every image present in both
must agree on laterality, view, ACR and Bi-Rads, or it is excluded with the disagreement as its reason.
Bi-Rads is read as text (1, 2, 3, 4a, 4b, 4c, 5, 6). Labels follow the paper: BI-RADS 1-3 benign, 4-6
malignant, and a breast takes the highest category of its CC and MLO images. The FB view is excluded with
its reason, and a patient without both breasts in both views is excluded by the manifest's shared
validation. INbreast is FFDM: every image counts as low energy (energies = ("LE",)).

Lesion masks are rasterised from the plist ROIs (`Point_px` "(x, y)" strings; a polygon is filled, a
single-point ROI such as a calcification becomes a small disc) and written as PNGs beside the release,
never into it (`default_mask_dir`). ROIs named as pectoral muscle annotations are not lesions and are
skipped.

Not checked against the real release (only its CSV is at hand): the xls sheet name and the content of its
two total rows (they are recognised as trailing rows whose Laterality is not L/R), the plist `Type` codes,
and that the DICOMs are MONOCHROME2 with Modality MG (a file without Modality MG would be excluded).
"""

from __future__ import annotations

import os
import plistlib
import re
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cemlib.core.views import NamedView
from cemlib.data.manifest import Manifest, assemble, cell_text, exclusion, one_breast_exclusions
from cemlib.data.sources.dicom import Candidate, check_candidates, default_mask_dir, rel
from cemlib.data.sources.masks import points_mask, write_mask_png

DATASET = "inbreast"
#: The layout as shown to users.
DISPLAY_NAME = "INbreast"
DICOM_DIR = "AllDICOMs"
XML_DIR = "AllXML"
CSV_NAME = "INbreast.csv"
XLS_NAME = "INbreast.xls"
CSV_COLUMNS = (
    "Patient ID",
    "Patient age",
    "Laterality",
    "View",
    "Acquisition date",
    "File Name",
    "ACR",
    "Bi-Rads",
)
XLS_COLUMNS = (
    *CSV_COLUMNS,
    "Mass",
    "Micros",
    "Distortion",
    "Asymmetry",
    "Findings Notes (in Portuguese)",
    "Other Notes",
    "Lesion Annotation Status",
    "Pectoral Muscle Annotation",
    "Other Annotations",
)
NAME_PATTERN = re.compile(r"^(\d+)_([0-9a-f]+)_MG_([A-Z]+)_([A-Z]+)_ANON\.dcm$", re.IGNORECASE)
#: View in file names and tables -> manifest view (None: not a standard view, excluded).
VIEW_OF_CODE = {"CC": "CC", "ML": "MLO", "MLO": "MLO"}
BIRADS_VALUES = ("1", "2", "3", "4a", "4b", "4c", "5", "6")
DENSITY_OF_ACR = {"1": "a", "2": "b", "3": "c", "4": "d"}
NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class DicomName:
    """The parts of an AllDICOMs file name."""

    file_name: str
    patient_id: str
    side: str
    view_code: str

    @property
    def view(self) -> str | None:
        """CC or MLO, None for another view (FB)."""
        return VIEW_OF_CODE.get(self.view_code)


def parse_dicom_name(name: str) -> DicomName | None:
    """Parse '<FileName>_<hash>_MG_<L|R>_<view>_ANON.dcm'; None when the name has another form."""
    match = NAME_PATTERN.match(name.strip())
    if not match or match.group(3).upper() not in ("L", "R"):
        return None
    file_name, patient, side, view = match.groups()
    return DicomName(file_name, patient.lower(), side.upper(), view.upper())


def normalise_birads(value: Any) -> str:
    """Bi-Rads cell as the release's text ('4a', '5'); '' when not one of its categories."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip().lower()
    return text if text in BIRADS_VALUES else ""


def birads_label(birads: str) -> int | None:
    """The paper's rule: BI-RADS 1-3 benign (0), 4-6 malignant (1); None when unknown."""
    if not birads:
        return None
    return 1 if birads[0] in "456" else 0


def birads_rank(birads: str) -> int:
    """Order of the release's categories (1 < ... < 4a < 4b < 4c < 5 < 6)."""
    return BIRADS_VALUES.index(birads)


def _normalise_table(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Table rows keyed by File Name with Laterality, View, ACR, Bi-Rads as normalised text."""
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; found {list(frame.columns)}")
    out = pd.DataFrame(
        {
            "file_name": frame["File Name"].map(cell_text),
            "laterality": frame["Laterality"].map(cell_text).str.upper(),
            "view": frame["View"].map(cell_text).str.upper(),
            "acr": frame["ACR"].map(cell_text),
            "birads_raw": frame["Bi-Rads"].map(cell_text),
            "birads": frame["Bi-Rads"].map(normalise_birads),
            "date": frame["Acquisition date"].map(cell_text),
        }
    )
    for index, row in out.iterrows():
        if not row["file_name"].isdigit():
            raise ValueError(f"{path} row {index + 2}: File Name {row['file_name']!r} is not a number")
    duplicated = out["file_name"][out["file_name"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: File Name {duplicated[0]} appears more than once")
    return out.set_index("file_name", drop=False)


def read_csv_table(path: str | Path) -> pd.DataFrame:
    """INbreast.csv (`;`-delimited, every cell text) normalised; ValueError naming the file if malformed."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="latin-1")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: not a readable ;-delimited table ({exc})") from exc
    return _normalise_table(frame, path)


def read_xls_table(path: str | Path) -> pd.DataFrame:
    """INbreast.xls normalised, its trailing total rows dropped; ValueError naming the file if malformed."""
    path = Path(path)
    frame = _read_first_sheet(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    if "Laterality" not in frame.columns:
        raise ValueError(f"{path}: no Laterality column; found {list(frame.columns)}")
    return _normalise_table(drop_footer(frame), path)


def _read_first_sheet(path: Path) -> pd.DataFrame:
    """First sheet of a legacy .xls (header row first) read with xlrd; numbers stay floats."""
    import xlrd

    try:
        sheet = xlrd.open_workbook(path, on_demand=True).sheet_by_index(0)
    except Exception as exc:  # xlrd raises its own error types for damaged files
        raise ValueError(f"{path}: not a readable .xls workbook ({type(exc).__name__}: {exc})") from exc
    if sheet.nrows == 0:
        raise ValueError(f"{path}: the first sheet is empty")
    header = [str(v).strip() for v in sheet.row_values(0)]
    rows = [sheet.row_values(r) for r in range(1, sheet.nrows)]
    return pd.DataFrame(rows, columns=header, dtype=object)


def drop_footer(frame: pd.DataFrame) -> pd.DataFrame:
    """The sheet without its trailing total rows: rows at the end whose Laterality is not L or R."""
    is_image = frame["Laterality"].map(cell_text).str.upper().isin(["L", "R"]).to_numpy()
    last = int(np.nonzero(is_image)[0].max()) + 1 if is_image.any() else 0
    return frame.iloc[:last]


def combine_tables(
    csv_table: pd.DataFrame | None, xls_table: pd.DataFrame | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """One table from the CSV and/or the xls, and {File Name: reason} where the two disagree."""
    tables = [t for t in (csv_table, xls_table) if t is not None]
    if not tables:
        raise ValueError("neither INbreast.csv nor INbreast.xls was given")
    if len(tables) == 1:
        return tables[0], {}
    conflicts = {}
    for file_name in csv_table.index.intersection(xls_table.index):
        a, b = csv_table.loc[file_name], xls_table.loc[file_name]
        differ = [
            f"{field} {a[field]!r} vs {b[field]!r}"
            for field in ("laterality", "view", "acr", "birads")
            if a[field] != b[field]
        ]
        if differ:
            conflicts[file_name] = (
                f"{CSV_NAME} and {XLS_NAME} disagree on File Name {file_name}: " + ", ".join(differ)
            )
    extra = xls_table.loc[xls_table.index.difference(csv_table.index)]
    return pd.concat([csv_table, extra]), conflicts


# ---------------------------------------------------------------------------------------------- ROIs


def _point(text: str) -> tuple[float, float]:
    """'(x, y)' -> (x, y)."""
    values = NUMBER.findall(str(text))
    if len(values) < 2:
        raise ValueError(f"point {text!r} is not '(x, y)'")
    return float(values[0]), float(values[1])


def read_rois(path: str | Path) -> list[dict]:
    """Lesion ROIs of one AllXML plist: [{'name', 'points': [(x, y), ...]}]; ValueError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            plist = plistlib.load(handle)
    except Exception as exc:  # plistlib raises ExpatError, ValueError, ... on damaged files
        raise ValueError(f"{path}: not a readable plist ({type(exc).__name__}: {exc})") from exc
    rois = []
    try:
        for image in plist["Images"]:
            for roi in image.get("ROIs", []):
                name = str(roi.get("Name", "")).strip()
                if "pectoral" in name.lower():
                    continue
                points = [_point(p) for p in roi.get("Point_px", [])]
                if points:
                    rois.append({"name": name, "points": points})
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"{path}: unexpected ROI structure ({exc})") from exc
    return rois


def roi_mask(shape: tuple[int, int], rois: Sequence[dict]) -> np.ndarray:
    """Union of the ROIs' masks on an image of `shape`."""
    mask = np.zeros(shape, dtype=bool)
    for roi in rois:
        mask |= points_mask(shape, roi["points"])
    return mask


# ------------------------------------------------------------------------------------------------ scan


def detect(root: str | Path) -> bool:
    """True when ROOT holds AllDICOMs/ and INbreast.csv or INbreast.xls."""
    root = Path(root)
    return (root / DICOM_DIR).is_dir() and ((root / CSV_NAME).is_file() or (root / XLS_NAME).is_file())


def _candidates(
    root: Path, table: pd.DataFrame, conflicts: dict[str, str]
) -> tuple[list[tuple[Candidate, DicomName]], list[dict]]:
    """Usable DICOMs by name and table row, and exclusions for the rest (FB view, no row, conflicts)."""
    folder = root / DICOM_DIR
    found, excluded = [], []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() != ".dcm":
            continue
        rel_path = rel(path, root)
        name = parse_dicom_name(path.name)
        if name is None:
            excluded.append(
                exclusion(
                    "",
                    f"file name {path.name!r} is not <FileName>_<hash>_MG_<L|R>_<CC|ML>_ANON.dcm",
                    "bad_filename",
                    side="",
                    path=rel_path,
                )
            )
            continue
        if name.view is None:
            excluded.append(
                exclusion(
                    name.patient_id,
                    f"{path.name}: view {name.view_code} is not CC or MLO (ML)",
                    "other_view",
                    side=name.side,
                    path=rel_path,
                )
            )
            continue
        if name.file_name in conflicts:
            excluded.append(
                exclusion(
                    name.patient_id,
                    conflicts[name.file_name],
                    "table_conflict",
                    side=name.side,
                    path=rel_path,
                )
            )
            continue
        if name.file_name not in table.index:
            excluded.append(
                exclusion(
                    name.patient_id,
                    f"{path.name}: File Name {name.file_name} has no row in {CSV_NAME}/{XLS_NAME}",
                    "not_annotated",
                    side=name.side,
                    path=rel_path,
                )
            )
            continue
        row = table.loc[name.file_name]
        table_view = VIEW_OF_CODE.get(row["view"])
        if row["laterality"] != name.side or table_view != name.view:
            excluded.append(
                exclusion(
                    name.patient_id,
                    f"{path.name}: the table says {row['laterality']} {row['view']} for "
                    f"File Name {name.file_name}, the file name says {name.side} "
                    f"{name.view_code}",
                    "table_conflict",
                    side=name.side,
                    path=rel_path,
                )
            )
            continue
        if not row["birads"]:
            excluded.append(
                exclusion(
                    name.patient_id,
                    f"{path.name}: Bi-Rads {row['birads_raw']!r} of File Name {name.file_name} "
                    f"is not one of {', '.join(BIRADS_VALUES)}",
                    "bad_label",
                    side=name.side,
                    path=rel_path,
                )
            )
            continue
        found.append((Candidate(name.patient_id, name.side, name.view, "LE", rel_path), name))
    return found, excluded


def _breasts(images: Sequence[dict], table: pd.DataFrame) -> list[dict]:
    """One breast row per (patient, side): highest Bi-Rads of its images and the paper's label rule."""
    grouped: dict[tuple[str, str], list[pd.Series]] = defaultdict(list)
    for image in images:
        grouped[(image["patient_id"], image["side"])].append(table.loc[image["_file_name"]])
    breasts = []
    for (patient_id, side), rows in sorted(grouped.items()):
        birads = max((r["birads"] for r in rows), key=birads_rank)
        density = next((DENSITY_OF_ACR[r["acr"]] for r in rows if r["acr"] in DENSITY_OF_ACR), "")
        breasts.append(
            {
                "patient_id": patient_id,
                "side": side,
                "label": birads_label(birads),
                "birads": birads.upper(),
                "pathology": "",
                "age": float("nan"),
                "density": density,
            }
        )
    return breasts


def _write_masks(images: list[dict], root: Path, mask_dir: Path) -> None:
    """Rasterise each image's AllXML ROIs into mask_dir and set its mask_path."""
    xml_dir = root / XML_DIR
    for image in images:
        xml = xml_dir / f"{image['_file_name']}.xml"
        if not xml.is_file():
            continue
        rois = read_rois(xml)
        if not rois:
            continue
        mask = roi_mask((image["rows"], image["cols"]), rois)
        target = mask_dir / f"{image['patient_id']}_{image['side']}_{image['view']}.png"
        write_mask_png(target, mask)
        image["mask_path"] = os.path.relpath(target, root)


def _one_breast_patients(root: Path) -> list[dict]:
    """Patient-level exclusions for patients whose CC/MLO files cover one breast only."""
    sides: dict[str, set[str]] = defaultdict(set)
    for path in (root / DICOM_DIR).iterdir():
        name = parse_dicom_name(path.name)
        if name is not None and name.view is not None and path.suffix.lower() == ".dcm":
            sides[name.patient_id].add(name.side)
    return one_breast_exclusions(sides, "no CC or MLO image")


def _warn_orphan_rois(root: Path) -> None:
    """Warn about AllXML files whose File Name matches no file in AllDICOMs (a damaged download)."""
    if not (root / XML_DIR).is_dir():
        return
    names = {parsed.file_name for p in (root / DICOM_DIR).iterdir() if (parsed := parse_dicom_name(p.name))}
    orphans = sorted(p.stem for p in (root / XML_DIR).glob("*.xml") if p.stem not in names)
    if orphans:
        warnings.warn(
            f"{XML_DIR}: {len(orphans)} ROI files match no DICOM in {DICOM_DIR} (e.g. {orphans[0]}.xml)",
            stacklevel=3,
        )


def scan(
    root: str | Path,
    workers: int | None = None,
    dataset: str | None = None,
    mask_dir: str | Path | None = None,
    write_masks: bool = True,
    check_views: bool = True,
) -> Manifest:
    """Turn an INbreast release folder into a Manifest (energies ("LE",), split left to the caller).

    Lesion masks go to `mask_dir` (default `default_mask_dir(root)`, beside the release); with
    `write_masks=False` no file is written and mask_path stays empty. ``check_views``: exclude views
    whose pixels contradict their tags (see manifest.assemble).
    """
    root = Path(root)
    if not (root / DICOM_DIR).is_dir():
        raise FileNotFoundError(f"{root}: no {DICOM_DIR}/ folder (INbreast release)")
    csv_path, xls_path = root / CSV_NAME, root / XLS_NAME
    if not csv_path.is_file() and not xls_path.is_file():
        raise FileNotFoundError(f"{root}: neither {CSV_NAME} nor {XLS_NAME} found (INbreast release)")
    table, conflicts = combine_tables(
        read_csv_table(csv_path) if csv_path.is_file() else None,
        read_xls_table(xls_path) if xls_path.is_file() else None,
    )
    found, exclusions = _candidates(root, table, conflicts)
    checked, rejected = check_candidates(root, [c for c, _ in found], workers)
    exclusions += rejected
    file_names = {c.path: n.file_name for c, n in found}
    images = [{**image, "_file_name": file_names[image["path"]]} for image in checked]
    if write_masks and (root / XML_DIR).is_dir():
        _write_masks(images, root, Path(mask_dir) if mask_dir is not None else default_mask_dir(root))
    _warn_orphan_rois(root)
    exclusions += _one_breast_patients(root)
    breasts = _breasts(images, table)
    for image in images:
        image.pop("_file_name")
    manifest = assemble(
        dataset or DATASET, root, images, breasts, exclusions, energies=("LE",), workers=workers,
        check_views=check_views,
    )
    tables = [p.name for p in (csv_path, xls_path) if p.is_file()]
    manifest.extra.update({"layout": DATASET, "tables": tables})
    return manifest


def view_from_name(path: Path) -> NamedView | str | None:
    """What an INbreast file name says (an FFDM image, taken as LE; the hash is the patient key), a reason
    to leave it out (a view other than CC or MLO), or None for another name."""
    parsed = parse_dicom_name(path.name) if path.suffix.lower() == ".dcm" else None
    if parsed is None:
        return None
    if parsed.view is None:
        return f"{path.name}: view {parsed.view_code} is not CC or MLO"
    return NamedView(parsed.side, parsed.view, "LE", parsed.patient_id)
