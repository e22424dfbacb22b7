"""Checkpoints carry a digest of their content; a damaged file is refused everywhere it is read, with
its path and what to do. Files the kit writes are readable by group and others under the usual umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from cemlib.cli import main as cem
from cemlib.core.fileio import atomic_write_text
from cemlib.inference import exam
from cemlib.inference import scoring as evaluation
from cemlib.model import checkpoints
from cemlib.model import networks as models
from cemlib.study import maps
from cemlib.study import steps as study
from tests.factories import save_calibrated_checkpoint, tiny_study
from tests.test_training import MemoryPatients, memory_fit

ADVICE = "delete it to retrain that stage"
SIZE = (64, 32)
ARCH = {"width": 0.0625, "global_pool": True, "head": (16, 8), "input_size": SIZE}


def damage(path: Path, count: int = 2048) -> None:
    """XOR-flip `count` bytes in the middle of a file (the reproduction of a damaged checkpoint)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 - count // 2
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def refused(path: Path) -> str:
    """The pattern of the message every reader gives for a damaged checkpoint."""
    return rf"{path}: .*(damaged|cannot read).*{ADVICE}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_study(tmp_path_factory.mktemp("tiny_ckpt"), patients=4, seed=2, size=SIZE,
                      ratios=(0.5, 0.25, 0.25))


@pytest.fixture
def best(tiny, tmp_path):
    torch.manual_seed(0)
    return save_calibrated_checkpoint(models.build_model("mf_concat", 2, **ARCH), {**tiny, "base": tmp_path},
                                      "best", "cem", SIZE)


def test_every_checkpoint_carries_the_digest_of_its_content(tmp_path):
    model = models.build_model("mf_concat", 2, **ARCH)
    path = checkpoints.save_model(model, tmp_path / "m.pt", epoch=3, metrics={"val_auc": float("nan")})
    raw = torch.load(path, weights_only=True)
    assert raw["digest"] == checkpoints.content_digest(raw) and raw["format"] == checkpoints.CHECKPOINT_FORMAT
    again = checkpoints.load_model(path)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)
    raw["model"]["encoder.features.0.weight"][0, 0, 0, 0] += 1.0  # one changed weight changes the digest
    assert checkpoints.content_digest(raw) != raw["digest"]


@pytest.mark.parametrize("count", [2048, 1])
def test_a_damaged_file_is_refused_with_its_path_and_what_to_do(tmp_path, count):
    path = checkpoints.save_model(models.build_model("mf_concat", 2, **ARCH), tmp_path / "best.pt")
    damage(path, count)
    with pytest.raises(checkpoints.CheckpointError, match=refused(path)):
        checkpoints.load_checkpoint(path)


def test_a_truncated_file_is_refused_the_same_way(tmp_path):
    path = checkpoints.save_model(models.build_model("none", 1, **ARCH), tmp_path / "last.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(checkpoints.CheckpointError, match=refused(path)):
        checkpoints.load_checkpoint(path)


def test_training_refuses_to_resume_from_a_damaged_last_or_best(tmp_path):
    memory_fit(tmp_path / "a", MemoryPatients(8), epochs=1)
    damage(tmp_path / "a" / "last.pt")
    with pytest.raises(checkpoints.CheckpointError, match=refused(tmp_path / "a" / "last.pt")):
        memory_fit(tmp_path / "a", MemoryPatients(8), epochs=2)
    memory_fit(tmp_path / "b", MemoryPatients(8), epochs=1)  # finished: a rerun reads best.pt
    damage(tmp_path / "b" / "best.pt")
    with pytest.raises(checkpoints.CheckpointError, match=refused(tmp_path / "b" / "best.pt")):
        memory_fit(tmp_path / "b", MemoryPatients(8), epochs=1)


def test_prediction_cams_and_notebooks_refuse_a_damaged_best(tiny, best, capsys):
    damage(best)
    with pytest.raises(checkpoints.CheckpointError, match=refused(best)):
        evaluation.predict_tables(best, tiny["manifest"], tiny["cache"], progress=False)
    with pytest.raises(checkpoints.CheckpointError, match=refused(best)):  # one exam, its maps included
        exam.predict_exam(tiny["root"] / tiny["manifest"].patients[0], best, device="cpu", cams=True)
    with pytest.raises(checkpoints.CheckpointError, match=refused(best)):  # the CAM notebook's path
        next(maps._explained_malignant_exams(study.load("smoke"), best, "cem", tiny["manifest"],
                                              tiny["cache"], None))
    assert cem(["predict", "--checkpoint", str(best), "--manifest", str(tiny["base"] / "manifest")]) == 1
    err = capsys.readouterr().err
    assert str(best) in err and ADVICE in err


def test_temporary_files_of_a_killed_save_are_removed_by_the_next_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".last.pt.k1l2d3.tmp", run / ".best.pt.x9y8z7.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (run / "notes.tmp").write_text("not ours")
    memory_fit(run, MemoryPatients(8), epochs=1)
    assert not any(path.exists() for path in stale)
    assert (run / "notes.tmp").exists() and checkpoints.load_checkpoint(run / "last.pt")["epoch"] == 1


@pytest.fixture
def usual_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_written_files_and_folders_are_readable_by_group_and_others(tmp_path, usual_umask):
    atomic_write_text(tmp_path / "reports" / "tables" / "t.csv", "a,b\n")
    path = checkpoints.save_model(models.build_model("none", 1, **ARCH), tmp_path / "runs" / "best.pt")
    for file in (tmp_path / "reports" / "tables" / "t.csv", path):
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
    for folder in (tmp_path / "reports", tmp_path / "reports" / "tables", tmp_path / "runs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder


def test_a_stricter_umask_is_respected(tmp_path):
    previous = os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
