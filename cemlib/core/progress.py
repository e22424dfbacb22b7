"""Progress of long loops: a text bar on the terminal and, for `cem reproduce`, lines in a progress file.

A notebook's kernel has no terminal: `cem reproduce` names a file in the environment variable
CEM_PROGRESS_FILE, the kernels append readable lines to it (`note`) and the pipeline prints them as they
come. `Progress` (and `track`, its loop form) shows a tqdm text bar where one is wanted and writes a line
with the count, the time so far and the time left to that file every `NOTE_EVERY` seconds and at the
end: 'preprocess: 480/1,840 views (26%), 12 s, about 34 s left'.

The bar is tqdm's plain text bar, never the notebook widget: it needs no ipywidgets in JupyterLab.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

PROGRESS_ENV = "CEM_PROGRESS_FILE"
#: Seconds between two progress-file lines of one loop (the first and the last are always written).
NOTE_EVERY = 5.0
#: The clock the lines' times are read from.
clock = time.monotonic

Item = TypeVar("Item")


def note(message: str) -> None:
    """Append one line to the progress file named by CEM_PROGRESS_FILE (nothing when it is unset)."""
    target = os.environ.get(PROGRESS_ENV)
    if not target:
        return
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(message.rstrip("\n") + "\n")


def duration(seconds: float) -> str:
    """'8 s', '3 min 05 s', '1 h 02 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_line(desc: str, done: int, total: int, unit: str, elapsed: float, left: float | None = None
                  ) -> str:
    """'synth: 120/450 patients (26%), 31 s, about 1 min 25 s left'; done: 'synth: 450 patients in 2 min'.

    The time left, `left` in seconds, is left out when None (not yet known).
    """
    units = unit if unit.endswith("s") else unit + ("es" if unit.endswith(("ch", "sh", "x")) else "s")
    if total and done >= total:
        return f"{desc}: {total:,} {units} in {duration(elapsed)}"
    if not total:
        return f"{desc}: {done:,} {units}, {duration(elapsed)}"
    line = f"{desc}: {done:,}/{total:,} {units} ({100 * done // total}%), {duration(elapsed)}"
    return line + (f", about {duration(left)} left" if left is not None else "")


class Progress:
    """A count of `total` steps: a tqdm text bar (unless disabled) and progress-file lines with the ETA.

    `bar=False` keeps the lines and hides the bar; `disable=True` hides both (a second process of a
    distributed run, or a caller that asked for quiet).
    """

    def __init__(self, total: int, desc: str, unit: str, disable: bool = False, bar: bool = True,
                 every: float = NOTE_EVERY, **tqdm_options: Any) -> None:
        self.total, self.desc, self.unit, self.every = int(total), desc, unit, every
        self.disabled = disable
        self.done = 0
        self._bar = tqdm(total=total, desc=desc, unit=unit, disable=disable or not bar, **tqdm_options)
        self._start = self._noted = clock()
        self._first: tuple[float, int] | None = None  # when the first step ended, and how many it counted
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Count `n` more steps done."""
        self.done += n
        self._bar.update(n)
        now = clock()
        if self._first is None:
            self._first = (now, self.done)
        if not self.disabled and now - self._noted >= self.every and self.done < self.total:
            self._noted = now
            elapsed = now - self._start
            note(progress_line(self.desc, self.done, self.total, self.unit, elapsed, self.left(now)))

    def left(self, now: float) -> float | None:
        """Seconds still to go at the pace since the first step ended (which carries the start-up: worker
        processes, imports); None until a second step ends."""
        if self._first is None or self.done <= self._first[1]:
            return None
        since, counted = self._first
        return (now - since) / (self.done - counted) * (self.total - self.done)

    def close(self) -> None:
        """Close the bar; the last line says how many steps took how long."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        if not self.disabled and self.done:
            note(progress_line(self.desc, self.done, self.total, self.unit, clock() - self._start))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[Item], total: int | None = None, desc: str = "", unit: str = "it",
          disable: bool = False, **options: Any) -> Iterator[Item]:
    """Iterate over `items` counting each one (see Progress); `total` defaults to len(items)."""
    count = total if total is not None else len(items)  # type: ignore[arg-type]
    with Progress(count, desc, unit, disable=disable, **options) as progress:
        for item in items:
            yield item
            progress.update()
