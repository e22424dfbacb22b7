"""Tests of the two-stage training loop: determinism, resume, NaN guard, checkpoints, bad input, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from cemlib import cli, training
from cemlib.core import devices
from cemlib.core import settings as profiles
from cemlib.core.settings import TrainSettings, load_profile
from cemlib.data import datasets as data
from cemlib.data.manifest import Manifest
from cemlib.model import checkpoints
from cemlib.model import networks as models
from cemlib.study import bench, prepare
from cemlib.synthetic import GENERATOR_VERSION
from cemlib.training import loop
from tests.factories import tiny_study

SIZE = (64, 32)
TINY_MODEL = {"model.width": 0.0625, "model.head": [16, 8], "preprocess.size": list(SIZE)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A 16-patient synthetic cohort, its manifest (8/4/4 patients) and a 64 x 32 cache, built once."""
    return make_tiny(tmp_path_factory.mktemp("tiny"))


def make_tiny(folder: Path) -> dict:
    """The `tiny` fixture's cohort in `folder`: {base, overrides (smoke profile onto it), manifest, cache}."""
    study = tiny_study(folder, patients=16, seed=3, size=SIZE)
    base = study["base"]
    overrides = {
        "data.root": str(study["root"]),
        "data.synth": {"patients": 16, "scale": 0.08, "seed": 3},
        "data.manifest": str(base / "manifest"),
        "data.split": [0.5, 0.25, 0.25],  # as tiny_study splits it
        "preprocess.cache": str(base / "cache"),
        **TINY_MODEL,
        "train.lr": 1e-3,
        "train.stage1_epochs": 1,
        "train.stage2_epochs": 2,
        "train.milestones": [1],
        "train.patience": 5,
        "preprocess.des_window": "image",  # as the tiny cache was built (the pipeline's default)
    }
    return {"base": base, "overrides": overrides, "manifest": study["manifest"], "cache": study["cache"]}


def profile_for(tiny: dict, **changes) -> dict:
    """The smoke profile pointed at the tiny cohort, with dotted-key changes."""
    return load_profile("smoke", {**tiny["overrides"], **changes})


def stage2_run(tiny: dict, run_dir: Path, **changes) -> training.FitResult:
    """Stage 2 (mf_concat, CEM) from a fresh encoder: the quickest complete use of fit on real data."""
    plan = training.plan_stage2(
        profile_for(tiny, **changes), "mf_concat", "cem", run_dir, tiny["manifest"], tiny["cache"], None
    )
    result = plan.run()
    result.final_state = checkpoints.load_checkpoint(run_dir / "last.pt")["model"]
    return result


