"""A run whose settings differ from its profile file writes to its own folders, named with a short tag, and
says where first; the profile's own run (`make reproduce`) keeps its folders; explicit paths are kept."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from cemlib import cli
from cemlib.core import variants
from cemlib.core.resources import notebooks_dir
from cemlib.core.settings import describe_variant, load_profile, parse_overrides
from cemlib.study import pipeline, steps


def folders(profile) -> dict[str, str]:
    root = Path(profile.root)
    paths = {"data.root": profile.data.root, "data.manifest": profile.data.manifest,
             "preprocess.cache": profile.preprocess.cache, "runs": profile.runs, "reports": profile.reports,
             **{f"external.{n}.root": spec.root for n, spec in profile.external.items()}}
    return {key: Path(value).relative_to(root).as_posix() for key, value in paths.items()}


SMOKE = {"data.root": "data/synthetic", "data.manifest": "data/synthetic/manifest",
         "preprocess.cache": "data/cache", "runs": "runs/smoke", "reports": "reports/smoke",
         "external.inbreast.root": "data/inbreast_replica", "external.cddcesm.root": "data/cddcesm_replica"}


@pytest.mark.parametrize("overrides", [None, {}, {"train.stage1_epochs": 8, "threads": 2},
                                       {"preprocess.workers": 8, "train.workers": 4}])
def test_the_profiles_own_run_keeps_its_folders(overrides, tmp_path):
    """No override, overrides repeating the file, or ones that change only the speed: the study's folders."""
    profile = load_profile("smoke", overrides, tmp_path)
    assert profile.variant is None and describe_variant(profile) is None
    assert folders(profile) == SMOKE


def test_a_cohort_change_moves_every_folder_it_reaches(tmp_path):
    profile = load_profile("smoke", {"data.synth.patients": 40}, tmp_path)
    tag = profile.variant
    assert len(tag) == 6
    assert folders(profile) == {key: (f"data/synthetic-{tag}/manifest" if key == "data.manifest"
                                      else f"{value}-{tag}") for key, value in SMOKE.items()}


def test_a_training_change_reads_the_studys_data_and_writes_its_own_runs(tmp_path):
    profile = load_profile("smoke", {"train.stage1_epochs": 2}, tmp_path)
    tag = profile.variant
    moved = {key: f"{value}-{tag}" if key in ("runs", "reports") else value for key, value in SMOKE.items()}
    assert folders(profile) == moved
    line = describe_variant(profile)
    assert line == (f"settings differ from profile smoke (train.stage1_epochs=2): this run keeps its own "
                    f"folders, suffix -{tag}: reports/smoke-{tag}, runs/smoke-{tag}; other folders are only "
                    "read")


def test_more_replicates_reuse_the_studys_runs_and_write_their_own_report(tmp_path):
    """Replicate 0 is the study's run and the others train in runs/<profile>/replicates/<k>: only the
    report, which summarises all of them, gets its own folder."""
    profile = load_profile("smoke", {"replicates": 5}, tmp_path)
    tag = profile.variant
    assert folders(profile) == {key: f"{value}-{tag}" if key == "reports" else value
                                for key, value in SMOKE.items()}


def test_a_preprocessing_or_split_change_gets_its_own_cache_and_manifest(tmp_path):
    size = load_profile("smoke", {"preprocess.size": [64, 32]}, tmp_path)
    assert folders(size)["preprocess.cache"] == f"data/cache-{size.variant}"
    assert folders(size)["data.root"] == "data/synthetic"
    split = load_profile("smoke", {"seed": 3}, tmp_path)
    assert folders(split)["data.root"] == "data/synthetic"  # the cohort is only read, split anew
    assert folders(split)["data.manifest"] == f"data/synthetic-{split.variant}/manifest"


def test_the_same_changes_give_the_same_folders_from_the_command_line_and_a_notebook(tmp_path):
    from_cli = load_profile("smoke", parse_overrides(["data.synth.patients=40", "train.lr=0.01"]), tmp_path)
    from_notebook = load_profile("smoke", {"train.lr": 0.01, "data.synth.patients": 40}, tmp_path)
    assert from_cli.variant == from_notebook.variant and from_cli == from_notebook
    assert load_profile("smoke", {"data.synth.patients": 41}, tmp_path).variant != from_cli.variant


