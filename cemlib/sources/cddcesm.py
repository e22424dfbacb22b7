"""CDD-CESM (Khaled et al., Sci Data 2022; TCIA): the release's folders as a manifest, and a replica writer.

Release layout (ROOT is the folder that holds the two image folders; the workbook and the segmentation
CSV are looked for in ROOT, then in its parent, since TCIA serves them as separate downloads):

    ROOT/Low energy images of CDD-CESM/P<id>_<L|R>_DM_<CC|MLO>.jpg     low energy (LE), 8-bit JPEG
    ROOT/Subtracted images of CDD-CESM/P<id>_<L|R>_CM_<CC|MLO>.jpg     recombined (DES), 8-bit JPEG
    ROOT/Radiology manual annotations.xlsx  (or Radiology-manual-annotations.xlsx), sheet `all`
    ROOT/Radiology_hand_drawn_segmentations_v2.csv                     VGG Image Annotator export

Quirks handled: a stray space before `.jpg` and in `Image_name`, `desktop.ini` and other non-JPEG files
in the image folders (ignored), `Type` CESM in the workbook for CM in file names, `$`-joined BIRADS and
Findings (one value per finding; the breast's BI-RADS is the highest category), density only on DM rows
(`_` on CESM rows). Breast label: malignant if any image of (Patient_ID, Side) is `Malignant`, else
benign (Normal and Benign are 0). Lesion masks are rasterised from the VIA regions and written as PNGs
to a folder beside the release, never into it (`default_mask_dir`), shared by the LE and DES image of a
view when both have the same size. Patients without all eight images are excluded by the manifest's
shared validation (the paper kept 193 of 326).

Not checked against the real release: the columns of the workbook's sheets other than `all` (only `all`
is read) and the orientation of the stored JPEGs (the pixel check assumes left breasts face left and
right breasts right; a release stored otherwise is excluded with the orientation reason, and
`check_orientation=False` turns the check off).
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from cemlib.fileio import atomic_path, atomic_write_bytes, atomic_write_text
from cemlib.manifest import Manifest, assemble, cell_text, exclusion, map_files, one_breast_exclusions
from cemlib.sources.dicom import default_mask_dir, prepare_replica_dir
from cemlib.sources.masks import mask_outlines, via_region_mask, write_mask_png

DATASET = "cddcesm"
LOW_ENERGY_DIR = "Low energy images of CDD-CESM"
SUBTRACTED_DIR = "Subtracted images of CDD-CESM"
WORKBOOK_NAMES = ("Radiology manual annotations.xlsx", "Radiology-manual-annotations.xlsx")
SEGMENTATION_CSV = "Radiology_hand_drawn_segmentations_v2.csv"
SHEET = "all"
COLUMNS = (
    "Image_name",
    "Patient_ID",
    "Side",
    "Type",
    "Age",
    "Breast density (ACR)",
    "BIRADS",
    "Findings",
    "View",
    "Tags",
    "Machine",
    "Pathology Classification/ Follow up",
)
PATHOLOGY_COLUMN = "Pathology Classification/ Follow up"
VIA_COLUMNS = (
    "#filename",
    "file_size",
    "file_attributes",
    "region_count",
    "region_id",
    "region_shape_attributes",
    "region_attributes",
)
#: Image-name code -> energy, and workbook Type -> the code it must agree with.
ENERGY_OF_CODE = {"DM": "LE", "CM": "DES"}
CODE_OF_TYPE = {"DM": "DM", "CESM": "CM", "CM": "CM"}
FOLDER_OF_ENERGY = {"LE": LOW_ENERGY_DIR, "DES": SUBTRACTED_DIR}
NAME_PATTERN = re.compile(r"^P(\d+)_([LR])_(DM|CM)_(CC|MLO)$", re.IGNORECASE)
LABEL_OF_PATHOLOGY = {"malignant": 1, "benign": 0, "normal": 0}
#: Order of the breast-level pathology text: the worst finding names the breast.
PATHOLOGY_RANK = {"normal": 0, "benign": 1, "malignant": 2}
DENSITY_CODES = {"a": "a", "b": "b", "c": "c", "d": "d", "1": "a", "2": "b", "3": "c", "4": "d"}


@dataclass(frozen=True)
class ImageName:
    """The parts of a CDD-CESM image name (file stem or workbook Image_name)."""

    patient_number: int
    side: str
    code: str
    view: str

    @property
    def patient_id(self) -> str:
        """Patient id used in the manifest: 'P' and the release's number, as in the file names."""
        return f"P{self.patient_number}"

    @property
    def energy(self) -> str:
        """LE for DM (low energy), DES for CM (subtracted)."""
        return ENERGY_OF_CODE[self.code]

    @property
    def key(self) -> str:
        """Canonical name without spaces or extension, e.g. 'P12_L_CM_CC'."""
        return f"P{self.patient_number}_{self.side}_{self.code}_{self.view}"


