"""Nothing lost, nothing passed that is broken: a settings typo keeps the manifest whole, broken predictions
are refused, a second writer of a run folder or manifest is refused, a report comes only from notebooks
that finished, and bad settings or label cells fail in one line."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from cemlib import cli
from cemlib.core.fileio import LOCK_FILE, FolderInUse, sha256_file
from cemlib.data.cache import TensorCache
from cemlib.data.datasets import PatientDataset
from cemlib.data.manifest import Manifest
from cemlib.pixels.settings import PreprocessSettings
from tests.test_cache import make_manifest
from tests.test_verb_outputs import one_line_error

ROOT = Path(__file__).resolve().parents[1]
MANIFEST_FILES = ("images.csv", "breasts.csv", "exclusions.csv", "manifest.json")


def digests(folder: Path) -> dict[str, str]:
    """sha256 of each manifest file: the proof that nothing rewrote it."""
    return {name: sha256_file(folder / name) for name in MANIFEST_FILES}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """Three synthetic exams saved as a manifest folder."""
    return make_manifest(tmp_path / "data", patients=3).save(tmp_path / "manifest")


def preprocess(saved: Path, cache: Path, *size: int) -> list[str]:
    return ["preprocess", "--manifest", str(saved), "--cache", str(cache), "--set",
            f"preprocess.size=[{size[0]},{size[1]}]", "--workers", "0", "--no-progress"]


# ---------------------------------------------------------------------------------------- 1 settings typo

def test_a_size_typo_is_refused_naming_the_setting_and_the_manifest_stays_whole(saved, tmp_path, capsys):
    before = digests(saved)
    assert cli.main(preprocess(saved, tmp_path / "cache", 2048, 1024)) == 1
    err = one_line_error(capsys, "preprocess")
    assert "preprocess.size=[2048, 1024]" in err and "all 12 image view(s)" in err
    assert digests(saved) == before
    assert not list((tmp_path / "cache").rglob("*.failed.json"))  # nothing remembered from that run
    assert cli.main(preprocess(saved, tmp_path / "cache", 64, 32)) == 0  # the fixed setting recovers
    assert "built 12, skipped 0, failed 0" in capsys.readouterr().out
    assert digests(saved) == before and len(Manifest.load(saved).breasts) == 6


def test_failures_stay_with_the_cache_and_the_datasets_apply_them(saved, tmp_path, capsys):
    manifest = Manifest.load(saved)
    bad = manifest.root / "P001/L_MLO_LE.dcm"
    bad.write_bytes(b"not a dicom")  # the manifest's sha256 is updated: the file itself is the problem
    manifest.images.loc[manifest.images["path"] == "P001/L_MLO_LE.dcm", ["sha256", "size", "mtime_ns"]] = \
        [sha256_file(bad), -1, -1]
    manifest.save(saved)
    before = digests(saved)
    assert cli.main(preprocess(saved, tmp_path / "cache", 64, 32)) == 0
    assert "excluded test/P001" in capsys.readouterr().out
    assert digests(saved) == before  # the failure is the cache's, not the manifest's
    cache = TensorCache(tmp_path / "cache", PreprocessSettings(size=(64, 32)))
    assert PatientDataset(Manifest.load(saved), cache, inputs="le").patients == ["P000", "P002"]


def test_fill_cache_of_the_study_never_saves_the_manifest(saved, tmp_path):
    from cemlib.core.settings import load_profile
    from cemlib.data.cache import SettingsFailEveryImage
    from cemlib.study import prepare

    before = digests(saved)
    for size in ([2048, 1024], [64, 32]):
        profile = load_profile("smoke", {"preprocess.cache": str(tmp_path / "cache"), "preprocess.size": size,
                                         "data.manifest": str(saved)})
        manifest = Manifest.load(saved)
        if size[0] == 2048:
            with pytest.raises(SettingsFailEveryImage, match=r"preprocess\.size=\[2048, 1024\]"):
                prepare.fill_cache(profile, manifest, workers=0, progress=False)
        else:
            assert prepare.fill_cache(profile, manifest, workers=0, progress=False)[1].built == 12
    assert digests(saved) == before


# ------------------------------------------------------------------------------------ 2 broken predictions

@pytest.fixture
def scored(tmp_path: Path) -> dict[str, Path]:
    """A manifest's breasts.csv (20 patients) and the test-split predictions of two models, all valid."""
    from tests.test_tables import make_breasts, make_predictions

    breasts = make_breasts(20)
    (tmp_path / "manifest").mkdir()
    breasts.to_csv(tmp_path / "manifest" / "breasts.csv", index=False)
    predictions = make_predictions(breasts, models=("LE none", "CEM none"))
    return {"manifest": tmp_path / "manifest", "predictions": predictions[predictions["split"] == "test"],
            "out": tmp_path / "tables", "csv": tmp_path / "scores.csv"}


