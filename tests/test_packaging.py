"""Packaging rules: lower bounds in the package, exact pins in one constraints file."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def constraints():
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_package_dependencies_are_lower_bounds_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += [r for r in extra if not r.startswith("course-kit")]
    for requirement in requirements:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+>=[0-9.]+", requirement), f"not a lower bound: {requirement}"


def test_every_dependency_is_pinned_in_the_constraints():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = constraints()
    names = [r.split(">=")[0].lower() for r in project["dependencies"]]
    names += [r.split(">=")[0].lower() for extra in project["optional-dependencies"].values()
              for r in extra if not r.startswith("course-kit")]
    assert not [n for n in names if n not in pins], "add them to requirements/constraints.txt"


def test_environment_yml_mirrors_the_constraints():
    pins = constraints()
    text = (ROOT / "environment.yml").read_text()
    assert "--constraint requirements/constraints.txt" in text
    listed = re.findall(r"^\s+- ([A-Za-z0-9_.-]+)==([^\s]+)$", text, flags=re.M)
    assert len(listed) > 20
    for name, version in listed:
        assert pins.get(name.lower()) == version, f"environment.yml pins {name}=={version}, constraints say {pins.get(name.lower())}"
