"""The preprocessed tensor cache: every exam view preprocessed once, stored on disk, verified on read.

One entry per (dataset, patient_id, side, view): the low-energy image and, when the manifest has one, its
DES image, preprocessed together (the crop found on LE is reused on DES), plus the lesion mask when the
manifest names one, pushed through the same geometry.

Keys. An entry's key is the sha256 of the cache format version, ``settings.digest()``, the breast side
(it decides the orientation flip) and the sha256 of its LE, DES and mask files. A changed setting gives
new keys for everything; a changed source file gives a new key for its entry alone; nothing else is ever
rebuilt. The entries of one settings digest live together under ``<cache_dir>/<digest[:16]>/``.

Storage. Each entry is one ``.npy`` file holding a uint16 array (C, H, W), channels in the order
LE, DES (if any), mask (if any). Values in [0, 1] are quantised as ``round(x * 65535)``: 2 bytes per
pixel like float16, but with a uniform step of 1.5e-5 (float16 has steps of 4.9e-4 just below 1).
After the array comes an 8-byte trailer, ``b"CRC3"`` + the little-endian crc32 of the array bytes;
``np.load`` ignores it, the reader checks it. An entry is served only when its ``.npy`` header matches
the expected shape and dtype exactly, the file has exactly the expected size and the crc32 matches:
a truncated or corrupt file raises :class:`CacheError` naming the file, and ``fill`` rebuilds it.
Reading one small file with a single ``read()`` is faster than ``np.load(mmap_mode="r")`` here
(no header parse, no mmap set-up) and reaches thousands of views per second.

Writes go through :func:`cemlib.core.fileio.atomic_path` (temporary file, then rename), so an interrupted
``fill`` leaves at worst stray temporary files, which the next ``fill`` removes before it resumes. A
``fill`` with entries to build holds the folder's lock (:func:`cemlib.core.fileio.folder_lock`): a second
one on the same folder at the same time is refused with :class:`cemlib.core.fileio.FolderInUse`.

Windows. ``<cache_dir>/<digest[:16]>/windows.csv`` records, per entry built, the window bounds of its LE
and DES images and the rule that chose them (``cemlib.pixels.window``), for the QC notebook.

Images that fail preprocessing (:class:`cemlib.pixels.window.PreprocessError`, an unreadable file) are not
cached; ``fill`` returns them as exclusion rows with the reason, so that their patients are excluded
from the datasets, never silently dropped. Deterministic failures are remembered in a small
``<key>.failed.json`` marker so a second run does no work. These exclusions belong to the cache of one
settings digest, never to the manifest: ``failures`` reads them back and the datasets apply them when
they load, so a fixed setting (a new digest) serves every patient again. When every view of a manifest
fails, the settings are wrong, not the images: ``fill`` raises :class:`SettingsFailEveryImage` and keeps
no marker of that run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cemlib.core.fileio import atomic_path, atomic_write_text, folder_lock, sha256_file
from cemlib.core.processes import exit_with_parent
from cemlib.core.progress import Progress
from cemlib.data.freshness import SourceChangedError, require_unchanged
from cemlib.data.manifest import EXCLUSION_COLUMNS, Manifest
from cemlib.data.tensorfile import CacheError, encode_entry, read_entry_file
from cemlib.pixels.imaging import exam_des_bounds, preprocess_mask, preprocess_pair, read_pixels
from cemlib.pixels.settings import PreprocessSettings
from cemlib.pixels.window import PreprocessError

#: Bump when the on-disk layout of an entry changes: every key changes with it.
CACHE_FORMAT = 1
#: `kind` of the exclusion rows written for images that failed preprocessing.
EXCLUSION_KIND = "preprocess_failed"
#: Per-entry record of the window chosen for each image and why (read by the QC notebook).
WINDOWS_FILE = "windows.csv"
WINDOW_COLUMNS = ("key", "dataset", "patient_id", "side", "view", "le_low", "le_high", "le_window_rule",
                  "des_low", "des_high", "des_window_rule")


class SettingsFailEveryImage(ValueError):
    """Every view of a manifest failed preprocessing: a preprocess setting is wrong, not the images."""


def fail_every_image_message(settings: PreprocessSettings, failures: list[tuple[Entry, str]]) -> str:
    """One line: every view failed, the settings that differ from the defaults, the first reason."""
    changed = changed_settings(settings)
    named = ", ".join(f"preprocess.{k}={v}" for k, v in changed.items()) or "the defaults"
    reason = failures[0][1] if failures else ""
    return (f"preprocessing failed for all {len(failures)} image view(s) with {named} (first: {reason}); "
            "fix the setting and run again (nothing was recorded: the manifest is unchanged)")


def changed_settings(settings: PreprocessSettings) -> dict[str, Any]:
    """The preprocess settings whose values differ from PreprocessSettings() defaults (version left out)."""
    defaults = PreprocessSettings()
    return {f.name: _plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)
            if f.name != "version" and _plain(getattr(settings, f.name)) != _plain(getattr(defaults, f.name))}


def _plain(value: Any) -> Any:
    """A setting's value as written in a profile (tuples as lists)."""
    return list(value) if isinstance(value, tuple | list) else value


