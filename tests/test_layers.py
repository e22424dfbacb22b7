"""The package's stage folders and their one-way rules, read from the source: every `import` counts,
those inside functions included; a failure names the importing file, its line and the rule it breaks.
docs/architecture.md holds the same rules for readers, and a test here keeps its table equal to STAGES."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cemlib"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

#: Each stage folder of cemlib, in pipeline order, and the stages its modules may import. Modules of one
#: stage may import each other (no cycle); nothing imports a stage that is not listed for it.
STAGES: dict[str, tuple[str, ...]] = {
    "core": (),
    "pixels": ("core",),
    "data": ("core", "pixels"),
    "synthetic": ("core", "pixels", "data"),
    "model": ("core",),
    "training": ("core", "data", "model"),
    "inference": ("core", "pixels", "data", "model"),
    "results": ("core",),
    "study": ("core", "pixels", "data", "synthetic", "model", "training", "inference", "results"),
}
#: The package itself (its version), `python -m cemlib`, and the one entry module: the `cem` command,
#: which reaches each verb's module in study/commands/ by name, so that `cem synth` never loads torch.
TOP_LEVEL: dict[str, tuple[str, ...]] = {"cemlib": (), "cemlib.__main__": ("cli",), "cemlib.cli": ("core",)}
SIZE_LIMIT = 700


@dataclass(frozen=True)
class Edge:
    """One import of a cemlib module by a cemlib module."""

    importer: str
    target: str
    line: int
    local: bool  # inside a function
    private: tuple[str, ...]  # underscore names imported from the target

    def where(self) -> str:
        return f"{self.importer.replace('.', '/')}.py:{self.line}"


def module_name(path: Path) -> str:
    """cemlib/data/sources/__init__.py -> cemlib.data.sources; cemlib/training/loop.py -> ...training.loop."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _target(module: str, name: str | None) -> str:
    """The module an import reaches: `from pkg import sub` reaches pkg.sub when that is a module."""
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module


def _local_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a function or method."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside |= {id(child) for child in ast.walk(node)
                       if isinstance(child, ast.Import | ast.ImportFrom)}
    return inside


def imports_of(module: str) -> list[Edge]:
    """Every import of a cemlib module in `module`'s source, at module level or inside functions."""
    return edges_in(MODULES[module].read_text(), module)


def edges_in(source: str, module: str) -> list[Edge]:
    """The cemlib imports of one module's source text."""
    tree = ast.parse(source)
    local = _local_nodes(tree)
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "cemlib" or alias.name.startswith("cemlib."):
                    edges.append(Edge(module, alias.name, node.lineno, id(node) in local, ()))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not (node.module == "cemlib" or node.module.startswith("cemlib.")):
                continue
            for alias in node.names:
                target = _target(node.module, alias.name)
                private = () if target != node.module or not _is_private(alias.name) else (alias.name,)
                edges.append(Edge(module, target, node.lineno, id(node) in local, private))
    return edges


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


EDGES = [edge for module in MODULES for edge in imports_of(module) if edge.target != edge.importer]


def stage_of(module: str) -> str:
    """The stage folder a module belongs to ("data" for cemlib.data.sources.ge), or the top-level name."""
    parts = module.split(".")
    if module in TOP_LEVEL or parts[0] != "cemlib" or len(parts) < 2:
        return module
    return parts[1]


def allowed(importer: str) -> tuple[str, ...]:
    """The stages (or, at the top, the names) a module may import."""
    if importer in TOP_LEVEL:
        return tuple(f"cemlib.{name}" if name == "cli" else name for name in TOP_LEVEL[importer])
    return STAGES.get(stage_of(importer), ())


def against_the_rules(edges: list[Edge]) -> list[str]:
    """An explanation for each import of a stage the importer's stage may not import."""
    wrong = []
    for e in edges:
        source, target = stage_of(e.importer), stage_of(e.target)
        if target in (source, "cemlib") or target in allowed(e.importer):
            continue
        wrong.append(f"{e.where()}: {e.importer} ({source}) imports {e.target} ({target}); "
                     f"{source} may import only {', '.join(allowed(e.importer)) or 'nothing of cemlib'}")
    return wrong