def parse_image_name(name: str) -> ImageName | None:
    """Parse 'P12_L_CM_CC', 'P12_L_CM_CC .jpg' or ' P12_L_CM_CC ' (stray spaces anywhere); None if not one."""
    text = re.sub(r"\s+", "", str(name))
    text = re.sub(r"\.jpe?g$", "", text, flags=re.IGNORECASE)
    match = NAME_PATTERN.match(text)
    if not match:
        return None
    number, side, code, view = match.groups()
    return ImageName(int(number), side.upper(), code.upper(), view.upper())


# ------------------------------------------------------------------------------------------- locating


def _image_dir_parent(root: Path) -> Path | None:
    """The folder holding the two image folders: ROOT itself or one folder below it."""
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    for folder in candidates:
        if (folder / LOW_ENERGY_DIR).is_dir() or (folder / SUBTRACTED_DIR).is_dir():
            return folder
    return None


def _find_beside(root: Path, names: Sequence[str]) -> Path | None:
    """The first of `names` found in ROOT, the image folders' parent, or ROOT's parent."""
    places = [root]
    images_parent = _image_dir_parent(root)
    if images_parent is not None and images_parent != root:
        places.append(images_parent)
    places.append(root.parent)
    for place in places:
        for name in names:
            if (place / name).is_file():
                return place / name
    return None


def detect(root: str | Path) -> bool:
    """True when ROOT (or a folder just below it) holds the CDD-CESM image folders."""
    root = Path(root)
    return root.is_dir() and _image_dir_parent(root) is not None


# ------------------------------------------------------------------------------------------- workbook


def read_annotations(path: str | Path) -> pd.DataFrame:
    """Sheet `all` of the annotation workbook as text cells; ValueError naming the file if malformed."""
    path = Path(path)
    try:
        frame = pd.read_excel(path, sheet_name=SHEET, dtype=object, engine="openpyxl")
    except ValueError as exc:
        raise ValueError(f"{path}: cannot read sheet {SHEET!r} ({exc})") from exc
    except Exception as exc:  # zip/XML errors of a damaged workbook
        raise ValueError(f"{path}: not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: sheet {SHEET!r} lacks columns {missing}; found {list(frame.columns)}")
    frame = frame.loc[:, list(COLUMNS)].map(cell_text)
    return frame[~(frame == "").all(axis=1)].reset_index(drop=True)


def birads_values(text: str) -> list[str]:
    """BI-RADS categories of a cell that may hold several `$`-joined findings, e.g. '4$2' -> ['4', '2']."""
    values = []
    for token in str(text).split("$"):
        token = token.strip().upper().replace("BIRADS", "").replace("BI-RADS", "").strip()
        if token.endswith(".0"):
            token = token[:-2]
        if re.fullmatch(r"[0-6]|4[ABC]", token):
            values.append(token)
    return values


def birads_rank(category: str) -> float:
    """Order of BI-RADS categories: 4 < 4A < 4B < 4C < 5."""
    sub = {"": 0.0, "A": 0.1, "B": 0.2, "C": 0.3}
    return float(category[0]) + sub.get(category[1:], 0.0)


def max_birads(cells: Sequence[str]) -> str:
    """Highest BI-RADS category over cells of `$`-joined values; '' when none parses."""
    values = [v for cell in cells for v in birads_values(cell)]
    return max(values, key=birads_rank) if values else ""


def _density(cells: Sequence[str]) -> str:
    """First ACR density among the cells as a-d ('_' and blanks of CESM rows skipped)."""
    for cell in cells:
        code = DENSITY_CODES.get(cell.strip().lower().removeprefix("acr").strip())
        if code:
            return code
    return ""


def _age(cells: Sequence[str]) -> float:
    """First numeric age among the cells, NaN when none."""
    for cell in cells:
        try:
            return float(cell)
        except ValueError:
            continue
    return float("nan")


