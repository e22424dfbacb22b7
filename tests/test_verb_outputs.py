"""Every `cem` verb checks its output location before work starts and fails in one line naming the path and
the cause (exit code 1): a file where a folder goes, a folder where a file goes, a read-only file system, a
full disk; write failures during a verb become that line too; a rerun removes what a killed verb left."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cemlib import cli
from cemlib.core.fileio import atomic_path
from cemlib.core.settings import load_profile
from cemlib.inference import scoring as evaluation
from cemlib.model import checkpoints
from cemlib.model import networks as models
from cemlib.study import prepare
from cemlib.study.commands import predict as predict_command
from cemlib.study.commands import tables as tables_command
from cemlib.synthetic.writer import INCOMPLETE
from tests.factories import save_calibrated_checkpoint, tiny_study
from tests.test_outputs import small_filesystem

SIZE = (64, 32)
ARCH = {"width": 0.0625, "global_pool": True, "head": (16, 8), "input_size": SIZE}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A 4-patient synthetic cohort, its manifest, a 64 x 32 cache and a checkpoint trained on nothing."""
    study = tiny_study(tmp_path_factory.mktemp("tiny_outputs"), patients=4, seed=7, scale=0.05, size=SIZE)
    torch.manual_seed(0)
    model = models.build_model("mf_concat", 2, **ARCH)
    study["checkpoint"] = save_calibrated_checkpoint(model, study, "concat", "cem", SIZE)
    return study


def train_args(tiny: dict, run_dir: Path) -> list[str]:
    """`cem train` on the tiny cohort into run_dir: one epoch per stage would be seconds of work."""
    settings = {"data.root": str(tiny["root"]), "data.manifest": str(tiny["base"] / "manifest"),
                "data.synth": {"patients": 4, "scale": 0.05, "seed": 7},
                "preprocess.cache": str(tiny["base"] / "cache"), "preprocess.size": list(SIZE),
                "model.width": 0.0625, "model.head": [16, 8], "train.stage1_epochs": 1,
                "train.stage2_epochs": 1}
    args = ["train", "--profile", "smoke", "--fusion", "none", "--inputs", "le", "--run-dir", str(run_dir)]
    for key, value in settings.items():
        args += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return args


def verb_writing_to(verb: str, tiny: dict, out: Path, scratch: Path) -> list[str]:
    """The command line of `verb` with its output at `out` (a folder or a file, as the verb expects)."""
    manifest, checkpoint = str(tiny["base"] / "manifest"), str(tiny["checkpoint"])
    return {
        "synth": ["synth", "--out", str(out), "--patients", "2", "--workers", "0"],
        "synth-qc": ["synth", "--qc-sheet", str(out)],
        "manifest": ["manifest", str(tiny["root"]), "--out", str(out)],
        "preprocess": ["preprocess", "--manifest", manifest, "--cache", str(out),
                       "--set", "preprocess.size=[64,32]",
                       "--workers", "0", "--no-progress"],
        "train": train_args(tiny, out),
        "predict": ["predict", "--checkpoint", checkpoint, "--manifest", manifest, "--out", str(out),
                    "--device", "cpu", "--workers", "0"],
        "predict-study": ["predict", str(tiny["root"] / "SYN0001"), "--checkpoint", checkpoint, "--out",
                          str(out), "--no-cams", "--device", "cpu"],
        "tables": ["tables", "--predictions", str(scratch / "scores.csv"), "--manifest", manifest,
                   "--out", str(out)],
        "bench": ["bench", "stats", "--json", str(out)],
        "reproduce": ["reproduce", "--workdir", str(out), "--no-report"],
    }[verb]


FOLDER_VERBS = ("synth", "manifest", "preprocess", "train", "predict-study", "tables")
FILE_VERBS = ("synth-qc", "predict", "bench")


def one_line_error(capsys, verb: str) -> str:
    """stderr of a failed verb, progress bars aside: exactly one line, `cem VERB: error: ...`; returned."""
    lines = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.strip()]
    shown = [line for line in lines if not re.match(r"^\w[\w ]*:\s+\d+%\|", line)  # tqdm's bars
             and not re.match(r"^cem \w+: settings differ from profile", line)]  # where --set writes
    assert len(shown) == 1, lines
    assert shown[0].startswith(f"cem {verb.split('-')[0]}: error: "), shown
    return shown[0]


