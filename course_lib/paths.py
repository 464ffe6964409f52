"""Where the kit's own folders are, relative to this checkout (no absolute paths in notebooks)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_SAMPLES = REPO_ROOT / "data_samples"
PRETRAINED = REPO_ROOT / "pretrained"
NOTEBOOKS = REPO_ROOT / "notebooks"
BUILD = REPO_ROOT / "build"
