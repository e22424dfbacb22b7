"""The manifest: the dataset-agnostic tables every later step reads (`cem manifest`: cemlib.data.sources).

A manifest folder holds four files:
- images.csv: one row per image (dataset, patient_id, side, view, energy, path relative to the dataset
  root, sha256, rows, cols, mask_path, and the file's size, mtime_ns and sampled digest when it was
  hashed: the cheap check of ``changed_files`` that every use of the manifest runs). Paths are stored as
  ``cemlib.data.paths`` describes: a folder or file name that may be a patient's is a token
  (``@GE1A2B3C4D5E/L_CC_LE.dcm``), which ``Manifest.image_path`` finds again on disk;
- breasts.csv: one row per breast (dataset, patient_id, side, label 0/1, birads, pathology, age, density,
  split);
- exclusions.csv: one row per excluded image or patient with a readable reason (dataset, patient_id,
  side, path, reason, kind). A row with a path is an image the adapter could not use; a row without a
  path excludes the whole patient. A patient counts as excluded when it has rows here and none in
  breasts.csv (an image-level row alone, say a stray file, does not exclude a complete exam);
- manifest.json: dataset, root (relative to the manifest folder, so that a project moved or copied with
  its data finds it; the absolute path as well, tried when the relative one is gone; a manifest written
  before holds the absolute path only and is read as before), energies, split seed and ratios, version;
- private/patient_names.csv and private/paths.csv (layouts that pseudonymise folder names: GE, MF_MODEL):
  pseudonym -> folder name and stored path -> on-disk path, for the user alone: no step of cemlib reads
  them, copy them nowhere, delete them if they are not needed.

Source adapters (cemlib.data.sources) turn a folder into candidate tables; `assemble` applies the checks
every dataset shares (complete views, one image per view, a 0/1 label per breast, readable files, no
image stored twice, views whose pixels agree with their tags) and adds checksums.
`split_patients` makes the patient-level split stratified by patient class.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cemlib import __version__
from cemlib.core.fileio import atomic_path, atomic_write_text, folder_lock
from cemlib.core.views import ENERGIES, SIDES, VIEW_ORDER, VIEWS
from cemlib.core.vocab import PATIENT_CLASSES, patient_classes
from cemlib.data.integrity import FileFacts, duplicate_problems, error_text, inspect_file, view_problems
from cemlib.data.paths import PathResolver, shared_resolver, store_paths
from cemlib.pixels.sizecap import MAX_IMAGE_SIZE

IMAGE_COLUMNS = ("dataset", "patient_id", "side", "view", "energy", "path", "sha256", "rows", "cols",
                 "mask_path", "size", "mtime_ns", "sampled_digest")
#: Columns a manifest written before they existed may lack (filled with -1: unknown).
OPTIONAL_IMAGE_COLUMNS = ("size", "mtime_ns")
#: Text columns a manifest written before they existed may lack (filled with "": unknown).
OPTIONAL_TEXT_COLUMNS = ("sampled_digest",)
BREAST_COLUMNS = ("dataset", "patient_id", "side", "label", "birads", "pathology", "age", "density", "split")
EXCLUSION_COLUMNS = ("dataset", "patient_id", "side", "path", "reason", "kind")
SPLITS = ("train", "val", "test")
EXTERNAL_SPLIT = "external"
DEFAULT_RATIOS = (0.7, 0.1, 0.2)
TABLE_FILES = {"images": "images.csv", "breasts": "breasts.csv", "exclusions": "exclusions.csv"}
#: The user's private map from pseudonymous patient ids back to on-disk folder names (never read by cemlib).
PRIVATE_NAMES = "private/patient_names.csv"
#: The user's private map from stored (pseudonymised) paths to on-disk paths (never read by cemlib).
PRIVATE_PATHS = "private/paths.csv"


def default_workers() -> int:
    """Threads for file reads: hashing and header parsing wait on the disk, so a few more than cores."""
    return min(8, (os.cpu_count() or 1) + 2)


@dataclass
class Manifest:
    """A dataset as tables: images, breasts and exclusions, with the root their paths are relative to."""

    dataset: str
    root: Path
    images: pd.DataFrame
    breasts: pd.DataFrame
    exclusions: pd.DataFrame
    energies: tuple[str, ...] = ENERGIES
    split_seed: int | None = None
    split_ratios: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: pseudonymous patient_id -> on-disk folder name; written only to PRIVATE_NAMES, never to the tables
    private_names: dict[str, str] = field(default_factory=dict, repr=False)
    #: stored path -> on-disk path where they differ; written only to PRIVATE_PATHS, never to the tables
    private_paths: dict[str, str] = field(default_factory=dict, repr=False)
    _resolver: PathResolver | None = field(default=None, init=False, repr=False, compare=False)

    def resolve(self, stored: str) -> Path:
        """The file a stored path (relative, maybe with tokens: cemlib.data.paths) names under the root."""
        if self._resolver is None or self._resolver.root != Path(self.root):
            self._resolver = shared_resolver(self.root)
        return self._resolver.resolve(stored)

    def image_path(self, row: pd.Series | dict) -> Path:
        """Absolute path of an image row."""
        return self.resolve(str(row["path"]))

    def mask_path(self, row: pd.Series | dict) -> Path | None:
        """Absolute path of an image row's lesion mask, or None when it has none."""
        rel = str(row.get("mask_path", "") or "")
        return self.resolve(rel) if rel else None

    @property
    def patients(self) -> list[str]:
        """Sorted ids of the patients kept in the manifest."""
        return sorted(self.breasts["patient_id"].unique().tolist())

    def excluded_patients(self) -> list[str]:
        """Sorted ids of patients that have exclusion rows and no breast kept."""
        kept = set(self.breasts["patient_id"])
        return sorted(set(self.exclusions["patient_id"]) - kept)

    def save(self, folder: str | Path) -> Path:
        """Write the three CSV tables and manifest.json into `folder`, each file atomically.

        FolderInUse when another process is writing the same folder.
        """
        with folder_lock(folder, "cem manifest"):
            return self._save(Path(folder))

    def _save(self, folder: Path) -> Path:
        """`save` with the folder's lock held."""
        for name, filename in TABLE_FILES.items():
            frame: pd.DataFrame = getattr(self, name)
            with atomic_path(folder / filename) as tmp:
                frame.to_csv(tmp, index=False, lineterminator="\n")
        meta = {
            "dataset": self.dataset,
            **root_entries(Path(self.root), folder),
            "energies": list(self.energies),
            "split_seed": self.split_seed,
            "split_ratios": list(self.split_ratios) if self.split_ratios is not None else None,
            "cemlib_version": __version__,
            **self.extra,
        }
        atomic_write_text(folder / "manifest.json", json.dumps(meta, indent=2) + "\n")
        for name, mapping, columns in ((PRIVATE_NAMES, self.private_names, ["patient_id", "folder"]),
                                       (PRIVATE_PATHS, self.private_paths, ["path", "on_disk"])):
            if mapping:
                (folder / name).parent.mkdir(exist_ok=True)
                with atomic_path(folder / name) as tmp:
                    pd.DataFrame(sorted(mapping.items()), columns=columns).to_csv(
                        tmp, index=False, lineterminator="\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        """Read a manifest folder written by `save`."""
        folder = Path(folder)
        meta_path = folder / "manifest.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no manifest.json in {folder} (run `cem manifest` on the dataset first)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{meta_path}: not valid JSON ({exc})") from exc
        tables = {}
        for name, filename in TABLE_FILES.items():
            path = folder / filename
            if not path.is_file():
                raise FileNotFoundError(f"manifest table missing: {path}")
            tables[name] = pd.read_csv(path, dtype=str, keep_default_na=False)
        known = {"dataset", "root", "root_absolute", "energies", "split_seed", "split_ratios",
                 "cemlib_version"}
        ratios = meta.get("split_ratios")
        first = tables["images"].get("path", pd.Series(dtype=str))
        probe = str(first.iloc[0]) if len(first) else ""
        return cls(
            dataset=meta["dataset"],
            root=saved_root(meta, folder, probe),
            images=_typed_images(tables["images"]),
            breasts=_typed_breasts(tables["breasts"]),
            exclusions=_typed_exclusions(tables["exclusions"]),
            energies=tuple(meta.get("energies", ENERGIES)),
            split_seed=meta.get("split_seed"),
            split_ratios=tuple(ratios) if ratios is not None else None,
            extra={k: v for k, v in meta.items() if k not in known},
        )


def root_entries(root: Path, folder: Path) -> dict[str, str]:
    """manifest.json's root entries: the root relative to the manifest folder, and absolute."""
    absolute = Path(root).resolve()
    try:
        relative = Path(os.path.relpath(absolute, Path(folder).resolve())).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return {"root": str(absolute)}
    return {"root": relative, "root_absolute": str(absolute)}


def saved_root(meta: dict[str, Any], folder: str | Path, probe: str = "") -> Path:
    """The dataset root a manifest.json names: its relative root, from the manifest folder, when that holds
    the image `probe` (a stored path; the folder itself when empty): a moved or copied project; else its
    absolute root when that does; a manifest with one absolute root (written before relative roots) as
    it is."""
    recorded = Path(str(meta.get("root", "")))
    if recorded.is_absolute():
        return recorded
    relative = Path(posixpath.normpath((Path(folder).resolve() / recorded).as_posix()))
    for candidate in (relative, Path(str(meta.get("root_absolute") or relative))):
        if (PathResolver(candidate).resolve(probe) if probe else candidate).exists():
            return candidate
    return relative


def manifest_root(folder: str | Path) -> Path:
    """The dataset root of the manifest saved in `folder` (see saved_root), reading one row of images.csv."""
    folder = Path(folder)
    images = folder / TABLE_FILES["images"]
    first = pd.read_csv(images, dtype=str, keep_default_na=False, nrows=1) if images.is_file() else None
    probe = str(first["path"].iloc[0]) if first is not None and len(first) and "path" in first else ""
    return saved_root(json.loads((folder / "manifest.json").read_text()), folder, probe)


def _typed_images(frame: pd.DataFrame) -> pd.DataFrame:
    """Images table with its columns in order and rows/cols as integers."""
    for column in OPTIONAL_IMAGE_COLUMNS:
        if column not in frame.columns:
            frame[column] = -1
    for column in OPTIONAL_TEXT_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame = _with_columns(frame, IMAGE_COLUMNS, "images.csv")
    for column in ("rows", "cols", *OPTIONAL_IMAGE_COLUMNS):
        frame[column] = pd.to_numeric(frame[column].replace("", -1)).astype(np.int64)
    return frame


def _typed_breasts(frame: pd.DataFrame) -> pd.DataFrame:
    """Breasts table with label as int and age as float (NaN where empty)."""
    frame = _with_columns(frame, BREAST_COLUMNS, "breasts.csv")
    frame["label"] = pd.to_numeric(frame["label"]).astype(np.int64)
    frame["age"] = pd.to_numeric(frame["age"].replace("", np.nan)).astype(float)
    return frame


def _typed_exclusions(frame: pd.DataFrame) -> pd.DataFrame:
    """Exclusions table with every contract column present (kind may be absent in older files)."""
    if "kind" not in frame.columns:
        frame = frame.assign(kind="other")
    return _with_columns(frame, EXCLUSION_COLUMNS, "exclusions.csv")


def _with_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> pd.DataFrame:
    """The frame restricted to `columns` in order; ValueError naming the missing ones."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}")
    return frame.loc[:, list(columns)].copy()


# ----------------------------------------------------------------------------------------- exclusions

def exclusion(patient_id: str, reason: str, kind: str, side: str = "", path: str = "",
              dataset: str = "") -> dict[str, str]:
    """One exclusions row; with a `path` it excludes that image, without one the whole patient."""
    return {"dataset": dataset, "patient_id": str(patient_id), "side": side, "path": path,
            "reason": reason, "kind": kind}


def one_breast_exclusions(sides: dict[str, set[str]], missing: str) -> list[dict[str, str]]:
    """Patient-level exclusions for patients whose images cover one breast only.

    `sides` maps patient_id -> sides seen; `missing` says what is absent, e.g. "no CC or MLO image".
    """
    rows = []
    for patient_id, present in sorted(sides.items()):
        if len(present) == 1:
            (side,) = present
            other = "R" if side == "L" else "L"
            reason = f"exam incomplete: {missing} of breast {other} (only {side})"
            rows.append(exclusion(patient_id, reason, "missing_view", side=other))
    return rows


def exclusion_counts(exclusions: pd.DataFrame) -> pd.Series:
    """Number of exclusion rows per kind, largest first."""
    if exclusions.empty:
        return pd.Series(dtype=np.int64, name="count")
    return exclusions["kind"].value_counts().rename("count")


def parse_label(value: Any) -> int | None:
    """0 or 1 from an int, a float or a text '0'/'1' (also '0.0'); None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value) if value in (0, 1) else None
    if isinstance(value, float | np.floating):
        return int(value) if value in (0.0, 1.0) else None
    text = str(value).strip()
    return {"0": 0, "1": 1, "0.0": 0, "1.0": 1}.get(text)