@dataclass(frozen=True)
class Entry:
    """One cached exam view: where its sources are and under which key its tensor is stored."""

    dataset: str
    patient_id: str
    side: str
    view: str
    le_path: Path
    des_path: Path | None
    mask_path: Path | None
    key: str
    le_sha: str = ""  # sha256 the manifest records for the LE file (part of the key)
    des_sha: str = ""
    exam_des: tuple[Path, ...] = ()  # under des_window "exam": every DES file of the exam (their shas key it)

    @property
    def channels(self) -> tuple[str, ...]:
        """Names of the stored channels, in storage order."""
        names = ["LE"]
        if self.des_path is not None:
            names.append("DES")
        if self.mask_path is not None:
            names.append("mask")
        return tuple(names)


@dataclass
class FillResult:
    """What a fill did: counts per outcome and the exclusion rows for images that failed."""

    built: int
    skipped: int
    failed: int
    exclusions: pd.DataFrame

    @property
    def stats(self) -> dict[str, int]:
        """The counts as a dict (built, skipped, failed, total)."""
        total = self.built + self.skipped + self.failed
        return {"built": self.built, "skipped": self.skipped, "failed": self.failed, "total": total}

    def summary(self) -> str:
        """One readable line, e.g. 'built 0, skipped 1200, failed 0'."""
        return f"built {self.built}, skipped {self.skipped}, failed {self.failed}"


# ---------------------------------------------------------------------------------------------------
# Building entries (runs in worker processes)


@dataclass(frozen=True)
class _Task:
    entry: Entry
    target: Path
    marker: Path
    settings: PreprocessSettings