def breast_label(pathologies: Sequence[str]) -> tuple[int | None, str]:
    """(label, pathology) of a breast from its images' classifications: malignant if any image is.

    The label is None (the manifest then excludes the patient) when no image is malignant and some
    classification is neither Normal, Benign nor Malignant.
    """
    values = [p.strip().lower() for p in pathologies]
    if not values:
        return None, ""
    known = [v for v in values if v in LABEL_OF_PATHOLOGY]
    if "malignant" in known:
        return 1, "Malignant"
    if len(known) < len(values):
        return None, ""
    return 0, max(known, key=PATHOLOGY_RANK.__getitem__).capitalize()


# ------------------------------------------------------------------------------------------------ scan


def _list_images(images_parent: Path, root: Path) -> tuple[list[tuple[ImageName, str]], list[dict]]:
    """(parsed name, path relative to ROOT) of every JPEG, and exclusions for unparseable JPEG names."""
    found, excluded = [], []
    for energy in ("LE", "DES"):
        folder = images_parent / FOLDER_OF_ENERGY[energy]
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in (".jpg", ".jpeg"):
                continue  # desktop.ini, thumbnails and the like
            rel = os.path.relpath(path, root)
            name = parse_image_name(path.name)
            if name is None:
                excluded.append(
                    exclusion(
                        "",
                        f"file name {path.name!r} is not P<id>_<L|R>_<DM|CM>_<CC|MLO>.jpg",
                        "bad_filename",
                        side="",
                        path=rel,
                    )
                )
            elif name.energy != energy:
                excluded.append(
                    exclusion(
                        name.patient_id,
                        f"{name.code} image {path.name!r} lies in {folder.name!r}",
                        "wrong_folder",
                        side=name.side,
                        path=rel,
                    )
                )
            else:
                found.append((name, rel))
    return found, excluded


def _read_size(path: Path) -> tuple[int, int]:
    """(rows, cols) of a JPEG from its header."""
    with Image.open(path) as image:
        cols, rows = image.size
        if image.format != "JPEG":
            raise ValueError(f"not a JPEG file ({image.format})")
    return rows, cols


def _workbook_rows(workbook: Path) -> tuple[dict[str, list[dict]], list[dict]]:
    """Sheet rows grouped by canonical image key, and exclusions for rows that cannot be used."""
    rows: dict[str, list[dict]] = defaultdict(list)
    excluded = []
    for index, row in read_annotations(workbook).iterrows():
        line = index + 2  # header is line 1
        name = parse_image_name(row["Image_name"])
        where = f"{workbook.name} sheet {SHEET!r} row {line}"
        if name is None:
            number = re.sub(r"^P", "", row["Patient_ID"], flags=re.I)
            patient_id = f"P{number}" if number else ""
            excluded.append(
                exclusion(
                    patient_id,
                    f"{where}: Image_name {row['Image_name']!r} is not P<id>_<L|R>_<DM|CM>_<CC|MLO>",
                    "bad_annotation",
                    side=row["Side"],
                    path="",
                )
            )
            continue
        problems = []
        if row["Patient_ID"] and re.sub(r"^P", "", row["Patient_ID"], flags=re.I) != str(name.patient_number):
            problems.append(f"Patient_ID {row['Patient_ID']!r}")
        if row["Side"].upper() != name.side:
            problems.append(f"Side {row['Side']!r}")
        if CODE_OF_TYPE.get(row["Type"].upper()) != name.code:
            problems.append(f"Type {row['Type']!r}")
        if row["View"].upper() != name.view:
            problems.append(f"View {row['View']!r}")
        if problems:
            excluded.append(
                exclusion(
                    name.patient_id,
                    f"{where}: {', '.join(problems)} disagree with Image_name {name.key!r}",
                    "annotation_conflict",
                    side=name.side,
                    path="",
                )
            )
            continue
        rows[name.key].append(dict(row))
    return rows, excluded


