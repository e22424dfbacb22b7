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
    readers = [*sorted((PACKAGE / "sources").glob("*.py")), PACKAGE / "manifest.py"]
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
                 "write_patient", "render_exam", "grid_shape", "configure_parser", "run_cli"):
        assert hasattr(synthetic, name), name


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_kill_9_of_synth_leaves_no_worker_alive(tmp_path):
    """`cem synth --workers 2` killed with SIGKILL mid-run: both pool workers exit with it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.test_cache import _alive, _children

    command = [sys.executable, "-m", "cemlib.cli", "synth", "--out", str(tmp_path / "cohort"),
               "--patients", "400", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and parent.poll() is None:
            workers = _children(parent.pid)
            if len(workers) >= 2 and any((tmp_path / "cohort").glob("SYN*/*.dcm")):
                break  # the workers run and have written at least one image
            time.sleep(0.2)
        assert parent.poll() is None and len(workers) >= 2, "synth ended before it could be killed"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        survivors = [pid for pid in workers if _alive(pid)]
        assert not survivors, f"worker processes {survivors} outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
