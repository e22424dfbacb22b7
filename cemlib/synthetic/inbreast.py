"""INbreast release replica: the phantom cohort written as the release is laid out.

`write_replica` renders the synthetic phantom and writes it as the release is laid
out. Images: the phantom is rendered with the release's rows and resized to the release's detector
(4084 x 3328 at scale 1, a quarter of the patients on the smaller 3328 x 2560 one); only LE is used.
14-bit encoding of LE: value = clip(2 * (raw - 1500) + 1200, 0, 16383), so the phantom's raw breast
range 1500..3300 becomes 1200..4800 (LE_WINDOW_RANGE) and the detector background 0, as in the release.
File names take their File Name tokens, in order, from the real INbreast.csv shipped in
cemlib/synthetic/data (tokens beyond its 410 continue the last number); the patient token is a
deterministic 16-hex hash. Tables: the CSV (same header, `removed` cells, CRLF, one blank ACR made of
spaces) and the .xls (17 columns, two total rows). Per breast the Bi-Rads is the phantom's category
where it agrees with the release's rule (1-3 benign, 4-6 malignant); a benign breast with a category of
4 or more is written as 3 and a normal one as 1, so the rule gives back the phantom's label. About one
patient in five has one breast only (mastectomy), and the first patient has an extra FB view.
Not in the release: ROOT/lesions.csv, the phantom's findings (cohort.LESION_COLUMNS, one row per finding
of a breast in the tables; patient_id the hash, file_names the breast's File Names, space-separated).
"""

from __future__ import annotations

import hashlib
import io
import plistlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xlwt
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cemlib.core.fileio import atomic_write_bytes, atomic_write_text
from cemlib.data.sources.inbreast import (
    CSV_COLUMNS,
    CSV_NAME,
    DATASET,
    DICOM_DIR,
    VIEW_OF_CODE,
    XLS_COLUMNS,
    XLS_NAME,
    XML_DIR,
    read_csv_table,
)
from cemlib.data.sources.masks import mask_outlines
from cemlib.synthetic.cohort import LESIONS_FILE, replica_lesions_table, sample_cohort
from cemlib.synthetic.phantom import FULL_SHAPE, render_exam
from cemlib.synthetic.writer import finish_replica, prepare_replica_dir, write_patients

DETECTORS = ((4084, 3328), (3328, 2560))
FULL_PIXEL_SPACING_MM = 0.07
LE_GAIN, LE_RAW_ORIGIN, LE_STORED_ORIGIN = 2.0, 1500.0, 1200.0
#: Where the phantom's raw 1500..3300 window lands after the 14-bit re-encoding.
LE_WINDOW_RANGE = (1200, 4800)
REAL_CSV = Path(__file__).parent / "data" / "INbreast_real.csv"
REPLICA_FILE = "replica.json"
#: The column of lesions.csv holding a breast's File Names in INbreast.csv, space-separated (its Patient ID
#: is `removed`; patient_id is the patient hash of the DICOM names).
LESION_KEY_COLUMN = "file_names"
BLANK_ACR = " " * 193
XLS_FOOTER_LABEL = "Total"
POINT_AREA = 12
CSV_TO_INBREAST_BIRADS = {"3-4A": "4a", "4A": "4a", "4B": "4b", "4C": "4c", "5": "5", "6": "6"}


@dataclass(frozen=True)
class ImagePlan:
    """One DICOM of the replica: its File Name token, side and view code."""

    file_name: str
    side: str
    view_code: str


@dataclass(frozen=True)
class PatientPlan:
    """The replica's images, detector, date and Bi-Rads of one phantom patient."""

    patient_hash: str
    images: tuple[ImagePlan, ...]
    detector: tuple[int, int]
    date: str
    birads: dict[str, str]
    blank_acr: str  # File Name whose ACR cell is blank ('' for none)