def _read_mask(path: Path) -> np.ndarray:
    """A lesion mask file (PNG or any Pillow format) as a boolean array."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 0


def build_stack(entry: Entry, settings: PreprocessSettings,
                record: dict[str, Any] | None = None) -> np.ndarray:
    """Preprocess one entry's sources into a float32 (C, H, W) stack: LE, DES (if any), mask (if any).

    ``record``, when given, receives each image's window bounds and the rule that chose them.
    """
    le = read_pixels(entry.le_path, expected_range=expected_raw_range(settings))
    des = read_pixels(entry.des_path, expected_range=expected_raw_range(settings)) if entry.des_path else None
    exam = f"{entry.dataset}/{entry.patient_id}"
    bounds = _exam_bounds(entry.exam_des, settings, exam) if entry.exam_des else None
    le01, des01 = preprocess_pair(le, des, entry.side, settings, source=entry_label(entry), record=record,
                                  des_bounds=bounds)
    planes = [le01]
    if entry.des_path is not None:
        if des01 is None:
            raise PreprocessError(f"{entry_label(entry, 'DES')}: DES image was given but not preprocessed")
        planes.append(des01)
    if entry.mask_path is not None:
        mask = _read_mask(entry.mask_path)
        warped = preprocess_mask(mask, le, entry.side, settings, source=entry_label(entry, "mask"))
        planes.append(np.asarray(warped, dtype=np.float32))
    stack = np.stack([np.asarray(p, dtype=np.float32) for p in planes])
    expected = (len(entry.channels), *settings.size)
    if stack.shape != expected:
        raise PreprocessError(f"{entry_label(entry)}: preprocessed shape {stack.shape}, expected {expected}")
    return stack


@functools.lru_cache(maxsize=16)
def _exam_bounds(paths: tuple[Path, ...], settings: PreprocessSettings, exam: str
                 ) -> tuple[float, float] | None:
    """The window an exam's DES views share (memoised: a worker builds an exam's views one after another)."""
    return exam_des_bounds([read_pixels(p, expected_range=expected_raw_range(settings)) for p in paths],
                           settings, exam)


def expected_raw_range(settings: PreprocessSettings) -> tuple[float, float] | None:
    """The raw detector range LE and DES pixels must agree with (``PreprocessSettings.checked_range``)."""
    return settings.checked_range()


def _run_task(task: _Task) -> tuple[str, Entry, str, dict[str, Any]]:
    """Build and store one entry; ('built', entry, '', windows) or ('failed', entry, reason, {}).

    Raises SourceChangedError when a source file no longer matches its manifest sha256 (the run stops).
    """
    windows: dict[str, Any] = {}
    try:
        stack = build_stack(task.entry, task.settings, windows)
    except PreprocessError as exc:
        reason = redact_paths(str(exc), task.entry)
        # Deterministic for these inputs and settings: remember it so the next fill does not retry.
        atomic_write_text(task.marker, json.dumps({"reason": reason}))
        return "failed", task.entry, reason, {}
    except Exception as exc:  # unreadable or malformed file: reported, not remembered, retried next fill
        return "failed", task.entry, redact_paths(f"{type(exc).__name__}: {exc}", task.entry), {}
    changed = _changed_source(task.entry)
    if changed:  # the bytes read are not the ones the key names: never store them under that key
        raise SourceChangedError(changed)
    with atomic_path(task.target) as tmp:
        tmp.write_bytes(encode_entry(stack))
    return "built", task.entry, "", windows


def _changed_source(entry: Entry) -> str:
    """A reason when the LE or DES file no longer has the sha256 its entry's key was made from, else ''."""
    sources = (("LE", entry.le_path, entry.le_sha), ("DES", entry.des_path, entry.des_sha))
    for energy, path, expected in sources:
        if path is not None and expected and sha256_file(path) != expected:
            return (f"image {entry_label(entry, energy)} changed while it was preprocessed (sha256 differs "
                    "from the manifest); run `cem manifest` again")
    return ""


def entry_label(entry: Entry, what: str = "LE") -> str:
    """How messages name an entry's file: dataset, patient id (a pseudonym), side, view and energy.

    File and folder names may hold a patient's name, so no message or table shows them; the manifest's
    images.csv maps the label back to the path.
    """
    return f"{entry.dataset}/{entry.patient_id} {entry.side} {entry.view} {what}"


def redact_paths(text: str, entry: Entry) -> str:
    """``text`` with the entry's file paths (and their file names) replaced by ``entry_label``."""
    sources = [("LE", entry.le_path), ("DES", entry.des_path), ("mask", entry.mask_path)]
    sources += [("exam DES", path) for path in entry.exam_des if path != entry.des_path]
    for what, path in sources:
        if path is not None:
            label = entry_label(entry, what)
            text = text.replace(str(path), label).replace(path.name, label)
    return text


# ---------------------------------------------------------------------------------------------------
# The cache


def _optional_path(manifest: Manifest, value: Any) -> Path | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return None
    path = Path(str(value))
    return path if path.is_absolute() else manifest.resolve(str(value))


