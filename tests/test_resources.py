"""The kit's own files (notebooks, profiles, the paper's values) from a clone and from an installed wheel,
and where an installed kit writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from cemlib.core import resources
from cemlib.core.settings import load_profile
from cemlib.study.pipeline import STEPS

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [*(f"cemlib/notebooks/{name}.ipynb" for name in STEPS), "cemlib/notebooks/profiles/smoke.yaml",
           "cemlib/notebooks/profiles/paper.yaml", "cemlib/data_manifest/paper_reference.csv"]


def test_a_clone_uses_its_top_level_folders():
    assert resources.clone_root() == REPO
    assert resources.notebooks_dir() == REPO / "notebooks"
    assert resources.profiles_dir() == REPO / "notebooks" / "profiles"
    assert resources.paper_reference_path() == REPO / "data_manifest" / "paper_reference.csv"
    assert Path(load_profile("smoke").runs) == REPO / "runs" / "smoke"


def installed_copy(tmp_path: Path) -> Path:
    """A package folder laid out as the wheel installs it (no clone around it)."""
    package = tmp_path / "site-packages" / "cemlib"
    (package / "notebooks" / "profiles").mkdir(parents=True)
    (package / "data_manifest").mkdir()
    for profile in (REPO / "notebooks" / "profiles").glob("*.yaml"):
        (package / "notebooks" / "profiles" / profile.name).write_text(profile.read_text())
    (package / "data_manifest" / "paper_reference.csv").write_text("x\n")
    return package


def test_an_installed_package_finds_its_shipped_files_and_writes_under_the_work_folder(
        tmp_path, monkeypatch):
    package = installed_copy(tmp_path)
    monkeypatch.setattr(resources, "PACKAGE_DIR", package)
    monkeypatch.delenv(resources.WORKDIR_ENV, raising=False)
    assert resources.clone_root() is None
    assert resources.profiles_dir() == package / "notebooks" / "profiles"
    assert resources.paper_reference_path() == package / "data_manifest" / "paper_reference.csv"
    work = tmp_path / "empty"
    work.mkdir()
    monkeypatch.chdir(work)
    profile = load_profile("smoke")
    assert Path(profile.source).parent == package / "notebooks" / "profiles"
    assert Path(profile.data.root) == work / "data" / "synthetic"
    assert Path(profile.reports) == work / "reports" / "smoke"
    named = tmp_path / "elsewhere"
    assert Path(load_profile("smoke", workdir=named).runs) == named / "runs" / "smoke"
    monkeypatch.setenv(resources.WORKDIR_ENV, str(named))  # how `cem reproduce --workdir` tells its kernels
    assert Path(load_profile("smoke").preprocess.cache) == named / "data" / "cache"


def test_a_missing_resource_folder_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "PACKAGE_DIR", tmp_path / "cemlib")
    with pytest.raises(FileNotFoundError, match=r"notebooks/ folder is missing.*reinstall cemlib"):
        resources.notebooks_dir()


def test_every_package_folder_is_listed_for_the_wheel():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "cemlib").rglob("__init__.py")}
    assert folders <= set(config["packages"])
    assert config["package-dir"] == {"cemlib.notebooks": "notebooks", "cemlib.data_manifest": "data_manifest"}


@pytest.mark.slow
def test_the_wheel_ships_the_notebooks_profiles_and_reference_and_runs_from_an_empty_folder(tmp_path):
    """`pip wheel --no-deps .`, then the wheel alone (no clone on the path) runs the first notebook."""
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the clone
    everywhere = shutil.ignore_patterns("*.egg-info", "__pycache__", ".*_cache")
    top_only = {".git", ".venv", "data", "runs", "reports", "build"}  # cemlib/data is the package's own

    def skipped(folder: str, names: list[str]) -> set[str]:
        return set(everywhere(folder, names)) | (top_only & set(names) if Path(folder) == REPO else set())

    shutil.copytree(REPO, source, ignore=skipped)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp_path / "dist"), "."], check=True, cwd=source)
    [wheel] = (tmp_path / "dist").glob("cemlib-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True)
    work = tmp_path / "empty"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop(resources.WORKDIR_ENV, None)
    done = subprocess.run([sys.executable, "-m", "cemlib.cli", "reproduce", "--profile", "smoke", "--steps",
                           "00_cohort", "--set", "data.synth.patients=12"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    tag = load_profile("smoke", {"data.synth.patients": 12}).variant  # a run of its own (--set)
    assert (work / "data" / f"synthetic-{tag}" / "manifest" / "breasts.csv").is_file()
    assert (work / "reports" / f"smoke-{tag}" / "tables" / "table2_patient_classes.csv").is_file()
    assert (work / "runs" / f"smoke-{tag}").is_dir()
    version = subprocess.run([sys.executable, "-m", "cemlib.cli", "--version"], cwd=work, env=env,
                             capture_output=True, text=True, check=True).stdout
    assert version.startswith("cem ") and "(installed package" in version
