"""`cem bench train`'s GPU levers (compile modes, host syncs, deterministic kernels, profiler summaries,
share of the GPU's peak) and the GPU study profile, all checked on the CPU; nothing here is timed."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from cemlib.core.resources import profiles_dir
from cemlib.core.settings import load_profile
from cemlib.study import bench, kernels
from cemlib.study.commands import bench as bench_command
from cemlib.training import arch_from_profile
from tests.factories import tiny_study

REPO = Path(__file__).resolve().parents[1]
SIZE = (64, 32)
TINY_MODEL = {"model.width": 0.0625, "model.head": [16, 8], "preprocess.size": list(SIZE)}


# ------------------------------------------------------------------------------------------ the profile


def test_gpu_study_profile_trains_the_papers_model_with_the_papers_optimiser():
    paper, study = load_profile("paper"), load_profile("gpu_study")
    assert study.model == paper.model
    assert (study.preprocess.size, study.preprocess.window, study.preprocess.window_range) == \
        (paper.preprocess.size, paper.preprocess.window, paper.preprocess.window_range)
    same = ("batch_size", "lr", "momentum", "weight_decay", "milestones", "gamma", "patience", "amp",
            "channels_last", "compile", "workers")
    assert {k: getattr(study.train, k) for k in same} == {k: getattr(paper.train, k) for k in same}
    assert study.device == "cuda" and study.data.synth.scale == paper.data.synth.scale


def test_gpu_study_profile_states_its_kernel_choice_and_writes_apart_from_the_paper_run():
    tree = yaml.safe_load((profiles_dir() / "gpu_study.yaml").read_text())
    assert tree["train"]["deterministic"] is False  # stated, not left to the device default
    paper, study = load_profile("paper"), load_profile("gpu_study")
    for key in ("runs", "reports"):
        assert getattr(study, key) != getattr(paper, key) and "gpu_study" in getattr(study, key)
    assert study.data.root != paper.data.root and study.preprocess.cache != paper.preprocess.cache
    paper_externals = {paper.external[name].root for name in paper.external}
    assert not paper_externals & {study.external[name].root for name in study.external}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_gpu_study_runs_the_study_with_the_gpu_study_profile_into_the_work_folder(tmp_path):
    command = ["make", "-n", "gpu-study", "CEM=python3 -m cemlib.cli", f"GPU_STUDY_WORKDIR={tmp_path}",
               "GPU_STUDY_EXTRA=--set device=cpu"]
    plan = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert f"python3 -m cemlib.cli reproduce --profile gpu_study --workdir {tmp_path}" in plan
    assert "--set device=cpu" in plan
    assert f"{tmp_path}/reports/gpu_study/run.log" in plan  # the study writes environment.json itself


# ------------------------------------------------------------------------------------------ the levers


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 SXM5 80GB", 989.0), ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0),
    ("NVIDIA H100 PCIe", None), ("NVIDIA GH200 480GB", None), ("Tesla V100-SXM2-16GB", None), (None, None),
])
def test_peak_bf16_tflops_is_stated_only_for_known_gpus(name, peak):
    assert kernels.peak_bf16_tflops(name) == peak


def test_cuda_graph_modes_are_skipped_on_the_cpu_with_their_reason():
    variants, skipped = bench.train_variants(torch.device("cpu"), bench.COMPILE_MODES)
    compiled = [v.compile_mode for v in variants if v.compiled]
    assert compiled == ["default", "max-autotune-no-cudagraphs"]
    assert {s["compile_mode"] for s in skipped} == {"reduce-overhead", "max-autotune"}
    assert all("CUDA" in s["reason"] and s["device"] == "cpu" for s in skipped)
    variants, skipped = bench.train_variants(torch.device("cuda"), bench.COMPILE_MODES)
    assert skipped == [] and [v.compile_mode for v in variants if v.compiled] == list(bench.COMPILE_MODES)
    with pytest.raises(ValueError, match=r"unknown torch\.compile mode 'fast'"):
        bench.train_variants(torch.device("cpu"), ["fast"])


def test_host_sync_and_deterministic_variants_pair_with_the_plain_ones():
    variants, _ = bench.train_variants(torch.device("cpu"), ["default"], host_sync=True, deterministic=True)
    labels = [v.label for v in variants]
    assert len(set(labels)) == len(labels)
    for extra in ("host_sync", "deterministic"):
        assert f"bf16_channels_last_eager_{extra}" in labels
        assert f"bf16_channels_last_compiled_default_{extra}" in labels
    plain, _ = bench.train_variants(torch.device("cpu"), [])
    assert plain == list(bench.BENCH_VARIANTS)


@pytest.mark.parametrize(("name", "kind"), [
    ("triton_per_fused__native_batch_norm_legit_functional_relu_3", "batch_norm"),
    ("cudnn::bn_fw_tr_1C11_kernel_NCHW<__nv_bfloat16, float, int, 512, true, 1, true>", "batch_norm"),
    ("aten::max_pool2d_with_indices_backward", "pooling"),
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", "convolution"),
    ("aten::mkldnn_convolution", "convolution"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matmul"),
    ("aten::addmm", "matmul"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::launch_clamp>", "elementwise"),
    ("aten::threshold_backward", "elementwise"),
    ("void at::native::(anonymous namespace)::_fused_sgd_kernel<float, 3>", "optimizer"),
    ("## Call CompiledFxGraph fab43nfxyzks5qngalvm ##", "compiled_graph"),
    ("cudaLaunchKernel", "other"),
])
def test_kernel_kinds_from_names(name, kind):
    assert kernels.kernel_kind(name) == kind


def test_profile_step_writes_the_top_operators_and_where_the_time_goes(tmp_path):
    profile = load_profile("smoke", TINY_MODEL)
    arch = arch_from_profile(profile, "mf_concat", "cem")
    x, y = torch.rand(2, 4, 2, *SIZE), torch.tensor([[0, 1], [1, 0]])
    out = bench.profile_step(arch, lambda _i: (x, y), torch.device("cpu"), bench.BenchVariant(True, True),
                             tmp_path / "profile", warmup=1)
    summary = json.loads(Path(out["json"]).read_text())
    assert summary["variant"] == "bf16_channels_last_eager" and summary["device"] == "cpu"
    assert summary["top"] and all(row["ms"] > 0 for row in summary["top"])
    times = [row["ms"] for row in summary["top"]]
    assert times == sorted(times, reverse=True)
    assert sum(part["share"] for part in summary["by_kind"].values()) == pytest.approx(1.0, abs=0.01)
    assert "convolution" in summary["by_kind"]  # the step's convolutions are seen and named
    assert "aten::" in (tmp_path / "profile" / "cpu_bf16_channels_last_eager.txt").read_text()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A 12-patient synthetic cohort with its manifest and a 64 x 32 cache."""
    study = tiny_study(tmp_path_factory.mktemp("bench"), patients=12, seed=5, size=SIZE)
    base = study["base"]
    overrides = {"data.root": str(study["root"]), "data.synth": {"patients": 12, "scale": 0.08, "seed": 5},
                 "data.manifest": str(base / "manifest"), "preprocess.cache": str(base / "cache"),
                 **TINY_MODEL}
    return {"profile": load_profile("smoke", overrides), "manifest": study["manifest"],
            "cache": study["cache"]}


