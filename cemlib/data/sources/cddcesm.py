"""CDD-CESM (Khaled et al., Sci Data 2022; TCIA): the release's folders read into a manifest.

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

import numpy as np
import pandas as pd
from PIL import Image

from cemlib.core.views import NamedView
from cemlib.data.manifest import Manifest, assemble, cell_text, exclusion, map_files, one_breast_exclusions
from cemlib.data.sources.dicom import default_mask_dir
from cemlib.data.sources.masks import via_region_mask, write_mask_png

DATASET = "cddcesm"
#: The layout as shown to users.
DISPLAY_NAME = "CDD-CESM"
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
    check_views: bool = True,
) -> Manifest:
    """Turn a CDD-CESM release folder into a Manifest (energies LE and DES, split left to the caller).

    Lesion masks go to `mask_dir` (default `default_mask_dir(root)`, beside the release); with
    `write_masks=False` no file is written and mask_path stays empty. ``check_views``: exclude views
    whose pixels contradict their tags (see manifest.assemble).
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
        check_views=check_views,
    )
    manifest.extra.update(
        {
            "layout": DATASET,
            "workbook": workbook.name,
            "segmentations": segmentation.name if segmentation else "",
        }
    )
    return manifest


def view_from_name(path: Path) -> NamedView | None:
    """What a CDD-CESM image name (P12_L_CM_CC.jpg) says; the release's patient number is the key."""
    parsed = parse_image_name(path.name) if path.suffix.lower() in (".jpg", ".jpeg") else None
    if parsed is None:
        return None
    return NamedView(parsed.side, parsed.view, parsed.energy, parsed.patient_id)