def private_names(edges: list[Edge]) -> list[str]:
    """An explanation for each import of another module's underscore name."""
    return [f"{e.where()}: {e.importer} imports {', '.join(e.private)} from {e.target}" for e in edges
            if e.private]


def test_every_module_sits_in_a_stage_folder_or_is_an_entry_point():
    stray = sorted(m for m in MODULES if m not in TOP_LEVEL and stage_of(m) not in STAGES)
    assert not stray, f"modules outside the stage folders {sorted(STAGES)}: {stray}"
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert folders == sorted(STAGES)


def test_each_stage_says_what_it_holds_and_may_import():
    for stage, deps in STAGES.items():
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text())) or ""
        assert len(doc) > 80, f"cemlib/{stage}/__init__.py: a docstring says what the stage holds"
        said = re.search(r"May import: (.*?)\.", doc, re.S)
        assert said, f"cemlib/{stage}/__init__.py: the docstring names what it may import ('May import: ...')"
        named = tuple(re.findall(r"`(\w+)`", said.group(1)))
        assert named == deps, f"cemlib/{stage}/__init__.py says it may import {named}, the rules say {deps}"


def test_the_architecture_document_shows_these_rules():
    rows = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows[cells[0].strip("`/")] = tuple(re.findall(r"`(\w+)`", cells[-1]))
    assert rows == STAGES, "docs/architecture.md's stage table differs from tests/test_layers.py STAGES"


def test_no_module_is_over_the_size_limit():
    lines = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    over = {m: n for m, n in lines.items() if n > SIZE_LIMIT}
    assert not over, f"modules over {SIZE_LIMIT} lines: {over}"


def test_imports_follow_the_stage_rules():
    wrong = against_the_rules(EDGES)
    assert not wrong, "\n".join(wrong)


def test_no_private_name_of_another_module_is_imported():
    wrong = private_names(EDGES)
    assert not wrong, "\n".join(wrong)


def test_cemlib_imports_sit_at_module_level():
    """Function-local imports hide cycles; they remain only for optional third-party libraries."""
    wrong = [f"{e.where()}: {e.importer} imports {e.target} inside a function" for e in EDGES if e.local]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for edge in EDGES:
        if edge.target in graph:
            graph[edge.importer].add(edge.target)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_prediction_does_not_reach_training():
    """Scoring a model (a checkpoint, a manifest, one exam) never loads the training loop."""
    reach: dict[str, set[str]] = {}

    def closure(module: str) -> set[str]:
        if module not in reach:
            reach[module] = set()
            for edge in EDGES:
                if edge.importer == module and edge.target in MODULES:
                    reach[module] |= {edge.target, *closure(edge.target)}
        return reach[module]

    scoring = [m for m in MODULES if stage_of(m) == "inference"] + ["cemlib.model.checkpoints"]
    for module in scoring:
        training = sorted(m for m in closure(module) if m.startswith("cemlib.training"))
        assert not training, f"{module} reaches {training}"


def test_the_checker_names_an_offending_import():
    """The rules themselves: an upward import and a private name are reported with file and line."""
    source = ("import torch\n\ndef f():\n    from cemlib import training\n\n"
              "from cemlib.core.vocab import _x, FUSIONS\n")
    edges = edges_in(source, "cemlib.model.networks")
    assert against_the_rules(edges) == [
        "cemlib/model/networks.py:4: cemlib.model.networks (model) imports cemlib.training (training); "
        "model may import only core"
    ]
    assert private_names(edges) == [
        "cemlib/model/networks.py:6: cemlib.model.networks imports _x from cemlib.core.vocab"]
    assert sorted((e.line, e.local) for e in edges) == [(4, True), (6, False), (6, False)]