def test_explicit_paths_are_used_as_given(tmp_path):
    """The Makefile's gpu-check passes its own data, cache and runs folders with other settings."""
    given = {"data.root": "data/gpu_check", "data.manifest": "data/gpu_check/manifest",
             "preprocess.cache": "data/gpu_check/cache", "runs": "runs/gpu_check",
             "data.synth.patients": 200, "device": "cuda"}
    profile = load_profile("paper", given, tmp_path)
    seen = folders(profile)
    assert {key: seen[key] for key in ("data.root", "data.manifest", "preprocess.cache", "runs")} == \
        {key: given[key] for key in ("data.root", "data.manifest", "preprocess.cache", "runs")}
    assert seen["reports"] == f"reports/paper-{profile.variant}"
    only_paths = load_profile("smoke", {"runs": "runs/mine", "reports": "reports/mine"}, tmp_path)
    assert only_paths.variant is None and folders(only_paths)["runs"] == "runs/mine"


def test_a_real_dataset_is_read_where_it_is(tmp_path):
    profile = load_profile("smoke", {"data.dataset": "ge", "data.root": "exams",
                                     "data.manifest": "exams_index", "data.split": [0.6, 0.2, 0.2]}, tmp_path)
    assert folders(profile)["data.root"] == "exams"
    assert folders(profile)["data.manifest"] == "exams_index"  # explicit
    moved = load_profile("paper", {"data.dataset": "ge"}, tmp_path)
    assert folders(moved)["data.root"] == "data/synthetic_paper"  # given as the real dataset's folder
    assert folders(moved)["data.manifest"] == f"data/synthetic_paper-{moved.variant}/manifest"


def test_notebooks_say_where_first(tmp_path, capsys):
    steps.show_profile(load_profile("smoke", {"data.synth.patients": 40}, tmp_path))
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("settings differ from profile smoke (data.synth.patients=40)")
    assert "reports/smoke-" in first and str(tmp_path) not in first  # no machine paths in the report
    steps.show_profile(load_profile("smoke", None, tmp_path))
    assert capsys.readouterr().out.startswith("profile smoke:")


def test_a_verb_with_set_says_where_on_stderr(tmp_path, capsys):
    args = argparse.Namespace(command="train", profile="smoke", overrides=["train.lr=0.02"], workdir=tmp_path)
    cli.announce_variant(args)
    assert capsys.readouterr().err.startswith("cem train: settings differ from profile smoke (train.lr=0.02)")
    cli.announce_variant(argparse.Namespace(command="train", profile="smoke", overrides=[], workdir=tmp_path))
    assert capsys.readouterr().err == ""


def test_the_tag_hashes_only_what_changed():
    assert variants.tag_of({"a": 1, "b": [2]}) == variants.tag_of({"b": [2], "a": 1})
    changed, explicit = variants.changes({"runs": "/r", "train": {"lr": 0.1, "workers": 0}},
                                         {"runs": "/s", "train": {"lr": 0.2, "workers": 8}}, {"runs"})
    assert changed == {"train.lr": 0.2} and explicit == {"runs"}


@pytest.mark.slow
def test_notebook_00_with_an_override_leaves_the_committed_study_alone(tmp_path, capfd):
    """The issue: notebook 00 run with a 40-patient override rewrote reports/smoke and data/synthetic."""
    work = tmp_path / "work"
    study = {work / "reports" / "smoke" / "tables" / "table2_patient_classes.csv": "committed table",
             work / "reports" / "smoke" / "figures" / "fig1_flow.png": "committed figure",
             work / "data" / "synthetic" / "labels.csv": "the study's cohort"}
    for path, text in study.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(notebooks_dir() / "00_cohort.ipynb", notebooks)
    shutil.copytree(notebooks_dir() / "profiles", notebooks / "profiles")
    overrides = {"data.synth.patients": 8, "data.synth.scale": 0.04, "preprocess.workers": 1}
    results = pipeline.run_pipeline(notebooks / "profiles" / "smoke.yaml", ("00_cohort",), report=False,
                                    overrides=overrides, notebook_dir=notebooks, workdir=work)
    assert {path: path.read_text() for path in study} == study
    assert sorted(p.name for p in (work / "reports").iterdir()) == ["smoke", f"smoke-{_tag(work, overrides)}"]
    tag = _tag(work, overrides)
    assert (work / "reports" / f"smoke-{tag}" / "tables" / "table2_patient_classes.csv").is_file()
    assert json.loads((work / f"data/synthetic-{tag}/cohort.json").read_text())["patients"] == 8
    assert capfd.readouterr().out.splitlines()[0].startswith("settings differ from profile smoke")
    executed = nbformat.read(str(results[0].output), as_version=4)
    first = next(o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs
                 if o.get("output_type") == "stream")
    assert first["text"].startswith("settings differ from profile smoke (data.synth.patients=8, "
                                    f"data.synth.scale=0.04): this run keeps its own folders, suffix -{tag}")


def _tag(work: Path, overrides: dict) -> str:
    return load_profile("smoke", overrides, work).variant
