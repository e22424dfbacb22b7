"""CDD-CESM release replica: the phantom cohort written as the release is laid out.

`write_replica` renders the synthetic phantom and writes it as the release is laid
out. Images: rendered with the release's rows (2355 at scale 1), then cropped from the chest wall to
the breast's edge plus a margin (the release's JPEGs are cropped, so widths vary around 1315 * scale).
8-bit windowing: LE maps raw 1500..3300 linearly onto 0..255, DES maps raw 1800..3000 (its breast
range, offset about 2000) onto 0..255; both clipped, so the detector background becomes 0. Quirks
reproduced: breasts or views missing (about 4 in 10 patients incomplete, as 193 of 326 were kept),
stray spaces in some file names and Image_name cells, desktop.ini in both image folders, density only
on DM rows ('_' on CESM rows), `$`-joined BIRADS and Findings, the other finding sheets, and a VIA CSV
mixing polygon, ellipse, circle, polyline and point regions with `{}` rows for images without one.
Not in the release: ROOT/lesions.csv, the phantom's findings (cohort.LESION_COLUMNS, one row per finding
of a breast in sheet `all`; patient_id P<n> as in the file names, patient_number the sheet's Patient_ID).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from openpyxl import Workbook
from PIL import Image
from scipy import ndimage

from cemlib.core.fileio import atomic_path, atomic_write_bytes, atomic_write_text
from cemlib.core.views import ENERGIES, SIDES, VIEWS
from cemlib.data.sources.cddcesm import (
    COLUMNS,
    DATASET,
    FOLDER_OF_ENERGY,
    PATHOLOGY_COLUMN,
    SEGMENTATION_CSV,
    SHEET,
    VIA_COLUMNS,
    WORKBOOK_NAMES,
    ImageName,
    parse_image_name,
)
from cemlib.data.sources.masks import mask_outlines
from cemlib.synthetic.cohort import LESIONS_FILE, replica_lesions_table, sample_cohort
from cemlib.synthetic.phantom import FULL_SHAPE, render_exam
from cemlib.synthetic.writer import finish_replica, prepare_replica_dir, write_patients

RELEASE_SHAPE = (2355, 1315)
LE_WINDOW = (1500.0, 3300.0)
DES_WINDOW = (1800.0, 3000.0)
JPEG_QUALITY = 92
REPLICA_FILE = "replica.json"
#: The column of lesions.csv holding the workbook's Patient_ID (patient_id is 'P' and it, as in file names).
LESION_KEY_COLUMN = "patient_number"
#: How a view's lesion region is stored in the VIA CSV (weights for regions larger than a few pixels).
VIA_SHAPES = {"polygon": 0.62, "ellipse": 0.18, "circle": 0.12, "polyline": 0.08}
#: Region area (pixels) under which the annotator clicked a point instead of drawing an outline.
POINT_AREA = 12
MACHINES = ("GE Senographe DS", "Hologic Selenia Dimensions")
OTHER_SHEETS: dict[str, tuple[str, ...]] = {
    "mass_description": (
        "Image_name",
        "Patient_ID",
        "Side",
        "View",
        "Mass shape",
        "Mass margin",
        "Mass density",
        "Pathology Classification/ Follow up",
    ),
    "mass enhancement_description": (
        "Image_name",
        "Patient_ID",
        "Side",
        "View",
        "Enhancement pattern",
        "Enhancement degree",
        "Pathology Classification/ Follow up",
    ),
    "nonmass enhancement_description": (
        "Image_name",
        "Patient_ID",
        "Side",
        "View",
        "Distribution",
        "Internal enhancement pattern",
        PATHOLOGY_COLUMN,
    ),
    "calcifications": (
        "Image_name",
        "Patient_ID",
        "Side",
        "View",
        "Morphology",
        "Distribution",
        "Pathology Classification/ Follow up",
    ),
    "asymmetry": (
        "Image_name",
        "Patient_ID",
        "Side",
        "View",
        "Asymmetry type",
        "Pathology Classification/ Follow up",
    ),
    "distortion": ("Image_name", "Patient_ID", "Side", "View", "Pathology Classification/ Follow up"),
    "postoperative": (
        "Image_name",
        "Patient_ID",
        "Side",
        "View",
        "Findings",
        "Pathology Classification/ Follow up",
    ),
    "postneoajuvant chemotherapy": (
        "Image_name",
        "Patient_ID",
        "Side",
        "View",
        "Response",
        "Pathology Classification/ Follow up",
    ),
}
#: The release's spelling of a few lexicon words.
RELEASE_WORDS = {"spiculated": "speculated", "non-mass enhancement": "non mass enhancement"}
DEGREE = {0: "none", 1: "mild", 2: "moderate", 3: "marked"}


@dataclass(frozen=True)
class PatientPlan:
    """What the replica does with one phantom patient: which images exist and which quirks it shows."""

    number: int
    missing: tuple[tuple[str, str, str], ...]  # (side, view, energy) left out
    spaced_files: tuple[tuple[str, str, str], ...]  # file names with a space before .jpg
    spaced_names: tuple[tuple[str, str, str], ...]  # Image_name cells with stray spaces
    dollar_sides: tuple[str, ...]  # breasts whose BIRADS/Findings get a second `$`-joined finding
    empty_region_rows: tuple[tuple[str, str, str], ...]  # images listed in the VIA CSV with `{}`
    machine: str
    seed: int


def plan_replica(specs: Sequence[Any], seed: int) -> list[PatientPlan]:
    """Deterministic quirks per patient; with two or more patients one is complete and one is not."""
    keys = [(s, v, e) for s in SIDES for v in VIEWS for e in ENERGIES]
    plans = []
    for index, spec in enumerate(specs):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCDD, index]))
        kind = rng.choice(["complete", "breast", "view", "image"], p=[0.59, 0.27, 0.09, 0.05])
        if index == 0:
            kind = "complete"
        elif index == 1:
            kind = "breast"
        side, view, energy = SIDES[rng.integers(2)], VIEWS[rng.integers(2)], ENERGIES[rng.integers(2)]
        missing = {
            "complete": [],
            "breast": [k for k in keys if k[0] == side],
            "view": [k for k in keys if k[:2] == (side, view)],
            "image": [(side, view, energy)],
        }[kind]
        present = [k for k in keys if k not in missing]
        spaced_files = [k for k in present if rng.random() < 0.05]
        spaced_names = [k for k in present if rng.random() < 0.05]
        if index == 0:
            spaced_files.append(("R", "CC", "DES"))
            spaced_names.append(("L", "MLO", "LE"))
        lesion_sides = [s for s in SIDES if spec.breasts[s].lesions]
        dollar = [s for s in lesion_sides if rng.random() < 0.25]
        if index == 0 and not dollar:
            dollar = list(SIDES)  # the first patient always shows the `$` quirk
        empty = [k for k in present if not spec.breasts[k[0]].lesions and rng.random() < 0.3]
        if index == 0 and not empty:
            empty = [present[0]]
        plans.append(
            PatientPlan(
                index + 1,
                tuple(missing),
                tuple(sorted(set(spaced_files))),
                tuple(sorted(set(spaced_names))),
                tuple(dollar),
                tuple(empty),
                MACHINES[int(rng.integers(len(MACHINES)))],
                int(rng.integers(2**31)),
            )
        )
    return plans


def _window8(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Linear map of raw values window[0]..window[1] onto 0..255, clipped, as uint8."""
    low, high = window
    scaled = (image.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _breast_columns(le: np.ndarray, side: str, margin: int) -> slice:
    """Columns from the chest-wall edge to the breast's far edge plus a margin (marker left out)."""
    tissue = le > 1000
    labels, count = ndimage.label(tissue)
    if count == 0:
        return slice(0, le.shape[1])
    sizes = ndimage.sum(tissue, labels, range(1, count + 1))
    columns = np.nonzero((labels == int(np.argmax(sizes)) + 1).any(axis=0))[0]
    if side == "L":  # chest wall on the left edge
        return slice(0, min(le.shape[1], int(columns.max()) + 1 + margin))
    return slice(max(0, int(columns.min()) - margin), le.shape[1])


def render_views(spec: Any, scale: float) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """The replica's pixels of one patient: per (side, view) the 8-bit LE and DES and the lesion mask."""
    rows = max(16, round(RELEASE_SHAPE[0] * scale))
    exam = render_exam(spec, min(1.0, max(0.005, rows / FULL_SHAPE[0])))
    views = {}
    for (side, view), mask in exam.masks.items():
        le, des = exam.images[(side, view, "LE")], exam.images[(side, view, "DES")]
        keep = _breast_columns(le, side, margin=max(2, round(0.06 * le.shape[0])))
        views[(side, view)] = {
            "LE": _window8(le[:, keep], LE_WINDOW),
            "DES": _window8(des[:, keep], DES_WINDOW),
            "mask": np.ascontiguousarray(mask[:, keep]),
        }
    return views


def _via_region(outline: Any, rng: np.random.Generator) -> dict:
    """One outline as a VIA region_shape_attributes dict of a randomly chosen shape."""
    if outline.area < POINT_AREA:
        return {"name": "point", "cx": round(outline.cx), "cy": round(outline.cy)}
    name = str(rng.choice(list(VIA_SHAPES), p=list(VIA_SHAPES.values())))
    if name in ("polygon", "polyline"):
        return {
            "name": name,
            "all_points_x": [round(x) for x in outline.xs],
            "all_points_y": [round(y) for y in outline.ys],
        }
    if name == "ellipse":
        return {
            "name": "ellipse",
            "cx": round(outline.cx, 1),
            "cy": round(outline.cy, 1),
            "rx": round(outline.rx, 1),
            "ry": round(outline.ry, 1),
            "theta": round(outline.theta, 4),
        }
    return {
        "name": "circle",
        "cx": round(outline.cx, 1),
        "cy": round(outline.cy, 1),
        "r": round(float(np.sqrt(outline.area / np.pi)), 1),
    }


def _image_file_name(number: int, side: str, view: str, energy: str, spaced: bool) -> str:
    code = "DM" if energy == "LE" else "CM"
    return f"P{number}_{side}_{code}_{view}{' ' if spaced else ''}.jpg"


def _findings(spec_breast: Any, energy: str, dollar: bool) -> tuple[str, str, str]:
    """(BIRADS, Findings, Tags) cells of one image of a breast."""
    lesions = spec_breast.lesions
    category = next((ch for ch in spec_breast.birads if ch.isdigit()), "1")
    if spec_breast.birads == "3-4A":
        category = "4"
    if not lesions:
        return "1", "No abnormality", "normal"
    f = lesions[0].finding
    kind = RELEASE_WORDS.get(f.kind, f.kind)
    if energy == "LE":
        if f.kind == "mass":
            finding = f"{f.shape} {RELEASE_WORDS.get(f.margin, f.margin)} mass"
        elif f.kind == "calcifications":
            finding = f"{f.morphology} {f.margin} calcifications"
        else:
            finding = f"{f.shape} {kind}"
        tags = kind
    else:
        enhancing = f.enhancement != "none"
        degree = DEGREE[f.enhancement_level]
        finding = f"{degree} {f.enhancement} enhancement" if enhancing else "no enhancement"
        tags = "enhancement" if enhancing else "no enhancement"
    if dollar:
        return f"{category}$2", f"{finding}$benign calcifications", f"{tags}$calcification"
    return category, finding, tags


def _patient_task(args: tuple[Any, PatientPlan, Path, float]) -> dict:
    """Render and write one patient's JPEGs; return its workbook rows and VIA rows."""
    spec, plan, out, scale = args
    views = render_views(spec, scale)
    rng = np.random.default_rng(plan.seed)
    sheet, via, extra = [], [], defaultdict(list)
    for (side, view), pixels in sorted(views.items()):
        breast = spec.breasts[side]
        outlines = mask_outlines(pixels["mask"])
        regions = [_via_region(o, rng) for o in outlines]
        for energy in ("LE", "DES"):
            if (side, view, energy) in plan.missing:
                continue
            spaced = (side, view, energy) in plan.spaced_files
            file_name = _image_file_name(plan.number, side, view, energy, spaced)
            target = out / FOLDER_OF_ENERGY[energy] / file_name
            with atomic_path(target) as tmp:
                Image.fromarray(pixels[energy], mode="L").save(tmp, format="JPEG", quality=JPEG_QUALITY)
            name = ImageName(plan.number, side, "DM" if energy == "LE" else "CM", view).key
            cell = f"{name} " if (side, view, energy) in plan.spaced_names else name
            birads, findings, tags = _findings(breast, energy, side in plan.dollar_sides)
            pathology = "Malignant" if breast.label else ("Benign" if breast.lesions else "Normal")
            sheet.append(
                {
                    "Image_name": cell,
                    "Patient_ID": plan.number,
                    "Side": side,
                    "Type": "DM" if energy == "LE" else "CESM",
                    "Age": spec.age,
                    "Breast density (ACR)": spec.density.upper() if energy == "LE" else "_",
                    "BIRADS": birads if "$" in birads else int(birads),
                    "Findings": findings,
                    "View": view,
                    "Tags": tags,
                    "Machine": plan.machine,
                    PATHOLOGY_COLUMN: pathology,
                }
            )
            size = target.stat().st_size
            if regions:
                for region_id, region in enumerate(regions):
                    via.append(
                        [
                            file_name,
                            size,
                            "{}",
                            len(regions),
                            region_id,
                            json.dumps(region, separators=(",", ":")),
                            "{}",
                        ]
                    )
            elif (side, view, energy) in plan.empty_region_rows:
                via.append([file_name, size, "{}", 0, 0, "{}", "{}"])
            if breast.lesions:
                f = breast.lesions[0].finding
                base = {
                    "Image_name": name,
                    "Patient_ID": plan.number,
                    "Side": side,
                    "View": view,
                    PATHOLOGY_COLUMN: pathology,
                }
                if energy == "LE" and f.kind == "mass":
                    extra["mass_description"].append(
                        {
                            **base,
                            "Mass shape": f.shape,
                            "Mass margin": RELEASE_WORDS.get(f.margin, f.margin),
                            "Mass density": "high" if f.size_mm > 20 else "equal",
                        }
                    )
                if energy == "LE" and f.kind == "calcifications":
                    extra["calcifications"].append(
                        {**base, "Morphology": f.morphology, "Distribution": f.margin})
                if energy == "LE" and f.kind == "asymmetry":
                    extra["asymmetry"].append({**base, "Asymmetry type": f.shape})
                if energy == "LE":
                    if side in plan.dollar_sides:
                        extra["calcifications"].append(
                            {**base, "Morphology": "coarse", "Distribution": "scattered"}
                        )
                elif f.kind == "non-mass enhancement":
                    extra["nonmass enhancement_description"].append(
                        {**base, "Distribution": f.shape, "Internal enhancement pattern": "clumped"})
                else:
                    extra["mass enhancement_description"].append(
                        {
                            **base,
                            "Enhancement pattern": f.enhancement,
                            "Enhancement degree": DEGREE[f.enhancement_level],
                        }
                    )
    return {"sheet": sheet, "via": via, "extra": dict(extra)}


def _deterministic_xlsx(sheets: dict[str, pd.DataFrame]) -> bytes:
    """An .xlsx with the given sheets whose bytes depend only on the content (fixed zip times)."""
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, frame in sheets.items():
        sheet = workbook.create_sheet(title)
        sheet.append(list(frame.columns))
        for values in frame.itertuples(index=False):
            sheet.append([None if (isinstance(v, float) and np.isnan(v)) else v for v in values])
    workbook.properties.created = dt.datetime(2022, 1, 1)
    workbook.properties.creator = "cemlib replica"
    raw = io.BytesIO()
    workbook.save(raw)
    source = zipfile.ZipFile(io.BytesIO(raw.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=(2022, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            data = source.read(info.filename)
            if info.filename == "docProps/core.xml":  # openpyxl stamps the save time here
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2022-01-01T00:00:00Z", data)
            target.writestr(entry, data)
    return out.getvalue()


def write_replica(
    out: str | Path,
    patients: int = 40,
    seed: int = 0,
    scale: float = 0.08,
    workers: int | None = None,
    workbook_name: str = WORKBOOK_NAMES[0],
) -> Path:
    """Write the phantom cohort as a CDD-CESM replica (JPEGs, workbook, VIA CSV, lesions.csv); returns ROOT.

    `scale` is relative to the release's 2355-row images; `workbook_name` picks either spelling.
    """
    if workbook_name not in WORKBOOK_NAMES:
        raise ValueError(f"workbook_name must be one of {WORKBOOK_NAMES}, got {workbook_name!r}")
    out = Path(out).resolve()
    prepare_replica_dir(out, "CDD-CESM", REPLICA_FILE)
    specs = sample_cohort(patients, seed, DATASET)
    plans = plan_replica(specs, seed)
    for folder in FOLDER_OF_ENERGY.values():
        (out / folder).mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            out / folder / "desktop.ini",
            "[.ShellClassInfo]\r\nIconResource=C:\\Windows\\System32\\imageres.dll,-3\r\n",
        )
    tasks = [(spec, plan, out, scale) for spec, plan in zip(specs, plans, strict=True)]
    results = write_patients(_patient_task, tasks, workers, "synth cddcesm")

    sheets = {SHEET: pd.DataFrame([r for res in results for r in res["sheet"]], columns=list(COLUMNS))}
    for title, columns in OTHER_SHEETS.items():
        rows = [r for res in results for r in res["extra"].get(title, [])]
        sheets[title] = pd.DataFrame(rows, columns=list(columns))
    atomic_write_bytes(out / workbook_name, _deterministic_xlsx(sheets))
    _write_via_csv(out / SEGMENTATION_CSV, [row for res in results for row in res["via"]])
    atomic_write_text(out / LESIONS_FILE, _lesions_table(specs, results).to_csv(index=False))
    return finish_replica(out, REPLICA_FILE, "cemlib.synthetic.cddcesm", DATASET, seed, scale, patients,
                          le_window=LE_WINDOW, des_window=DES_WINDOW)


def _lesions_table(specs: Sequence[Any], results: Sequence[dict]) -> pd.DataFrame:
    """lesions.csv of the replica: the findings of every breast with a row in sheet `all`."""
    breasts = {}
    for spec, result in zip(specs, results, strict=True):
        for row in result["sheet"]:
            name = parse_image_name(row["Image_name"])
            breasts[(spec.patient_id, name.side)] = (name.patient_id, name.patient_number)
    return replica_lesions_table(list(specs), breasts, LESION_KEY_COLUMN)


def _write_via_csv(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    """The VIA export: its header, one row per region, JSON cells quoted as VIA quotes them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(VIA_COLUMNS)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