@functools.lru_cache(maxsize=65536)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, memoised on (path, size, mtime) so repeated attaches do not rehash."""
    return sha256_file(path)


def _sha_of(path: Path) -> str:
    stat = path.stat()
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


def entry_key(settings_digest: str, side: str, le_sha: str, des_sha: str, mask_sha: str) -> str:
    """Hex key of an entry: hash of the format version, settings digest, side and source checksums."""
    parts = [f"cemcache{CACHE_FORMAT}", settings_digest, side, le_sha, des_sha, mask_sha]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _single_thread_worker(parent_pid: int | None = None) -> None:
    """Pool initializer: die with the parent process, and preprocess one image at a time.

    Torch threads would only fight over the cores. ``parent_pid`` is the pid of the process that started
    the pool: see :func:`exit_with_parent`.
    """
    import torch

    exit_with_parent(parent_pid)
    torch.set_num_threads(1)


#: Plans of the manifests this process used (a study builds the same splits' datasets dozens of times),
#: by settings digest, root and the images table; the oldest goes first past PLANS_KEPT.
_PLANS: dict[tuple[str, str, str], tuple[list[Entry], pd.DataFrame]] = {}
PLANS_KEPT = 32


class TensorCache:
    """Preprocessed (C, H, W) tensors of exam views on disk, keyed by settings and source checksums."""

    def __init__(self, cache_dir: str | os.PathLike, settings: PreprocessSettings):
        self.cache_dir = Path(cache_dir)
        self.settings = settings
        self.digest = settings.digest()
        self.folder = self.cache_dir / self.digest[:16]
        self._index: dict[tuple[str, str, str, str], Entry] = {}

    @classmethod
    def from_profile(cls, profile: dict[str, Any]) -> TensorCache:
        """The cache a profile names (preprocess.cache) with the profile's preprocessing settings."""
        section = profile.get("preprocess") or {}
        if not section.get("cache"):
            raise ValueError("profile has no preprocess.cache folder")
        return cls(section["cache"], PreprocessSettings.from_profile(profile))

    def __repr__(self) -> str:
        size = tuple(self.settings.size)
        return f"TensorCache({str(self.cache_dir)!r}, size={size}, digest={self.digest[:16]})"

    # -- keys and paths ---------------------------------------------------------------------------

    def path_for(self, entry: Entry) -> Path:
        """Where an entry's tensor file lives."""
        return self.folder / entry.key[:2] / f"{entry.key}.npy"

    def marker_for(self, entry: Entry) -> Path:
        """Where an entry's failure marker lives."""
        return self.folder / entry.key[:2] / f"{entry.key}.failed.json"

    def shape_of(self, entry: Entry) -> tuple[int, int, int]:
        """Stored shape of an entry: (channels, H, W)."""
        height, width = (int(n) for n in self.settings.size)
        return (len(entry.channels), height, width)

    def plan(self, manifest: Manifest) -> tuple[list[Entry], pd.DataFrame]:
        """The entries a manifest needs, and exclusion rows for views that cannot form an entry."""
        key = (self.digest, *_plan_key(manifest))
        if key not in _PLANS:
            while len(_PLANS) >= PLANS_KEPT:
                _PLANS.pop(next(iter(_PLANS)))
            _PLANS[key] = self._plan(manifest)
        entries, problems = _PLANS[key]
        return list(entries), problems.copy()

    def _plan(self, manifest: Manifest) -> tuple[list[Entry], pd.DataFrame]:
        groups: dict[tuple[str, str, str, str], dict[str, list[dict[str, Any]]]] = {}
        for row in manifest.images.to_dict("records"):
            where = tuple(str(row[c]) for c in ("dataset", "patient_id", "side", "view"))
            groups.setdefault(where, {"LE": [], "DES": []}).setdefault(str(row["energy"]), []).append(row)
        mask_digests = _mask_digest_column(manifest)
        exam_des = self._exam_des(groups, manifest)
        entries: list[Entry] = []
        problems: list[dict[str, str]] = []
        for (dataset, patient_id, side, view), rows in sorted(groups.items()):
            le_rows, des_rows = rows["LE"], rows["DES"]
            if len(le_rows) != 1 or len(des_rows) > 1:
                reason = (
                    f"{side} {view}: expected one LE and at most one DES image, "
                    f"found {len(le_rows)} LE and {len(des_rows)} DES"
                )
                problems.append({"dataset": dataset, "patient_id": patient_id, "side": side, "path": "",
                                 "reason": reason, "kind": EXCLUSION_KIND})
                continue
            le_row = le_rows[0]
            des_row = des_rows[0] if des_rows else None
            mask_path = _optional_path(manifest, le_row.get("mask_path"))
            if mask_path is None and des_row is not None:
                mask_path = _optional_path(manifest, des_row.get("mask_path"))
            mask_sha = ""
            if mask_path is not None:
                mask_sha = mask_digests.get(str(mask_path)) or _sha_of(mask_path)
            des_sha = str(des_row["sha256"]) if des_row is not None else ""
            exam_paths, exam_shas = exam_des.get((dataset, patient_id), ((), ""))
            key_des = f"exam:{exam_shas}" if des_row is not None and exam_paths else des_sha
            entries.append(
                Entry(
                    dataset=dataset, patient_id=patient_id, side=side, view=view,
                    le_path=manifest.image_path(le_row),
                    des_path=manifest.image_path(des_row) if des_row is not None else None,
                    mask_path=mask_path,
                    key=entry_key(self.digest, side, str(le_row["sha256"]), key_des, mask_sha),
                    le_sha=str(le_row["sha256"]), des_sha=des_sha,
                    exam_des=exam_paths if des_row is not None else (),
                )
            )
        return entries, pd.DataFrame(problems, columns=list(EXCLUSION_COLUMNS))

    def _exam_des(self, groups: dict[tuple[str, str, str, str], dict[str, list[dict[str, Any]]]],
                  manifest: Manifest) -> dict[tuple[str, str], tuple[tuple[Path, ...], str]]:
        """Under des_window "exam": each exam's DES files in view order, and their shas joined (a change
        of any of them rebuilds every view of the exam); empty under the other rules."""
        if self.settings.des_window != "exam":
            return {}
        found: dict[tuple[str, str], list[tuple[str, Path, str]]] = {}
        for (dataset, patient_id, side, view), rows in sorted(groups.items()):
            if len(rows["DES"]) == 1:
                row = rows["DES"][0]
                found.setdefault((dataset, patient_id), []).append(
                    (side + view, manifest.image_path(row), str(row["sha256"])))
        return {exam: (tuple(path for _, path, _ in views), "|".join(sha for _, _, sha in views))
                for exam, views in found.items()}

    def attach(self, manifest: Manifest) -> list[Entry]:
        """Index a manifest's entries so get() can find them (no preprocessing).

        Raises SourceChangedError naming the files when an image changed since the manifest was written
        (a stat per image; only files whose size or mtime changed are hashed), so that no tensor of an
        older version of a file is ever served.
        """
        require_unchanged(manifest)
        entries, _ = self.plan(manifest)
        for entry in entries:
            self._index[(entry.dataset, entry.patient_id, entry.side, entry.view)] = entry
        return entries

    # -- filling ------------------------------------------------------------------------------------

    def fill(self, manifest: Manifest, workers: int = 1, progress: bool = True) -> FillResult:
        """Preprocess every entry of the manifest missing from the cache (in parallel) and verify the rest.

        Stops with SourceChangedError, naming the files, when an image changed since the manifest was
        written; a file that changes while it is preprocessed is reported as failed, never stored.
        """
        require_unchanged(manifest)
        entries, problems = self.plan(manifest)
        for entry in entries:
            self._index[(entry.dataset, entry.patient_id, entry.side, entry.view)] = entry
        todo: list[Entry] = []
        failures: list[tuple[Entry, str]] = []
        skipped = 0
        for entry in entries:
            state = self._state(entry)
            if state == "ok":
                skipped += 1
            elif state == "known-failure":
                failures.append((entry, self._marker_reason(entry)))
            else:
                todo.append(entry)
        built = 0
        if todo or not self.folder.is_dir() or self._leftovers():
            # A fill with work to do (or a killed fill's leftovers to remove) writes the folder: one at a
            # time (a second one is refused).
            with folder_lock(self.folder, "cem preprocess"):
                built = self._build_missing(todo, failures, workers, progress)
        if entries and len(failures) == len(entries):
            with folder_lock(self.folder, "cem preprocess"):
                self._forget(entry for entry, _ in failures)
            raise SettingsFailEveryImage(fail_every_image_message(self.settings, failures))
        exclusions = pd.concat([problems, _failure_rows(failures, manifest)], ignore_index=True)
        failed = len(failures) + len(problems)
        return FillResult(built=built, skipped=skipped, failed=failed, exclusions=exclusions)

    def _build_missing(self, todo: list[Entry], failures: list[tuple[Entry, str]], workers: int,
                       progress: bool) -> int:
        """Build the `todo` entries (the folder's lock held); add their failures; return how many built."""
        self._prepare_folder()
        built = 0
        windows: dict[str, dict[str, Any]] = {}
        for status, entry, reason, window in self._build(todo, workers, progress):
            if status == "built":
                built += 1
                windows[entry.key] = _window_row(entry, window)
            else:
                failures.append((entry, reason))
        self._record_windows(windows)
        return built

    def _forget(self, entries: Iterable[Entry]) -> None:
        """Remove the failure markers of `entries` (a run whose settings failed every image)."""
        for entry in entries:
            self.marker_for(entry).unlink(missing_ok=True)

    def _leftovers(self) -> list[Path]:
        """Temporary files of an interrupted fill, never renamed into place."""
        return [*self.folder.glob(".*.tmp"), *self.folder.glob("*/.*.tmp")]

    def _prepare_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self._leftovers():
            stale.unlink(missing_ok=True)
        settings_file = self.folder / "settings.json"
        if not settings_file.exists():
            described = {
                "digest": self.digest, "format": CACHE_FORMAT, "settings": _settings_dict(self.settings),
            }
            atomic_write_text(settings_file, json.dumps(described, indent=2, default=str))

    def _state(self, entry: Entry) -> str:
        path = self.path_for(entry)
        if path.exists():
            try:
                read_entry_file(path, self.shape_of(entry))
                return "ok"
            except CacheError:
                path.unlink(missing_ok=True)
                return "missing"
        return "known-failure" if self.marker_for(entry).exists() else "missing"

    def _marker_reason(self, entry: Entry) -> str:
        try:
            return str(json.loads(self.marker_for(entry).read_text())["reason"])
        except (OSError, ValueError, KeyError):
            return "preprocessing failed (reason not recorded)"

    def windows(self) -> pd.DataFrame:
        """The window record of the entries built: bounds and rule per LE and DES image (``windows.csv``)."""
        path = self.folder / WINDOWS_FILE
        if not path.is_file():
            return pd.DataFrame(columns=list(WINDOW_COLUMNS))
        return pd.read_csv(path, dtype=str, keep_default_na=False)

    def _record_windows(self, rows: dict[str, dict[str, Any]]) -> None:
        """Add the window rows of newly built entries to ``windows.csv`` (one row per entry key)."""
        if not rows:
            return
        known = self.windows()
        known = known[~known["key"].isin(list(rows))]
        table = pd.concat([known, pd.DataFrame(list(rows.values()), columns=list(WINDOW_COLUMNS))],
                          ignore_index=True).sort_values(["dataset", "patient_id", "side", "view"])
        with atomic_path(self.folder / WINDOWS_FILE) as tmp:
            table.to_csv(tmp, index=False, lineterminator="\n")

    def _build(self, todo: list[Entry], workers: int, progress: bool
               ) -> Iterable[tuple[str, Entry, str, dict[str, Any]]]:
        tasks = [_Task(e, self.path_for(e), self.marker_for(e), self.settings) for e in todo]
        bar = Progress(len(tasks), "preprocess", "view", disable=not progress or not tasks)
        with bar:
            if workers <= 1 or len(tasks) <= 1:
                for task in tasks:
                    yield _run_task(task)
                    bar.update()
                return
            # spawn: workers start clean, never inheriting the parent's torch thread pools.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                     initializer=_single_thread_worker, initargs=(os.getpid(),)) as pool:
                futures = [pool.submit(_run_task, task) for task in tasks]
                for future in as_completed(futures):
                    yield future.result()
                    bar.update()

    # -- reading ------------------------------------------------------------------------------------

    def entry(self, patient_id: str, side: str, view: str, dataset: str | None = None) -> Entry:
        """The indexed entry of a view (attach or fill the manifest first)."""
        if dataset is not None:
            found = self._index.get((dataset, str(patient_id), side, view))
            if found is None:
                raise CacheError(
                    f"no cache entry indexed for {dataset}/{patient_id} {side} {view}: attach its manifest"
                )
            return found
        matches = [e for k, e in self._index.items() if k[1:] == (str(patient_id), side, view)]
        if not matches:
            raise CacheError(f"no cache entry indexed for {patient_id} {side} {view}: attach its manifest")
        if len(matches) > 1:
            raise CacheError(f"{patient_id} {side} {view} is in several datasets; pass dataset=")
        return matches[0]

    def read(self, entry: Entry) -> np.ndarray:
        """Verified float32 (C, H, W) stack of an entry, channels as in entry.channels."""
        path = self.path_for(entry)
        if not path.exists() and self.marker_for(entry).exists():
            raise CacheError(f"{entry_label(entry)} failed preprocessing: {self._marker_reason(entry)}")
        return read_entry_file(path, self.shape_of(entry))

    def get_array(self, patient_id: str, side: str, view: str, dataset: str | None = None) -> np.ndarray:
        """Float32 numpy (C_all, H, W) of a view: LE, DES (if any), mask (if any)."""
        return self.read(self.entry(patient_id, side, view, dataset))

    def get(self, patient_id: str, side: str, view: str, dataset: str | None = None):
        """Float32 torch tensor (C_all, H, W) of a view: LE, DES (if any), mask (if any)."""
        import torch

        return torch.from_numpy(self.get_array(patient_id, side, view, dataset))

    def failures(self, manifest: Manifest) -> pd.DataFrame:
        """Exclusion rows for the manifest's entries recorded as failed, or absent from the cache."""
        entries, problems = self.plan(manifest)
        rows: list[tuple[Entry, str]] = []
        for entry in entries:
            if self.path_for(entry).exists():
                continue
            if self.marker_for(entry).exists():
                rows.append((entry, self._marker_reason(entry)))
        return pd.concat([problems, _failure_rows(rows, manifest)], ignore_index=True)

    def missing(self, entries: Iterable[Entry]) -> list[Entry]:
        """Entries with neither a stored tensor nor a failure marker (not preprocessed yet)."""
        return [e for e in entries if not self.path_for(e).exists() and not self.marker_for(e).exists()]


