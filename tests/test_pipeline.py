"""The papermill pipeline: runs notebooks in order, skips unchanged steps, resumes after a failure."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from cemlib.core.settings import build_settings
from cemlib.study import pipeline


def write_notebook(path: Path, body: str) -> None:
    """A notebook with a `parameters` cell (profile, overrides) and one body cell."""
    params = nbformat.v4.new_code_cell('profile = "smoke"\noverrides = {}')
    params.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, str(path))


@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    """Two notebooks and a profile whose reports/runs live in tmp_path."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    log = tmp_path / "log.txt"
    write_notebook(notebooks / "a.ipynb", f"open({str(log)!r}, 'a').write('a')")
    write_notebook(notebooks / "b.ipynb", f"open({str(log)!r}, 'a').write('b')")
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"name: tiny\nreports: {tmp_path / 'reports'}\nruns: {tmp_path / 'runs'}\n")
    return notebooks, profile, log


def run(notebooks: Path, profile: Path, **kwargs):
    return pipeline.run_pipeline(profile, steps=("a", "b"), report=False, notebook_dir=notebooks, **kwargs)


def test_runs_in_order_then_skips_unchanged_steps(tiny_study, capfd):
    notebooks, profile, log = tiny_study
    first = run(notebooks, profile)
    assert [r.status for r in first] == ["ran", "ran"]
    assert "without encryption" not in capfd.readouterr().err  # the kernel listens on local sockets
    assert log.read_text() == "ab"
    second = run(notebooks, profile)
    assert [r.status for r in second] == ["skipped", "skipped"]
    assert log.read_text() == "ab"
    assert all(r.output.exists() for r in second)


def test_a_changed_step_reruns_with_everything_after_it(tiny_study):
    notebooks, profile, log = tiny_study
    run(notebooks, profile)
    write_notebook(notebooks / "a.ipynb", f"open({str(log)!r}, 'a').write('A')")
    results = run(notebooks, profile)
    assert [r.status for r in results] == ["ran", "ran"]
    assert log.read_text() == "abAb"


def test_failure_names_the_executed_notebook_and_rerun_resumes(tiny_study):
    notebooks, profile, log = tiny_study
    write_notebook(notebooks / "b.ipynb", "raise ValueError('broken step')")
    with pytest.raises(pipeline.StepFailed) as excinfo:
        run(notebooks, profile)
    message = str(excinfo.value)
    assert "step b failed" in message and "broken step" in message
    assert str(Path(profile).parent / "reports" / "executed" / "b.ipynb") in message
    write_notebook(notebooks / "b.ipynb", f"open({str(log)!r}, 'a').write('b')")
    results = run(notebooks, profile)
    assert [r.status for r in results] == ["skipped", "ran"]
    assert log.read_text() == "ab"


def test_parameters_reach_the_notebook(tiny_study, tmp_path):
    notebooks, profile, _ = tiny_study
    out = tmp_path / "seen.txt"
    write_notebook(notebooks / "a.ipynb", f"open({str(out)!r}, 'w').write(repr(overrides))")
    run(notebooks, profile, overrides={"train.stage2_epochs": 1})
    assert out.read_text() == "{'train.stage2_epochs': 1}"


