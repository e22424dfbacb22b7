"""Live view of training: per-epoch TensorBoard scalars beside log.csv, and a progress side channel.

The training loop calls `epoch_logged` where it writes log.csv. It writes the epoch's train/validation
loss, validation AUC and learning rate as TensorBoard event files into the same run folder (watch them
with `tensorboard --logdir runs/<profile>/models`), and, when the environment variable CEM_PROGRESS_FILE
names a file, appends one readable line to it. `cem reproduce` sets that variable for the notebook
kernels and prints the file's lines as they come, so the terminal shows epochs, loss and AUC live while
the executed notebooks stay free of progress bars.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cemlib.core.progress import PROGRESS_ENV, note

#: TensorBoard scalar tag per log.csv column.
SCALARS = {"train_loss": "loss/train", "val_loss": "loss/validation", "val_auc": "auc/validation",
           "lr": "learning_rate"}

_writers: dict[Path, Any] = {}
_stopped: set[Path] = set()  # run folders whose event files stopped (a full disk): not retried
_tensorboard_missing = False


def run_label(run_dir: Path) -> str:
    """A run folder as named in progress lines: 'cem_stage1', 'cem_mf_concat/stage2'."""
    run_dir = Path(run_dir)
    if run_dir.name in ("stage1", "stage2"):
        return f"{run_dir.parent.name}/{run_dir.name}"
    return run_dir.name


def _fmt(value: float, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else format(float(value), spec)


def epoch_line(run_dir: Path, row: Mapping[str, float], epochs: int) -> str:
    """'cem_stage1 epoch 3/8: train loss 0.512, val loss 0.498, val AUC 0.812, lr 0.005 (14 s)'."""
    return (
        f"{run_label(run_dir)} epoch {int(row['epoch'])}/{epochs}: "
        f"train loss {_fmt(row['train_loss'], '.3f')}, "
        f"val loss {_fmt(row['val_loss'], '.3f')}, val AUC {_fmt(row['val_auc'], '.3f')}, "
        f"lr {_fmt(row['lr'], '.3g')} ({_fmt(row['seconds'], '.0f')} s)"
    )


def _writer(run_dir: Path):
    """The run folder's SummaryWriter (kept open, one per folder), or None without tensorboard."""
    global _tensorboard_missing
    run_dir = Path(run_dir)
    if run_dir in _writers:
        return _writers[run_dir]
    if _tensorboard_missing or run_dir in _stopped:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        _tensorboard_missing = True
        warnings.warn("tensorboard is not installed: no event files are written (log.csv is)", stacklevel=3)
        return None
    _writers[run_dir] = SummaryWriter(log_dir=str(run_dir))
    return _writers[run_dir]


def write_scalars(run_dir: Path, row: Mapping[str, float]) -> None:
    """The epoch's loss, AUC and learning rate as TensorBoard scalars in run_dir (step = epoch)."""
    writer = _writer(run_dir)
    if writer is None:
        return
    try:
        for column, tag in SCALARS.items():
            value = row.get(column)
            if value is not None and math.isfinite(float(value)):
                writer.add_scalar(tag, float(value), int(row["epoch"]))
        writer.flush()
    except OSError as exc:  # a full disk: TensorBoard is a view, log.csv and the checkpoints are the record
        _writers.pop(Path(run_dir), None)
        _stopped.add(Path(run_dir))
        warnings.warn(f"{run_dir}: TensorBoard event files stopped ({exc.strerror or exc}); log.csv goes on",
                      stacklevel=2)


def epoch_logged(run_dir: str | os.PathLike, row: Mapping[str, float], epochs: int) -> None:
    """Called where log.csv is written: TensorBoard scalars and one progress line for the epoch."""
    write_scalars(Path(run_dir), row)
    note(epoch_line(Path(run_dir), row, epochs))


@contextlib.contextmanager
def follow(path: Path, prefix: str = "", interval: float = 0.5, stream=None) -> Iterator[Path]:
    """While the block runs, name `path` in CEM_PROGRESS_FILE and print each line written to it.

    The file is emptied first; child processes (a notebook's kernel) inherit the variable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    stream = stream or sys.stdout
    stop = threading.Event()
    previous = os.environ.get(PROGRESS_ENV)

    def pump() -> None:
        with open(path, encoding="utf-8") as fh:
            pending = ""
            while True:
                stopping = stop.is_set()
                pending += fh.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    print(f"{prefix}{line}", file=stream, flush=True)
                if stopping:
                    break
                stop.wait(interval)

    thread = threading.Thread(target=pump, name="cem-progress", daemon=True)
    os.environ[PROGRESS_ENV] = str(path.resolve())
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(timeout=10)
        if previous is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = previous


def close_writers() -> None:
    """Close every open SummaryWriter (their event files stay complete either way: flushed per epoch)."""
    while _writers:
        _writers.popitem()[1].close()