def _breasts(rows_by_key: dict[str, list[dict]]) -> list[dict]:
    """One candidate breast row per (patient, side) from the sheet rows."""
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for key, rows in rows_by_key.items():
        name = parse_image_name(key)
        assert name is not None
        grouped[(name.patient_id, name.side)] += rows
    breasts = []
    for (patient_id, side), rows in sorted(grouped.items()):
        label, pathology = breast_label([r[PATHOLOGY_COLUMN] for r in rows])
        breasts.append(
            {
                "patient_id": patient_id,
                "side": side,
                "label": label,
                "pathology": pathology,
                "birads": max_birads([r["BIRADS"] for r in rows]),
                "age": _age([r["Age"] for r in rows]),
                "density": _density([r["Breast density (ACR)"] for r in rows]),
            }
        )
    return breasts


def read_segmentations(path: str | Path) -> dict[str, list[dict]]:
    """VIA regions per canonical image key ({} rows give none); ValueError naming the file and line."""
    path = Path(path)
    regions: dict[str, list[dict]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != VIA_COLUMNS:
            raise ValueError(f"{path}: header {header} is not the VIA export header {list(VIA_COLUMNS)}")
        for line, record in enumerate(reader, start=2):
            if not record or all(not cell.strip() for cell in record):
                continue
            if len(record) != len(VIA_COLUMNS):
                raise ValueError(f"{path} line {line}: {len(record)} fields, expected {len(VIA_COLUMNS)}")
            name = parse_image_name(record[0])
            if name is None:
                raise ValueError(f"{path} line {line}: file name {record[0]!r} is not a CDD-CESM image name")
            try:
                shape = json.loads(record[5] or "{}")
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {line}: region_shape_attributes is not JSON ({exc})") from exc
            if not isinstance(shape, dict):
                raise ValueError(f"{path} line {line}: region_shape_attributes is not an object")
            regions.setdefault(name.key, [])
            if shape:
                regions[name.key].append({"line": line, **shape})
    return dict(regions)


def _rasterise(shape: tuple[int, int], regions: Sequence[dict], source: Path) -> np.ndarray:
    """Union of the regions' masks on an image of `shape`; ValueError naming the CSV line if malformed."""
    mask = np.zeros(shape, dtype=bool)
    for region in regions:
        attributes = {k: v for k, v in region.items() if k != "line"}
        try:
            mask |= via_region_mask(shape, attributes)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source} line {region['line']}: {exc}") from exc
    return mask


def _write_masks(
    images: list[dict], regions: dict[str, list[dict]], segmentation: Path, root: Path, mask_dir: Path
) -> int:
    """Rasterise each view's regions (LE and DES pooled when the sizes agree), set mask_path; count."""
    by_view: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for image in images:
        by_view[(image["patient_id"], image["side"], image["view"])].append(image)
    written = 0
    for (patient_id, side, view), members in sorted(by_view.items()):
        sizes = {(m["rows"], m["cols"]) for m in members}
        groups = [members] if len(sizes) == 1 else [[m] for m in members]
        for group in groups:
            pooled = [r for m in group for r in regions.get(m["_key"], [])]
            if not pooled:
                continue
            shape = (group[0]["rows"], group[0]["cols"])
            mask = _rasterise(shape, pooled, segmentation)
            suffix = "" if len(groups) == 1 else f"_{group[0]['energy']}"
            target = mask_dir / f"{patient_id}_{side}_{view}{suffix}.png"
            write_mask_png(target, mask)
            written += 1
            for member in group:
                member["mask_path"] = os.path.relpath(target, root)
    return written


