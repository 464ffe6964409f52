"""Build the stored notebooks from their sources and execute them in the default profile.

    python tools/build_notebooks.py                 # every notebooks/src/*.py
    python tools/build_notebooks.py 00_getting_started

Each lesson is written as a jupytext "percent" script in ``notebooks/src/`` (reviewable
diffs), holding its exercises' solutions between otter-grader's ``# BEGIN SOLUTION`` and
``# END SOLUTION`` markers. It is stored as ``notebooks/<name>.ipynb``, the student version
(solutions replaced by ``...``), with the outputs of the ``default`` profile, which
``pytest --nbval-lax`` then checks. ``tests/test_notebooks.py`` fails when a stored notebook
and its source disagree.
"""

import os
import sys
import time

import nbformat
from nbclient import NotebookClient

from course_lib.paths import NOTEBOOKS
from course_lib.runner import notebook_from_source


def build(name):
    source = NOTEBOOKS / "src" / f"{name}.py"
    nb = notebook_from_source(source)
    os.environ.update(COURSE_PROFILE="default", TQDM_DISABLE="1", PYTHONHASHSEED="0")
    start = time.perf_counter()
    NotebookClient(nb, timeout=3600, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    nbformat.write(nb, NOTEBOOKS / f"{name}.ipynb")
    print(f"{name}: executed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.stem for p in (NOTEBOOKS / "src").glob("*.py"))
    for name in names:
        build(name)
