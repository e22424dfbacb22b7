"""Live view of training: TensorBoard event files beside log.csv, and progress lines reaching the terminal."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cemlib import training
from cemlib.core.settings import load_profile
from cemlib.training import tracking
from tests.factories import tiny_study

SIZE = (64, 32)
PROJECT = Path(__file__).resolve().parent.parent


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_each_epoch_becomes_scalars_and_a_progress_line(tmp_path, monkeypatch):
    progress = tmp_path / "progress.log"
    monkeypatch.setenv(tracking.PROGRESS_ENV, str(progress))
    run_dir = tmp_path / "cem_mf_concat" / "stage2"
    rows = [
        {"epoch": 1, "train_loss": 0.7, "val_loss": 0.69, "val_auc": math.nan, "lr": 5e-3, "seconds": 12.4},
        {"epoch": 2, "train_loss": 0.6, "val_loss": 0.65, "val_auc": 0.75, "lr": 2.5e-3, "seconds": 11.6},
    ]
    for row in rows:
        tracking.epoch_logged(run_dir, row, epochs=5)
    tracking.close_writers()
    scalars = _scalars(run_dir)
    assert scalars["loss/train"] == [(1, pytest.approx(0.7)), (2, pytest.approx(0.6))]
    assert scalars["learning_rate"] == [(1, pytest.approx(5e-3)), (2, pytest.approx(2.5e-3))]
    assert scalars["auc/validation"] == [(2, pytest.approx(0.75))]  # an undefined AUC is left out
    assert progress.read_text().splitlines() == [
        "cem_mf_concat/stage2 epoch 1/5: train loss 0.700, val loss 0.690, val AUC n/a, lr 0.005 (12 s)",
        "cem_mf_concat/stage2 epoch 2/5: train loss 0.600, val loss 0.650, val AUC 0.750, lr 0.0025 (12 s)",
    ]


def test_without_a_progress_file_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(tracking.PROGRESS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    tracking.note("epoch 1")
    assert list(tmp_path.iterdir()) == []


def test_follow_prints_what_a_child_process_reports(tmp_path):
    stream = io.StringIO()
    child = ("from cemlib.training import tracking\ntracking.note('stage1 epoch 1/2')\n"
             "tracking.note('stage1 epoch 2')")
    with tracking.follow(tmp_path / "progress.log", prefix="  ", interval=0.05, stream=stream):
        subprocess.run([sys.executable, "-c", child], check=True, cwd=PROJECT,
                       env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert stream.getvalue() == "  stage1 epoch 1/2\n  stage1 epoch 2\n"
    assert tracking.PROGRESS_ENV not in os.environ


def test_training_writes_event_files_matching_its_log(tmp_path):
    study = tiny_study(tmp_path / "tiny", patients=16, seed=3, size=SIZE)
    profile = load_profile("smoke", {
        "data.root": str(study["root"]), "data.synth": {"patients": 16, "scale": 0.08, "seed": 3},
        "data.manifest": str(study["base"] / "manifest"), "preprocess.cache": str(study["base"] / "cache"),
        "model.width": 0.0625, "model.head": [16, 8], "preprocess.size": list(SIZE),
        "train.stage2_epochs": 2, "train.milestones": [1],
    })
    run_dir = tmp_path / "cem_mf_concat" / "stage2"
    plan = training.plan_stage2(profile, "mf_concat", "cem", run_dir, study["manifest"], study["cache"], None)
    plan.run()
    tracking.close_writers()
    log = pd.read_csv(run_dir / "log.csv")
    scalars = _scalars(run_dir)
    assert [step for step, _ in scalars["loss/validation"]] == log["epoch"].tolist()
    assert [v for _, v in scalars["loss/validation"]] == pytest.approx(log["val_loss"].tolist(), rel=1e-6)
    assert [v for _, v in scalars["learning_rate"]] == pytest.approx(log["lr"].tolist())


def test_a_full_disk_stops_the_event_files_with_a_warning_not_the_training(tmp_path, monkeypatch):
    """TensorBoard's writer failing (ENOSPC) is a warning; the next epochs go on without event files."""
    import errno

    class FullDisk:
        def add_scalar(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    monkeypatch.setitem(tracking._writers, tmp_path, FullDisk())
    with pytest.warns(UserWarning, match="TensorBoard event files stopped"):
        tracking.write_scalars(tmp_path, {"epoch": 1, "train_loss": 0.5})
    assert tmp_path not in tracking._writers
    tracking.write_scalars(tmp_path, {"epoch": 2, "train_loss": 0.4})  # no new writer, no second warning
    assert tmp_path not in tracking._writers
