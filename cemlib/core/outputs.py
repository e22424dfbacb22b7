"""Check where a command will write before it starts long work, and turn write failures into one line.

Every verb calls `check_output_file` or `check_output_folder` on its output location first, so a path
that is a folder where a file is expected (or the reverse), a read-only location or a nearly full disk
stops the command at once with the path and the cause, instead of after an epoch of training.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

#: Free space a location must have at least before a command starts writing into it.
DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024

_CAUSES = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
}


class OutputLocationError(RuntimeError):
    """An output path a command cannot or must not write; the message names the path and the cause."""


def _nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_writable_folder(folder: Path, target: Path, min_free_bytes: int) -> None:
    """Raise unless `folder` is a folder we can create files in, with `min_free_bytes` free."""
    if not folder.is_dir():
        raise OutputLocationError(f"{target}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".cem-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputLocationError(f"{target}: cannot write in {folder} ({cause(exc)})") from exc
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise OutputLocationError(f"{target}: only {free / 2**20:.1f} MiB free in {folder}, "
                                  f"at least {min_free_bytes / 2**20:.0f} MiB needed")


def check_output_file(path: str | os.PathLike, *, overwrite: bool = True,
                      min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> Path:
    """Check that `path` can be written as a file (creating its folders); return it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise OutputLocationError(f"{path}: is a folder; give a file path")
    if path.exists() and not overwrite:
        raise OutputLocationError(f"{path}: exists; delete it or choose another path")
    _check_writable_folder(_nearest_existing(path.parent), path, min_free_bytes)
    return path


def check_output_folder(path: str | os.PathLike, *, must_be_empty: bool = False,
                        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> Path:
    """Check that `path` can be used as an output folder (it may not exist yet); return it as a Path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputLocationError(f"{path}: is a file; give a folder path")
    if must_be_empty and path.is_dir() and any(path.iterdir()):
        raise OutputLocationError(f"{path}: exists and is not empty; delete it or choose another folder")
    _check_writable_folder(_nearest_existing(path), path, min_free_bytes)
    return path


def cause(exc: BaseException) -> str:
    """The plain-words cause of an OS-level write failure."""
    if isinstance(exc, OSError) and exc.errno in _CAUSES:
        return _CAUSES[exc.errno]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def describe_write_failure(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """One line naming the path and the cause of a failed write (torch's full-disk errors included)."""
    name = getattr(exc, "filename", None) or path
    reason = cause(exc)
    if not isinstance(exc, OSError) and name is not None:
        # torch.save reports a full disk as an "unexpected pos" enforce failure: say what it means.
        folder = _nearest_existing(Path(name).parent)
        if shutil.disk_usage(folder).free < DEFAULT_MIN_FREE_BYTES:
            reason = _CAUSES[errno.ENOSPC]
    return f"{name}: {reason}" if name is not None else reason