def test_report_exports_html_and_pdf_with_code_hidden(tmp_path):
    executed = tmp_path / "reports" / "executed"
    executed.mkdir(parents=True)
    for name in pipeline.STEPS[:2]:
        cell = nbformat.v4.new_code_cell("secret_code_line = 1")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"table from {name}\n")]
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}"), cell])
        nbformat.write(notebook, str(executed / f"{name}.ipynb"))
    paths = pipeline.export_report(build_settings({"reports": str(tmp_path / "reports")}))
    html = paths["html"].read_text()
    assert "table from 00_cohort" in html and "table from 01_preprocessing" in html
    assert "secret_code_line" not in html
    pdf = paths["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000


def test_executed_notebooks_hold_no_stderr_and_no_machine_paths(tiny_study, tmp_path):
    notebooks, profile, _ = tiny_study
    body = "import sys\nprint('result')\nsys.stderr.write('50%|#####     |\\r')"
    write_notebook(notebooks / "a.ipynb", body)
    results = run(notebooks, profile)
    executed = nbformat.read(str(results[0].output), as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs]
    assert [o.get("text") for o in outputs if o.get("output_type") == "stream"] == ["result\n"]
    assert "50%" in results[0].output.with_suffix(".stderr.txt").read_text()
    assert str(tmp_path) not in nbformat.writes(executed)
    assert executed.metadata["papermill"]["parameters"]["profile"] == "../profile.yaml"


def test_named_profiles_are_passed_by_name():
    assert pipeline.notebook_profile("smoke") == "smoke"


def test_each_step_records_the_report_files_it_wrote(tiny_study, tmp_path):
    notebooks, profile, _ = tiny_study
    figure = tmp_path / "reports" / "figures" / "fig_a.png"
    body = f"import pathlib\np = pathlib.Path({str(figure)!r})\np.parent.mkdir()\np.write_text('x')"
    write_notebook(notebooks / "a.ipynb", body)
    run(notebooks, profile)
    state = json.loads((tmp_path / "runs" / pipeline.STATE_FILE).read_text())
    assert state[pipeline.OUTPUTS_KEY] == {"a": ["figures/fig_a.png"], "b": []}
    run(notebooks, profile)  # both skipped: what they made stays on record
    state = json.loads((tmp_path / "runs" / pipeline.STATE_FILE).read_text())
    assert state[pipeline.OUTPUTS_KEY] == {"a": ["figures/fig_a.png"], "b": []}


def test_a_step_whose_files_were_removed_or_rewritten_reruns_with_the_rest(tiny_study, tmp_path):
    """A model deleted (or retrained by hand) is not silently skipped over: its step and the rest rerun."""
    notebooks, profile, log = tiny_study
    model = tmp_path / "runs" / "model.pt"
    write_notebook(notebooks / "a.ipynb", f"import pathlib; p = pathlib.Path({str(model)!r}); "
                   "p.parent.mkdir(exist_ok=True); p.write_text('weights'); "
                   f"open({str(log)!r}, 'a').write('a')")
    assert [r.status for r in run(notebooks, profile)] == ["ran", "ran"]
    assert [r.status for r in run(notebooks, profile)] == ["skipped", "skipped"]
    state = json.loads((tmp_path / "runs" / pipeline.STATE_FILE).read_text())
    assert state[pipeline.ARTIFACTS_KEY]["a"]["files"] == [model.resolve().as_posix()]
    model.unlink()
    assert [r.status for r in run(notebooks, profile)] == ["ran", "ran"]
    assert model.read_text() == "weights"
    model.write_text("retrained by hand")
    assert [r.status for r in run(notebooks, profile)] == ["ran", "ran"]
    assert log.read_text() == "ababab"


def test_a_step_that_reused_its_files_still_answers_for_them(tiny_study, tmp_path):
    """A rerun that finds its model and writes nothing keeps the model on its record."""
    notebooks, profile, log = tiny_study
    model = tmp_path / "runs" / "model.pt"
    body = (f"import pathlib; p = pathlib.Path({str(model)!r}); p.parent.mkdir(exist_ok=True)\n"
            "if not p.exists(): p.write_text('weights')\n"
            f"open({str(log)!r}, 'a').write('a')")
    write_notebook(notebooks / "a.ipynb", body)
    run(notebooks, profile)
    write_notebook(notebooks / "a.ipynb", body + "  # edited")  # the step reruns and reuses the model
    assert [r.status for r in run(notebooks, profile)] == ["ran", "ran"]
    model.unlink()
    assert [r.status for r in run(notebooks, profile)] == ["ran", "ran"]
    assert model.exists() and log.read_text() == "ababab"


def test_socket_folders_of_killed_runs_are_removed_and_live_ones_kept(tmp_path):
    """A kill -9 of `cem reproduce` skips the cleanup of its kernel socket folder; the next run removes
    the folders whose run is gone and leaves those of runs still alive (this process) alone."""
    import os
    import subprocess
    import sys as _sys

    gone = subprocess.run([_sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = tmp_path / f"{pipeline.SOCKET_PREFIX}{int(gone.stdout)}-abc"
    alive = tmp_path / f"{pipeline.SOCKET_PREFIX}{os.getpid()}-def"
    other = tmp_path / "cem-kernel-notapid"
    for folder in (dead, alive, other):
        folder.mkdir()
    (dead / "k-1").write_text("")
    assert pipeline.remove_orphan_socket_dirs(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and other.exists()
