"""`cem bench`: speed measured on this machine, never asserted in tests.

- preprocess: images/s of (a) raw DICOM decode, (b) decode + full preprocessing, (c) the cached
  patient-level loader, beside what smoke-profile training consumes;
- train: images/s and TFLOP/s of a training step (fp32 vs bf16, contiguous vs channels_last, optionally
  torch.compile in each of its modes, a loss read back every step, deterministic kernels; CPU and CUDA),
  against the GPU's peak where known, beside a baseline written the way the authors' code runs, and
  optionally a one-step torch.profiler summary (top kernels, time per kind of kernel);
- stats: DeLong test on 10,000 breasts, 2000-replicate bootstrap of the AUC on 1,000 breasts;
- exam: one exam through `cem predict STUDY` at 512 x 256 with the full-width model (maps included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from cemlib.core.devices import DistContext, resolve_device, set_seed
from cemlib.core.fileio import atomic_write_text
from cemlib.core.settings import Settings, load_profile
from cemlib.core.views import VIEW_ORDER
from cemlib.core.vocab import PAPER_HEAD, PAPER_INPUT_SIZE, input_channels
from cemlib.data.cache import TensorCache
from cemlib.data.datasets import Augment, PatientDataset, make_loader, set_loader_epoch
from cemlib.data.manifest import Manifest
from cemlib.inference.exam import predict_exam
from cemlib.inference.exam_report import write_report
from cemlib.inference.predict import load_for_inference
from cemlib.model import networks as models
from cemlib.model.checkpoints import CHECKPOINT_FORMAT, save_checkpoint
from cemlib.pixels.imaging import preprocess_pair, read_pixels
from cemlib.pixels.settings import PreprocessSettings
from cemlib.study import timings
from cemlib.study.kernels import peak_bf16_tflops, profile_table, summarise_profile
from cemlib.study.prepare import data_for, prep_workers, prepare_data, preprocess_settings, synth_settings
from cemlib.synthetic import sample_cohort, write_patient
from cemlib.training import arch_from_profile, check_choices, make_sgd, uses_fused_sgd
from cemlib.training.loop import to_float32

TARGETS = ("synth", "preprocess", "train", "stats", "exam")


def bench_preprocess(profile: Settings, images: int = 200) -> dict[str, Any]:
    """(a) decode, (b) full preprocessing, (c) cached loader in one process and with train.workers workers."""
    manifest, cache = prepare_data(profile)
    keys = ["patient_id", "side", "view"]
    by_energy = {e: manifest.images[manifest.images["energy"] == e] for e in ("LE", "DES")}
    joined = by_energy["LE"].merge(by_energy["DES"][[*keys, "path"]], on=keys, suffixes=("", "_des"))
    pairs = [(manifest.resolve(row.path), manifest.resolve(row.path_des), row.side)
             for row in joined.head(images // 2).itertuples()]
    pixels = timings.benchmark_preprocess(pairs, preprocess_settings(profile))
    batch_size, workers = profile.train.batch_size, profile.train.workers

    def loader(processes: int) -> dict[str, Any]:
        return benchmark_loader(manifest, cache, inputs="cem", split="train", batch_size=batch_size,
                                workers=processes, seed=profile.seed,
                                pin_memory=profile.device.startswith("cuda"))

    result = {"pixels": pixels, "loader": loader(0)}
    if workers > 0:
        result["loader_workers"] = loader(workers)
    return result


def bench_train(profile: Settings, **options: Any) -> dict[str, Any]:
    """Training-step throughput variants and the authors'-style baseline (options of benchmark_train)."""
    return benchmark_train(profile, **options)