def scan(
    root: str | Path,
    workers: int | None = None,
    dataset: str | None = None,
    mask_dir: str | Path | None = None,
    write_masks: bool = True,
) -> Manifest:
    """Turn a CDD-CESM release folder into a Manifest (energies LE and DES, split left to the caller).

    Lesion masks go to `mask_dir` (default `default_mask_dir(root)`, beside the release); with
    `write_masks=False` no file is written and mask_path stays empty.
    """
    root = Path(root)
    images_parent = _image_dir_parent(root) if root.is_dir() else None
    if images_parent is None:
        raise FileNotFoundError(
            f"{root}: no {LOW_ENERGY_DIR!r} or {SUBTRACTED_DIR!r} folder (CDD-CESM release)"
        )
    workbook = _find_beside(root, WORKBOOK_NAMES)
    if workbook is None:
        raise FileNotFoundError(
            f"{root}: annotation workbook not found (looked for "
            f"{' or '.join(WORKBOOK_NAMES)} in {root} and {root.parent})"
        )
    found, exclusions = _list_images(images_parent, root)
    rows_by_key, sheet_exclusions = _workbook_rows(workbook)
    exclusions += sheet_exclusions

    sizes = map_files(_read_size, [root / rel for _, rel in found], workers, desc="JPEG headers")
    images: list[dict] = []
    for (name, rel), size in zip(found, sizes, strict=True):
        if isinstance(size, Exception):
            exclusions.append(
                exclusion(
                    name.patient_id,
                    f"cannot read image {rel}: {type(size).__name__}: {size}",
                    "unreadable",
                    side=name.side,
                    path=rel,
                )
            )
        elif name.key not in rows_by_key:
            exclusions.append(
                exclusion(
                    name.patient_id,
                    f"image {rel} has no row in sheet {SHEET!r} of {workbook.name}",
                    "not_annotated",
                    side=name.side,
                    path=rel,
                )
            )
        else:
            images.append(
                {
                    "patient_id": name.patient_id,
                    "side": name.side,
                    "view": name.view,
                    "energy": name.energy,
                    "path": rel,
                    "rows": size[0],
                    "cols": size[1],
                    "mask_path": "",
                    "_key": name.key,
                }
            )
    on_disk = {image["_key"] for image in images} | {name.key for name, _ in found}
    for key in sorted(set(rows_by_key) - on_disk):
        name = parse_image_name(key)
        assert name is not None
        folder = FOLDER_OF_ENERGY[name.energy]
        expected = os.path.relpath(images_parent / folder / f"{key}.jpg", root)
        exclusions.append(
            exclusion(
                name.patient_id,
                f"sheet {SHEET!r} lists {key} but {folder}/ has no such image",
                "file_missing",
                side=name.side,
                path=expected,
            )
        )

    segmentation = _find_beside(root, (SEGMENTATION_CSV,))
    if segmentation is not None and write_masks:
        regions = read_segmentations(segmentation)
        unknown = sorted(k for k in regions if k not in on_disk and regions[k])
        if unknown:
            warnings.warn(
                f"{segmentation.name}: regions for {len(unknown)} images not in the release "
                f"folders (e.g. {unknown[0]}) were not used",
                stacklevel=2,
            )
        target = Path(mask_dir) if mask_dir is not None else default_mask_dir(root)
        _write_masks(images, regions, segmentation, root, target)
    for image in images:
        image.pop("_key")
    sides: dict[str, set[str]] = defaultdict(set)
    for name in [n for n, _ in found] + [parse_image_name(k) for k in rows_by_key]:
        sides[name.patient_id].add(name.side)
    exclusions += one_breast_exclusions(sides, "the release has no image")
    manifest = assemble(
        dataset or DATASET,
        root,
        images,
        _breasts(rows_by_key),
        exclusions,
        energies=("LE", "DES"),
        workers=workers,
    )
    manifest.extra.update(
        {
            "layout": DATASET,
            "workbook": workbook.name,
            "segmentations": segmentation.name if segmentation else "",
        }
    )
    return manifest


# ---------------------------------------------------------------------------------------------- replica
#
# `write_replica` renders the synthetic phantom (cemlib.synthetic) and writes it as the release is laid
# out. Images: rendered with the release's rows (2355 at scale 1), then cropped from the chest wall to
# the breast's edge plus a margin (the release's JPEGs are cropped, so widths vary around 1315 * scale).
# 8-bit windowing: LE maps raw 1500..3300 linearly onto 0..255, DES maps raw 1800..3000 (its breast
# range, offset about 2000) onto 0..255; both clipped, so the detector background becomes 0. Quirks
# reproduced: breasts or views missing (about 4 in 10 patients incomplete, as 193 of 326 were kept),
# stray spaces in some file names and Image_name cells, desktop.ini in both image folders, density only
# on DM rows ('_' on CESM rows), `$`-joined BIRADS and Findings, the other finding sheets, and a VIA CSV
# mixing polygon, ellipse, circle, polyline and point regions with `{}` rows for images without one.

