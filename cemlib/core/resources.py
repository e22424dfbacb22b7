"""Where the kit's own files are: the notebooks, the profiles and the paper's reference values.

In a clone they are the top-level `notebooks/` and `data_manifest/` folders beside `cemlib/`; in an
installed wheel the build ships the same files inside the package (`cemlib/notebooks/...`,
`cemlib/data_manifest/...`, see pyproject.toml). The lookup prefers the clone, so `make reproduce` and
an editable install use the files a developer edits.

Where the kit writes (data, runs, reports): relative profile paths resolve against the work folder,
which is the folder named by --workdir (or the CEM_WORKDIR environment variable), else the clone's root
when the profile lives in a clone (or the nearest folder above a YAML file holding pyproject.toml, else
the YAML file's own folder), and the current folder for a profile shipped in the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # cemlib/, above core/
#: The environment variable naming the folder a run writes its data, runs and reports under.
WORKDIR_ENV = "CEM_WORKDIR"
NOTEBOOKS = "notebooks"
PROFILES = "profiles"
DATA_MANIFEST = "data_manifest"
PAPER_REFERENCE = "paper_reference.csv"


def clone_root() -> Path | None:
    """The repository root when cemlib runs from a clone (pyproject.toml and notebooks/ beside it)."""
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / NOTEBOOKS).is_dir():
        return root
    return None


def resource_dir(name: str) -> Path:
    """A shipped folder (notebooks, data_manifest): the clone's, else the installed package's copy."""
    root = clone_root()
    candidates = ([root / name] if root is not None else []) + [PACKAGE_DIR / name]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"the kit's {name}/ folder is missing (looked in "
                            f"{', '.join(str(c) for c in candidates)}); reinstall cemlib")


def notebooks_dir() -> Path:
    """The six study notebooks."""
    return resource_dir(NOTEBOOKS)


def profiles_dir() -> Path:
    """The named profiles (smoke.yaml, paper.yaml)."""
    return notebooks_dir() / PROFILES


def paper_reference_path() -> Path:
    """data_manifest/paper_reference.csv: the paper's published values."""
    return resource_dir(DATA_MANIFEST) / PAPER_REFERENCE


def project_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding pyproject.toml, or None."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").exists():
            return folder
    return None


def work_root(profile_file: Path, workdir: str | os.PathLike | None = None) -> Path:
    """The folder relative profile paths resolve against (see the module docstring)."""
    if workdir is not None:
        return Path(workdir).resolve()
    if os.environ.get(WORKDIR_ENV):
        return Path(os.environ[WORKDIR_ENV]).resolve()
    folder = profile_file.resolve().parent
    if folder.is_relative_to(PACKAGE_DIR):  # a profile shipped inside the installed package
        return Path.cwd().resolve()
    return project_root(folder) or folder
