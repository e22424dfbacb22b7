"""GE layout (the synthetic cohort written by `cem synth`, and GE exports arranged the same way).

    ROOT/<patient_id>/<SIDE>_<VIEW>_<ENERGY>.dcm     SIDE L|R, VIEW CC|MLO, ENERGY LE|DES (any case)
    ROOT/labels.csv                                  one row per breast: patient_id, side, label
                                                     (+ birads, pathology, age, density)
    ROOT/masks/<patient_id>/<SIDE>_<VIEW>.png        optional lesion mask, shared by both energies

Patient ids: a folder name may be a patient's name, so the manifest's patient_id is a pseudonym,
"GE" + the first 10 hex digits of the sha256 of the folder name (stable; anyone holding the folder names
can recompute it), and labels.csv's patient_id column (the folder names) is mapped the same way. Only
names of the form SYN0001 (four or more digits), the ids `cem synth` gives its phantom patients, are kept
as they are. The path columns of images.csv and exclusions.csv store such a folder as its token
(``@GE1A2B3C4D5E/L_CC_LE.dcm``, cemlib.data.paths), and so any file name the layout does not define; the
on-disk names appear only in the private mappings ``<manifest>/private/patient_names.csv`` (pseudonym,
folder) and ``private/paths.csv`` that ``Manifest.save`` writes, for the user to keep or delete. The
header's PatientID is never read. Files not ending in .dcm are ignored; a .dcm file with any other name
is excluded with its reason (the name itself is not repeated in the reason).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from cemlib.core.views import NamedView
from cemlib.data import paths
from cemlib.data.manifest import Manifest, assemble, exclusion
from cemlib.data.sources.dicom import Candidate, check_candidates, dicom_files, rel

NAME = re.compile(r"^(?P<side>[LR])_(?P<view>CC|MLO)_(?P<energy>LE|DES)\.dcm$", re.IGNORECASE)
#: The layout as shown to users (one-exam reports).
DISPLAY_NAME = "GE/synthetic"
MASK_NAME = re.compile(r"^[LR]_(CC|MLO)\.png$")
LABELS_FILE = "labels.csv"
REQUIRED_LABEL_COLUMNS = ("patient_id", "side", "label")
OPTIONAL_LABEL_COLUMNS = ("birads", "pathology", "age", "density")
#: Sub-folders of ROOT that are never patients.
RESERVED = {"masks", "manifest"}
#: Folder names that are already pseudonyms: the patient ids of the synthetic cohort.
SYNTHETIC_ID = re.compile(r"^SYN\d{4,}$")


def pseudonym(folder_name: str) -> str:
    """Patient id of a folder: SYN#### as it is, any other name "GE" + 10 hex digits of its sha256."""
    if SYNTHETIC_ID.match(folder_name):
        return folder_name
    return paths.pseudonym(folder_name, "GE")


def stored_path(rel_path: str) -> str:
    """How the tables store a path: each folder or file name the layout does not define as a token."""
    return paths.tokenise(rel_path, "GE", lambda part: bool(
        part in RESERVED or SYNTHETIC_ID.match(part) or NAME.match(part) or MASK_NAME.match(part)))


def patient_folders(root: Path) -> list[Path]:
    """Sub-folders of root holding at least one .dcm file (reserved and hidden folders skipped)."""
    folders = [p for p in sorted(root.iterdir())
               if p.is_dir() and p.name not in RESERVED and not p.name.startswith((".", "_"))]
    return [p for p in folders if dicom_files(p)]


def detect(root: str | Path) -> bool:
    """True when root has labels.csv and a patient folder with SIDE_VIEW_ENERGY.dcm files."""
    root = Path(root)
    if not (root / LABELS_FILE).is_file():
        return False
    for folder in patient_folders(root)[:5]:
        if any(NAME.match(p.name) for p in dicom_files(folder)):
            return True
    return False


def read_labels(path: Path) -> pd.DataFrame:
    """labels.csv as text columns; ValueError naming the file when a required column is missing."""
    try:
        labels = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV table ({exc})") from exc
    labels.columns = [str(c).strip().lower() for c in labels.columns]
    missing = [c for c in REQUIRED_LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(REQUIRED_LABEL_COLUMNS)} "
                         f"plus optional {list(OPTIONAL_LABEL_COLUMNS)}")
    for column in OPTIONAL_LABEL_COLUMNS:
        if column not in labels.columns:
            labels[column] = ""
    labels["patient_id"] = labels["patient_id"].str.strip().map(pseudonym)
    return labels.loc[:, [*REQUIRED_LABEL_COLUMNS, *OPTIONAL_LABEL_COLUMNS]]


def find_candidates(root: Path) -> tuple[list[Candidate], list[dict]]:
    """Images named by the layout, and exclusion rows for .dcm files with other names."""
    candidates, rejected = [], []
    for folder in patient_folders(root):
        for path in dicom_files(folder):
            match = NAME.match(path.name)
            if not match:
                rejected.append(exclusion(pseudonym(folder.name), "a .dcm file whose name is not "
                                          "SIDE_VIEW_ENERGY.dcm (e.g. L_CC_LE.dcm; the path column holds it, "
                                          "private/paths.csv its name)",
                                          "unrecognised_name", path=rel(path, root)))
                continue
            side, view = match["side"].upper(), match["view"].upper()
            mask = root / "masks" / folder.name / f"{side}_{view}.png"
            candidates.append(Candidate(pseudonym(folder.name), side, view, match["energy"].upper(),
                                        rel(path, root), rel(mask, root) if mask.is_file() else ""))
    return candidates, rejected


def scan(root: str | Path, workers: int | None = None, dataset: str | None = None,
         check_views: bool = True) -> Manifest:
    """Manifest of a GE-layout folder (split left empty); dataset 'synthetic' when cohort.json exists.

    ``check_views``: exclude views whose pixels contradict their tags (see manifest.assemble)."""
    root = Path(root)
    labels_path = root / LABELS_FILE
    if not labels_path.is_file():
        raise FileNotFoundError(f"{root}: no {LABELS_FILE} (GE layout needs one row per breast)")
    dataset = dataset or ("synthetic" if (root / "cohort.json").is_file() else "ge")
    candidates, rejected = find_candidates(root)
    images, bad_headers = check_candidates(root, candidates, workers)
    manifest = assemble(dataset, root, images, read_labels(labels_path), rejected + bad_headers,
                        workers=workers, stored_path=stored_path, check_views=check_views)
    manifest.private_names = {pseudonym(f.name): f.name for f in patient_folders(root)
                              if pseudonym(f.name) != f.name}
    return manifest


def view_from_name(path: Path) -> NamedView | None:
    """What a GE-layout file name (L_CC_LE.dcm) says about an image; None for another name."""
    match = NAME.match(path.name)
    if match is None:
        return None
    return NamedView(match["side"].upper(), match["view"].upper(), match["energy"].upper())
