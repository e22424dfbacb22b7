"""Timings of single pipeline steps for `cem bench`: preprocessing, the statistics, writing a cohort.

Next to `cemlib.study.bench` (training, loader, exam) and `cemlib.study.kernels` (GPU peaks, profiler
summaries).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cemlib.pixels.imaging import preprocess_pair, read_image, read_pixels
from cemlib.pixels.settings import PreprocessSettings
from cemlib.results.stats import auc_ci, delong_test
from cemlib.synthetic import DEFAULT_PATIENTS, write_cohort


def benchmark_preprocess(paths: Iterable[str | Path | Sequence[Any]], settings: PreprocessSettings,
                         repeat: int = 1, threads: int | None = 1) -> dict[str, float]:
    """Images per second of decoding alone and of decoding + full preprocessing.

    ``paths`` holds image files (processed alone, side from the DICOM laterality; without one the
    orientation check is skipped) or (le_path, des_path or None, side) tuples (processed as pairs).
    ``threads`` sets torch's intra-op threads during the run (restored afterwards): the default 1 gives
    per-core throughput, comparable with the single-threaded decode and with one cache worker process.
    """
    items = [_bench_item(p) for p in paths]
    if not items:
        raise ValueError("benchmark_preprocess needs at least one image path")
    files = [f for le, des, _ in items for f in (le, des) if f is not None]
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        for f in files[:2]:  # warm the page cache and imports outside the timings
            read_pixels(f)
        start = time.perf_counter()
        for _ in range(repeat):
            for f in files:
                read_pixels(f)
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(repeat):
            for le_path, des_path, side in items:
                _bench_preprocess_one(le_path, des_path, side, settings)
        preprocess_s = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    n_images = len(files) * repeat
    return {"images": float(n_images), "threads": float(threads or previous), "decode_s": decode_s,
            "preprocess_s": preprocess_s, "decode_per_s": n_images / decode_s,
            "preprocess_per_s": n_images / preprocess_s, "ratio": decode_s / preprocess_s}


def _bench_preprocess_one(le_path: Path, des_path: Path | None, side: str,
                          settings: PreprocessSettings) -> None:
    le, info = read_image(le_path)
    des = read_pixels(des_path) if des_path is not None else None
    side = side or info.laterality
    if side not in ("L", "R"):
        side, settings = "L", dataclasses.replace(settings, check_orientation=False)
    preprocess_pair(le, des, side, settings, source=str(le_path))


def _bench_item(item: str | Path | Sequence[Any]) -> tuple[Path, Path | None, str]:
    if isinstance(item, (str, Path)):
        return Path(item), None, ""
    le, des, side = item
    return Path(le), (Path(des) if des is not None else None), str(side)


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Seconds of the fastest of `repeat` calls of `fn`."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def benchmark_stats(
    n_delong: int = 10_000, n_boot_breasts: int = 1_000, n_boot: int = 2000, repeat: int = 3, seed: int = 0
) -> dict:
    """Time a paired DeLong test and a stratified bootstrap of the AUC (best of `repeat`, milliseconds)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n_delong) < 0.35).astype(int)
    a = np.round(rng.normal(y * 1.5, 1.0), 3)
    b = np.round(0.7 * a + rng.normal(0.0, 0.7, n_delong), 3)
    yb, sb = y[:n_boot_breasts], a[:n_boot_breasts]
    delong_s = best_time(lambda: delong_test(y, a, b), repeat)
    boot_s = best_time(lambda: auc_ci(yb, sb, method="bootstrap", n_boot=n_boot, seed=seed), repeat)
    return {
        "delong_paired_breasts": n_delong,
        "delong_paired_ms": round(delong_s * 1000, 2),
        "delong_target_ms": 50,
        "bootstrap_auc_breasts": n_boot_breasts,
        "bootstrap_auc_replicates": n_boot,
        "bootstrap_auc_ms": round(boot_s * 1000, 2),
        "bootstrap_target_ms": 1000,
    }


def benchmark_synth(out: str | os.PathLike, patients: int = DEFAULT_PATIENTS, scale: float = 0.08,
                    workers: int | None = 2, seed: int = 0) -> dict:
    """Time the generation of a cohort and measure its size on disk."""
    start = time.perf_counter()
    root = write_cohort(out, patients=patients, seed=seed, scale=scale, workers=workers)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {"patients": patients, "scale": scale, "workers": workers, "seconds": round(seconds, 2),
            "seconds_per_patient": round(seconds / patients, 4), "megabytes": round(size / 1e6, 1)}