def bench_synth(profile: Settings) -> dict[str, Any]:
    """Seconds and megabytes of writing the profile's synthetic cohort (into a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="cem-bench-synth-") as folder:
        return timings.benchmark_synth(Path(folder) / "cohort", **synth_settings(profile.data.synth),
                                       workers=prep_workers(profile))


def bench_stats() -> dict[str, Any]:
    """DeLong and bootstrap timings."""
    return timings.benchmark_stats()


# --------------------------------------------------------------------------------------------------------
# the loader training uses


def benchmark_loader(manifest: Manifest, cache: TensorCache, inputs: str = "cem", split: str | None = None,
                     batch_size: int = 8, workers: int = 0, augment: bool = True, max_batches: int = 100,
                     seed: int = 0, threads: int | None = 1, pin_memory: bool = False) -> dict[str, Any]:
    """Throughput of the loader training uses (cemlib.data.datasets.make_loader): items and images per second.

    `threads` sets torch's intra-op threads of this process during the measurement (restored after):
    batches of small tensors are collated fastest by one thread, and on a busy machine a multi-thread
    pool can make each collate 100x slower. None keeps the current setting.
    """
    dataset = PatientDataset(manifest, cache, split, inputs=inputs, augment=Augment() if augment else None,
                             seed=seed)
    if len(dataset) == 0:
        raise ValueError(f"benchmark_loader: no patients to load in split {split!r}")
    loader = make_loader(dataset, batch_size, shuffle=True, seed=seed, workers=workers, pin_memory=pin_memory)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        batches, items, seconds = _time_batches(loader, seed, max_batches)
    finally:
        torch.set_num_threads(previous_threads)
    channels = input_channels(inputs)
    return {
        "what": "the loader training uses (cemlib.data.datasets.make_loader), cached patient-level items",
        "inputs": inputs,
        "size": tuple(int(n) for n in cache.settings.size),
        "batch_size": batch_size,
        "workers": workers,
        "augment": augment,
        "threads": torch.get_num_threads() if threads is None else threads,
        "batches": batches,
        "patients": items,
        "seconds": round(seconds, 3),
        "patients_per_s": round(items / seconds, 1),
        "views_per_s": round(4 * items / seconds, 1),
        "images_per_s": round(4 * channels * items / seconds, 1),
    }


def _time_batches(loader: DataLoader, seed: int, max_batches: int) -> tuple[int, int, float]:
    """Iterate up to max_batches batches (over several epochs if needed): (batches, items, seconds)."""
    batches = items = epoch = 0
    start = time.perf_counter()
    while batches < max_batches:
        set_loader_epoch(loader, seed, epoch)
        epoch += 1
        for batch in loader:
            batches += 1
            items += batch["x"].shape[0]
            if batches >= max_batches:
                break
    return batches, items, time.perf_counter() - start


# --------------------------------------------------------------------------------------------------------
# training step: `cem bench train`


#: torch.compile modes `cem bench train --compile-modes` measures ("reduce-overhead" = CUDA graphs).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: Modes whose point is CUDA graphs: skipped on the CPU, with the reason in the results.
CUDA_ONLY_MODES = {
    "reduce-overhead": "CUDA graphs need a CUDA device",
    "max-autotune": "its CUDA graphs need a CUDA device (max-autotune-no-cudagraphs tunes the same kernels)",
}


@dataclass(frozen=True)
class BenchVariant:
    """One way of running the training step: precision, memory layout, compiled or eager, kernels, syncs."""

    amp: bool = False
    channels_last: bool = False
    compiled: bool = False
    fused: bool | None = None  # fused SGD; None = on CUDA only, as in training
    compile_mode: str = "default"
    deterministic: bool = False  # deterministic kernels, cuDNN autotuning off (train.deterministic)
    host_sync: bool = False  # the loss read back to the host every step (`.item()`), as a loop's checks do

    @property
    def precision(self) -> str:
        """"bf16" (autocast) or "fp32"."""
        return "bf16" if self.amp else "fp32"

    @property
    def label(self) -> str:
        """A short name: precision, layout, compile mode and the extras (file names, profile summaries)."""
        parts = [self.precision, "channels_last" if self.channels_last else "contiguous",
                 f"compiled_{self.compile_mode}" if self.compiled else "eager"]
        parts += ["deterministic"] * self.deterministic + ["host_sync"] * self.host_sync
        return "_".join(parts)


#: The variants every `cem bench train` measures; compiled, host-sync and deterministic ones on request.
BENCH_VARIANTS = tuple(BenchVariant(amp, cl) for amp in (False, True) for cl in (False, True))


@dataclass(frozen=True)
class StepTiming:
    """Wall-clock seconds of the warm-up steps (compilation included) and of the timed steps."""

    warmup_seconds: float
    seconds: float
    peak_memory_bytes: int | None


def _step_function(
    arch: models.Architecture,
    batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    variant: BenchVariant,
) -> Callable[[int], None]:
    """One SGD step of a fresh fusion model per call (batch `index`), run the way `variant` says."""
    set_seed(0, deterministic=variant.deterministic)
    model = models.model_from_arch(arch).to(device)
    if variant.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    if variant.compiled:
        # A fresh start per compiled variant: dynamo keeps at most a few graphs per function and would
        # fall back to eager for later variants, which would then be timed as if compiled.
        torch._dynamo.reset()
    step_model = torch.compile(model, mode=variant.compile_mode) if variant.compiled else model
    optimizer = make_sgd(model, 1e-3, 0.9, 5e-4, device, fused=variant.fused)
    graphs = variant.compiled and device.type == "cuda" and variant.compile_mode in CUDA_ONLY_MODES

    def step(index: int) -> None:
        x, y = batches(index)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if graphs:  # each step starts a new CUDA-graph generation (the last step's outputs are done with)
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.amp):
            outputs = step_model(x)
        loss = models.fusion_loss(to_float32(outputs), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if variant.host_sync:
            loss.item()

    return step


def _timed_steps(
    arch: models.Architecture,
    batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    variant: BenchVariant,
    steps: int,
    warmup: int,
) -> StepTiming:
    """Time `steps` SGD steps of a fresh fusion model (after `warmup` untimed ones)."""
    step = _step_function(arch, batches, device, variant)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for index in range(warmup):
        step(index)
    _synchronize(device)
    warmed = time.perf_counter()
    for index in range(steps):
        step(warmup + index)
    _synchronize(device)
    ended = time.perf_counter()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return StepTiming(warmed - started, ended - warmed, peak)


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock times are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _authors_batches(manifest: Manifest, settings: PreprocessSettings, inputs: str, batch_size: int):
    """Batches made the authors' way: every step decodes the DICOMs and preprocesses them again."""
    images = manifest.images
    breasts = manifest.breasts
    patients = sorted(breasts.loc[breasts["split"] == "train", "patient_id"].astype(str).unique())
    labels = {(str(p), s): int(y) for p, s, y in zip(breasts["patient_id"], breasts["side"], breasts["label"],
                                                      strict=True)}
    paths: dict[tuple[str, str, str, str], Path] = {}
    for _, row in images.iterrows():
        paths[(str(row["patient_id"]), row["side"], row["view"], row["energy"])] = manifest.image_path(row)

    def view_tensor(patient: str, key: str) -> torch.Tensor:
        side, view = key[0], key[1:]
        le = read_pixels(paths[(patient, side, view, "LE")])
        des = read_pixels(paths[(patient, side, view, "DES")]) if inputs == "cem" else None
        le01, des01 = preprocess_pair(le, des, side, settings)
        planes = [le01] if des01 is None else [le01, des01]
        return torch.from_numpy(np.stack(planes).astype(np.float32))

    def batch(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = [patients[(index * batch_size + k) % len(patients)] for k in range(batch_size)]
        x = torch.stack([torch.stack([view_tensor(p, key) for key in VIEW_ORDER]) for p in chosen])
        y = torch.tensor([[labels[(p, "L")], labels[(p, "R")]] for p in chosen], dtype=torch.int64)
        return x, y

    return batch


def bench_devices(requested: str | Sequence[str] | None = None) -> list[str]:
    """Devices to benchmark: "all" (default) = the CPU, then CUDA when present; or the ones named."""
    if requested is None or requested == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [requested] if isinstance(requested, str) else list(requested)


def train_variants(device: torch.device, modes: Sequence[str], host_sync: bool = False,
                   deterministic: bool = False) -> tuple[list[BenchVariant], list[dict[str, str]]]:
    """The variants to time on `device` and the compile modes passed over there, each with its reason.

    The four eager ones always; bf16 + channels_last compiled in each mode; with `host_sync` and
    `deterministic`, the eager bf16 + channels_last step (and the first compiled mode's) again that way.
    """
    variants, skipped = list(BENCH_VARIANTS), []
    runnable: list[str] = []
    for mode in dict.fromkeys(modes):
        if mode not in COMPILE_MODES:
            raise ValueError(f"unknown torch.compile mode {mode!r}; expected one of {COMPILE_MODES}")
        if device.type != "cuda" and mode in CUDA_ONLY_MODES:
            skipped.append({"device": device.type, "compile_mode": mode, "reason": CUDA_ONLY_MODES[mode]})
        else:
            runnable.append(mode)
    variants += [BenchVariant(True, True, True, compile_mode=mode) for mode in runnable]
    bases = [BenchVariant(True, True)] + [BenchVariant(True, True, True, compile_mode=m)
                                          for m in runnable[:1]]
    if host_sync:
        variants += [dataclasses.replace(base, host_sync=True) for base in bases]
    if deterministic:
        variants += [dataclasses.replace(base, deterministic=True) for base in bases]
    return variants, skipped


def profiled_variants(variants: Sequence[BenchVariant]) -> list[BenchVariant]:
    """Which variants get a one-step profile: eager bf16 + channels_last, and its first compiled form."""
    plain = [v for v in variants if v.amp and v.channels_last and not (v.deterministic or v.host_sync)]
    return [v for v in plain if not v.compiled][:1] + [v for v in plain if v.compiled][:1]


def profile_step(
    arch: models.Architecture,
    batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    variant: BenchVariant,
    folder: Path,
    warmup: int = 2,
) -> dict[str, Any]:
    """One training step under torch.profiler after `warmup` steps: FOLDER/<device>_<variant>.json and .txt.

    The JSON holds the top kernels (GPU time on CUDA, self CPU time on the CPU), the time per kind of
    kernel and the fused kernels that contain batch norm or ReLU; the text file is torch's own table.
    """
    from torch.profiler import ProfilerActivity, profile

    step = _step_function(arch, batches, device, variant)
    for index in range(max(1, warmup)):
        step(index)
    _synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step(max(1, warmup))
        _synchronize(device)
    averages = prof.key_averages()
    summary = summarise_profile(averages, on_device=device.type == "cuda")
    summary = {"device": device.type, "variant": variant.label, **summary}
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{device.type}_{variant.label}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(summary, indent=2))
    atomic_write_text(stem.with_suffix(".txt"), profile_table(averages, device.type == "cuda"))
    return {"json": str(stem.with_suffix(".json")), "total_ms": summary["total_ms"],
            "by_kind": {kind: part["share"] for kind, part in summary["by_kind"].items()}}


