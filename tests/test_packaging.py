"""Dependencies: compatible ranges in pyproject.toml, exact versions in requirements.lock, in agreement."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


def locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"requirements.lock: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    return pins


def test_pyproject_states_ranges_not_exact_pins():
    exact = [str(r) for r in declared() if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not exact, f"exact pins belong in requirements.lock: {exact}"
    torch = {r.name: r for r in declared()}["torch"]
    assert torch.specifier.contains("2.4.0") and not torch.specifier.contains("3.0.0")


def test_the_lock_pins_every_dependency_inside_its_range():
    pins = locked()
    assert "cemlib" not in pins
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock has {requirement.name}=={pins[name]}, outside {requirement.specifier}")
