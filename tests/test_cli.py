"""The `cem` command as a user meets it: its version, suggestions for mistyped names, steps by number or
name, defaults in every option's help, and missing data named before any notebook runs."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from cemlib import __version__, cli
from cemlib.study import pipeline

ROOT = Path(__file__).resolve().parents[1]
#: Options of verbs maintained elsewhere whose help does not state a default yet (none = not given).
KNOWN_GAPS: set[tuple[str, str]] = set()


def verb_parser(verb: str) -> argparse.ArgumentParser:
    parser = cli.build_parser(verb)
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]


def test_version_names_the_checkout_commit(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    assert capsys.readouterr().out.startswith(f"cem {__version__} (git {sha.strip()[:12]}")


class FakeDistribution:
    def __init__(self, record: dict | None):
        self.record = record

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.record) if self.record is not None else None


@pytest.mark.parametrize(("record", "said"), [
    ({"url": "https://example.org/cemlib.git", "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef"}},
     "(installed package, git 0123456789ab)"),
    (None, "(installed package; no git commit recorded)"),
])
def test_version_of_an_installed_package(record, said, monkeypatch):
    monkeypatch.setattr(cli, "clone_root", lambda: None)
    monkeypatch.setattr(cli.importlib.metadata, "distribution", lambda name: FakeDistribution(record))
    assert cli.version_text() == f"cem {__version__} {said}"


@pytest.mark.parametrize(("argv", "said"), [
    (["reproduce", "--profile", "smok"], "unknown profile 'smok'; did you mean 'smoke'?"),
    (["check", "--profile", "gpu-study"], "did you mean 'gpu_study'?"),
    (["reproduc"], "unknown command 'reproduc'; did you mean 'reproduce'?"),
    (["train", "--fusion", "mf_concta"], "invalid choice: 'mf_concta'; did you mean 'mf_concat'?"),
    (["reproduce", "--steps", "trainig"], "unknown step 'trainig'; did you mean 'training'?"),
])
def test_a_mistyped_name_suggests_the_closest(argv, said, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exited:  # argparse's own errors
        code = exited.code
    err = capsys.readouterr().err
    assert code == 2
    assert said in err and "['" not in err, err


@pytest.mark.parametrize(("words", "steps"), [
    (["2,3"], ("02_training", "03_ablations")),
    (["02"], ("02_training",)),
    (["training", "0"], ("00_cohort", "02_training")),
    (["3-5"], ("03_ablations", "04_external_validation", "05_cams")),
    (["external"], ("04_external_validation",)),
    (["05_cams", "01_preprocessing"], ("01_preprocessing", "05_cams")),
])
def test_steps_by_number_name_or_range(words, steps):
    assert pipeline.resolve_steps(words) == steps
    args = cli.build_parser("reproduce").parse_args(["reproduce", "--steps", *words])
    assert pipeline.resolve_steps([s for named in args.steps for s in named]) == steps


@pytest.mark.parametrize("word", ["9", "6-7", "x"])
def test_a_step_that_does_not_exist_is_refused_with_the_list(word):
    with pytest.raises(ValueError, match="steps: 0 cohort, 1 preprocessing, 2 training"):
        pipeline.resolve_steps([word])


def test_every_option_states_its_default():
    missing = set()
    for verb in cli.COMMANDS:
        for action in verb_parser(verb)._actions:
            if action.nargs == 0 or action.required or action.help == argparse.SUPPRESS:
                continue  # a flag is off unless given; a required option has no default
            if not action.help or "default" not in cli.help_text(action).lower():
                missing.add((verb, action.option_strings[0] if action.option_strings else action.dest))
    assert missing <= KNOWN_GAPS, sorted(missing - KNOWN_GAPS)


def test_defaults_are_added_to_the_help_where_not_written():
    text = verb_parser("predict").format_help()
    assert "--batch-size BATCH_SIZE\n" in text and "(default: 16)" in text


def no_kernel(*args, **kwargs):
    raise AssertionError("a notebook was started")


@pytest.mark.parametrize(("settings", "key"), [
    (["data.dataset=ge"], "data.root"),
    (["external.cddcesm.synth=null"], "external.cddcesm.root"),
])
def test_reproduce_names_a_missing_dataset_before_any_kernel_starts(settings, key, tmp_path, capsys,
                                                                     monkeypatch):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    missing = tmp_path / "not_here"
    argv = ["reproduce", "--profile", "smoke", "--workdir", str(tmp_path), "--no-report",
            "--set", f"{key}={missing}"]
    for setting in settings:
        argv += ["--set", setting]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cem reproduce: error: {key} {missing} not found"), err


def test_a_synthetic_dataset_needs_no_folder(tmp_path):
    profile = pipeline.load_profile("smoke", workdir=tmp_path)
    pipeline.check_data_roots(profile)  # written when missing: nothing to refuse


def test_preprocess_names_the_setting_of_a_missing_manifest(tmp_path, capsys):
    """No manifest where the profile says: the error names data.manifest (or --manifest) and the folder."""
    missing = tmp_path / "nowhere"
    assert cli.main(["preprocess", "--profile", "smoke", "--set", f"data.manifest={missing}",
                     "--set", f"preprocess.cache={tmp_path / 'cache'}"]) == 1
    assert f"data.manifest: no manifest in {missing}" in capsys.readouterr().err
    assert cli.main(["preprocess", "--manifest", str(missing), "--cache", str(tmp_path / "cache")]) == 1
    assert f"--manifest: no manifest in {missing}" in capsys.readouterr().err
