"""The notebook contract, and a papermill run of every notebook in the ``smoke`` profile.

nbval (``pytest --nbval-lax notebooks``) then re-runs the stored notebooks in the
``default`` profile and compares the outputs of the cells marked ``# NBVAL_CHECK_OUTPUT``.
"""

import ast
import json
import re

import nbformat
import pytest

from course_lib import runner
from course_lib.paths import BUILD, NOTEBOOKS

NOTEBOOK_PATHS = runner.course_notebooks()
IDS = [p.stem for p in NOTEBOOK_PATHS]
ABSOLUTE_PATH = re.compile(r"""["'](/(home|work|Users|tmp|root|content|mnt|media|opt|data)/|[A-Za-z]:\\\\)""")
SETUP_CELL_MARK = 'if "google.colab" in sys.modules'
EXERCISE_CHECK = "EXERCISES.check("


def read(path):
    return nbformat.read(path, as_version=4)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def without_magics(source):
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def test_there_are_notebooks():
    assert NOTEBOOK_PATHS and NOTEBOOK_PATHS[0].name == "00_getting_started.ipynb"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_every_code_cell_parses(path):
    for index, cell in enumerate(code_cells(read(path))):
        try:
            ast.parse(without_magics(cell.source))
        except SyntaxError as error:
            pytest.fail(f"{path.name} code cell {index} does not parse: {error}")


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_no_absolute_paths(path):
    for index, cell in enumerate(code_cells(read(path))):
        match = ABSOLUTE_PATH.search(cell.source)
        assert not match, f"{path.name} code cell {index} has an absolute path: {match.group(0)}"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_notebook_contract(path):
    nb = read(path)
    title = nb.cells[0]
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    assert "colab.research.google.com/github/" in title.source and path.name in title.source
    for required in ("What you will learn", "Cite", "| `default` |", "| `full` |"):
        assert required in title.source, f"{path.name}: title cell lacks {required!r}"
    cells = code_cells(nb)
    assert SETUP_CELL_MARK in cells[0].source, f"{path.name}: first code cell must be the Colab setup cell"
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell must be tagged 'parameters'"
    parameters, derived = cells[tagged[0]], cells[tagged[0] + 1]
    assert 'os.environ.get("COURSE_PROFILE", "default")' in parameters.source
    assert "get_profile(PROFILE)" in derived.source, "derive profile values in the cell after the parameters"
    everything = "\n".join(c.source for c in cells)
    assert "environment_report(" in everything and "seed_everything(" in everything


def test_setup_cell_is_the_same_everywhere():
    """One template (tools/setup_cell.py): only the extra it installs differs (tests/test_colab.py
    checks that each lesson's extra covers its imports)."""
    extra = re.compile(r'^(KIT_RELEASE, KIT_EXTRA = "[^"]*", )"[a-z0-9]+"$', flags=re.M)
    setups = {extra.sub(r'\1"EXTRA"', code_cells(read(p))[0].source, count=1) for p in NOTEBOOK_PATHS}
    assert len(setups) == 1, "the Colab setup cells differ beyond their extra: run tools/setup_cell.py"
    assert all(extra.search(code_cells(read(p))[0].source) for p in NOTEBOOK_PATHS)


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_stored_outputs_exist(path):
    """nbval passes vacuously on unexecuted cells, so the stored notebook must be executed."""
    cells = [c for c in code_cells(read(path)) if c.source.strip()]
    unexecuted = [i for i, c in enumerate(cells) if c.execution_count is None]
    assert not unexecuted, f"{path.name}: cells {unexecuted} have no stored outputs; run tools/build_notebooks.py"
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), "run top to bottom once"
    checked = [c for c in cells if "NBVAL_CHECK_OUTPUT" in c.source]
    assert checked and all(c.outputs for c in checked), f"{path.name}: no checked figure"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_stored_notebook_matches_its_source(path):
    pytest.importorskip("jupytext")
    source = NOTEBOOKS / "src" / f"{path.stem}.py"
    assert source.is_file(), f"{path.name} has no source {source.name}"
    expected = [(c.cell_type, c.source) for c in runner.notebook_from_source(source).cells]
    stored = [(c.cell_type, c.source) for c in read(path).cells]
    assert stored == expected, f"{path.name} differs from {source.name}: run tools/build_notebooks.py {path.stem}"


def exercise_cells(nb):
    return [c for c in code_cells(nb) if EXERCISE_CHECK in c.source]


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_stored_notebook_is_the_student_version(path):
    """No solution in the stored notebook: every exercise cell asks for the answer."""
    for cell in exercise_cells(read(path)):
        assert "BEGIN SOLUTION" not in cell.source and "# SOLUTION" not in cell.source
        assert "..." in cell.source or "NotImplementedError" in cell.source, (
            f"{path.name}: exercise cell without a blank to fill:\n{cell.source}")
        shown = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)
        assert "not answered yet" in shown, f"{path.name}: exercise cell output {shown!r}"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_smoke_run(path):
    """The lesson, WITH its exercises' solutions, runs in the smoke profile and every solution passes."""
    import nbformat as nbf

    out_dir = BUILD / "smoke"
    with_solutions = out_dir / "with_solutions" / path.name
    with_solutions.parent.mkdir(parents=True, exist_ok=True)
    nbf.write(runner.notebook_from_source(NOTEBOOKS / "src" / f"{path.stem}.py", solutions=True), with_solutions)
    run = runner.run_notebook(with_solutions, out_dir, "smoke", timeout=600, cwd=NOTEBOOKS)  # hangs fail
    timings = out_dir / "timings.json"
    recorded = json.loads(timings.read_text()) if timings.exists() else {}
    recorded[run.name] = {"status": run.status, "seconds": run.seconds}
    timings.write_text(json.dumps(dict(sorted(recorded.items())), indent=1))
    assert run.status == "ok", f"{path.name} failed in the smoke profile:\n{run.error}"
    for cell in exercise_cells(read(out_dir / path.name)):
        shown = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)
        assert "right!" in shown and "not yet" not in shown, f"{path.name}: a solution fails its check: {shown!r}"