RELEASE_SHAPE = (2355, 1315)
LE_WINDOW = (1500.0, 3300.0)
DES_WINDOW = (1800.0, 3000.0)
JPEG_QUALITY = 92
REPLICA_FILE = "replica.json"
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
MASS_SHAPE = {"circumscribed": "oval", "irregular": "irregular", "spiculated": "irregular"}
MASS_MARGIN = {"circumscribed": "circumscribed", "irregular": "indistinct", "spiculated": "speculated"}


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
    from cemlib.views import ENERGIES, SIDES, VIEWS

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
    from scipy import ndimage

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
    from cemlib.phantom import FULL_SHAPE, render_exam

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
    lesion = lesions[0]
    if energy == "LE":
        finding = f"{MASS_SHAPE[lesion.margin]} {MASS_MARGIN[lesion.margin]} mass"
        tags = "mass"
    else:
        finding = f"{lesion.pattern} mass enhancement" if lesion.pattern != "none" else "non enhancing mass"
        tags = "enhancement" if lesion.pattern != "none" else "no enhancement"
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
                lesion = breast.lesions[0]
                base = {
                    "Image_name": name,
                    "Patient_ID": plan.number,
                    "Side": side,
                    "View": view,
                    PATHOLOGY_COLUMN: pathology,
                }
                if energy == "LE":
                    extra["mass_description"].append(
                        {
                            **base,
                            "Mass shape": MASS_SHAPE[lesion.margin],
                            "Mass margin": MASS_MARGIN[lesion.margin],
                            "Mass density": "high" if lesion.kind == "malignant" else "equal",
                        }
                    )
                    if side in plan.dollar_sides:
                        extra["calcifications"].append(
                            {**base, "Morphology": "coarse", "Distribution": "scattered"}
                        )
                else:
                    extra["mass enhancement_description"].append(
                        {
                            **base,
                            "Enhancement pattern": lesion.pattern,
                            "Enhancement degree": "marked" if lesion.enhancement > 400 else "mild",
                        }
                    )
    return {"sheet": sheet, "via": via, "extra": dict(extra)}


def _deterministic_xlsx(sheets: dict[str, pd.DataFrame]) -> bytes:
    """An .xlsx with the given sheets whose bytes depend only on the content (fixed zip times)."""
    import datetime as dt
    import io
    import zipfile

    from openpyxl import Workbook

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
    """Write the phantom cohort as a CDD-CESM release replica (JPEGs, workbook, VIA CSV); returns ROOT.

    `scale` is relative to the release's 2355-row images; `workbook_name` picks either spelling.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from cemlib import __version__
    from cemlib.synthetic import GENERATOR_VERSION, sample_cohort

    if workbook_name not in WORKBOOK_NAMES:
        raise ValueError(f"workbook_name must be one of {WORKBOOK_NAMES}, got {workbook_name!r}")
    out = Path(out).resolve()
    prepare_replica_dir(out, "CDD-CESM", REPLICA_FILE)
    specs = sample_cohort(patients, seed)
    plans = plan_replica(specs, seed)
    for folder in FOLDER_OF_ENERGY.values():
        (out / folder).mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            out / folder / "desktop.ini",
            "[.ShellClassInfo]\r\nIconResource=C:\\Windows\\System32\\imageres.dll,-3\r\n",
        )
    tasks = [(spec, plan, out, scale) for spec, plan in zip(specs, plans, strict=True)]
    workers = min(os.cpu_count() or 1, 8) if workers is None else max(0, int(workers))
    progress = {"total": len(tasks), "desc": "synth cddcesm", "unit": "patient"}
    if workers <= 1 or len(tasks) == 1:
        results = [_patient_task(t) for t in tqdm(tasks, **progress)]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(_patient_task, tasks), **progress))

    sheets = {SHEET: pd.DataFrame([r for res in results for r in res["sheet"]], columns=list(COLUMNS))}
    for title, columns in OTHER_SHEETS.items():
        rows = [r for res in results for r in res["extra"].get(title, [])]
        sheets[title] = pd.DataFrame(rows, columns=list(columns))
    atomic_write_bytes(out / workbook_name, _deterministic_xlsx(sheets))
    _write_via_csv(out / SEGMENTATION_CSV, [row for res in results for row in res["via"]])
    settings = {
        "generator": "cemlib.sources.cddcesm",
        "version": GENERATOR_VERSION,
        "cemlib_version": __version__,
        "format": DATASET,
        "seed": seed,
        "scale": scale,
        "patients": patients,
        "le_window": LE_WINDOW,
        "des_window": DES_WINDOW,
    }
    atomic_write_text(out / REPLICA_FILE, json.dumps(settings, indent=2) + "\n")
    return out


def _write_via_csv(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    """The VIA export: its header, one row per region, JSON cells quoted as VIA quotes them."""
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(VIA_COLUMNS)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
