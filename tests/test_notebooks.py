"""The study notebooks as committed: thin, without outputs, one `parameters` cell, in pipeline order."""

from __future__ import annotations

import ast
import json

import nbformat
import pytest

from cemlib.core.resources import notebooks_dir
from cemlib.study import pipeline

NOTEBOOKS = [notebooks_dir() / f"{name}.ipynb" for name in pipeline.STEPS]


def test_every_pipeline_step_has_its_notebook():
    assert [p.name for p in sorted(notebooks_dir().glob("*.ipynb"))] == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = nbformat.read(str(path), as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_has_its_own_id_in_the_file(path):
    cells = json.loads(path.read_text())["cells"]  # nbformat.read would add missing ids silently
    ids = [cell.get("id") for cell in cells]
    assert None not in ids and len(set(ids)) == len(ids), f"{path.name}: give every cell a unique id"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_with_profile_and_overrides(path):
    notebook = nbformat.read(str(path), as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = {t.id for node in ast.parse(tagged[0].source).body for t in node.targets}
    assert names == {"profile", "overrides"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_thin_cells_call_the_library(path):
    """Logic lives in cemlib: no function or class is defined in a notebook, and cells stay short."""
    notebook = nbformat.read(str(path), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
        tree = ast.parse(source)
        assert not any(isinstance(n, ast.FunctionDef | ast.ClassDef) for n in ast.walk(tree)), path.name
        assert len(cell.source.splitlines()) <= 6, f"{path.name}: a long cell belongs in cemlib"