def encode_le(raw: np.ndarray) -> np.ndarray:
    """The phantom's raw LE re-encoded to the release's 14-bit range (see LE_WINDOW_RANGE)."""
    values = LE_GAIN * (raw.astype(np.float64) - LE_RAW_ORIGIN) + LE_STORED_ORIGIN
    return np.clip(np.rint(values), 0, (1 << 14) - 1).astype(np.uint16)


def replica_birads(label: int, birads: str, has_lesion: bool) -> str:
    """Bi-Rads written for a phantom breast, consistent with the release's label rule."""
    if label == 1:
        return CSV_TO_INBREAST_BIRADS.get(birads, "4c")
    if not has_lesion:
        return "1"
    return birads if birads in ("1", "2", "3") else "3"


def real_file_names(path: str | Path = REAL_CSV) -> list[str]:
    """File Name tokens of the real INbreast.csv, in its order."""
    return read_csv_table(path)["file_name"].tolist()


def plan_replica(specs: Sequence[Any], seed: int, tokens: Sequence[str]) -> list[PatientPlan]:
    """Deterministic images and quirks per patient; with two or more patients one has a single breast."""
    tokens = list(tokens)
    plans, used = [], 0
    dates = ("200801", "200802", "200901", "200902", "201001")
    for index, spec in enumerate(specs):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1B, index]))
        single = rng.random() < 0.22 if index > 1 else index == 1
        sides = [("L", "R")[int(rng.integers(2))]] if single else ["L", "R"]
        codes = [(side, code) for side in sides for code in ("CC", "ML")]
        if index == 0:
            codes.append(("R" if "R" in sides else sides[0], "FB"))
        images = []
        for side, code in codes:
            while used >= len(tokens):
                tokens.append(str(int(tokens[-1]) + 27))
            images.append(ImagePlan(tokens[used], side, code))
            used += 1
        digest = hashlib.sha256(f"cemlib-inbreast-{seed}-{index}".encode()).hexdigest()[:16]
        birads = {
            side: replica_birads(b.label, b.birads, bool(b.lesions)) for side, b in spec.breasts.items()
        }
        plans.append(
            PatientPlan(
                digest,
                tuple(images),
                DETECTORS[int(rng.random() < 0.25)],
                dates[int(rng.integers(len(dates)))],
                birads,
                images[0].file_name if index == 0 else "",
            )
        )
    return plans


