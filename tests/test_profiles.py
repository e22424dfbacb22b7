"""Profiles: one typed, frozen settings tree; unknown keys and wrong types refused with exit code 2."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from cemlib.cli import main as cem
from cemlib.core import settings as profiles
from cemlib.core.resources import profiles_dir
from cemlib.core.settings import SettingsError, load_profile


@pytest.mark.parametrize(("setting", "named", "suggested"), [
    ("train.stage1_epoch=5", "train.stage1_epoch", "train.stage1_epochs"),
    ("trian.lr=0.1", "trian", "train"),
    ("model.widht=0.5", "model.widht", "model.width"),
])
def test_a_mistyped_key_exits_2_and_names_the_closest_one(setting, named, suggested, capsys):
    assert cem(["train", "--profile", "smoke", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert f"unknown setting '{named}'" in err and f"did you mean '{suggested}'?" in err


@pytest.mark.parametrize(("setting", "words"), [
    ("train.batch_size=eight", "'train.batch_size' must be a whole number, got 'eight'"),
    ("train.lr=[1, 2]", "'train.lr' must be a number"),
    ("train.amp=1", "'train.amp' must be true or false"),
    ("preprocess.size=128", "'preprocess.size' must be a list of int values"),
])
def test_a_value_of_the_wrong_type_exits_2(setting, words, capsys):
    assert cem(["train", "--profile", "smoke", "--set", setting]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("verb", [["train"], ["bench", "stats"], ["reproduce"], ["preprocess"]])
def test_every_verb_that_reads_a_profile_takes_and_checks_set(verb, capsys):
    assert cem([*verb, "--profile", "smoke", "--set", "trian.lr=0.1"]) == 2
    assert "did you mean 'train'?" in capsys.readouterr().err


def test_an_unknown_key_in_the_yaml_names_the_file(tmp_path, capsys):
    tree = yaml.safe_load((profiles_dir() / "smoke.yaml").read_text())
    tree["model"]["arch"] = "vgg16_bn"
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(SettingsError, match=rf"{path}: unknown setting 'model.arch'"):
        load_profile(path)
    assert cem(["train", "--profile", str(path)]) == 2
    assert "model.arch" in capsys.readouterr().err


def test_the_shipped_profiles_load_as_typed_frozen_trees():
    for name in ("smoke", "paper"):
        profile = load_profile(name)
        assert isinstance(profile.train.lr, float) and isinstance(profile.train.milestones, tuple)
        assert Path(profile.data.root).is_absolute() and Path(profile.runs).is_absolute()
        with pytest.raises(dataclasses.FrozenInstanceError):
            profile.train.lr = 1.0  # type: ignore[misc]
    smoke = load_profile("smoke", {"train.stage2_epochs": 2, "data.synth.patients": 12})
    assert smoke.train.stage2_epochs == 2 and smoke.data.synth.patients == 12
    assert smoke.train.stage1_epochs == load_profile("smoke").train.stage1_epochs


def test_the_tree_reads_as_a_mapping_of_the_keys_set():
    profile = load_profile("smoke")
    assert profile["train"]["batch_size"] == profile.train.batch_size
    assert profile["root"] == profile.root and "pretrained" not in profile["model"]
    assert profile.get("augment") is None
    plain = profile.as_dict()
    assert plain["preprocess"]["size"] == [128, 64] and yaml.safe_dump(plain)
    assert profiles.build_settings({k: v for k, v in plain.items() if k not in ("root", "source")}) == \
        dataclasses.replace(profile, root=None, source=None)


def test_every_key_of_the_shipped_profiles_is_one_the_tree_defines():
    """A key the tree does not define is refused, so a profile holds only keys code reads."""
    for path in profiles_dir().glob("*.yaml"):
        profiles.build_settings(yaml.safe_load(path.read_text()), str(path))