def benchmark_train(
    profile: Settings,
    fusion: str = "mf_concat",
    inputs: str = "cem",
    steps: int = 10,
    warmup: int = 2,
    baseline: bool = True,
    devices: str | Sequence[str] | None = None,
    manifest: Manifest | None = None,
    cache: TensorCache | None = None,
    compiled: bool = False,
    compile_modes: Sequence[str] = (),
    host_sync: bool = False,
    deterministic: bool = False,
    torch_profile: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Training images/s (one image = one view through the encoder) at the profile's size and batch.

    Variants: fp32 vs bf16 autocast x contiguous vs channels_last (plus bf16 + channels_last under
    torch.compile when `compiled`, and in each of `compile_modes`), on the CPU and on CUDA when present,
    stepping on a batch already in memory (read from the tensor cache). `host_sync` adds bf16 +
    channels_last steps that read the loss back every step; `deterministic` adds them with deterministic
    kernels. Every row gives the model arithmetic it sustains (TFLOP/s, from
    `models.training_flops_per_image`, and its share of the GPU's dense bf16 peak where known) and, on
    CUDA, the peak memory. `torch_profile` names a folder for one-step torch.profiler summaries.
    Baseline, in the same run: the way the authors' code trains (fp32, contiguous, batch 2, every image
    decoded from DICOM and preprocessed at every step). `speedup` = best variant / baseline on the
    baseline's device.
    """
    check_choices(fusion, inputs)
    manifest, cache = data_for(profile, manifest, cache, DistContext())
    arch = arch_from_profile(profile, fusion, inputs)
    flops = models.training_flops_per_image(arch)
    batch_size = profile.train.batch_size
    dataset = PatientDataset(manifest, cache, "train", inputs=inputs, augment=None)
    items = [dataset[i % len(dataset)] for i in range(batch_size)]
    x = torch.stack([item["x"] for item in items])
    y = torch.stack([item["y"] for item in items])
    devices = bench_devices(devices)
    modes = (("default",) if compiled else ()) + tuple(compile_modes)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    profiles: dict[str, Any] = {}
    with _kernel_choice_restored():
        for name in devices:
            device = resolve_device(name, DistContext())
            resident = (x.to(device), y.to(device))
            variants, passed_over = train_variants(device, modes, host_sync, deterministic)
            skipped += passed_over
            for variant in variants:
                timing = _timed_steps(arch, lambda _i, r=resident: r, device, variant, steps, warmup)
                rows.append(_bench_row(device, variant, batch_size, steps, timing, flops,
                                       "cached batch in memory"))
            if torch_profile is not None:
                for variant in profiled_variants(variants):
                    profiles[f"{device.type}_{variant.label}"] = profile_step(
                        arch, lambda _i, r=resident: r, device, variant, Path(torch_profile), warmup)
        if baseline:
            device = resolve_device(devices[-1], DistContext())
            batches = _authors_batches(manifest, preprocess_settings(profile), inputs, 2)
            authors = BenchVariant(fused=False)
            timing = _timed_steps(arch, batches, device, authors, steps, min(warmup, 1))
            base = _bench_row(device, authors, 2, steps, timing, flops,
                              "authors' way: DICOM decoded every step")
    result: dict[str, Any] = {
        "what": "training step images/s (one image = one view through the shared encoder)",
        "fusion": fusion,
        "inputs": inputs,
        "size": list(arch.input_size),
        "width": arch.width,
        "flop_per_image": flops,
        "gflop_per_image": round(flops / 1e9, 3),
        "threads": torch.get_num_threads(),
        "cuda": _cuda_description(devices),
        "torch": torch.__version__,
        "peak_bf16_tflop_per_s": peak_bf16_tflops(_cuda_description(devices)["name"])
        if _cuda_description(devices) else None,
        "rows": rows,
        "skipped": skipped,
    }
    if profiles:
        result["profiles"] = profiles
    if baseline:
        best = max((r for r in rows if r["device"] == base["device"]), key=lambda r: r["images_per_s"])
        rows.append(base)
        result["baseline_images_per_s"] = base["images_per_s"]
        shown = ("device", "precision", "channels_last", "compiled", "compile_mode", "images_per_s",
                 "tflop_per_s")
        result["best"] = {k: best[k] for k in shown}
        result["speedup"] = round(best["images_per_s"] / base["images_per_s"], 2)
    return result


@contextlib.contextmanager
def _kernel_choice_restored() -> Iterator[None]:
    """Put back the process's deterministic-kernel and cuDNN-autotuning settings the timings change."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    autotune = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = autotune


def _cuda_description(devices: Sequence[str]) -> dict[str, Any] | None:
    """The GPU benchmarked and whether its "fp32" rows may use TF32 (torch's defaults: convolutions yes)."""
    if not any(name.startswith("cuda") for name in devices):
        return None
    return {
        "name": torch.cuda.get_device_name(),
        "tf32_convolutions": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }


def _bench_row(
    device: torch.device,
    variant: BenchVariant,
    batch: int,
    steps: int,
    timing: StepTiming,
    flops_per_image: int,
    data: str,
) -> dict[str, Any]:
    """One benchmark line."""
    images_per_s = steps * batch * len(VIEW_ORDER) / timing.seconds
    peak = timing.peak_memory_bytes
    tflops = images_per_s * flops_per_image / 1e12
    peak_tflops = peak_bf16_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    return {
        "device": device.type,
        "precision": variant.precision,
        "channels_last": variant.channels_last,
        "compiled": variant.compiled,
        "compile_mode": variant.compile_mode if variant.compiled else None,
        "deterministic": variant.deterministic,
        "host_sync": variant.host_sync,
        "fused_sgd": uses_fused_sgd(device, variant.fused),
        "batch": batch,
        "data": data,
        "steps": steps,
        "seconds": round(timing.seconds, 3),
        "warmup_seconds": round(timing.warmup_seconds, 3),
        "images_per_s": round(images_per_s, 1),
        "tflop_per_s": round(tflops, 4),
        # Share of the dense bf16 peak (fp32 rows too, so that rows compare); None where it is not known.
        "share_of_bf16_peak": None if peak_tflops is None else round(tflops / peak_tflops, 4),
        "peak_memory_gib": None if peak is None else round(peak / 2**30, 2),
    }


# --------------------------------------------------------------------------------------------------------
# one exam: `cem bench exam`


def save_random_checkpoint(path: str | os.PathLike, fusion: str = "mf_concat", inputs: str = "cem",
                           width: float = 1.0, size: Sequence[int] = PAPER_INPUT_SIZE,
                           head: Sequence[int] = PAPER_HEAD, global_pool: bool = False,
                           seed: int = 0) -> Path:
    """A randomly initialised model saved the way training saves its best checkpoint (for timings)."""
    torch.manual_seed(seed)
    model = models.build_model(fusion, input_channels(inputs), width=width, global_pool=global_pool,
                               head=head, input_size=size)
    meta = {"fusion": fusion, "inputs": inputs, "profile": "benchmark", "dataset": "synthetic",
            "preprocess": {"size": [int(s) for s in size]}}
    payload = {"format": CHECKPOINT_FORMAT, "arch": models.arch_of(model), "stage": "stage2", "meta": meta,
               "model": model.state_dict(), "epoch": 0}
    return save_checkpoint(payload, Path(path))


def benchmark_exam(scale: float = 0.25, width: float = 1.0, fusion: str = "mf_concat", inputs: str = "cem",
                   size: Sequence[int] = PAPER_INPUT_SIZE, repeat: int = 3, seed: int = 0,
                   workdir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Seconds to score one synthetic exam with a random-weight paper-profile model, with and without CAMs.

    Writes one synthetic patient at `scale` (0.25 is the paper profile's cohort; 1.0 the full 3062 x 2394
    detector) and a random checkpoint, loads the model once, then times `repeat` runs of each step.
    """
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        spec = sample_cohort(1, seed)[0]
        write_patient(spec, Path(tmp), scale, seed)
        checkpoint = save_random_checkpoint(Path(tmp) / "random.pt", fusion, inputs, width, size, seed=seed)
        started = time.perf_counter()
        loaded = load_for_inference(checkpoint, device="cpu")
        load_s = time.perf_counter() - started
        study = Path(tmp) / spec.patient_id
        runs: dict[str, list[float]] = {"find_s": [], "preprocess_s": [], "model_s": [],
                                        "model_and_cams_s": [], "report_s": [], "exam_cpu_s": [],
                                        "exam_with_cams_cpu_s": []}
        for _ in range(max(1, int(repeat))):
            # CPU seconds (all threads) beside wall seconds: on a shared machine they vary far less
            cpu = time.process_time()
            plain = predict_exam(study, loaded, cams=False)
            runs["exam_cpu_s"].append(time.process_time() - cpu)
            cpu = time.process_time()
            full = predict_exam(study, loaded, cams=True)
            runs["exam_with_cams_cpu_s"].append(time.process_time() - cpu)
            mark = time.perf_counter()
            write_report(full, Path(tmp) / "report")
            runs["report_s"].append(time.perf_counter() - mark)
            for key in ("find_s", "preprocess_s"):
                runs[key].append(full.timings[key])
            runs["model_s"].append(plain.timings["model_s"])
            runs["model_and_cams_s"].append(full.timings["model_and_cams_s"])
        rows, cols = read_pixels(study / "L_CC_LE.dcm").shape
    median = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "model": loaded.name, "width": width, "input_size": [int(s) for s in size],
        "parameters": models.count_parameters(loaded.model), "image_shape": [rows, cols], "scale": scale,
        "threads": torch.get_num_threads(), "repeat": int(repeat), "load_model_s": load_s,
        **{f"median_{k}": v for k, v in median.items()},
        "exam_s": median["find_s"] + median["preprocess_s"] + median["model_s"],
        "exam_with_cams_s": median["find_s"] + median["preprocess_s"] + median["model_and_cams_s"],
        "exam_with_cams_and_report_s": (median["find_s"] + median["preprocess_s"]
                                        + median["model_and_cams_s"] + median["report_s"]),
    }


# --------------------------------------------------------------------------------------------------------
# running them


def run_benchmarks(
    profile_name: str,
    targets: tuple[str, ...],
    overrides: dict[str, Any] | None = None,
    train_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the chosen benchmarks; returns their results keyed by target."""
    profile = load_profile(profile_name, overrides)
    results: dict[str, Any] = {}
    for target in targets:
        if target == "synth":
            results[target] = bench_synth(profile)
        elif target == "preprocess":
            results[target] = bench_preprocess(profile)
        elif target == "train":
            results[target] = bench_train(profile, **(train_options or {}))
        elif target == "stats":
            results[target] = bench_stats()
        elif target == "exam":
            results[target] = benchmark_exam()
    return results
