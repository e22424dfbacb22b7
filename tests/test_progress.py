"""Progress of long loops: counts, time and time left in the progress file that `cem reproduce` prints, from
the cohort writer, the cache and the scoring of a manifest, and through a papermill run to the terminal."""

from __future__ import annotations

import time

import pytest
import torch

from cemlib.core import progress
from cemlib.data.cache import TensorCache
from cemlib.inference import scoring
from cemlib.model import networks
from cemlib.pixels.settings import PreprocessSettings
from cemlib.synthetic.writer import write_patients
from tests.factories import save_calibrated_checkpoint, tiny_study
from tests.test_pipeline import run, write_notebook

SIZE = (64, 32)


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.log"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(path))
    return path


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_line_gives_count_share_time_and_time_left():
    assert progress.progress_line("synth", 120, 450, "patient", 31.0, 85.2) == \
        "synth: 120/450 patients (26%), 31 s, about 1 min 25 s left"
    assert progress.progress_line("preprocess", 1840, 1840, "view", 3725.0) == \
        "preprocess: 1,840 views in 1 h 02 min"
    assert progress.progress_line("predict", 0, 5, "batch", 0.0) == "predict: 0/5 batches (0%), 0 s"


def test_lines_come_every_few_seconds_and_at_the_end(progress_file, monkeypatch):
    clock = iter([0.0, 6.0, 7.0, 8.0, 12.0, 13.0, 14.0])
    monkeypatch.setattr(progress, "clock", lambda: next(clock))
    with progress.Progress(5, "demo", "item", bar=False) as counter:
        for _ in range(5):
            counter.update()
    assert lines(progress_file) == [
        "demo: 1/5 items (20%), 6 s",
        "demo: 4/5 items (80%), 12 s, about 2 s left",
        "demo: 5 items in 14 s",
    ]


def test_a_disabled_count_writes_nothing(progress_file):
    assert list(progress.track(range(3), desc="quiet", disable=True)) == [0, 1, 2]
    assert lines(progress_file) == []


def _square(n: int) -> int:
    return n * n


@pytest.mark.parametrize("workers", [0, 2])
def test_the_cohort_writer_reports_patients_written(progress_file, workers):
    assert write_patients(_square, [1, 2, 3], workers, "synth") == [1, 4, 9]
    assert lines(progress_file) == ["synth: 3 patients in 0 s"]


def test_preprocessing_and_scoring_report_their_counts(tmp_path, monkeypatch):
    study = tiny_study(tmp_path / "tiny", patients=4, seed=5, scale=0.05, size=SIZE)
    path = tmp_path / "progress.log"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(path))
    cache = TensorCache(tmp_path / "cache2", PreprocessSettings(size=SIZE))
    cache.fill(study["manifest"], workers=0)
    torch.manual_seed(0)
    model = networks.build_model("mf_concat", 2, width=0.0625, global_pool=True, head=(16, 8),
                                 input_size=SIZE)
    checkpoint = save_calibrated_checkpoint(model, study, "concat", "cem", SIZE)
    scoring.predict(checkpoint, study["manifest"], cache, batch_size=2)
    written = lines(path)
    assert written[0].startswith("preprocess: 16 views in")
    assert written[-1].startswith(f"scoring CEM mf_concat on {study['manifest'].dataset}: 2 batches in")


def test_a_notebook_kernels_progress_reaches_the_terminal_while_papermill_runs(tmp_path, capfd):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "b.ipynb", "pass")
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"name: tiny\nreports: {tmp_path / 'reports'}\nruns: {tmp_path / 'runs'}\n")
    body = ("import time\nfrom cemlib.core.progress import track\n"
            "for _ in track(range(3), desc='demo', unit='item', every=0):\n    time.sleep(0.3)")
    write_notebook(notebooks / "a.ipynb", body)
    started = time.perf_counter()
    run(notebooks, profile)
    out = capfd.readouterr().out
    assert "      demo: 1/3 items (33%)" in out and "      demo: 3 items in 1 s" in out
    assert out.index("demo: 3 items") < out.index("[1/2] a: done")
    assert time.perf_counter() - started < 60