def _window_row(entry: Entry, window: dict[str, Any]) -> dict[str, Any]:
    """One windows.csv row: the entry and its LE/DES window bounds and rules."""
    le_low, le_high = window.get("le_window", ("", ""))
    des_low, des_high = window.get("des_window", ("", ""))
    return {"key": entry.key, "dataset": entry.dataset, "patient_id": entry.patient_id, "side": entry.side,
            "view": entry.view, "le_low": le_low, "le_high": le_high,
            "le_window_rule": window.get("le_window_rule", ""), "des_low": des_low, "des_high": des_high,
            "des_window_rule": window.get("des_window_rule", "")}


def _settings_dict(settings: PreprocessSettings) -> dict[str, Any]:
    if dataclasses.is_dataclass(settings):
        return dataclasses.asdict(settings)
    return {"repr": repr(settings)}


def _plan_key(manifest: Manifest) -> tuple[str, str]:
    """What a plan depends on: the root, the images table (whose checksums name every source) and, for
    masks listed without a checksum, each mask file's stat (the plan hashes those files, so an edited
    mask must give another key: any write moves a file's ctime)."""
    images = manifest.images
    digest = hashlib.sha256(pd.util.hash_pandas_object(images, index=False).to_numpy().tobytes())
    digest.update(",".join(images.columns).encode())
    if "mask_path" in images.columns and "mask_sha256" not in images.columns:
        for stored in sorted({str(p) for p in images["mask_path"] if isinstance(p, str) and p}):
            try:
                stat = os.stat(manifest.resolve(stored))
                digest.update(f"{stored}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}".encode())
            except OSError:
                digest.update(f"{stored}:missing".encode())
    return str(manifest.root), digest.hexdigest()