# --------------------------------------------------------------------------------------------- hashing

def map_files(function: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None,
              desc: str = "files", progress: bool = True) -> list[Any]:
    """Apply `function` to every item in a thread pool with a progress bar; exceptions are returned."""

    def guarded(item: Any) -> Any:
        try:
            return function(item)
        except Exception as exc:  # returned, not raised: one bad file must not stop the scan
            return exc

    if not items:
        return []
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        return list(tqdm(pool.map(guarded, items), total=len(items), desc=desc, unit="file",
                         disable=not progress))


# -------------------------------------------------------------------------------------------- assemble

def _frame(data: pd.DataFrame | Iterable[dict] | None, columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame from rows or a frame, with at least `columns` (missing ones empty)."""
    if isinstance(data, pd.DataFrame):
        frame = data.copy()
    else:
        frame = pd.DataFrame(list(data) if data is not None else [])
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    return frame


def _check_values(frame: pd.DataFrame, column: str, allowed: Iterable[str], what: str) -> None:
    """ValueError if an adapter produced a value outside the vocabulary (a bug, not bad data)."""
    bad = sorted(set(frame[column].astype(str)) - set(allowed))
    if bad:
        raise ValueError(f"{what}: unexpected {column} values {bad}; expected {sorted(allowed)}")


def cell_text(value: Any) -> str:
    """A table or workbook cell as stripped text: empty for NaN, None and formulas; integral floats plain.

    A formula (``=HYPERLINK(...)``, ``@SUM(...)``, ``+cmd|...``) is no value of the study: it becomes empty,
    so it never reaches a CSV that a spreadsheet would run it from.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return "" if looks_like_formula(text) else text


def looks_like_formula(text: str) -> bool:
    """Whether spreadsheet software would run `text` as a formula: it starts with = or @, or with + or -
    and is not a number."""
    if text[:1] in ("=", "@"):
        return True
    if text[:1] in ("+", "-") and len(text) > 1:
        try:
            float(text)
        except ValueError:
            return True
    return False


def _age(value: Any) -> float:
    """Age as a float, NaN where empty or not a number."""
    try:
        return float(value) if cell_text(value) != "" else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _view_problems(patient_images: list[dict], energies: Sequence[str]) -> list[tuple[str, str, str]]:
    """(kind, side, reason) for missing and duplicated views of one patient."""
    problems = []
    paths: dict[tuple[str, str, str], list[str]] = {}
    for image in patient_images:
        paths.setdefault((image["side"], image["view"], image["energy"]), []).append(str(image["path"]))
    missing = [(s, v, e) for s in SIDES for v in VIEWS for e in energies if (s, v, e) not in paths]
    if not patient_images:
        problems.append(("no_images", "", "no usable image was found for this patient"))
    elif missing:
        sides = {s for s, _, _ in missing}
        names = ", ".join(f"{s} {v} {e}" for s, v, e in missing)
        problems.append(("missing_view", sides.pop() if len(sides) == 1 else "",
                         f"exam incomplete: no usable image for {names}"))
    for (side, view, energy), listed in sorted(paths.items()):
        if len(listed) > 1:
            problems.append(("duplicate_view", side, f"view {side} {view} {energy} appears {len(listed)} "
                                                     f"times: {', '.join(sorted(listed))}"))
    return problems


def _label_problems(patient_breasts: list[dict]) -> list[tuple[str, str, str]]:
    """(kind, side, reason) for breasts of one patient without exactly one 0/1 label."""
    problems = []
    for raw_side in sorted({str(b["side"]) for b in patient_breasts} - set(SIDES)):
        problems.append(("bad_label", "", f"label row with unknown side {raw_side!r} (expected L or R)"))
    for side in SIDES:
        raw = [b["label"] for b in patient_breasts if b["side"] == side]
        if not raw:
            problems.append(("missing_label", side, f"no label for breast {side}"))
            continue
        parsed = [parse_label(v) for v in raw]
        bad = [cell_text(v) for v, p in zip(raw, parsed, strict=True) if p is None]
        if bad:
            shown = bad[0]
            kind = "missing_label" if shown == "" else "bad_label"
            detail = "is empty" if shown == "" else f"is {shown!r}, expected 0 or 1"
            problems.append((kind, side, f"label of breast {side} {detail}"))
        elif len(set(parsed)) > 1:
            values = sorted(set(parsed))
            problems.append(("label_conflict", side,
                             f"breast {side} has {len(raw)} label rows that disagree ({values})"))
    return problems


def _records_by_patient(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, list[dict]]:
    """Rows of `frame` (only `columns`) as dicts grouped by patient_id."""
    grouped: dict[str, list[dict]] = {}
    for record in frame.loc[:, list(columns)].to_dict("records"):
        grouped.setdefault(record["patient_id"], []).append(record)
    return grouped


def assemble(dataset: str, root: str | Path, images: pd.DataFrame | Iterable[dict],
             breasts: pd.DataFrame | Iterable[dict], exclusions: pd.DataFrame | Iterable[dict] | None = None,
             energies: Sequence[str] = ENERGIES, workers: int | None = None,
             max_size: tuple[int, int] = MAX_IMAGE_SIZE, stored_path: Callable[[str], str] | None = None,
             check_views: bool = True) -> Manifest:
    """Validate an adapter's candidate tables into a Manifest and add a sha256 per kept image.

    `images` needs patient_id, side, view, energy, path (relative to root), rows, cols (mask_path
    optional); `breasts` needs patient_id, side, label (birads, pathology, age, density optional);
    `exclusions` are the adapter's own rows (a path: that image is unusable; no path: the patient is out).
    A patient is kept only with exactly one readable image per side x view x energy and a 0/1 label
    per breast; each failure becomes an exclusions row. An image whose header's Rows or Columns exceed
    ``max_size`` is excluded with its size (the check reads no pixel), and with it its patient.
    Every file is read once (``cemlib.data.integrity.inspect_file``): an image stored twice (the same
    pixel data or SOPInstanceUID) excludes every patient holding it, and, with ``check_views``, a view
    whose pixels contradict its tag (``cemlib.pixels.geometry``) excludes its patient.
    ``stored_path`` turns an on-disk relative path into the path the tables store and reasons show
    (the layout's pseudonymised form, cemlib.data.paths); the identity when None.
    """
    root = Path(root)
    stored = stored_path or str
    energies = tuple(energies)
    _check_values(pd.DataFrame({"energy": list(energies)}), "energy", ENERGIES, "energies")
    images = _frame(images, ("patient_id", "side", "view", "energy", "path", "rows", "cols", "mask_path"))
    breasts = _frame(breasts, ("patient_id", "side", "label", "birads", "pathology", "age", "density"))
    adapter_rows = _frame(exclusions, EXCLUSION_COLUMNS)
    images["patient_id"] = images["patient_id"].astype(str)
    images["mask_path"] = images["mask_path"].map(cell_text)
    breasts["patient_id"] = breasts["patient_id"].astype(str)
    breasts["side"] = breasts["side"].map(cell_text).str.upper()
    _check_values(images, "side", SIDES, "images")
    _check_values(images, "view", VIEWS, "images")
    _check_values(images, "energy", energies, "images")
    adapter_rows = adapter_rows.assign(
        dataset=dataset,
        patient_id=adapter_rows["patient_id"].map(cell_text),
        side=adapter_rows["side"].map(cell_text),
        path=adapter_rows["path"].map(cell_text),
        kind=adapter_rows["kind"].map(cell_text).replace("", "other"),
    )
    images, oversized = _size_cap(images, max_size)
    adapter_rows = pd.concat([adapter_rows, _frame(oversized, EXCLUSION_COLUMNS).assign(dataset=dataset)],
                             ignore_index=True)
    dropped = set(adapter_rows.loc[adapter_rows["path"] == "", "patient_id"])

    rows: list[dict[str, str]] = []
    keep: list[str] = []
    shown = images.assign(path=images["path"].map(stored))
    images_by_patient = _records_by_patient(shown, ("patient_id", "side", "view", "energy", "path"))
    breasts_by_patient = _records_by_patient(breasts, ("patient_id", "side", "label"))
    for patient_id in sorted(set(images_by_patient) | set(breasts_by_patient)):
        if patient_id in dropped:
            continue
        problems = _view_problems(images_by_patient.get(patient_id, []), energies)
        problems += _label_problems(breasts_by_patient.get(patient_id, []))
        rows += [exclusion(patient_id, reason, kind, side, dataset=dataset)
                 for kind, side, reason in problems]
        if not problems:
            keep.append(patient_id)

    # every candidate is read (a copy may sit under a patient excluded for another reason); kept patients'
    # low-energy images are scored for their view
    candidates = images.to_dict("records")
    scored = [check_views and c["energy"] == "LE" and c["patient_id"] in keep for c in candidates]
    facts = map_files(lambda pair: inspect_file(root / pair[0]["path"], pair[1]),
                      list(zip(candidates, scored, strict=True)), workers, desc="sha256")
    unreadable: dict[str, list[str]] = {}
    for image, fact in zip(candidates, facts, strict=True):
        if isinstance(fact, Exception) and image["patient_id"] in keep:
            shown_path = f"{stored(image['path'])} ({error_text(fact)})"
            unreadable.setdefault(image["patient_id"], []).append(shown_path)
    for pid, problems in unreadable.items():
        rows.append(exclusion(pid, f"file cannot be read: {'; '.join(problems)}", "unreadable",
                              dataset=dataset))
    read = [{**image, "path": stored(image["path"]), "content": fact.content, "sop_uid": fact.sop_uid,
             "pectoral": fact.pectoral}
            for image, fact in zip(candidates, facts, strict=True) if isinstance(fact, FileFacts)]
    screened = duplicate_problems(read)
    if check_views:
        screened += view_problems([item for item in read if item["patient_id"] in keep])
    rows += [exclusion(pid, reason, kind, side, dataset=dataset) for pid, side, kind, reason in screened]
    out = set(unreadable) | {pid for pid, _, _, _ in screened}
    keep = [p for p in keep if p not in out]

    by_path = {image["path"]: fact for image, fact in zip(candidates, facts, strict=True)}
    kept_images = images[images["patient_id"].isin(keep)].copy()
    for column, attribute in (("sha256", "sha256"), ("size", "size"), ("mtime_ns", "mtime_ns"),
                              ("sampled_digest", "sampled")):
        kept_images[column] = [getattr(by_path[p], attribute) for p in kept_images["path"]]
    manifest = Manifest(
        dataset=dataset,
        root=root.resolve(),
        images=_final_images(kept_images, dataset),
        breasts=_final_breasts(breasts[breasts["patient_id"].isin(keep)], dataset),
        exclusions=_final_exclusions(pd.concat([adapter_rows, _frame(rows, EXCLUSION_COLUMNS)])),
        energies=energies,
    )
    if stored_path is not None:
        manifest.private_paths = store_paths([(manifest.images, ("path", "mask_path")),
                                              (manifest.exclusions, ("path",))], stored)
    return manifest


def _size_cap(images: pd.DataFrame, max_size: tuple[int, int]) -> tuple[pd.DataFrame, list[dict]]:
    """Images within the size cap, and exclusion rows naming the size of those above it."""
    rows = pd.to_numeric(images["rows"], errors="coerce").fillna(0)
    cols = pd.to_numeric(images["cols"], errors="coerce").fillna(0)
    over = (rows > max_size[0]) | (cols > max_size[1])
    excluded = [exclusion(r["patient_id"], f"image {r['side']} {r['view']} {r['energy']} is "
                          f"{int(r['rows'])} x {int(r['cols'])} pixels (Rows x Columns), above the size cap "
                          f"of {max_size[0]} x {max_size[1]} per plane", "too_large", r["side"], r["path"])
                for r in images[over].to_dict("records")]
    return images[~over].copy(), excluded


def _final_images(images: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Images in contract column order, sorted by patient, VIEW_ORDER and energy."""
    images = images.assign(dataset=dataset)
    order = {key: i for i, key in enumerate(VIEW_ORDER)}
    images["_view"] = (images["side"] + images["view"]).map(order)
    images["_energy"] = images["energy"].map({e: i for i, e in enumerate(ENERGIES)})
    images = images.sort_values(["patient_id", "_view", "_energy"], kind="stable")
    images = images.loc[:, list(IMAGE_COLUMNS)].reset_index(drop=True)
    for column in ("rows", "cols", *OPTIONAL_IMAGE_COLUMNS):
        images[column] = images[column].astype(np.int64)
    return images


def _final_breasts(breasts: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Breasts in contract column order with normalised text fields and an empty split."""
    out = pd.DataFrame({
        "dataset": dataset,
        "patient_id": breasts["patient_id"].astype(str),
        "side": breasts["side"],
        "label": breasts["label"].map(parse_label),
        "birads": breasts["birads"].map(cell_text).str.upper(),
        "pathology": breasts["pathology"].map(cell_text),
        "age": breasts["age"].map(_age),
        "density": breasts["density"].map(cell_text).str.lower(),
        "split": "",
    })
    out = out.drop_duplicates(["patient_id", "side"]).sort_values(["patient_id", "side"], kind="stable")
    out["label"] = out["label"].astype(np.int64)
    return out.reset_index(drop=True)


def _final_exclusions(rows: pd.DataFrame) -> pd.DataFrame:
    """Exclusions in contract column order, sorted by patient, with text cells."""
    rows = rows.loc[:, list(EXCLUSION_COLUMNS)].fillna("").astype(str)
    return rows.sort_values(["patient_id", "path", "kind"], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- split

def class_by_patient(breasts: pd.DataFrame) -> pd.Series:
    """Patient class (PATIENT_CLASSES) per patient_id from its number of malignant breasts alone."""
    patients = patient_classes(breasts, count_breasts=False, sort=True)
    return patients.set_index("patient_id")["patient_class"]


def normalise_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative ratios scaled to sum to 1 (so 7 1 2 means 0.7 0.1 0.2)."""
    values = [float(r) for r in ratios]
    if len(values) != 3 or any(v < 0 or not np.isfinite(v) for v in values) or sum(values) <= 0:
        raise ValueError(f"split ratios must be three non-negative numbers (train val test), got {ratios}")
    total = sum(values)
    return tuple(v / total for v in values)  # type: ignore[return-value]


def allocate(n: int, ratios: Sequence[float]) -> list[int]:
    """Split n items by ratios with the largest-remainder rule (ties go to the earlier split)."""
    ratios = normalise_ratios(ratios)
    quotas = [n * r for r in ratios]
    counts = [int(np.floor(q)) for q in quotas]
    remainders = sorted(range(len(ratios)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in remainders[: n - sum(counts)]:
        counts[i] += 1
    return counts


def split_patients(breasts: pd.DataFrame, ratios: Sequence[float] = DEFAULT_RATIOS,
                   seed: int = 0) -> pd.DataFrame:
    """Breasts with `split` filled: patients shuffled per class with `seed`, cut by exact allocation."""
    classes = class_by_patient(breasts)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for patient_class in PATIENT_CLASSES:
        members = np.array(sorted(classes.index[classes == patient_class]), dtype=object)
        shuffled = members[rng.permutation(len(members))]
        start = 0
        for split, count in zip(SPLITS, allocate(len(members), ratios), strict=True):
            assignment.update(dict.fromkeys(shuffled[start:start + count], split))
            start += count
    out = breasts.copy()
    out["split"] = out["patient_id"].map(assignment)
    return out


def mark_external(breasts: pd.DataFrame) -> pd.DataFrame:
    """Breasts of an external validation set: every split is 'external'."""
    return breasts.assign(split=EXTERNAL_SPLIT)


def split_summary(breasts: pd.DataFrame) -> pd.DataFrame:
    """Patients per class (rows) and split (columns) with totals: the shape of the paper's Table 2."""
    per_patient = pd.DataFrame({"patient_class": class_by_patient(breasts)})
    per_patient["split"] = breasts.groupby("patient_id")["split"].first()
    present = [s for s in (*SPLITS, EXTERNAL_SPLIT) if s in set(per_patient["split"])]
    table = pd.crosstab(per_patient["patient_class"], per_patient["split"])
    table = table.reindex(index=list(PATIENT_CLASSES), columns=present, fill_value=0)
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    table.index.name, table.columns.name = "patient class", None
    return table.astype(np.int64)



def describe(manifest: Manifest) -> str:
    """Readable counts of a manifest: patients, breasts, images, exclusions by kind, split by class."""
    found = len(set(manifest.breasts["patient_id"]) | set(manifest.exclusions["patient_id"]))
    lines = [
        f"dataset {manifest.dataset}: {len(manifest.patients)} patients kept of {found} found, "
        f"{len(manifest.breasts)} breasts, {len(manifest.images)} images "
        f"({int(manifest.breasts['label'].sum()) if len(manifest.breasts) else 0} malignant breasts)",
        f"exclusions: {len(manifest.exclusions)} rows, {len(manifest.excluded_patients())} patients excluded",
    ]
    lines += [f"  {kind}: {count}" for kind, count in exclusion_counts(manifest.exclusions).items()]
    if len(manifest.breasts):
        lines.append("patients per class and split:")
        lines += ["  " + line for line in split_summary(manifest.breasts).to_string().splitlines()]
    return "\n".join(lines)


def manifest_digest(manifest: Manifest) -> str:
    """16-hex digest of what a model learns from: each image's content, and each breast's label and split."""
    images = manifest.images[["dataset", "patient_id", "side", "view", "energy", "sha256"]].astype(str)
    breasts = manifest.breasts[["dataset", "patient_id", "side", "label", "split"]].astype(str)
    text = "\n".join([images.sort_values(list(images.columns)).to_csv(index=False),
                      breasts.sort_values(list(breasts.columns)).to_csv(index=False)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
