"""Build the stored notebooks from their sources and execute them in the default profile.

    python tools/build_notebooks.py                      # every notebooks/src/*.py
    python tools/build_notebooks.py 00_getting_started   # one (make notebooks NAMES=00_getting_started)
    python tools/build_notebooks.py 05_gmic_saliency --kernel breast-dl-course

Each lesson is written as a jupytext "percent" script in ``notebooks/src/`` (reviewable
diffs), holding its exercises' solutions between otter-grader's ``# BEGIN SOLUTION`` and
``# END SOLUTION`` markers. It is stored as ``notebooks/<name>.ipynb``, the student version
(solutions replaced by ``...``), with the outputs of the ``default`` profile, which
``pytest --nbval-lax`` then checks. ``tests/test_notebooks.py`` fails when a stored notebook
and its source disagree.

It runs in a kernel of this Python (the active environment), or in the Jupyter kernel named
with ``--kernel``. A notebook in which a real-data section was skipped (its data was neither
cached, in ``COURSE_DATA_MIRROR`` nor downloadable) is NOT stored, since nbval would then
check the skip notice instead of the reproduced numbers: set ``COURSE_DATA_MIRROR`` or fetch
the data, or pass ``--allow-skipped`` to store it anyway.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from course_lib.io import atomic_output
from course_lib.paths import require_checkout
from course_lib.runner import kernel_options, notebook_from_source, skipped_sections


def build(name, kernel=None, allow_skipped=False, notebooks=None):
    """Execute ``<notebooks>/src/<name>.py`` (default: the checkout's) in the default profile and
    store it; returns 0, or 1 when a real-data section was skipped (and nothing was stored) or
    the name is unknown."""
    notebooks = Path(notebooks) if notebooks else require_checkout("tools/build_notebooks.py") / "notebooks"
    source = notebooks / "src" / f"{name}.py"
    if not source.is_file():
        known = ", ".join(sorted(p.stem for p in (notebooks / "src").glob("*.py")))
        print(f"{name}: no source {source.name} in notebooks/src/ (there are: {known})", file=sys.stderr)
        return 1
    nb = notebook_from_source(source)
    os.environ.update(COURSE_PROFILE="default", TQDM_DISABLE="1", PYTHONHASHSEED="0")
    start = time.perf_counter()
    NotebookClient(nb, timeout=3600, record_timing=False, resources={"metadata": {"path": str(notebooks)}},
                   **kernel_options(kernel)).execute()
    skipped = skipped_sections(nb)
    seconds = time.perf_counter() - start
    if skipped and not allow_skipped:
        print(f"{name}: NOT stored: {len(skipped)} real-data section(s) skipped, so the stored outputs "
              "would not show the reproduced numbers:", file=sys.stderr)
        for cell, notice in skipped:
            print(f"  code cell {cell}: {notice}", file=sys.stderr)
        print("  Set COURSE_DATA_MIRROR (or fetch the data: course-kit fetch --list), or pass "
              "--allow-skipped to store it anyway.", file=sys.stderr)
        return 1
    with atomic_output(notebooks / f"{name}.ipynb") as tmp:
        nbformat.write(nb, tmp)
    note = f" ({len(skipped)} real-data section(s) skipped, --allow-skipped)" if skipped else ""
    print(f"{name}: executed in {seconds:.0f} s{note}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python tools/build_notebooks.py 05_gmic_saliency")
    parser.add_argument("names", nargs="*", help="notebook names (default: every notebooks/src/*.py)")
    parser.add_argument("--kernel", default=None,
                        help="Jupyter kernel to run in (default: this Python, whatever kernels are installed)")
    parser.add_argument("--allow-skipped", action="store_true",
                        help="store a notebook even when a real-data section was skipped for missing data")
    args = parser.parse_args(argv)
    notebooks = require_checkout("tools/build_notebooks.py") / "notebooks"
    names = args.names or sorted(p.stem for p in (notebooks / "src").glob("*.py"))
    return max([build(name, args.kernel, args.allow_skipped) for name in names], default=0)


if __name__ == "__main__":
    sys.exit(main())