def metrics(history: list[dict]) -> list[dict]:
    """History without the wall-clock column."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(tiny) -> training.FitResult:
    """An uninterrupted two-epoch stage-2 run."""
    return stage2_run(tiny, tiny["base"] / "reference")


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_gives_same_metrics_and_weights(tiny, reference, tmp_path):
    again = stage2_run(tiny, tmp_path / "again")
    assert len(reference.history) == 2
    assert metrics(again.history) == metrics(reference.history)
    assert_same_state(again.final_state, reference.final_state)
    other_seed = stage2_run(tiny, tmp_path / "seed1", seed=1)
    assert metrics(other_seed.history) != metrics(reference.history)


def test_log_has_one_row_per_epoch_and_halves_lr_at_milestone(reference):
    log = pd.read_csv(reference.log)
    assert list(log.columns) == list(training.LOG_COLUMNS)
    assert log["epoch"].tolist() == [1, 2]
    assert log["lr"].tolist() == pytest.approx([1e-3, 5e-4])  # milestone at epoch 1, gamma 0.5
    assert np.isfinite(log[["train_loss", "val_loss"]].to_numpy()).all()
    assert ((log["val_auc"] >= 0) & (log["val_auc"] <= 1)).all()
    assert reference.best_val_loss == pytest.approx(log["val_loss"].min())
    assert reference.best_epoch == int(log.loc[log["val_loss"].idxmin(), "epoch"])


class Killed(Exception):
    """Stands for the process being killed."""


def test_killed_run_resumes_to_the_same_result(tiny, reference, tmp_path, monkeypatch):
    run_dir = tmp_path / "killed"
    real_evaluate = training.evaluate
    calls = {"n": 0}

    def evaluate_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 2 trained, killed before its validation and checkpoint
            raise Killed
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluate_then_die)
    with pytest.raises(Killed):
        stage2_run(tiny, run_dir)
    assert checkpoints.load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    resumed = stage2_run(tiny, run_dir)
    assert metrics(resumed.history) == metrics(reference.history)
    assert_same_state(resumed.final_state, reference.final_state)
    # A finished stage is not trained again: a rerun returns the same result without touching last.pt.
    stamp = (run_dir / "last.pt").stat().st_mtime_ns
    rerun = stage2_run(tiny, run_dir)
    assert (run_dir / "last.pt").stat().st_mtime_ns == stamp
    assert metrics(rerun.history) == metrics(reference.history)


def test_checkpoints_load_with_weights_only(reference):
    last = torch.load(reference.last_checkpoint, map_location="cpu", weights_only=True)
    keys = ("model", "optimizer", "scheduler", "rng", "epoch", "early_stopping", "arch", "meta", "history")
    for key in keys:
        assert key in last, key
    assert last["epoch"] == 2 and last["stage"] == "stage2"
    assert last["arch"]["fusion"] == "mf_concat" and last["arch"]["in_channels"] == 2
    assert last["meta"]["inputs"] == "cem" and last["meta"]["preprocess"]["size"] == list(SIZE)
    assert set(last["rng"]) >= {"torch", "numpy", "python"}
    assert last["scheduler"]["last_epoch"] == 2
    best = torch.load(reference.best_checkpoint, map_location="cpu", weights_only=True)
    model = checkpoints.model_from_checkpoint(best)
    assert isinstance(model, models.FusionNet) and model.fusion == "mf_concat"
    assert best["epoch"] == reference.best_epoch


# ------------------------------------------------------------------------------------- in-memory data


class MemoryPatients(Dataset):
    """Patients made of random views; `poison` items hold NaN pixels."""

    def __init__(self, n: int, channels: int = 2, poison: bool = False, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 4, channels, *SIZE, generator=generator)
        self.y = torch.randint(0, 2, (n, 2), generator=generator)
        if poison:
            self.x[:, 0, 0, 0, 0] = math.nan

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict:
        return {"x": self.x[index], "y": self.y[index], "patient_id": f"P{index}"}


def memory_stage(epochs: int, **train) -> training.StageRun:
    """A CPU stage-2 run of `epochs` with the given training settings, no progress bars."""
    settings = training.resolved_training(TrainSettings(stage2_epochs=epochs, progress=False, **train))
    return training.StageRun("stage2", settings)


def memory_fit(run_dir: Path, train_set: Dataset, loss_fn=models.fusion_loss, **changes):
    """fit on in-memory patients (stage 2, mf_concat, batch 4)."""
    epochs = changes.pop("epochs", 2)
    config = memory_stage(epochs=epochs, batch_size=4, **changes)
    model = models.build_model("mf_concat", 2, width=0.0625, global_pool=True, head=(16, 8), input_size=SIZE)
    return training.fit(
        model,
        loss_fn,
        training.loader_for(train_set, config, shuffle=True),
        training.loader_for(MemoryPatients(4, seed=9), config, shuffle=False),
        config,
        run_dir,
    )


def test_nan_input_stops_with_stage_epoch_and_step(tmp_path):
    with pytest.raises(RuntimeError, match=r"stage2: the training loss became nan at epoch 1, step 1"):
        memory_fit(tmp_path, MemoryPatients(8, poison=True))
    assert not (tmp_path / "last.pt").exists()


def test_infinite_loss_names_the_step_it_happened_at(tmp_path):
    calls = {"n": 0}

    def blows_up(outputs, y):
        loss = models.fusion_loss(outputs, y)
        if not torch.is_grad_enabled():  # validation
            return loss
        calls["n"] += 1
        return loss * math.inf if calls["n"] == 2 + 2 else loss  # 2 steps per epoch: epoch 2, step 2

    with pytest.raises(RuntimeError, match=r"became inf at epoch 2, step 2"):
        memory_fit(tmp_path, MemoryPatients(8), loss_fn=blows_up)
    assert checkpoints.load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # epoch 1 kept, nothing after it


def test_early_stopping_keeps_best_epoch(tmp_path, monkeypatch):
    # lr 0 and frozen batch-norm statistics: the validation loss never improves after epoch 1.
    real_build = models.build_model

    def frozen_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.0
        return model

    monkeypatch.setattr(models, "build_model", frozen_build)
    result = memory_fit(tmp_path, MemoryPatients(8), epochs=6, lr=0.0, patience=2)
    assert result.stopped_early and len(result.history) == 3
    assert result.best_epoch == 1
    assert checkpoints.load_checkpoint(result.best_checkpoint)["epoch"] == 1


# ------------------------------------------------------------------------------------------ two stages


def test_train_runs_both_stages_and_reuses_stage1(tiny, tmp_path):
    profile = profile_for(tiny, **{"train.stage2_epochs": 1})
    best = training.train(profile, "mf_average", "cem", tmp_path / "run", manifest=tiny["manifest"],
                          cache=tiny["cache"])
    stage1 = tmp_path / "run" / "stage1" / "best.pt"
    assert best == tmp_path / "run" / "stage2" / "best.pt"
    first = checkpoints.load_checkpoint(stage1)
    assert first["arch"]["fusion"] == models.IMAGE_MODEL and first["stage"] == "stage1"
    second = checkpoints.load_checkpoint(best)
    assert second["meta"]["stage1"] == str(stage1)
    # The stage-1 encoder goes into a fusion model of another type unchanged.
    fusion = models.model_from_arch(training.arch_from_profile(profile, "left_right", "cem"))
    training.load_stage1(fusion, stage1)
    for key, value in fusion.encoder.state_dict().items():
        assert torch.equal(value, first["model"][f"encoder.{key}"]), key
    other = training.train(profile, "left_right", "cem", tmp_path / "lr", stage1_checkpoint=stage1,
                           manifest=tiny["manifest"], cache=tiny["cache"])
    assert other.exists() and not (tmp_path / "lr" / "stage1").exists()
    assert checkpoints.load_checkpoint(other)["arch"]["fusion"] == "left_right"


# ------------------------------------------------------------------------------------------- bad input


def assert_nothing_trained(run_dir: Path) -> None:
    assert not run_dir.exists() or not any(run_dir.rglob("*.pt"))


def le_only(manifest: Manifest) -> Manifest:
    images = manifest.images[manifest.images["energy"] == "LE"].reset_index(drop=True)
    return dataclasses.replace(manifest, images=images, energies=("LE",))


def test_cem_inputs_on_le_only_manifest_fail_before_training(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"inputs 'cem' need LE\+DES .* no DES images; train with --inputs"):
        training.train(profile_for(tiny), "mf_concat", "cem", tmp_path / "run",
                       manifest=le_only(tiny["manifest"]), cache=tiny["cache"])
    assert_nothing_trained(tmp_path / "run")


def test_stage1_checkpoint_of_other_architecture_fails_before_training(tiny, tmp_path):
    wrong = models.build_image_classifier(1, width=0.125, global_pool=True, head=(16, 8), input_size=SIZE)
    path = checkpoints.save_model(wrong, tmp_path / "le_stage1.pt")
    with pytest.raises(ValueError, match=r"stage-1 checkpoint .*le_stage1.pt does not fit.*in_channels=1"):
        training.train(profile_for(tiny), "mf_concat", "cem", tmp_path / "run", stage1_checkpoint=path,
                       manifest=tiny["manifest"], cache=tiny["cache"])
    assert_nothing_trained(tmp_path / "run")


def test_manifest_without_training_positives_fails_before_training(tiny, tmp_path):
    breasts = tiny["manifest"].breasts.copy()
    breasts.loc[breasts["split"] == "train", "label"] = 0
    manifest = dataclasses.replace(tiny["manifest"], breasts=breasts)
    with pytest.raises(ValueError, match=r"no malignant .*training breasts"):
        training.train(profile_for(tiny), "mf_concat", "cem", tmp_path / "run", manifest=manifest,
                       cache=tiny["cache"])
    assert_nothing_trained(tmp_path / "run")


def test_manifest_without_validation_data_fails_before_training(tiny, tmp_path):
    breasts = tiny["manifest"].breasts.replace({"split": {"val": "train"}})
    manifest = dataclasses.replace(tiny["manifest"], breasts=breasts)
    with pytest.raises(ValueError, match="no validation breasts"):
        training.train(profile_for(tiny), "mf_concat", "cem", tmp_path / "run", manifest=manifest,
                       cache=tiny["cache"])
    assert_nothing_trained(tmp_path / "run")


def test_unknown_names_and_resume_into_other_architecture_fail(tiny, reference, tmp_path):
    with pytest.raises(ValueError, match="unknown fusion 'late'"):
        training.train(profile_for(tiny), "late", "cem", tmp_path / "a", manifest=tiny["manifest"],
                       cache=tiny["cache"])
    with pytest.raises(ValueError, match="unknown inputs 'rgb'"):
        training.train(profile_for(tiny), "mf_concat", "rgb", tmp_path / "a", manifest=tiny["manifest"],
                       cache=tiny["cache"])
    # The reference run's folder holds an mf_concat last.pt: an mf_average stage 2 must not resume from it.
    plan = training.plan_stage2(profile_for(tiny), "mf_average", "cem", reference.last_checkpoint.parent,
                                tiny["manifest"], tiny["cache"], None)
    with pytest.raises(ValueError, match=r"cannot resume.*fusion=mf_concat"):
        plan.run()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on machines without a GPU")
def test_cuda_profile_without_gpu_says_so(tiny, tmp_path):
    with pytest.raises(RuntimeError, match="no CUDA GPU is available; use --set device=cpu"):
        training.train(profile_for(tiny, device="cuda"), "mf_concat", "cem", tmp_path / "run",
                       manifest=tiny["manifest"], cache=tiny["cache"])


def test_devices_are_checked_before_use():
    assert devices.inference_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert devices.inference_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        devices.inference_device("tpu")
    two_processes = devices.DistContext(rank=1, world_size=2, local_rank=1)
    with pytest.raises(ValueError, match="names one GPU, but 2 processes train together"):
        devices.resolve_device("cuda:1", two_processes)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on machines without a GPU")
def test_scoring_on_a_missing_gpu_says_so():
    with pytest.raises(RuntimeError, match="no CUDA GPU is available"):
        devices.inference_device("cuda")


def test_validation_runs_in_full_precision_under_mixed_precision_training(tiny, reference):
    model = checkpoints.model_from_checkpoint(checkpoints.load_checkpoint(reference.best_checkpoint))
    dataset = data.PatientDataset(tiny["manifest"], tiny["cache"], "val", inputs="cem")
    results = []
    for amp in (False, True):
        config = memory_stage(epochs=1, amp=amp, batch_size=4)
        loader = training.loader_for(dataset, config, shuffle=False)
        results.append(training.evaluate(model, models.fusion_loss, loader, config, torch.device("cpu")))
    assert results[0] == results[1]


# ------------------------------------------------------------------------------------------------- CLI


def test_profile_overrides_leave_the_callers_values_alone():
    synth = {"patients": 3, "seed": 4}
    profile = load_profile("smoke", {"data.synth": synth, "data.synth.patients": 5})
    assert profile.data.synth.as_dict() == {"patients": 5, "seed": 4}
    assert synth == {"patients": 3, "seed": 4}


def test_parse_overrides_types_values():
    parsed = profiles.parse_overrides(["train.stage2_epochs=2", "model.head=[8, 4]", "device=cpu", "x.y=0.5"])
    assert parsed == {"train.stage2_epochs": 2, "model.head": [8, 4], "device": "cpu", "x.y": 0.5}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        profiles.parse_overrides(["train.stage2_epochs"])


def test_cem_train_cli(tiny, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", "--profile", "smoke", "--fusion", "none", "--inputs", "le", "--run-dir", str(run_dir)]
    for key, value in {**tiny["overrides"], "train.stage2_epochs": 1}.items():
        args += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "best stage2 checkpoint" in out and "val_auc" in out
    checkpoint = checkpoints.load_checkpoint(tmp_path / "run" / "stage2" / "best.pt")
    assert checkpoint["arch"]["in_channels"] == 1 and checkpoint["meta"]["inputs"] == "le"
    assert cli.main(["train", "--profile", "smoke", "--set", "train.stage2_epochs"]) == 2  # a usage error
    assert "--set expects KEY=VALUE" in capsys.readouterr().err


def test_compiled_training_matches_eager_training(tiny, reference):
    import torch._inductor.config

    # Inductor draws dropout masks from its own generator unless told to use eager's.
    with torch._inductor.config.patch(fallback_random=True):
        compiled = stage2_run(tiny, tiny["base"] / "compiled", **{"train.compile": True})
    assert [r["epoch"] for r in compiled.history] == [r["epoch"] for r in reference.history]
    for got, want in zip(compiled.history, reference.history, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-3)
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-3)
    # The checkpoint holds the plain module's weights, so an uncompiled model loads it.
    checkpoint = checkpoints.load_checkpoint(compiled.best_checkpoint)
    assert not any(key.startswith("_orig_mod") for key in checkpoint["model"])
    checkpoints.model_from_checkpoint(checkpoint)


# ----------------------------------------------------------------------------------------------- speed


def test_benchmark_train_reports_every_variant_and_the_authors_baseline(tiny):
    result = bench.benchmark_train(profile_for(tiny), steps=1, warmup=0, devices=["cpu"],
                                      manifest=tiny["manifest"], cache=tiny["cache"])
    variants = {(r["precision"], r["channels_last"], r["compiled"])
                for r in result["rows"] if r["batch"] == 8}
    assert variants == {("fp32", False, False), ("fp32", True, False), ("bf16", False, False),
                        ("bf16", True, False)}
    baseline = [r for r in result["rows"] if r["batch"] == 2]
    assert len(baseline) == 1 and "DICOM" in baseline[0]["data"]
    assert all(r["images_per_s"] > 0 for r in result["rows"])
    best, base = result["best"]["images_per_s"], result["baseline_images_per_s"]
    assert result["speedup"] == pytest.approx(best / base, rel=0.01)
    arch = training.arch_from_profile(profile_for(tiny), "mf_concat", "cem")
    assert result["flop_per_image"] == models.training_flops_per_image(arch)
    for row in result["rows"]:
        tflops = row["images_per_s"] * result["flop_per_image"] / 1e12
        assert row["tflop_per_s"] == pytest.approx(tflops, rel=0.01, abs=1e-4)
        assert row["peak_memory_gib"] is None  # measured on CUDA only


@pytest.mark.slow
def test_compiled_training_step_runs_on_the_cpu(tiny):
    result = bench.benchmark_train(profile_for(tiny), steps=1, warmup=1, devices="cpu", baseline=False,
                                      manifest=tiny["manifest"], cache=tiny["cache"], compiled=True)
    compiled = [r for r in result["rows"] if r["compiled"]]
    assert len(compiled) == 1 and (compiled[0]["precision"], compiled[0]["channels_last"]) == ("bf16", True)
    assert compiled[0]["images_per_s"] > 0


def test_cem_bench_train_cli_takes_profile_overrides(tiny, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "train", "--profile", "smoke", "--device", "cpu", "--steps", "1", "--warmup", "0",
            "--json", str(out)]
    for key, value in tiny["overrides"].items():
        args += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    assert cli.main(args) == 0
    result = json.loads(out.read_text())["train"]
    assert result["size"] == list(SIZE) and {r["device"] for r in result["rows"]} == {"cpu"}
    assert result["rows"][0]["steps"] == 1


def test_prepare_data_runs_the_missing_earlier_steps_once(tmp_path):
    profile = load_profile("smoke", {
        "data.root": str(tmp_path / "cohort"), "data.manifest": str(tmp_path / "manifest"),
        "data.synth": {"patients": 10, "scale": 0.08, "seed": 4}, "preprocess.cache": str(tmp_path / "cache"),
        "preprocess.size": list(SIZE), "preprocess.workers": 1,
    })
    manifest, cache = prepare.prepare_data(profile, progress=False)
    assert (tmp_path / "cohort" / "labels.csv").is_file()
    assert (tmp_path / "manifest" / "manifest.json").is_file()
    assert manifest.patients == [f"SYN{i:04d}" for i in range(1, 11)]
    assert set(manifest.breasts["split"]) <= {"train", "val", "test"}
    assert len(cache.missing(cache.attach(manifest))) == 0
    stamp = (tmp_path / "manifest" / "images.csv").stat().st_mtime_ns
    again, _ = prepare.prepare_data(profile, progress=False)
    assert (tmp_path / "manifest" / "images.csv").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again.breasts, manifest.breasts)


def test_a_cohort_on_disk_that_the_profile_does_not_describe_is_refused(tmp_path):
    overrides = {"data.root": str(tmp_path / "cohort"), "data.manifest": str(tmp_path / "manifest"),
                 "data.synth": {"patients": 3, "scale": 0.05, "seed": 4}, "preprocess.workers": 1}
    prepare.prepare_manifest(load_profile("smoke", overrides))
    more = load_profile("smoke", {**overrides, "data.synth.patients": 5})
    with pytest.raises(ValueError, match=r"cohort.json records a cohort written with patients 3, but the "
                                         r"profile asks for patients 5: delete .*cohort and the manifest"):
        prepare.prepare_manifest(more)
    # A cohort from an earlier generator is refused too, even when the manifest was built from it.
    record = tmp_path / "cohort" / "cohort.json"
    record.write_text(record.read_text().replace(f'"version": "{GENERATOR_VERSION}"', '"version": "1"'))
    with pytest.raises(ValueError, match=f"written with version '1', but the profile asks for version "
                                         f"'{GENERATOR_VERSION}'"):
        prepare.prepare_manifest(load_profile("smoke", overrides))


def test_early_stopping_is_announced_with_the_epoch_kept():
    """The stage's last line says whether early stopping ended it and which epoch's weights it keeps."""
    config = memory_stage(epochs=6, patience=2)
    stopper = training.EarlyStopping(2)
    for epoch, loss in enumerate((0.7, 0.6, 0.65, 0.66), start=1):
        stopper.update(loss, epoch)
    note = training.loop.stopping_note(config, stopper, 4)
    assert note == ("stage2: early stopping after epoch 4, the validation loss did not improve for 2 epochs; "
                    "keeping epoch 2 (validation loss 0.6000)")
    full = training.EarlyStopping(2)
    for epoch, loss in enumerate((0.7, 0.6), start=1):
        full.update(loss, epoch)
    assert training.loop.stopping_note(memory_stage(epochs=2), full, 2) == (
        "stage2: ran all 2 of 2 epochs; keeping epoch 2 (validation loss 0.6000)")