@pytest.mark.parametrize("verb", (*FOLDER_VERBS, "reproduce"))
def test_a_file_where_a_folder_goes(verb, tiny, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("keep me")
    code = cli.main(verb_writing_to(verb, tiny, target, tmp_path))
    err = one_line_error(capsys, verb)
    assert code == 1
    assert f"{target}: is a file; give a folder path" in err or f"{target} is a file, not a folder" in err
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("verb", FILE_VERBS)
def test_a_folder_where_a_file_goes(verb, tiny, tmp_path, capsys):
    target = tmp_path / "a_folder"
    target.mkdir()
    code = cli.main(verb_writing_to(verb, tiny, target, tmp_path))
    captured_err = one_line_error(capsys, verb)
    assert code == 1 and captured_err.endswith(f"{target}: is a folder; give a file path")
    assert list(target.iterdir()) == []


def test_predict_refuses_a_folder_before_scoring_anything(tiny, tmp_path, capsys, monkeypatch):
    """The reproduction: `cem predict --manifest M --out DIR` scored every breast, then crashed."""
    scored = []
    monkeypatch.setattr(evaluation, "predict_tables", lambda *a, **k: scored.append(a))
    (tmp_path / "scores.csv").write_text("old")
    (tmp_path / "scores_images.csv").mkdir()  # the image table beside the breast table
    code = cli.main(verb_writing_to("predict", tiny, tmp_path / "scores.csv", tmp_path))
    err = one_line_error(capsys, "predict")
    assert code == 1 and err.endswith(f"{tmp_path / 'scores_images.csv'}: is a folder; give a file path")
    assert scored == [] and (tmp_path / "scores.csv").read_text() == "old"


def test_train_into_a_file_stops_before_the_first_epoch(tiny, tmp_path, capsys, monkeypatch):
    """The reproduction: `cem train --run-dir FILE` trained a whole epoch before crashing."""
    from cemlib.study.commands import train
    from cemlib.training import stages

    epochs = []
    monkeypatch.setattr(stages, "fit", lambda *a, **k: epochs.append(a))
    monkeypatch.setattr(train, "data_for", lambda *a, **k: epochs.append(a))
    (tmp_path / "run").write_text("")
    assert cli.main(train_args(tiny, tmp_path / "run")) == 1
    assert one_line_error(capsys, "train").endswith(f"{tmp_path / 'run'}: is a file; give a folder path")
    assert epochs == []


@pytest.mark.parametrize("verb", (*FOLDER_VERBS, *FILE_VERBS))
def test_a_read_only_file_system(verb, tiny, tmp_path, capsys):
    with small_filesystem(tmp_path, "1m", read_only=True) as mount:
        target = mount / "out"
        code = cli.main(verb_writing_to(verb, tiny, target, tmp_path))
        err = one_line_error(capsys, verb)
    assert code == 1
    assert err.endswith(f"{target}: cannot write in {mount} (read-only file system)")


@pytest.mark.parametrize("verb", ("synth", "manifest", "preprocess", "train", "predict", "tables"))
def test_a_full_disk_is_refused_before_work_starts(verb, tiny, tmp_path, capsys):
    """The reproduction: `cem train` on a full disk ended in torch's 'unexpected pos' after an epoch."""
    with small_filesystem(tmp_path, "1m") as mount:
        target = mount / "out"
        code = cli.main(verb_writing_to(verb, tiny, target, tmp_path))
        err = one_line_error(capsys, verb)
        assert list(mount.iterdir()) == []
    assert code == 1
    assert err.endswith(f"{target}: only 1.0 MiB free in {mount}, at least 64 MiB needed")


def fill(mount: Path) -> None:
    """Leave (almost) no space on a small file system."""
    with open(mount / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass


def test_disk_filling_up_during_predict_is_one_line(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(predict_command, "check_output_file", Path)  # the disk fills after the check
    with small_filesystem(tmp_path, "1m") as mount:
        fill(mount)
        code = cli.main(verb_writing_to("predict", tiny, mount / "scores.csv", tmp_path))
        err = one_line_error(capsys, "predict")
        assert sorted(p.name for p in mount.iterdir()) == ["filler"]  # no temporary file left
    assert code == 1 and err.endswith(f"{mount / 'scores.csv'}: no space left on the device (disk full)")


def test_torch_full_disk_error_during_a_verb_is_one_line(tmp_path, capsys, monkeypatch):
    """torch.save reports a full disk as '[enforce fail at inline_container.cc] unexpected pos'."""
    with small_filesystem(tmp_path, "1m") as mount:
        fill(mount)

        def saving_verb(args):
            checkpoints.save_checkpoint({"weights": torch.zeros(300_000)}, mount / "last.pt")
            return 0

        monkeypatch.setattr(tables_command, "run_cli", saving_verb)
        code = cli.main(["tables", "--predictions", "p.csv", "--out", str(tmp_path)])
        err = one_line_error(capsys, "tables")
    assert code == 1
    assert err == f"cem tables: error: {mount / 'last.pt'}: no space left on the device (disk full)"


# ------------------------------------------------------------------------------ what a killed verb leaves


def killed_write(target: Path) -> Path:
    """Start an atomic write of `target` in another process and kill it (-9) mid-write; the leftover."""
    code = ("import os, sys; from cemlib.core.fileio import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_text('half'); os.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -signal.SIGKILL
    (leftover,) = target.parent.glob(f".{target.name}.*.tmp")
    return leftover


def test_rerun_of_manifest_predict_and_exam_report_removes_killed_writes(tiny, tmp_path, capsys):
    manifest_out, scores = tmp_path / "manifest", tmp_path / "scores.csv"
    report = tmp_path / "report"
    leftovers = [killed_write(manifest_out / "images.csv"), killed_write(manifest_out / "private" / "x.csv"),
                 killed_write(scores), killed_write(tmp_path / "scores_images.csv"),
                 killed_write(report / "report.html")]
    unrelated = tmp_path / ".notes.tmp"
    unrelated.write_text("someone else's")
    for verb, out in (("manifest", manifest_out), ("predict", scores), ("predict-study", report)):
        assert cli.main(verb_writing_to(verb, tiny, out, tmp_path)) == 0, capsys.readouterr().err
    assert [p for p in leftovers if p.exists()] == []
    assert unrelated.exists()


def test_a_killed_cache_write_at_its_top_level_is_removed_by_the_next_fill(tiny, tmp_path, capsys):
    leftover = killed_write(tiny["cache"].folder / "windows.csv")
    assert cli.main(verb_writing_to("preprocess", tiny, tiny["base"] / "cache", tmp_path)) == 0
    assert not leftover.exists()


def test_killed_synth_is_completed_by_the_rerun(tmp_path, capsys):
    out = tmp_path / "cohort"
    command = [sys.executable, "-m", "cemlib.cli", "synth", "--out", str(out), "--patients", "40",
               "--workers", "0", "--scale", "0.05"]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "SYN0002").is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not (out / "cohort.json").exists(), "the writer finished before it could be killed"
    leftover = killed_write(out / "SYN0001" / "L_CC_LE.dcm")
    assert cli.main(["synth", "--out", str(out), "--patients", "3", "--workers", "0", "--scale", "0.05"]) == 0
    assert not leftover.exists() and not (out / INCOMPLETE).exists()
    assert sorted(p.name for p in out.glob("SYN*")) == ["SYN0001", "SYN0002", "SYN0003"]
    assert [p for p in out.rglob("*.tmp")] == []


@pytest.mark.parametrize("dataset", ["internal", "cddcesm"])
def test_an_interrupted_cohort_or_replica_is_written_again_not_reused(dataset, tmp_path):
    """A killed writer's folder (marker left; a patient half rewritten, or a replica already cleared)."""
    profile = load_profile("smoke", {"data.root": str(tmp_path / "internal"), "data.synth.patients": 3,
                                     "data.synth.scale": 0.03, "data.manifest": str(tmp_path / "manifest"),
                                     "external.cddcesm.root": str(tmp_path / "cdd"),
                                     "external.cddcesm.synth.patients": 3,
                                     "external.cddcesm.synth.scale": 0.04,
                                     "runs": str(tmp_path / "runs")})
    plan = prepare.plan_dataset(profile, dataset)
    prepare.write_synthetic(plan, workers=0)
    first = sorted(p.relative_to(plan.root) for p in plan.root.rglob("*") if p.is_file())
    if dataset == "internal":
        next(plan.root.rglob("*.dcm")).unlink()  # as a killed rerun leaves it: the old record, a file gone
    else:
        for child in plan.root.iterdir():  # a replica is cleared before it is written
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    (plan.root / INCOMPLETE).touch()
    manifest = prepare.ensure_manifest(plan, workers=0)
    assert not (plan.root / INCOMPLETE).exists() and len(manifest.images) > 0
    assert sorted(p.relative_to(plan.root) for p in plan.root.rglob("*") if p.is_file()) == first


TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"


@pytest.mark.parametrize("failure", (OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError(TORCH_FULL_DISK)))
def test_atomic_write_failure_names_the_target_not_its_temporary(failure, tmp_path):
    target = tmp_path / "x" / "a.pt"
    with pytest.raises(type(failure)) as raised:
        with atomic_path(target) as tmp:
            if isinstance(failure, OSError):
                failure.filename = str(tmp)
            raise failure
    assert raised.value.filename == str(target)
    assert list(target.parent.iterdir()) == []


def test_preprocess_of_a_read_only_manifest_needs_no_option(tiny, tmp_path, capsys):
    # preprocess never writes into the manifest folder (its failures stay with the cache)
    with small_filesystem(tmp_path, "4m") as mount:
        shutil.copytree(tiny["base"] / "manifest", mount / "manifest")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        args = ["preprocess", "--manifest", str(mount / "manifest"), "--cache", str(tiny["base"] / "cache"),
                "--set", "preprocess.size=[64,32]", "--workers", "0", "--no-progress"]
        assert cli.main(args) == 0
        assert cli.main([*args, "--keep-manifest"]) == 0
