"""Are a manifest's files still the files it describes? The checks every use of a manifest runs.

``changed_files`` is the cheap check run before any cached tensor is used (``require_unchanged``, called
by the tensor cache's ``attach`` and ``fill``): a stat and the sampled digest of each image
(``cemlib.data.integrity``). ``verify`` is the full check of `cem manifest --verify`: the sha256 of every
file. Messages name images by pseudonymous patient id and view, never by path: file and folder names may
hold a patient's name.
"""

from __future__ import annotations

import os

import pandas as pd

from cemlib.core.fileio import sha256_file
from cemlib.data.integrity import sampled_digest
from cemlib.data.manifest import Manifest, cell_text, map_files

CHANGE_COLUMNS = ["path", "status", "expected_sha256", "actual_sha256"]
#: Images checked per thread-pool task.
CHECK_CHUNK = 64

#: path -> (device, inode, size, mtime, ctime, sampled digest) of files this process found unchanged. Any
#: write, rename over or os.utime sets a file's ctime to now, and no call sets it back, so a file whose
#: stat still matches was not touched since its sampled digest was read: the 0.2 MB read is skipped.
_UNCHANGED: dict[str, tuple] = {}


def _stat_key(stat: os.stat_result, recorded: str) -> tuple:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, recorded)


def changed_files(manifest: Manifest, workers: int | None = None) -> pd.DataFrame:
    """Images whose bytes differ from the manifest's sha256, or that vanished (empty when none).

    Cheap on every run: a stat and a sampled digest per image (cemlib.data.integrity: about 0.2 MB read
    per file, so a file replaced or swapped with its size and mtime kept is caught); a file whose size,
    mtime or sampled digest differs from the manifest's record is hashed in full, and it counts as changed
    only when its sha256 differs. A manifest written without sampled digests gets the stat check alone;
    without sizes and mtimes every file is hashed. Columns path, status ("changed", "missing",
    "unreadable ..."), expected_sha256, actual_sha256.
    """

    def suspect(row: dict) -> bool:
        path = manifest.image_path(row)
        try:
            stat = os.stat(path)
        except OSError:
            return True
        size, mtime = row.get("size", -1), row.get("mtime_ns", -1)
        if not (size >= 0 and mtime >= 0) or stat.st_size != size or stat.st_mtime_ns != mtime:
            return True
        recorded = cell_text(row.get("sampled_digest", ""))
        key = _stat_key(stat, recorded)
        if _UNCHANGED.get(str(path)) == key:
            return False
        if recorded and sampled_digest(path) != recorded:
            return True
        _UNCHANGED[str(path)] = key
        return False

    def suspects_in(rows: list[dict]) -> list[bool]:
        flags = []
        for row in rows:
            try:
                flags.append(suspect(row))
            except Exception:  # unreadable: hashed in full below, which names the problem
                flags.append(True)
        return flags

    records = manifest.images.to_dict("records")
    # chunks of rows, not one task per file: most checks are a stat, cheaper than a task's overhead
    chunks = [records[start:start + CHECK_CHUNK] for start in range(0, len(records), CHECK_CHUNK)]
    flags = [flag for chunk in map_files(suspects_in, chunks, workers, progress=False) for flag in chunk]
    suspects = [row for row, flag in zip(records, flags, strict=True) if flag]
    if not suspects:
        return pd.DataFrame(columns=CHANGE_COLUMNS)
    subset = Manifest(manifest.dataset, manifest.root, pd.DataFrame(suspects), manifest.breasts,
                      manifest.exclusions)
    return verify(subset, workers, progress=False)


class SourceChangedError(RuntimeError):
    """Image files changed since their manifest was written; the message names them."""


def require_unchanged(manifest: Manifest, workers: int | None = None) -> None:
    """SourceChangedError naming every image that changed or vanished since the manifest was written."""
    problems = changed_files(manifest, workers)
    if problems.empty:
        return
    # named by pseudonymous patient id and view: file and folder names may hold a patient's name
    rows = problems.merge(manifest.images, on="path", how="left")
    listed = "; ".join(f"{row.dataset}/{row.patient_id} {row.side} {row.view} {row.energy} ({row.status})"
                       for row in rows.head(5).itertuples())
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    raise SourceChangedError(f"{len(problems)} image file(s) differ from the manifest's sha256 "
                             f"(paths in images.csv): {listed}{more}. Run `cem manifest` on the dataset "
                             "again (then `cem preprocess`) so the manifest and the tensor cache "
                             "describe the files as they are now")


def verify(manifest: Manifest, workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Files whose bytes changed or that vanished since the manifest was written (empty when none)."""
    images = manifest.images
    paths = [manifest.image_path(row) for row in images.to_dict("records")]
    results = map_files(sha256_file, paths, workers, desc="sha256", progress=progress)
    rows = []
    for path, expected, actual in zip(images["path"], images["sha256"], results, strict=True):
        if isinstance(actual, FileNotFoundError):
            rows.append({"path": path, "status": "missing", "expected_sha256": expected, "actual_sha256": ""})
        elif isinstance(actual, Exception):
            rows.append({"path": path, "status": f"unreadable ({type(actual).__name__})",
                         "expected_sha256": expected, "actual_sha256": ""})
        elif actual != expected:
            rows.append({"path": path, "status": "changed", "expected_sha256": expected,
                         "actual_sha256": actual})
    return pd.DataFrame(rows, columns=CHANGE_COLUMNS)
