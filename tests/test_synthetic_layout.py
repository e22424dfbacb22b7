"""The synthetic subpackage: readers never import writers, and no module grows past 700 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cemlib

PACKAGE = Path(cemlib.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Constant) and "cemlib.synthetic" in str(node.value):
            names.add(node.value)  # importlib by name
    return names


def test_adapters_and_manifest_never_import_the_writers():
    readers = [*sorted((PACKAGE / "data" / "sources").glob("*.py")), PACKAGE / "data" / "manifest.py"]
    for path in readers:
        offending = {m for m in _imported_modules(path) if "synthetic" in m}
        assert not offending, f"{path.name} imports {offending}"


def test_synthetic_modules_stay_small():
    for path in sorted((PACKAGE / "synthetic").glob("*.py")):
        lines = len(path.read_text().splitlines())
        assert lines <= 700, f"{path.name} has {lines} lines"


def test_callers_find_their_names_in_the_package():
    from cemlib import synthetic

    for name in ("DEFAULT_PATIENTS", "GENERATOR_VERSION", "check_generated", "write_cohort", "sample_cohort",
                 "write_patient", "render_exam", "grid_shape"):
        assert hasattr(synthetic, name), name


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_kill_9_of_synth_leaves_no_worker_alive(tmp_path):
    """`cem synth --workers 2` killed with SIGKILL mid-run: both pool workers exit with it."""
    import sys

    from tests.test_cache import _children, kill_parent_and_check_workers

    command = [sys.executable, "-m", "cemlib.cli", "synth", "--out", str(tmp_path / "cohort"),
               "--patients", "400", "--workers", "2"]

    def running_workers(parent_pid: int) -> list[int]:
        workers = _children(parent_pid)  # the pool forks: its workers are the command's children
        return workers if len(workers) >= 2 and any((tmp_path / "cohort").glob("SYN*/*.dcm")) else []

    kill_parent_and_check_workers(command, running_workers)