def _mask_digest_column(manifest: Manifest) -> dict[str, str]:
    """Mask checksums the manifest already carries (column mask_sha256), by absolute mask path."""
    images = manifest.images
    if "mask_sha256" not in images.columns or "mask_path" not in images.columns:
        return {}
    known = {}
    for path, digest in zip(images["mask_path"], images["mask_sha256"], strict=True):
        absolute = _optional_path(manifest, path)
        if absolute is not None and isinstance(digest, str) and digest:
            known[str(absolute)] = digest
    return known


def _relative(manifest: Manifest, path: Path) -> str:
    try:
        return str(path.relative_to(Path(manifest.root)))
    except ValueError:
        return str(path)


def _failure_rows(failures: list[tuple[Entry, str]], manifest: Manifest) -> pd.DataFrame:
    # the path as images.csv stores it (pseudonymised where the layout's names may be patients' names)
    stored = {manifest.image_path(row): str(row["path"]) for row in manifest.images.to_dict("records")
              } if failures else {}
    rows = [
        {
            "dataset": entry.dataset, "patient_id": entry.patient_id, "side": entry.side,
            "path": stored.get(entry.le_path) or _relative(manifest, entry.le_path),
            "reason": f"preprocessing failed ({entry.side} {entry.view}): {reason}",
            "kind": EXCLUSION_KIND,
        }
        for entry, reason in failures
    ]
    return pd.DataFrame(rows, columns=list(EXCLUSION_COLUMNS))


