"""Replicates: every model trained under seeds base + k, the cohort, split and cache unchanged."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cemlib.core.settings import SettingsError, load_profile
from cemlib.study import steps as study
from cemlib.study.commands import reproduce
from cemlib.training.loop import StageRun


def test_replicate_k_trains_under_base_plus_k_in_its_own_folder(tmp_path):
    cfg = load_profile("smoke", {"replicates": 3}, tmp_path)
    assert study.replicate_count(cfg) == 3
    assert study.replicate_settings(cfg, 0) is cfg
    second = study.replicate_settings(cfg, 2)
    assert Path(second.runs) == Path(cfg.runs) / "replicates" / "2"
    assert StageRun.from_profile(cfg, "stage1").seed == cfg.seed
    assert StageRun.from_profile(second, "stage2").seed == cfg.seed + 2
    # what fixes the cohort, split and cache stays as it was
    assert (second.seed, second.data, second.preprocess, second.reports) == (
        cfg.seed, cfg.data, cfg.preprocess, cfg.reports)
    assert study.predictions_dir(second) == Path(cfg.runs) / "replicates" / "2" / "predictions"


def test_train_seed_is_the_base_when_set(tmp_path):
    cfg = load_profile("smoke", {"train.seed": 7, "replicates": 2}, tmp_path)
    assert StageRun.from_profile(cfg, "stage1").seed == 7
    assert StageRun.from_profile(study.replicate_settings(cfg, 1), "stage1").seed == 8
    assert study.replicate_settings(cfg, 1).seed == cfg.seed  # the split's seed


def test_replicate_seeds_name_each_replicates_training_seed(tmp_path):
    """The seeds claims_replicates.csv is keyed by: the seed each replicate's models were trained under."""
    for overrides in ({"replicates": 3}, {"replicates": 3, "train.seed": 7}):
        cfg = load_profile("smoke", overrides, tmp_path)
        trained = [StageRun.from_profile(study.replicate_settings(cfg, k), "stage1").seed for k in range(3)]
        assert study.replicate_seeds(cfg) == trained
    assert study.replicate_seeds(load_profile("smoke", {"train.seed": 7}, tmp_path)) == [7]


def test_one_replicate_by_default_and_bad_counts_refused(tmp_path):
    assert study.replicate_count(load_profile("smoke", None, tmp_path)) == 1
    with pytest.raises(ValueError, match="at least 1"):
        study.replicate_count(load_profile("smoke", {"replicates": 0}, tmp_path))
    with pytest.raises(SettingsError, match="replicates"):
        load_profile("smoke", {"replicates": "many"}, tmp_path)


def test_reproduce_option_sets_the_profile_key(monkeypatch):
    seen = {}
    monkeypatch.setattr(reproduce, "run_pipeline", lambda *a, **k: seen.update(k))
    parser = argparse.ArgumentParser()
    reproduce.configure_parser(parser)
    assert reproduce.run_cli(parser.parse_args(["--replicates", "4", "--set", "train.lr=0.01"])) == 0
    assert seen["overrides"] == {"train.lr": 0.01, "replicates": 4}
    with pytest.raises(SystemExit):
        parser.parse_args(["--replicates", "0"])
