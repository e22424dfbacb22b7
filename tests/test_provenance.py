"""Settings bind to what they made: a trained stage, a manifest and a predictions file are reused only
while the settings and inputs that decided them are unchanged, and otherwise the run stops naming them."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from cemlib import cli, training
from cemlib.core.settings import load_profile
from cemlib.data.cache import TensorCache
from cemlib.data.manifest import manifest_digest
from cemlib.model import checkpoints
from cemlib.model import networks as models
from cemlib.pixels.settings import PreprocessSettings
from cemlib.study import prepare
from cemlib.study import steps as study
from cemlib.training import loop
from tests.test_training import Killed, make_tiny, metrics, profile_for, stage2_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """The training tests' 16-patient cohort, its manifest and 64 x 32 cache."""
    return make_tiny(tmp_path_factory.mktemp("tiny"))


def cem_train(tiny: dict, run_dir: Path, *changes: str) -> int:
    """`cem train` of the CEM mf_concat model into run_dir on the tiny cohort, with extra --set changes."""
    args = ["train", "--profile", "smoke", "--fusion", "mf_concat", "--inputs", "cem",
            "--run-dir", str(run_dir)]
    for key, value in {**tiny["overrides"], "train.stage2_epochs": 1}.items():
        args += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    for change in changes:
        args += ["--set", change]
    return cli.main(args)


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory) -> Path:
    """A run folder where `cem train` finished both stages (stage 1: 1 epoch at lr 0.001)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert cem_train(tiny, run_dir) == 0
    return run_dir


def stamps(run_dir: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in run_dir.rglob("*") if path.is_file()}


def test_changed_lr_and_epochs_on_a_finished_run_stop_naming_each_change(tiny, finished, capsys):
    before = stamps(finished)
    capsys.readouterr()
    assert cem_train(tiny, finished, "train.lr=0.02", "train.stage1_epochs=3") == 1
    err = capsys.readouterr().err
    assert (f"{finished / 'stage1'}: trained with train.lr=0.001 (the profile asks 0.02), "
            "train.stage1_epochs=1 (the profile asks 3); delete the folder to retrain") in err
    assert cem_train(tiny, finished, "train.lr=0.02") == 1
    assert (f"{finished / 'stage1'}: trained with train.lr=0.001, the profile asks 0.02; delete the folder "
            "to retrain") in capsys.readouterr().err
    assert stamps(finished) == before  # nothing resumed, nothing rewritten


def test_a_stage2_setting_names_the_stage2_folder_and_the_training_seed_counts(tiny, finished, capsys):
    before = stamps(finished)
    capsys.readouterr()
    assert cem_train(tiny, finished, "train.stage2_epochs=2") == 1
    assert (f"{finished / 'stage2'}: trained with train.stage2_epochs=1, the profile asks 2; delete the "
            "folder to retrain") in capsys.readouterr().err
    assert cem_train(tiny, finished, "train.seed=5") == 1
    assert f"{finished / 'stage1'}: trained with train.seed=0, the profile asks 5" in capsys.readouterr().err
    assert cem_train(tiny, finished, "augment.rotate=0") == 1
    assert "trained with augment.rotate=10.0, the profile asks 0.0" in capsys.readouterr().err
    assert stamps(finished) == before


def test_settings_that_do_not_change_results_do_not_block_a_reuse(tiny, finished):
    before = stamps(finished)
    assert cem_train(tiny, finished, "train.progress=false", "train.check_every=7") == 0
    assert stamps(finished) == before


def test_each_stage_records_its_settings_and_input_digests(tiny, finished):
    stage1 = json.loads((finished / "stage1" / "settings.json").read_text())["settings"]
    stage2 = json.loads((finished / "stage2" / "settings.json").read_text())["settings"]
    assert stage1["train.lr"] == 0.001 and stage1["train.stage1_epochs"] == 1 and stage1["train.seed"] == 0
    assert stage1["train.milestones"] == [1] and stage1["train.momentum"] == 0.9
    assert stage1[loop.GLOBAL_BATCH] == 8 and stage1["model.fusion"] == models.IMAGE_MODEL
    assert stage1["model.input_size"] == [64, 32] and stage1["inputs"] == "cem"
    assert stage1["augment.rotate"] == 10.0 and stage1["augment.hflip"] == 0.5
    assert stage1["preprocess.digest"] == tiny["cache"].settings.digest()
    assert stage1["data.manifest_digest"] == manifest_digest(tiny["manifest"])
    assert not any(key.endswith(("workers", "progress", "check_every")) for key in stage1)
    assert stage2["train.stage2_epochs"] == 1 and "train.stage1_epochs" not in stage2
    assert stage2["stage1.weights_digest"] == checkpoints.weights_digest(finished / "stage1" / "best.pt")
    for stage, record in (("stage1", stage1), ("stage2", stage2)):
        for name in ("best.pt", "last.pt"):
            assert checkpoints.load_checkpoint(finished / stage / name)["settings"] == record, (stage, name)


def test_manifest_digest_follows_images_labels_and_split(tiny):
    manifest = tiny["manifest"]
    digest = manifest_digest(manifest)
    breasts = manifest.breasts.copy()
    breasts.loc[breasts.index[0], "label"] = 1 - int(breasts.loc[breasts.index[0], "label"])
    assert manifest_digest(dataclasses.replace(manifest, breasts=breasts)) != digest
    images = manifest.images.copy()
    images.loc[images.index[0], "sha256"] = "0" * 64
    assert manifest_digest(dataclasses.replace(manifest, images=images)) != digest
    shuffled = dataclasses.replace(manifest, images=manifest.images.sample(frac=1.0, random_state=1))
    assert manifest_digest(shuffled) == digest  # row order is not content


def test_another_cache_setting_or_manifest_refuses_the_trained_stage(tiny, finished):
    profile = profile_for(tiny)
    arch = training.arch_from_profile(profile, models.IMAGE_MODEL, "cem")
    recorded = loop.recorded_settings(finished / "stage1")
    config = training.StageRun.from_profile(profile, "stage1")
    other_cache = TensorCache(tiny["base"] / "cache", PreprocessSettings(size=(64, 32), window="fixed"))
    wanted = {**training.stage_settings(profile, arch, "cem", tiny["manifest"], other_cache),
              "model.pretrained": None, **loop.training_settings(config)}
    with pytest.raises(loop.SettingsChanged, match=r"trained with preprocess.digest=\w{16}, the profile"):
        loop.check_settings(finished / "stage1", wanted, recorded)
    breasts = tiny["manifest"].breasts.replace({"split": {"val": "test", "test": "val"}})
    moved = dataclasses.replace(tiny["manifest"], breasts=breasts)
    wanted = {**training.stage_settings(profile, arch, "cem", moved, tiny["cache"]), "model.pretrained": None,
              **loop.training_settings(config)}
    with pytest.raises(loop.SettingsChanged, match=r"trained with data.manifest_digest=\w{16}, the profile"):
        loop.check_settings(finished / "stage1", wanted, recorded)


def test_an_interrupted_stage_does_not_resume_under_other_settings(tiny, tmp_path, monkeypatch):
    run_dir = tmp_path / "killed"
    real_evaluate = training.evaluate
    calls = {"n": 0}

    def evaluate_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluate_then_die)
    with pytest.raises(Killed):
        stage2_run(tiny, run_dir)
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    with pytest.raises(loop.SettingsChanged, match=f"{run_dir}: trained with train.lr=0.001, the profile "
                                                   "asks 0.02; delete the folder to retrain"):
        stage2_run(tiny, run_dir, **{"train.lr": 0.02})
    assert checkpoints.load_checkpoint(run_dir / "last.pt")["epoch"] == 1  # not resumed
    assert len(stage2_run(tiny, run_dir).history) == 2  # the same settings resume


def test_stage2_is_refused_when_its_stage1_weights_changed(tiny, tmp_path):
    profile = profile_for(tiny, **{"train.stage2_epochs": 1})
    arch = training.arch_from_profile(profile, models.IMAGE_MODEL, "cem")
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        paths.append(checkpoints.save_model(models.model_from_arch(arch), tmp_path / f"stage1_{seed}.pt"))
    run = tmp_path / "run"
    data = {"manifest": tiny["manifest"], "cache": tiny["cache"]}
    training.train(profile, "mf_concat", "cem", run, stage1_checkpoint=paths[0], **data)
    with pytest.raises(loop.SettingsChanged, match=r"stage2: trained with stage1.weights_digest=\w{16}, "):
        training.train(profile, "mf_concat", "cem", run, stage1_checkpoint=paths[1], **data)
    # The same weights saved again (another file, another time) are the same stage 1.
    copy = checkpoints.save_model(checkpoints.load_model(paths[0]), tmp_path / "copy.pt", note="resaved")
    training.train(profile, "mf_concat", "cem", run, stage1_checkpoint=copy, **data)


def test_a_checkpoint_without_recorded_settings_is_not_reused(tiny, tmp_path):
    run_dir = tmp_path / "old"
    stage2_run(tiny, run_dir)
    last = checkpoints.load_checkpoint(run_dir / "last.pt")
    del last["settings"]
    checkpoints.save_checkpoint(last, run_dir / "last.pt")
    with pytest.raises(loop.SettingsChanged, match="trained before checkpoints recorded their settings"):
        stage2_run(tiny, run_dir)


def test_train_seed_replaces_the_top_level_seed_for_training_only(tiny, tmp_path):
    assert training.StageRun.from_profile(profile_for(tiny), "stage1").seed == 0
    assert training.StageRun.from_profile(profile_for(tiny, seed=2), "stage1").seed == 2
    replicate = profile_for(tiny, seed=2, **{"train.seed": 7})
    assert training.StageRun.from_profile(replicate, "stage2").seed == 7
    assert prepare.plan_dataset(replicate).seed == 2  # the cohort's split keeps the top-level seed
    # train.seed reaches every random draw of training the top-level seed used to.
    by_train_seed = stage2_run(tiny, tmp_path / "a", **{"train.seed": 1})
    by_top_seed = stage2_run(tiny, tmp_path / "b", seed=1)
    assert metrics(by_train_seed.history) == metrics(by_top_seed.history)


def test_prediction_key_follows_the_checkpoint_content_labels_and_split(tiny, tmp_path):
    manifest, cache = tiny["manifest"], tiny["cache"]
    arch = training.arch_from_profile(profile_for(tiny), "mf_concat", "cem")
    torch.manual_seed(0)
    path = checkpoints.save_model(models.model_from_arch(arch), tmp_path / "best.pt")
    key = study.scores_key(path, manifest, cache, "test")
    assert study.scores_key(path, manifest, cache, "test") == key
    stat = path.stat()
    torch.manual_seed(1)  # retrained under the same name, size and time stamp
    checkpoints.save_model(models.model_from_arch(arch), path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    retrained = study.scores_key(path, manifest, cache, "test")
    assert retrained != key
    breasts = manifest.breasts.copy()
    breasts.loc[breasts.index[0], "label"] = 1 - int(breasts.loc[breasts.index[0], "label"])
    assert study.scores_key(path, dataclasses.replace(manifest, breasts=breasts), cache, "test") != retrained
    other = TensorCache(cache.cache_dir, PreprocessSettings(size=(64, 32), window="fixed"))
    assert study.scores_key(path, manifest, other, "test") != retrained
    assert study.scores_key(path, manifest, cache, "val") != retrained


def test_a_manifest_split_with_another_seed_or_ratios_is_refused(tmp_path):
    overrides = {"data.root": str(tmp_path / "cohort"), "data.manifest": str(tmp_path / "manifest"),
                 "data.synth": {"patients": 3, "scale": 0.05, "seed": 4}, "preprocess.workers": 1}
    prepare.prepare_manifest(load_profile("smoke", overrides))
    with pytest.raises(ValueError, match=r"manifest made with seed 0 \(the profile asks 1\); delete the"):
        prepare.prepare_manifest(load_profile("smoke", {**overrides, "seed": 1}))
    with pytest.raises(ValueError, match=r"data.split \[0.7, 0.1, 0.2\] \(the profile asks \[0.5, 0.25"):
        prepare.prepare_manifest(load_profile("smoke", {**overrides, "data.split": [0.5, 0.25, 0.25]}))
    # The training seed is not the split's: another train.seed reuses the manifest.
    prepare.prepare_manifest(load_profile("smoke", {**overrides, "train.seed": 9}))


def test_retraining_a_shared_stage1_names_every_fusion_trained_from_it_at_once(tiny, tmp_path):
    """One message lists all the fusion folders a retrained stage 1 outdates, not one folder per rerun."""
    data = {"manifest": tiny["manifest"], "cache": tiny["cache"]}
    first = load_profile("smoke", {**tiny["overrides"], "runs": str(tmp_path), "train.stage2_epochs": 1})
    for fusion in ("none", "mf_concat"):
        training.train_with_shared_stage1(first, fusion, "cem", **data)
    fusions = [training.fusion_dir(first, fusion, "cem") for fusion in ("none", "mf_concat")]
    changed = load_profile("smoke", {**tiny["overrides"], "runs": str(tmp_path), "train.stage2_epochs": 1,
                                     "train.lr": 0.02})
    with pytest.raises(loop.SettingsChanged) as refused:
        training.train_with_shared_stage1(changed, "mf_concat", "cem", **data)
    assert "trained with train.lr=0.001, the profile asks 0.02" in str(refused.value)
    assert all(str(folder) in str(refused.value) for folder in fusions)
    stage1 = training.stage1_dir(first, "cem")
    shutil.rmtree(stage1)
    with pytest.raises(loop.SettingsChanged, match="another stage 1 than these were trained from") as stale:
        training.train_with_shared_stage1(changed, "mf_concat", "cem", **data)
    assert all(str(folder / "stage2") in str(stale.value) for folder in fusions)
