"""The executed course (``course-kit run`` -> ``build/index.html``), the notebook builder's
guard against storing skipped real-data sections, and nbval's options for a bare run."""

import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from course_lib import cli, runner

ROOT = Path(__file__).resolve().parent.parent
SKIP_LINE = "[real data unavailable, section skipped] gmic/sample_data/images/0_L-CC.png: not in the cache"

LESSON = f'''# %% [markdown]
# # A tiny lesson with a formula, $E = mc^2$
#
# $$\\int_0^1 x\\,dx = \\tfrac12$$

# %% tags=["parameters"]
import os

PROFILE = os.environ.get("COURSE_PROFILE", "default")

# %%
import sys

import course_lib

print(sys.executable)
print(course_lib.environment_report(with_device=False))

# %%
print({SKIP_LINE!r})

# %%
import ipywidgets

ipywidgets.IntSlider(description="a widget")
'''


def write_lesson(folder, name, text=LESSON):
    source = folder / "src" / f"{name}.py"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(text)
    nbformat.write(runner.notebook_from_source(source), folder / f"{name}.ipynb")
    return folder / f"{name}.ipynb"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Two tiny notebooks run by ``run_course`` in the smoke profile: one fine (with a skipped
    real-data section and a widget), one failing."""
    pytest.importorskip("papermill")
    pytest.importorskip("jupyter_server_mathjax")
    folder = tmp_path_factory.mktemp("course")
    good = write_lesson(folder, "00_tiny")
    bad = write_lesson(folder, "01_broken", LESSON.replace("import ipywidgets", "import no_such_module_here"))
    out = folder / "build"
    runs = runner.run_course(out, "smoke", [good, bad])
    return SimpleNamespace(out=out, runs=runs, index=(out / "index.html").read_text())


def test_index_shows_when_where_and_with_what(course):
    index = course.index
    assert re.search(r"<th>date</th><td>\d{4}-\d\d-\d\d \d\d:\d\d UTC</td>", index)
    assert re.search(r"<th>commit</th><td><code>([0-9a-f]{12}( \+ local changes)?|not a git checkout)</code>", index)
    assert re.search(r"<th>device</th><td>(CPU|GPU): ", index)
    for package in ("course-kit", "numpy", "torch", "tensorflow", "papermill"):
        assert re.search(rf"{package} (\d+\.|not installed)", index), package
    total = sum(run.seconds for run in course.runs)
    assert f"<td>{total:.1f} s of notebook run time, 1 of 2 notebooks ok, 2 real-data section(s) skipped</td>" in index


def test_index_lists_each_notebook_with_status_time_and_skipped_sections(course):
    good, bad = course.runs
    assert (good.status, bad.status) == ("ok", "failed")
    assert good.skipped == bad.skipped == [SKIP_LINE], "a failed notebook lists what it printed before failing"
    assert f'<td class="ok">ok</td><td class="num">{good.seconds:.1f}</td><td class="skip">{SKIP_LINE}</td>' in course.index
    assert '<td class="failed">failed</td>' in course.index and "no_such_module_here" in course.index
    timings = json.loads((course.out / "timings.json").read_text())
    assert timings["00_tiny"]["skipped"] == [SKIP_LINE] and timings["01_broken"]["status"] == "failed"


def test_kernel_is_this_python_and_sees_the_profile(course):
    executed = nbformat.read(course.out / "00_tiny.ipynb", as_version=4)
    printed = runner.output_text([c for c in executed.cells if c.cell_type == "code"][2])
    assert printed.splitlines()[0] == sys.executable
    assert re.search(r"^profile +smoke$", printed, flags=re.M), "environment_report() must say the run's profile"


def test_html_renders_formulas_offline_and_hides_no_widget_in_an_empty_prompt(course):
    page = (course.out / "00_tiny.html").read_text()
    assert "mathjax" in page.lower() and not re.search(r"https?://[^\"']*mathjax", page, flags=re.I)
    assert 'src="mathjax/MathJax.js?config=' in page and (course.out / "mathjax" / "MathJax.js").is_file()
    assert runner.WIDGET_NOTE in page
    assert "application/vnd.jupyter.widget-view+json" not in page and "unpkg.com" not in page


def test_unknown_kernel_is_a_clear_error(capsys):
    with pytest.raises(LookupError, match="no Jupyter kernel named 'no-such-kernel'"):
        runner.kernel_options("no-such-kernel")
    assert cli.main(["run", "--kernel", "no-such-kernel", "--out", "unused"]) == 2
    assert "no Jupyter kernel named 'no-such-kernel'" in capsys.readouterr().err


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_builder_refuses_to_store_a_skipped_real_data_section(tmp_path, capsys):
    build_notebooks = load_tool("build_notebooks")
    stored = write_lesson(tmp_path, "00_tiny")
    before = stored.read_bytes()
    assert build_notebooks.build("00_tiny", notebooks=tmp_path) == 1
    assert stored.read_bytes() == before, "nothing stored"
    err = capsys.readouterr().err
    assert "NOT stored" in err and SKIP_LINE in err and "--allow-skipped" in err
    assert build_notebooks.build("00_tiny", notebooks=tmp_path, allow_skipped=True) == 0
    executed = nbformat.read(stored, as_version=4)
    assert runner.skipped_sections(executed) == [(2, SKIP_LINE)]
    assert executed.metadata["kernelspec"]["name"] == "python3", "stored notebooks name the usual kernel"


def test_bare_nbval_run_uses_the_sanitize_file_this_python_and_no_progress_bars(monkeypatch):
    spec = importlib.util.spec_from_file_location("notebooks_conftest", ROOT / "notebooks" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    bare = SimpleNamespace(option=SimpleNamespace(nbval_sanitize_with=None, sanitize_with=None, nbval_kernel_name=None,
                                                  nbval_current_env=False, current_env=False, nbval=False,
                                                  nbval_lax=True))
    conftest.pytest_configure(bare)
    assert Path(bare.option.nbval_sanitize_with) == ROOT / "notebooks" / "nbval_sanitize.cfg"
    assert bare.option.nbval_current_env is True
    assert os.environ["TQDM_DISABLE"] == "1"  # the kernel inherits it
    given = SimpleNamespace(option=SimpleNamespace(nbval_sanitize_with="mine.cfg", sanitize_with=None,
                                                   nbval_kernel_name="other", nbval_current_env=False, current_env=False,
                                                   nbval=True, nbval_lax=False))
    conftest.pytest_configure(given)
    assert (given.option.nbval_sanitize_with, given.option.nbval_current_env) == ("mine.cfg", False)
    monkeypatch.delenv("TQDM_DISABLE")
    unit_tests = SimpleNamespace(option=SimpleNamespace(nbval_sanitize_with=None, sanitize_with=None,
                                                        nbval_kernel_name=None, nbval_current_env=False,
                                                        current_env=False, nbval=False, nbval_lax=False))
    conftest.pytest_configure(unit_tests)
    assert "TQDM_DISABLE" not in os.environ