def tables_args(scored: dict, frame) -> list[str]:
    frame.to_csv(scored["csv"], index=False)
    return ["tables", "--predictions", str(scored["csv"]), "--manifest", str(scored["manifest"]),
            "--out", str(scored["out"]), "--ci-method", "wilson"]


def test_valid_predictions_make_tables(scored):
    assert cli.main(tables_args(scored, scored["predictions"])) == 0


@pytest.mark.parametrize("broken, expected", [
    ("missing", r"2 breast\(s\) of the manifest have no prediction \(first: synthetic/P016/L, model LE none"),
    ("added", r"1 breast row\(s\) not in the manifest \(first: synthetic/P999/L, model LE none"),
    ("score", r"1 row\(s\) with a score outside \[0, 1\] \(first: synthetic/P016/R, model CEM none, "
              r"score 1\.7\)"),
    ("split", r"1 breast row\(s\) in another split than the manifest's \(first: synthetic/P016/L"),
])
def test_broken_predictions_are_refused_with_the_count_and_a_breast(scored, capsys, broken, expected):
    frame = scored["predictions"].reset_index(drop=True)
    if broken == "missing":
        frame = frame[~((frame["patient_id"] == "P016") & (frame["model"] == "LE none"))]
    elif broken == "added":
        extra = frame.iloc[:1].assign(patient_id="P999")
        frame = pd.concat([frame, extra])
    elif broken == "score":
        frame.loc[(frame["patient_id"] == "P016") & (frame["side"] == "R") & (frame["model"] == "CEM none"),
                  "score"] = 1.7
    else:
        frame.loc[0, "split"] = "val"
    assert cli.main(tables_args(scored, frame)) == 1
    assert re.search(expected, one_line_error(capsys, "tables"))
    assert not scored["out"].exists() or not list(scored["out"].iterdir())


def test_missing_breasts_pass_only_when_told(scored, capsys):
    frame = scored["predictions"]
    frame = frame[frame["patient_id"] != "P016"]
    assert cli.main([*tables_args(scored, frame), "--allow-missing"]) == 0
    assert "4 manifest breast row(s) have no prediction" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- 3 one writer

