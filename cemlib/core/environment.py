"""What machine and software made a run: Python, package versions, CPU and its vector extensions, torch build.

Written as `reports/<profile>/environment.json` by every study run and shown on the report's title page,
so that two runs that disagree can be told apart by what they ran on.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from cemlib import __version__

#: Where a study run records its environment: reports/<profile>/environment.json.
ENVIRONMENT_FILE = "environment.json"
#: Environment variables that change which float kernels run, and so the numbers a run gives.
KERNEL_VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_VISIBLE_DEVICES",
)
#: CPU flags that decide which vector kernels torch and oneDNN pick.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_description(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, logical core count and the vector extensions it offers (Linux /proc/cpuinfo)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return {
        "model": model,
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "vector_extensions": [flag for flag in VECTOR_FLAGS if flag in flags],
    }


def package_versions() -> dict[str, str]:
    """Every installed distribution and its version, sorted by name."""
    versions = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            versions[name.lower()] = dist.version
    return dict(sorted(versions.items()))


def torch_description() -> dict[str, Any]:
    """torch's version, the CPU kernel level it chose, threads, and the CUDA/cuDNN build and devices."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    }


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """The checked-out commit (with `-dirty` if the tree has changes), or None outside a git clone."""
    cwd = Path(root) if root else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        # The run's own outputs under reports/ (tracked, rewritten as it goes) are no change of the code.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)reports"], cwd=cwd, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def describe_environment() -> dict[str, Any]:
    """Everything `environment.json` records about the machine and software of a run."""
    return {
        "cemlib": __version__,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu_description(),
        "torch": torch_description(),
        "kernel_variables": {name: os.environ[name] for name in KERNEL_VARIABLES if name in os.environ},
        "commit": git_commit(),
        "packages": package_versions(),
    }


def environment_facts(env: dict[str, Any]) -> dict[str, str]:
    """The machine of an environment record as a report's title page shows it (label -> text)."""
    torch_env, cpu = env["torch"], env["cpu"]
    kernels = ", ".join(f"{k}={v}" for k, v in env.get("kernel_variables", {}).items()) or "library defaults"
    gpus = ", ".join(torch_env["devices"])
    return {
        "Python": env["python"],
        "torch": f"{torch_env['version']} ({torch_env['cpu_capability']} CPU kernels, "
                 f"{torch_env['threads']} threads)",
        "Kernel settings": kernels,
        "Operating system": env["platform"],
        "CPU": f"{cpu['model']}, {cpu['logical_cores']} logical cores; "
               f"{' '.join(cpu['vector_extensions']) or 'no vector extensions listed'}",
        "GPU": f"{gpus} (CUDA {torch_env['cuda_build']})" if gpus else "none",
    }