def _resize(image: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize a 2-D array to (rows, cols): bilinear for pixels, nearest for masks."""
    if image.shape == shape:
        return image
    mode = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    source = Image.fromarray(image.astype(np.float32), mode="F")
    return np.asarray(source.resize((shape[1], shape[0]), mode))


def render_views(spec: Any, plan: PatientPlan, scale: float) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """The replica's pixels of one patient: per (side, view) the 14-bit LE and the lesion mask."""
    shape = (max(16, round(plan.detector[0] * scale)), max(12, round(plan.detector[1] * scale)))
    exam = render_exam(spec, min(1.0, max(0.005, shape[0] / FULL_SHAPE[0])))
    views = {}
    for (side, view), mask in exam.masks.items():
        le = _resize(exam.images[(side, view, "LE")].astype(np.float32), shape)
        views[(side, view)] = {
            "LE": encode_le(le),
            "mask": _resize(mask.astype(np.float32), shape, nearest=True) > 0.5,
        }
    return views


def _uid(seed: int, scale: float, *parts: str) -> str:
    return generate_uid(entropy_srcs=["cemlib-inbreast-replica", str(seed), f"{scale:.6g}", *parts])


def dicom_bytes(pixels: np.ndarray, plan: PatientPlan, image: ImagePlan, seed: int, scale: float) -> bytes:
    """One replica DICOM: 14-bit MONOCHROME2 MG without patient, date, laterality or view tags."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = _uid(seed, scale, image.file_name)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(seed, scale, plan.patient_hash, "study")
    ds.SeriesInstanceUID = _uid(seed, scale, plan.patient_hash, "series", image.side)
    ds.Modality = "MG"
    ds.Manufacturer = "SIEMENS"
    ds.ManufacturerModelName = "Mammomat Novation DR"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "BREAST"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 14, 13, 0
    spacing = round(FULL_PIXEL_SPACING_MM * plan.detector[0] / pixels.shape[0], 6)
    ds.PixelSpacing = [spacing, spacing]
    ds.WindowCenter, ds.WindowWidth = 3000, 3600
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def roi_plist(outlines: Sequence[Any], spacing: float) -> bytes:
    """AllXML plist bytes for a view's lesion outlines (small ones as single-point calcifications)."""
    rois = []
    for index, outline in enumerate(outlines):
        point = outline.area < POINT_AREA
        points = [(outline.cx, outline.cy)] if point else list(zip(outline.xs, outline.ys, strict=True))
        rois.append(
            {
                "Area": float(outline.area) * spacing * spacing,
                "Center": f"({outline.cx:.6f}, {outline.cy:.6f})",
                "Dev": 0.0,
                "IndexInImage": index,
                "Max": 0.0,
                "Mean": 0.0,
                "Min": 0.0,
                "Name": "Calcification" if point else "Mass",
                "NumberOfPoints": len(points),
                "Point_mm": [f"({x * spacing:.6f}, {y * spacing:.6f}, 0.000000)" for x, y in points],
                "Point_px": [f"({x:.6f}, {y:.6f})" for x, y in points],
                "Total": 0.0,
                "Type": 19 if point else 15,
            }
        )
    return plistlib.dumps(
        {"Images": [{"ImageIndex": 0, "NumberOfROIs": len(rois), "ROIs": rois}]},
        fmt=plistlib.FMT_XML,
        sort_keys=True,
    )


def _patient_task(args: tuple[Any, PatientPlan, Path, float, int]) -> list[dict]:
    """Render and write one patient's DICOMs and ROI plists; return its table rows."""
    spec, plan, out, scale, seed = args
    views = render_views(spec, plan, scale)
    rows = []
    for image in plan.images:
        view = VIEW_OF_CODE.get(image.view_code)
        pixels = views[(image.side, view or "CC")]
        name = f"{image.file_name}_{plan.patient_hash}_MG_{image.side}_{image.view_code}_ANON.dcm"
        atomic_write_bytes(out / DICOM_DIR / name, dicom_bytes(pixels["LE"], plan, image, seed, scale))
        outlines = mask_outlines(pixels["mask"]) if view else []
        if outlines:
            spacing = FULL_PIXEL_SPACING_MM * plan.detector[0] / pixels["LE"].shape[0]
            atomic_write_bytes(out / XML_DIR / f"{image.file_name}.xml", roi_plist(outlines, spacing))
        breast = spec.breasts[image.side]
        rows.append(
            {
                "Patient ID": "removed",
                "Patient age": "removed",
                "Laterality": image.side,
                "View": "MLO" if image.view_code == "ML" else image.view_code,
                "Acquisition date": plan.date,
                "File Name": image.file_name,
                "ACR": "" if image.file_name == plan.blank_acr else str("abcd".index(spec.density) + 1),
                "Bi-Rads": plan.birads[image.side],
                "Mass": "X" if any(o.area >= POINT_AREA for o in outlines) else "",
                "Micros": "X" if any(o.area < POINT_AREA for o in outlines) else "",
                "Distortion": "",
                "Asymmetry": "",
                "Findings Notes (in Portuguese)": "nódulo" if breast.lesions else "normal",
                "Other Notes": "",
                "Lesion Annotation Status": "" if outlines else "NO ANNOTATION (NORMAL)",
                "Pectoral Muscle Annotation": "X" if image.view_code == "ML" else "",
                "Other Annotations": "",
            }
        )
    return rows


def _csv_text(rows: Sequence[dict]) -> str:
    """INbreast.csv text: `;`-delimited, CRLF, a blank ACR written as a run of spaces."""
    lines = [";".join(CSV_COLUMNS)]
    for row in rows:
        cells = [row[c] if (c != "ACR" or row[c]) else BLANK_ACR for c in CSV_COLUMNS]
        lines.append(";".join(cells))
    return "\r\n".join(lines) + "\r\n"


def _xls_bytes(rows: Sequence[dict]) -> bytes:
    """INbreast.xls bytes: 17 columns ('Mass ' and 'Micros ' with their trailing space), two total rows."""
    header = [f"{c} " if c in ("Mass", "Micros") else c for c in XLS_COLUMNS]
    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet("Sheet1")
    for col, title in enumerate(header):
        sheet.write(0, col, title)
    numeric = {"Acquisition date", "File Name", "ACR"}
    for r, row in enumerate(rows, start=1):
        for col, column in enumerate(XLS_COLUMNS):
            value: Any = row[column]
            if value and (column in numeric or (column == "Bi-Rads" and value.isdigit())):
                value = int(value)
            sheet.write(r, col, value)
    footer = len(rows) + 1
    for col, column in enumerate(XLS_COLUMNS):
        if column in ("Mass", "Micros", "Distortion", "Asymmetry"):
            sheet.write(footer, col, sum(1 for row in rows if row[column] == "X"))
    sheet.write(footer + 1, 0, XLS_FOOTER_LABEL)
    sheet.write(footer + 1, XLS_COLUMNS.index("File Name"), len(rows))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _lesions_table(specs: Sequence[Any], plans: Sequence[PatientPlan],
                   results: Sequence[Sequence[dict]]) -> pd.DataFrame:
    """lesions.csv of the replica: the findings of every breast with a row in the tables."""
    breasts = {}
    for spec, plan, rows in zip(specs, plans, results, strict=True):
        for side in sorted({row["Laterality"] for row in rows}):
            file_names = " ".join(row["File Name"] for row in rows if row["Laterality"] == side)
            breasts[(spec.patient_id, side)] = (plan.patient_hash, file_names)
    return replica_lesions_table(list(specs), breasts, LESION_KEY_COLUMN)


def write_replica(
    out: str | Path,
    patients: int = 30,
    seed: int = 0,
    scale: float = 0.08,
    workers: int | None = None,
    tables: Sequence[str] = ("csv", "xls"),
    real_csv: str | Path = REAL_CSV,
) -> Path:
    """Write the phantom cohort as an INbreast replica (DICOMs, XML ROIs, tables, lesions.csv); returns ROOT.

    `scale` is relative to the release's 4084 x 3328 detector; `tables` picks INbreast.csv and/or .xls.
    """
    unknown = set(tables) - {"csv", "xls"}
    if unknown or not tables:
        raise ValueError(f"tables must name 'csv' and/or 'xls', got {list(tables)}")
    out = Path(out).resolve()
    prepare_replica_dir(out, "INbreast", REPLICA_FILE)
    for folder in (DICOM_DIR, XML_DIR, "AllROI", "MedicalReports"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    specs = sample_cohort(patients, seed, DATASET)
    plans = plan_replica(specs, seed, real_file_names(real_csv))
    tasks = [(spec, plan, out, scale, seed) for spec, plan in zip(specs, plans, strict=True)]
    results = write_patients(_patient_task, tasks, workers, "synth inbreast")
    rows = [row for group in results for row in group]
    if "csv" in tables:
        atomic_write_bytes(out / CSV_NAME, _csv_text(rows).encode("ascii"))
    if "xls" in tables:
        atomic_write_bytes(out / XLS_NAME, _xls_bytes(rows))
    atomic_write_text(out / LESIONS_FILE, _lesions_table(specs, plans, results).to_csv(index=False))
    return finish_replica(out, REPLICA_FILE, "cemlib.synthetic.inbreast", DATASET, seed, scale, patients,
                          le_window_range=LE_WINDOW_RANGE)
