"""The package layout: the core never imports a pipeline, pipelines never import each other,
no import cycle (``python tools/import_graph.py``), and the command line starts light."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
import_graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)

HEAVY = ("torch", "tensorflow", "keras", "pandas", "scipy", "pydicom", "sklearn", "matplotlib", "skimage")


def test_course_lib_keeps_the_layering_rules():
    assert import_graph.violations(import_graph.import_graph()) == []


def test_the_check_finds_broken_rules(tmp_path):
    package = tmp_path / "course_lib"
    files = {
        "__init__.py": "",
        "io.py": "from course_lib.density import b\n",  # core -> pipeline
        "gmic/__init__.py": "",
        "gmic/a.py": "def f():\n    from course_lib.density.b import g\n",  # pipeline -> pipeline, in a function
        "density/__init__.py": "",
        "density/b.py": "from ..gmic import a\ng = 1\n",  # relative import, and a cycle with gmic.a
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    problems = import_graph.violations(import_graph.import_graph(package))
    assert "core module course_lib.io imports pipeline module course_lib.density.b" in problems
    assert any("pipeline gmic: course_lib.gmic.a imports course_lib.density.b" in p for p in problems)
    assert any("pipeline density: course_lib.density.b imports course_lib.gmic.a" in p for p in problems)
    assert any(p.startswith("import cycle:") and "course_lib.gmic.a" in p for p in problems)


def test_import_graph_tool_runs():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "import_graph.py")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "layering rules hold" in result.stdout


@pytest.mark.parametrize("code", ["import course_lib", "import course_lib.cli as c; c.build_parser()"])
def test_import_and_help_load_no_heavy_library(code):
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"{code!r} imported {result.stdout.strip()}"


def test_every_pipeline_package_says_what_lives_where():
    for name in import_graph.PIPELINES:
        init = ROOT / "course_lib" / name / "__init__.py"
        if init.exists():
            text = init.read_text(encoding="utf-8")
            assert text.lstrip().startswith('"""') and "notebook" in text.lower(), (
                f"course_lib/{name}/__init__.py needs a module docstring saying what lives where "
                "and which lesson (notebook) uses it")


def test_no_file_cites_a_document_that_is_not_in_the_repository():
    # The clean-room specification the kit was written from is not part of the repository:
    # cite the papers, the public repositories, or docs/original_pipelines.md.
    name = "SEED" + "_SPECS"
    offenders = [str(path.relative_to(ROOT)) for folder in ("course_lib", "tests", "notebooks", "benchmarks",
                                                             "docs", "tools", "pretrained")
                 for path in (ROOT / folder).rglob("*")
                 if path.is_file() and path.suffix in (".py", ".md", ".json", ".ipynb", ".csv")
                 and name in path.read_text(encoding="utf-8", errors="ignore")]
    offenders += [n for n in ("README.md",) if name in (ROOT / n).read_text(encoding="utf-8")]
    assert not offenders, f"these files cite {name}: {offenders}"
