"""Where a model runs: the torch device a profile names, the (torchrun) process group, seeds and kernels.

Shared by training (which may run on several processes) and prediction (one process), so that scoring a
model never needs the training loop.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in a (torchrun) process group; world_size 1 means a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and progress bars."""
        return self.rank == 0


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK); a no-op for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def resolve_device(name: str, context: DistContext) -> torch.device:
    """torch.device for a profile's `device` ("cpu", "cuda", "cuda:1"); a clear error when CUDA is absent."""
    if name.startswith("cuda"):
        if name != "cuda" and context.enabled:
            raise ValueError(
                f"device {name!r} names one GPU, but {context.world_size} processes train together; "
                "use device 'cuda' (each process takes the GPU of its LOCAL_RANK)"
            )
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"the profile asks for device {name!r} but no CUDA GPU is available; "
                "use --set device=cpu to train on the CPU"
            )
        return torch.device("cuda", context.local_rank) if name == "cuda" else torch.device(name)
    if name != "cpu":
        raise ValueError(f"unknown device {name!r}; expected 'cpu' or 'cuda'")
    return torch.device("cpu")


def inference_device(name: str | None = None) -> torch.device:
    """Where to score: the device named (checked as for training), else CUDA when present, else the CPU."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return resolve_device(name, DistContext())


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; deterministic kernels where torch has them, else the fastest ones."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- libraries may draw from the legacy global RNG
    torch.manual_seed(seed)
    choose_kernels(deterministic)


def use_threads(threads: int | None) -> int:
    """Run torch's CPU operations on `threads` threads (None: leave torch's choice); the count in use.

    Sums split across threads add up in another order, so a profile that must repeat its numbers on
    another machine names its thread count.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def choose_kernels(deterministic: bool) -> None:
    """Deterministic kernels where torch has them, or the fastest ones (cuDNN autotuning)."""
    if deterministic:  # cuBLAS repeats its results only with a fixed workspace, read at its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # Inputs have one fixed size, so cuDNN may time its convolution algorithms once and keep the fastest;
    # that choice can differ between runs, hence only when results need not repeat.
    torch.backends.cudnn.benchmark = not deterministic


#: How long the other ranks wait while rank 0 writes the cohort and fills the cache (tens of minutes at
#: paper size, longer than the 10 minutes NCCL allows a collective); training collectives keep the default.
DATA_WAIT_TIMEOUT = timedelta(hours=3)


def wait_for_rank0(timeout: timedelta = DATA_WAIT_TIMEOUT) -> None:
    """A barrier with a long timeout, on a CPU (gloo) group of its own; every rank calls it."""
    group = dist.new_group(backend="gloo", timeout=timeout)
    try:
        dist.barrier(group=group)
    finally:
        dist.destroy_process_group(group)
