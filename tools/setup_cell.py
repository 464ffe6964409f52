"""Write the Colab setup cell (the first code cell) of every lesson, in its source and its stored notebook.

    python tools/setup_cell.py            # rewrite notebooks/src/*.py and notebooks/*.ipynb in place
    python tools/setup_cell.py --check    # exit 1 if a notebook's setup cell is not the template's

One template (:data:`TEMPLATE`) for every lesson; only the extra it installs differs
(:data:`EXTRA_BY_LESSON`, one word per lesson; ``tests/test_colab.py`` checks that it covers the
lesson's imports). The cell clones the release ``v<course_lib.__version__>``, so after bumping the
version, run this and tag the release. Only that cell's source changes: the stored notebook stays
otherwise byte for byte the same (its outputs too: outside Colab the cell does nothing, so they
stay valid and nothing is re-executed).
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib import __version__  # noqa: E402

#: The extra of ``pyproject.toml`` that each lesson's setup cell installs on Colab.
EXTRA_BY_LESSON = {"00": "dicom", "01": "dicom", "02": "density", "03": "end2end", "04": "amil", "05": "gmic"}
RELEASE = f"v{__version__}"
REPOSITORY = "https://github.com/breast-imaging-course/course-kit"

TEMPLATE = f'''# Setup. On Google Colab this clones the kit at the release this notebook belongs to and installs
# this lesson's extra on top of Colab's own packages (the kit sets lower bounds only, so Colab's
# torch, tensorflow and ipywidgets stay). Running it again changes nothing.
# Anywhere else it does nothing: use `make course`, or the conda environment.yml (see README).
import os
import subprocess
import sys

KIT_RELEASE, KIT_EXTRA = "{RELEASE}", "{{extra}}"
if "google.colab" in sys.modules:
    # Absolute, and remembered: this cell changes directory, and may run again.
    kit = os.environ.setdefault("COURSE_KIT_CHECKOUT", os.path.abspath("course-kit"))
    if not os.path.isdir(os.path.join(kit, "course_lib")):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", KIT_RELEASE,
                        "{REPOSITORY}", kit], check=True)
    installed = os.path.join(kit, f".installed-{{{{KIT_EXTRA}}}}")
    if not os.path.exists(installed):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{{{{kit}}}}[{{{{KIT_EXTRA}}}}]"],
                       check=True)
        open(installed, "w").close()
    if kit not in sys.path:
        sys.path.insert(0, kit)
    os.chdir(os.path.join(kit, "notebooks"))'''

EXTRA_LINE = re.compile(r'^KIT_RELEASE, KIT_EXTRA = "([^"]*)", "([a-z0-9]+)"$', re.MULTILINE)


def render(extra):
    """The setup cell of a lesson that installs ``course-kit[extra]``."""
    return TEMPLATE.format(extra=extra)


def cell_extra(source):
    """The extra that a setup cell's source installs, or None when it is not the template's."""
    match = EXTRA_LINE.search(source)
    return match.group(2) if match else None


def lesson_extra(name):
    return EXTRA_BY_LESSON[name[:2]]


# ---------------------------------------------------------------- the jupytext source (.py)

def _first_code_cell_lines(lines):
    """(start, end) line indices of the first code cell's body in a jupytext percent script."""
    markers = [i for i, line in enumerate(lines) if line.startswith("# %%")]
    for position, index in enumerate(markers):
        if "[markdown]" not in lines[index] and "[md]" not in lines[index]:
            end = markers[position + 1] if position + 1 < len(markers) else len(lines)
            while end > index + 1 and not lines[end - 1].strip():
                end -= 1  # keep the blank lines between cells
            return index + 1, end
    raise ValueError("no code cell")


def rewrite_source(text, cell):
    """A jupytext percent script's text with its first code cell's body replaced by ``cell``."""
    lines = text.splitlines(keepends=True)
    start, end = _first_code_cell_lines(lines)
    return "".join(lines[:start]) + cell + "\n" + "".join(lines[end:])


# ---------------------------------------------------------------- the stored notebook (.ipynb)

def _dump(nb):
    """As nbformat writes a notebook (checked against the file before anything is replaced)."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def rewrite_notebook(text, cell):
    """A stored notebook's text with its first code cell's source replaced by ``cell``, and
    every other byte as it was."""
    nb = json.loads(text)
    if _dump(nb) != text:
        raise ValueError("not in nbformat's layout, so it cannot be edited byte for byte")
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    first["source"] = cell.splitlines(keepends=True)
    return _dump(nb)


def rewrite(path, text):
    """``text`` (the content of notebook or source ``path``) with the lesson's setup cell."""
    path = Path(path)
    cell = render(lesson_extra(path.stem))
    return rewrite_notebook(text, cell) if path.suffix == ".ipynb" else rewrite_source(text, cell)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python tools/setup_cell.py --check")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a setup cell differs")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks",
                        help="folder with src/*.py and *.ipynb (default: the checkout's notebooks/)")
    args = parser.parse_args(argv)
    paths = sorted(args.notebooks.glob("src/[0-9][0-9]_*.py")) + sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb"))
    differing = []
    for path in paths:
        old = path.read_text(encoding="utf-8")
        new = rewrite(path, old)
        if old != new:
            differing.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "differ" if args.check else "rewritten"
    print(f"{len(differing)} of {len(paths)} setup cells {verb}" + "".join(f"\n  {p.name}" for p in differing))
    return 1 if args.check and differing else 0


if __name__ == "__main__":
    sys.exit(main())