@contextlib.contextmanager
def held_by_another_process(folder: Path, what: str = "cem train") -> Iterator[int]:
    """`folder` locked by a second process, as a running verb holds it; yields that process's pid."""
    code = ("import sys\nfrom cemlib.core.fileio import folder_lock\n"
            "with folder_lock(sys.argv[1], sys.argv[2]):\n"
            "    print('locked', flush=True)\n    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder), what], cwd=ROOT, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_manifest_being_written_is_not_written_by_a_second_process(saved):
    manifest = Manifest.load(saved)
    with held_by_another_process(saved, "cem manifest") as pid:
        with pytest.raises(FolderInUse, match=rf"{saved} is being written by pid {pid} \(cem manifest\)"):
            manifest.save(saved)
    manifest.save(saved)  # released: the next writer goes ahead
    assert not (saved / LOCK_FILE).exists()


def test_a_cache_being_filled_is_not_filled_by_a_second_preprocess(saved, tmp_path, capsys):
    folder = TensorCache(tmp_path / "cache", PreprocessSettings(size=(64, 32))).folder
    with held_by_another_process(folder, "cem preprocess") as pid:
        assert cli.main(preprocess(saved, tmp_path / "cache", 64, 32)) == 1
        err = one_line_error(capsys, "preprocess")
        assert f"is being written by pid {pid} (cem preprocess)" in err
    assert not list(folder.rglob("*.npy"))
    assert cli.main(preprocess(saved, tmp_path / "cache", 64, 32)) == 0


def test_the_lock_of_a_killed_process_is_taken_over(saved):
    (saved / LOCK_FILE).write_text("pid 99999999 (cem manifest)\n")  # what a kill -9 leaves behind
    Manifest.load(saved).save(saved)
    assert not (saved / LOCK_FILE).exists()


@pytest.mark.slow
def test_a_second_cem_train_into_a_run_folder_is_refused(tmp_path, capsys):
    from tests.factories import tiny_study
    from tests.test_verb_outputs import SIZE, train_args

    tiny = tiny_study(tmp_path / "tiny", patients=4, seed=7, scale=0.05, size=SIZE)
    run_dir = tmp_path / "run"
    with held_by_another_process(run_dir / "stage2") as pid:
        assert cli.main([*train_args(tiny, run_dir), "--set", "data.split=[0.5, 0.25, 0.25]"]) == 1
        assert f"run/stage2 is being written by pid {pid} (cem train)" in one_line_error(capsys, "train")
    assert not list(run_dir.rglob("*.pt")) and not list(run_dir.rglob("log.csv"))


# ------------------------------------------------------------------------------ 4 half-run notebook report

class Killed(BaseException):
    """What a kill -9 amounts to for the pipeline: nothing after the line it hits runs."""


@pytest.mark.slow
def test_a_killed_step_keeps_the_report_off_until_it_reruns(tmp_path, monkeypatch):
    import papermill

    from cemlib.core.settings import load_profile
    from cemlib.study import pipeline
    from tests.test_pipeline import write_notebook

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("a", "b"):
        write_notebook(notebooks / f"{name}.ipynb", f"print('table of {name}')")
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"name: tiny\nreports: {tmp_path / 'reports'}\nruns: {tmp_path / 'runs'}\n")
    settings = load_profile(profile)
    run = dict(steps=("a", "b"), report=False, notebook_dir=notebooks)
    pipeline.run_pipeline(profile, **run)
    assert pipeline.unfinished_step(settings, ("a", "b")) is None

    write_notebook(notebooks / "a.ipynb", "print('table of a, second run')")
    real = papermill.execute_notebook

    def killed_in_b(notebook, output, **kwargs):
        if Path(notebook).stem == "b":
            Path(output).write_text("{}")  # half written
            raise Killed
        return real(notebook, output, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", killed_in_b)
    with pytest.raises(Killed):
        pipeline.run_pipeline(profile, **run)
    assert pipeline.unfinished_step(settings, ("a", "b")) == "b"
    with pytest.raises(ValueError, match=r"step b did not finish .*resumes at b"):
        pipeline.export_finished_report(settings, ("a", "b"))
    monkeypatch.setattr(papermill, "execute_notebook", real)
    assert [r.status for r in pipeline.run_pipeline(profile, **run)] == ["skipped", "ran"]
    assert pipeline.unfinished_step(settings, ("a", "b")) is None


def test_report_only_refuses_before_every_step_finished(tmp_path, capsys):
    assert cli.main(["reproduce", "--workdir", str(tmp_path), "--report-only"]) == 1
    err = one_line_error(capsys, "reproduce")
    assert "step 00_cohort did not finish" in err


# ------------------------------------------------------------------------------ 5 settings in one line

@pytest.mark.parametrize("text, expected", [
    ("name: broken\ntrain: {lr: 0.1\n", r"broken\.yaml: not valid YAML at line \d+, column \d+: "),
    ("name: evil\nseed: !!python/object/apply:os.system ['true']\n",
     r"evil\.yaml: not valid YAML at line 2, column 7: could not determine a constructor for the tag "
     r"'tag:yaml\.org,2002:python/object/apply:os\.system'"),
])
def test_a_malformed_profile_is_one_settings_error_naming_the_file(tmp_path, capsys, text, expected):
    name = text.split("\n")[0].removeprefix("name: ")
    profile = tmp_path / f"{name}.yaml"
    profile.write_text(text)
    assert cli.main(["preprocess", "--profile", str(profile)]) == 2
    assert re.search(expected, one_line_error(capsys, "preprocess"))


def test_a_broken_set_value_is_one_settings_error_naming_the_key(capsys):
    assert cli.main(["train", "--profile", "smoke", "--set", "train.lr=[1,"]) == 2
    assert "--set train.lr: not valid YAML" in one_line_error(capsys, "train")


# ------------------------------------------------------------------------------------------- 6 minor ones

def test_zero_replicates_and_negative_workers_are_refused(tmp_path, capsys):
    assert cli.main(["reproduce", "--workdir", str(tmp_path), "--set", "replicates=0", "--no-report"]) == 2
    assert "setting 'replicates' must be at least 1, got 0" in one_line_error(capsys, "reproduce")
    with pytest.raises(SystemExit) as exited:
        cli.main(["preprocess", "--profile", "smoke", "--workers", "-3"])
    assert exited.value.code == 2 and "--workers: must be 0 or more, got -3" in capsys.readouterr().err


def test_formula_cells_of_a_label_sheet_never_reach_breasts_csv(tmp_path):
    from cemlib.data import sources
    from tests.test_sources_internal import write_ge_cohort

    root = write_ge_cohort(tmp_path / "cohort", n_patients=2)
    labels = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    labels.loc[0, "pathology"] = '=HYPERLINK("http://example.invalid/x","click")'
    labels.loc[1, "birads"] = "@SUM(1+1)"
    labels.loc[2, "density"] = "+cmd|' /C calc'!A0"
    labels.to_csv(root / "labels.csv", index=False)
    manifest, _ = sources.build(root, "ge", seed=0, workers=1)
    written = manifest.save(tmp_path / "manifest") / "breasts.csv"
    assert not re.search(r"(^|,)[=@+]", written.read_text(), re.MULTILINE)
    assert len(manifest.breasts) == 4  # the breasts stay, without the formula text
