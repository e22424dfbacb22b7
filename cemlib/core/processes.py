"""Worker processes that end with the process that started them."""

from __future__ import annotations

import os
import signal
import sys

#: prctl option that asks the kernel to send a signal to this process when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: int | None) -> None:
    """Make this (worker) process exit when its parent dies, even by SIGKILL; best effort off Linux.

    A pool worker whose parent was killed with ``kill -9`` would otherwise live on, reparented, holding its
    memory. On Linux the kernel sends the worker SIGKILL the moment its parent exits (prctl
    PR_SET_PDEATHSIG); if the parent is already gone when this runs (it died while the worker started),
    the worker exits at once.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
