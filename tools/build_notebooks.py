"""Build the stored notebooks from their sources and execute them in the default profile.

    python tools/build_notebooks.py                 # every notebooks/src/*.py
    python tools/build_notebooks.py 00_getting_started

Each lesson is written as a jupytext "percent" script in ``notebooks/src/`` (reviewable
diffs) and stored as ``notebooks/<name>.ipynb`` with the outputs of the ``default``
profile, which ``pytest --nbval-lax`` then checks. ``tests/test_notebooks.py`` fails when
a stored notebook and its source disagree.
"""

import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def notebook_from_source(source):
    """Read a percent-format script into a notebook with the kit's kernel metadata."""
    nb = jupytext.read(source)
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata.pop("lines_to_next_cell", None)
    return nb


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
