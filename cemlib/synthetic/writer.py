"""The one parallel patient writer every synthetic dataset uses, and the output-folder rules.

A dataset writer hands `write_patients` one task per patient; each task renders and writes one patient
and returns its table rows. Every random draw of a task comes from the patient's own seed stream, so the
bytes on disk do not depend on the number of processes or on their order (serial = parallel).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cemlib import __version__
from cemlib.core.fileio import atomic_write_text, remove_stale_temporaries
from cemlib.core.processes import exit_with_parent
from cemlib.core.progress import track

#: Version of the phantom and its writers; recorded in cohort.json / replica.json so that a dataset
#: written by an earlier generator is never reused silently.
GENERATOR_VERSION = "6"
#: Present while a writer fills a folder, removed when its marker (cohort.json, replica.json) is written:
#: a folder a killed writer left is recognised as the kit's own, and a rerun clears and completes it.
INCOMPLETE = ".cem-synth-incomplete"

Task = TypeVar("Task")


def default_workers(workers: int | None) -> int:
    """Processes to use: the CPU count up to 8 when None, else the given number (0 or 1 = serial)."""
    return min(os.cpu_count() or 1, 8) if workers is None else max(0, int(workers))


def write_patients(task: Callable[[Task], Any], items: Sequence[Task], workers: int | None,
                   desc: str) -> list[Any]:
    """Run `task` on every item, serially or in a process pool, results in item order.

    A bar counts the patients written, and `cem reproduce` prints the count and time left.
    """
    workers = default_workers(workers)
    progress = {"total": len(items), "desc": desc, "unit": "patient"}
    if workers <= 1 or len(items) <= 1:
        return [task(item) for item in track(items, **progress)]
    # Workers end with this process, even when it is killed with SIGKILL.
    pool = ProcessPoolExecutor(max_workers=workers, initializer=exit_with_parent, initargs=(os.getpid(),))
    with pool:
        chunk = max(1, len(items) // (workers * 8))
        return list(track(pool.map(task, items, chunksize=chunk), **progress))


def prepare_cohort_dir(out: Path, keep: set[str], marker: str = "cohort.json") -> None:
    """Refuse a foreign non-empty folder; in an earlier cohort, remove the patients the new one lacks."""
    if out.exists() and any(out.iterdir()):
        if not (out / marker).is_file() and not (out / INCOMPLETE).is_file():
            raise ValueError(f"{out} is not empty and holds no synthetic cohort (no {marker}); "
                             "choose an empty or new folder")
        for stale in [*out.glob("SYN*"), *(out / "masks").glob("SYN*")]:
            if stale.is_dir() and stale.name not in keep:
                shutil.rmtree(stale)
        remove_stale_temporaries(out, recursive=True)
    _start(out)


def prepare_replica_dir(out: Path, release: str, marker: str = "replica.json") -> None:
    """Refuse a non-empty folder that is not an earlier replica (no `marker`); clear an earlier replica."""
    if out.exists() and any(out.iterdir()):
        if not (out / marker).is_file() and not (out / INCOMPLETE).is_file():
            raise ValueError(f"{out} is not empty and is not a {release} replica (no {marker}); "
                             "choose an empty or new folder")
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    _start(out)


def _start(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE).touch()


def finish_dir(out: Path) -> None:
    """Mark a folder a writer has completed (after its cohort.json or replica.json is written)."""
    (out / INCOMPLETE).unlink(missing_ok=True)


def finish_replica(out: Path, marker: str, generator: str, dataset: str, seed: int, scale: float,
                   patients: int, **extra: Any) -> Path:
    """Write a replica's record (generator, version and settings, checked before reuse); mark it complete."""
    record = {"generator": generator, "version": GENERATOR_VERSION, "cemlib_version": __version__,
              "format": dataset, "seed": seed, "scale": scale, "patients": patients, **extra}
    atomic_write_text(out / marker, json.dumps(record, indent=2) + "\n")
    finish_dir(out)
    return out


def interrupted(root: str | os.PathLike) -> bool:
    """Whether a killed writer left `root` incomplete (its marker is still there)."""
    return (Path(root) / INCOMPLETE).is_file()
