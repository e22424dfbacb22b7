"""`make lab`: JupyterLab at the project root, as root or as a user, on the venv's `cemlib` kernel, whose
first cells show no warning. Checked without starting a server: the command lines the Makefile builds,
the kernel spec they install, and the notebooks' first cells run in a kernel."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from cemlib.core.resources import notebooks_dir
from cemlib.study import pipeline

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(notebooks_dir().glob("*.ipynb"))

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(*args: str) -> list[str]:
    """The commands `make -n -B ARGS` would run (nothing is run)."""
    done = subprocess.run(["make", "-n", "-B", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    return done.stdout.splitlines()


@needs_make
@pytest.mark.parametrize(("user", "as_root"), [("0", True), ("1000", False)])
def test_lab_opens_at_the_project_root_as_root_or_as_a_user(user, as_root):
    lab = [shlex.split(line) for line in planned("lab", f"USER_ID={user}") if " lab " in f"{line} "]
    assert len(lab) == 1 and lab[0][:2] == [".venv/bin/jupyter", "lab"]
    assert f"--ServerApp.root_dir={ROOT}" in lab[0]
    assert ("--allow-root" in lab[0]) is as_root


@needs_make
def test_the_kernel_the_makefile_installs_is_the_one_the_notebooks_name(tmp_path):
    [install] = [shlex.split(line) for line in planned("kernel") if "ipykernel install" in line]
    assert install[:4] == [".venv/bin/python", "-m", "ipykernel", "install"] and "--sys-prefix" in install
    # The same install into a scratch prefix instead of the venv: found by name, on this interpreter.
    args = [arg for arg in install[4:] if arg != "--sys-prefix"]
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(tmp_path), *args],
                   check=True, capture_output=True)
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    name = install[install.index("--name") + 1]
    assert name == pipeline.NOTEBOOK_KERNEL == "cemlib"
    spec = specs.get_kernel_spec(name)
    assert spec.argv[0] == sys.executable and spec.display_name == "Python (cemlib)"
    for path in NOTEBOOKS:
        assert nbformat.read(str(path), as_version=4).metadata["kernelspec"]["name"] == name, path.name


@pytest.mark.slow
def test_a_notebooks_first_cells_show_no_warning(tmp_path, monkeypatch):
    """The setup cell (imports, profile) of notebook 00 as JupyterLab runs it: no TqdmWarning, no stderr."""
    monkeypatch.setenv("CEM_WORKDIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(str(notebooks_dir() / "00_cohort.ipynb"), as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    notebook.cells = code[:2]  # the parameters cell and the setup cell
    NotebookClient(notebook, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(notebooks_dir())}}).execute()
    outputs = [output for cell in notebook.cells for output in cell.outputs]
    assert outputs and all(output.get("name") != "stderr" for output in outputs), outputs
    assert outputs[0]["text"].startswith("profile smoke:")
