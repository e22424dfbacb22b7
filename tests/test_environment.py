"""`cemlib.core.environment`: what a run records about its machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cemlib.core import devices, environment

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_bf16
processor\t: 1
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_bf16
"""


def test_cpu_model_and_vector_extensions_from_cpuinfo():
    cpu = environment.cpu_description(CPUINFO)
    assert cpu["model"] == "AMD EPYC 9B14"
    assert cpu["vector_extensions"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                                        "avx512_bf16"]


def test_environment_is_json_and_names_torch_and_packages(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    env = json.loads(json.dumps(environment.describe_environment()))
    assert env["torch"]["version"].startswith("2.")
    assert env["torch"]["threads"] >= 1
    assert env["torch"]["version"].startswith(env["packages"]["torch"])
    assert "numpy" in env["packages"] and "pandas" in env["packages"]
    assert env["kernel_variables"]["ATEN_CPU_CAPABILITY"] == "avx2"
    facts = environment.environment_facts(env)
    assert env["torch"]["version"] in facts["torch"] and facts["Python"] == env["python"]
    assert "ATEN_CPU_CAPABILITY=avx2" in facts["Kernel settings"]


def _kernel_variables_after_import(env: dict[str, str]) -> str:
    code = "import cemlib, os; print(os.environ.get('MKL_CBWR'), os.environ.get('ONEDNN_MAX_CPU_ISA'))"
    clean = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
                                                              "CEM_NATIVE_KERNELS")}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def test_importing_cemlib_pins_portable_cpu_kernels_unless_told_otherwise():
    assert _kernel_variables_after_import({}) == "COMPATIBLE AVX2"
    assert _kernel_variables_after_import({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}) == "COMPATIBLE AVX512_CORE"
    assert _kernel_variables_after_import({"CEM_NATIVE_KERNELS": "1"}) == "None None"


def test_profile_thread_count_is_applied():
    before = torch.get_num_threads()
    try:
        assert devices.use_threads(1) == 1 and torch.get_num_threads() == 1
        assert devices.use_threads(None) == 1
        with pytest.raises(ValueError, match="at least 1"):
            devices.use_threads(0)
    finally:
        torch.set_num_threads(before)