def test_benchmark_train_adds_the_requested_rows_and_names_what_it_skipped(tiny):
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    result = bench.benchmark_train(tiny["profile"], steps=1, warmup=0, devices="cpu", baseline=False,
                                   manifest=tiny["manifest"], cache=tiny["cache"],
                                   compile_modes=("reduce-overhead",), host_sync=True, deterministic=True)
    rows = {(r["compiled"], r["host_sync"], r["deterministic"]) for r in result["rows"]}
    assert rows == {(False, False, False), (False, True, False), (False, False, True)}
    assert [s["compile_mode"] for s in result["skipped"]] == ["reduce-overhead"]
    assert all(r["share_of_bf16_peak"] is None for r in result["rows"])  # a CPU has no stated peak
    assert result["peak_bf16_tflop_per_s"] is None
    # the deterministic row switched kernels; the process gets its own choice back
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


def test_cem_bench_train_options_reach_benchmark_train():
    parser = argparse.ArgumentParser()
    bench_command.configure_parser(parser)
    args = parser.parse_args(["train", "--compile-modes", "default", "reduce-overhead", "--host-sync",
                              "--deterministic", "--torch-profile", "out/profile", "--steps", "3"])
    assert bench_command.train_options(args) == {
        "devices": "all", "steps": 3, "warmup": 2, "compiled": False,
        "compile_modes": ("default", "reduce-overhead"), "host_sync": True, "deterministic": True,
        "torch_profile": "out/profile"}
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--compile-modes", "fastest"])


def test_bench_synth_writes_the_profiles_cohort_into_a_temporary_folder_and_reports_its_size():
    overrides = {"data.synth.patients": 2, "data.synth.scale": 0.03, "preprocess.workers": 0}
    result = bench.run_benchmarks("smoke", ("synth",), overrides)["synth"]
    assert (result["patients"], result["scale"], result["workers"]) == (2, 0.03, 0)
    assert result["megabytes"] > 0 and result["seconds"] > 0
