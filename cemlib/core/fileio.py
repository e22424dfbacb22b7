"""Atomic file writes (files, figures) and checksums shared by every step that writes to disk.

Files are written to a temporary file beside the target and renamed into place, so readers see the old
file or the whole new one. The result gets the permissions a plain `open(..., "w")` would give under
the process's umask (0644 under the usual 022), not the 0600 of a temporary file: colleagues on a
shared server can read reports and checkpoints.

A folder one process writes at a time (a run folder, a manifest, a cache) is held with `folder_lock`: an
flock on `<folder>/.lock`, which records the holder's pid and what it does. The kernel releases the lock
when its process dies, so a kill -9 leaves no stale lock: the next writer simply takes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)  # temporaries_of
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except (OSError, RuntimeError) as exc:
        # Messages name the file the caller asked for, not its temporary twin (torch names none at all).
        if getattr(exc, "filename", None) in (None, str(tmp_path)):
            exc.filename = str(target)
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


#: The names atomic_path gives its temporary files (tempfile's eight random characters).
TEMPORARY_PATTERN = ".*.????????.tmp"


def remove_stale_temporaries(folder: str | os.PathLike, pattern: str = TEMPORARY_PATTERN,
                             recursive: bool = False) -> list[Path]:
    """Delete the temporary files (.NAME.*.tmp) a killed atomic write left in `folder`; return them.

    Call it only where one process owns the files for the run (a verb's own output), never where another
    process may be writing at the same moment; `pattern` narrows it to one target's temporaries.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in (folder.rglob if recursive else folder.glob)(pattern) if p.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def temporaries_of(target: str | os.PathLike) -> str:
    """The glob pattern of the temporary files atomic_path makes for `target` (inside its folder)."""
    return f".{Path(target).name}.????????.tmp"


def current_umask() -> int:
    """The process's umask (read by setting and restoring it; there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write bytes so that readers see either the old file or the whole new one, never a part."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Text version of atomic_write_bytes (UTF-8)."""
    atomic_write_bytes(target, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_figure(fig: Any, path: str | os.PathLike, formats: Sequence[str] | None = None, dpi: int = 300,
                tight: bool = False) -> list[Path]:
    """THE figure writer: a matplotlib figure written atomically, one file per format; returns the paths.

    `formats` None: `path` is the file and its extension the format (png when none); else `path` is a
    stem and each format is written to `path.<format>`. PDF and PNG carry no creation date or software
    tag, so the bytes repeat run to run.
    """
    path = Path(path)
    if formats is None:
        targets = {path.suffix.lstrip(".").lower() or "png": path}
    else:
        targets = {fmt: path.parent / f"{path.name}.{fmt}" for fmt in formats}
    written = []
    for fmt, target in targets.items():
        buffer = io.BytesIO()
        metadata = {"CreationDate": None} if fmt == "pdf" else ({"Software": None} if fmt == "png" else None)
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata, bbox_inches="tight" if tight else None)
        atomic_write_bytes(target, buffer.getvalue())
        written.append(target)
    return written


#: The lock file `folder_lock` keeps in each folder it guards, while it holds it.
LOCK_FILE = ".lock"
#: Locks this process holds: lock path -> [open lock file, nesting depth], so a holder can lock again.
_HELD: dict[str, list[Any]] = {}


class FolderInUse(RuntimeError):
    """Another live process holds the folder's lock; the message names the folder, the pid and its work."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold `folder` for writing while the block runs; FolderInUse at once when another process holds it.

    `what` says what the holder does (e.g. "cem train"), for the message the second writer gets. Nested
    locks of one folder by one process are fine. A lock file a killed process left is taken over.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder.resolve() / LOCK_FILE
    key = str(path)
    if key in _HELD:
        _HELD[key][1] += 1
    else:
        _HELD[key] = [_acquire(path, what), 1]
    try:
        yield folder
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            handle = _HELD.pop(key)[0]
            path.unlink(missing_ok=True)  # still locked: whoever opened this file meanwhile sees it is gone
            handle.close()  # closing the file releases the flock


def _acquire(path: Path, what: str) -> Any:
    """The open lock file with its flock taken and this process recorded in it; FolderInUse if held."""
    while True:
        handle = open(path, "a+")  # held open for as long as the lock is
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise FolderInUse(f"{path.parent} is being written by {holder}; wait for it to finish, or stop "
                              "it (one writer at a time)") from None
        if _same_file(handle, path):
            break
        handle.close()  # the holder removed that file as it let go: lock the new one
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} ({what})\n")
    handle.flush()
    return handle


def _same_file(handle: Any, path: Path) -> bool:
    """Whether the open `handle` is still the file at `path` (not one unlinked since it was opened)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False
