"""Exit 0 when the running interpreter is a prepared environment for this checkout.

Prepared means: the kit is importable *from this checkout* and the packages that the
course and the tests need are installed (a conda env made from environment.yml, a
Colab runtime after the setup cell, or an activated venv). The Makefile then uses that
interpreter instead of creating ``.venv``.
"""

import importlib.util
import sys
from pathlib import Path

NEEDED = ("torch", "torchvision", "pydicom", "pooch", "papermill", "nbval", "pytest", "jupytext", "ipykernel")

checkout = Path(__file__).resolve().parent.parent
spec = importlib.util.find_spec("course_lib")
from_checkout = spec is not None and Path(spec.origin).resolve().parent.parent == checkout
missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
sys.exit(0 if from_checkout and not missing else 1)
