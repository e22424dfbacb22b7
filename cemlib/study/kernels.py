"""What a GPU can do and where a training step's time goes: the dense bf16 peaks of known GPUs, kinds of
kernels by name, and summaries of torch.profiler's per-kernel averages (used by `cem bench train`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: Dense (not sparse) bf16 tensor-core peak, TFLOP/s, of GPUs whose name torch reports; others: not stated.
#: H100 SXM reports itself as "H100 80GB HBM3"; the PCIe and NVL boards have lower peaks and are not listed.
PEAK_BF16_TFLOPS = (
    (r"\bH200\b", 989.0),
    (r"\bH100\b.*(\bSXM|\bHBM3\b)", 989.0),
    (r"\bA100\b", 312.0),
)


def peak_bf16_tflops(device_name: str | None) -> float | None:
    """The GPU's dense bf16 peak in TFLOP/s from PEAK_BF16_TFLOPS, None when the name is not listed."""
    for pattern, peak in PEAK_BF16_TFLOPS:
        if device_name and re.search(pattern, device_name):
            return peak
    return None


#: Kinds of kernels and operators by words in their names, first match wins (so a fused batch-norm +
#: ReLU kernel counts as batch norm). Names differ between cuDNN, cuBLAS, Triton and CPU operators, so
#: the split is approximate; the top-kernel list beside it is exact.
KERNEL_KINDS = (
    # On the CPU a compiled graph's fused C++ kernels run inside this one event, unnamed.
    ("compiled_graph", ("compiledfxgraph",)),
    ("optimizer", ("sgd", "multi_tensor", "foreach")),
    ("batch_norm", ("batch_norm", "batchnorm", "bn_fw", "bn_bw", "native_batch_norm")),
    ("pooling", ("pool",)),
    ("convolution", ("conv", "fprop", "dgrad", "wgrad", "implicit_gemm", "winograd", "mkldnn_convolution")),
    ("matmul", ("gemm", "addmm", "matmul", "::mm", "aten::mm", "linear")),
    ("elementwise", ("relu", "threshold", "add", "mul", "copy", "cast", "elementwise", "fill", "triton_poi",
                     "dropout", "where", "div", "sum", "reduce", "triton_red", "triton_per")),
)


def kernel_kind(name: str) -> str:
    """The kind of a profiled kernel or operator, from its name (see KERNEL_KINDS), else "other"."""
    lowered = name.lower()
    for kind, words in KERNEL_KINDS:
        if any(word in lowered for word in words):
            return kind
    return "other"


def _self_time_us(event: Any, on_device: bool) -> float:
    """An averaged profiler event's own time in microseconds: on the GPU, or on the CPU."""
    if on_device:
        value = getattr(event, "self_device_time_total", None)
        return float(value if value is not None else getattr(event, "self_cuda_time_total", 0.0))
    return float(event.self_cpu_time_total)


def summarise_profile(averages: Sequence[Any], on_device: bool, top: int = 25) -> dict[str, Any]:
    """Top kernels, time per kind and fused batch-norm/ReLU kernels of torch.profiler's key_averages().

    On the CPU the events are operators, nested (aten::conv2d holds aten::convolution), so only their
    own (self) time is added up; on CUDA the events with GPU time are the kernels themselves.
    """
    events = [(e.key, int(e.count), _self_time_us(e, on_device)) for e in averages]
    events = sorted((e for e in events if e[2] > 0), key=lambda e: -e[2])
    total = sum(e[2] for e in events)
    by_kind: dict[str, float] = {}
    for name, _, micros in events:
        by_kind[kernel_kind(name)] = by_kind.get(kernel_kind(name), 0.0) + micros
    share = (lambda us: round(us / total, 4)) if total > 0 else (lambda us: 0.0)
    fused = [name for name, _, _ in events
             if name.startswith("triton") and ("batch_norm" in name or "relu" in name)]
    return {
        "time": "GPU kernel time" if on_device else "self CPU time of operators",
        "total_ms": round(total / 1e3, 3),
        "by_kind": {kind: {"ms": round(us / 1e3, 3), "share": share(us)}
                    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top": [{"name": name, "calls": calls, "ms": round(us / 1e3, 3), "share": share(us),
                 "kind": kernel_kind(name)} for name, calls, us in events[:top]],
        "fused_batch_norm_or_relu_kernels": fused[:top],
    }


def profile_table(averages: Any, on_device: bool) -> str:
    """torch's own profiler table, sorted by GPU time on CUDA (name spelled per torch version)."""
    keys = ("self_device_time_total", "self_cuda_time_total") if on_device else ("self_cpu_time_total",)
    for key in keys:
        try:
            return averages.table(sort_by=key, row_limit=40, max_name_column_width=90)
        except (AttributeError, KeyError, ValueError):
            continue
    return averages.table(row_limit=40)
