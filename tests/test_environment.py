"""`cemlib.environment`: what a run records about its machine."""

from __future__ import annotations

import json

from cemlib import environment

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
    summary = environment.environment_summary(env)
    assert env["torch"]["version"] in summary and env["python"] in summary