def apply_exclusions(manifest: Manifest, exclusions: pd.DataFrame) -> list[str]:
    """Exclude failed images' patients from a manifest in memory: add their rows, drop their tables rows.

    Follows the manifest's rule that a patient is excluded when it has exclusion rows and no breast
    rows. Returns the ids of the patients newly excluded. The result is for this run only: a cache's
    failures depend on its settings, so no step saves them into the manifest folder.
    """
    if exclusions.empty:
        return []
    rows = exclusions.reindex(columns=list(EXCLUSION_COLUMNS)).fillna("").astype(str)
    known = {tuple(r) for r in manifest.exclusions.reindex(columns=list(EXCLUSION_COLUMNS)).fillna("").values}
    fresh = rows[[tuple(r) not in known for r in rows.values]]
    dropped = sorted(set(rows["patient_id"]) & set(manifest.breasts["patient_id"].astype(str)))
    manifest.exclusions = pd.concat([manifest.exclusions, fresh], ignore_index=True)
    manifest.images = manifest.images[~manifest.images["patient_id"].astype(str).isin(dropped)]
    manifest.breasts = manifest.breasts[~manifest.breasts["patient_id"].astype(str).isin(dropped)]
    manifest.images = manifest.images.reset_index(drop=True)
    manifest.breasts = manifest.breasts.reset_index(drop=True)
    return dropped
