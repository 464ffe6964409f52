"""BI-RADS density data sets in the INFN layout: readers (the phantom builder is
:func:`course_lib.phantoms.density_set.build_density_phantom_dataset`).

The INFN density classifier (Scapicchio and Lizzi, ML-INFN 2021) trains one network per
projection and reads its images with Keras' directory iterator::

    TrainingSet/<PROJ>/train/<A|B|C|D>/*.png
    ValidationSet/<PROJ>/validation/<A|B|C|D>/*.png
    TestSet/<PROJ>/test/<A|B|C|D>/*.png

with ``PROJ`` one of CC_L, CC_R, MLO_L, MLO_R and file names
``<patientID>_1_<class>_<CC|MLO>_<L|R>.png``. Its images are 8-bit grey PNGs,
tightly cropped to the breast, with the background set to 0 and, in MLO views,
the pectoral muscle replaced by a flat patch at the mean breast grey level.

Row order matters: the published prediction files (128 rows x 4 softmax
columns, no image names) are in the iterator's order, class folder A, B, C, D,
then file names sorted as strings; their labels are rebuilt from the class
counts alone (:func:`infn_test_labels`). :func:`read_density_dataset` returns
rows in that order.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "PROJECTIONS",
    "DENSITY_CLASSES",
    "SPLIT_SETS",
    "INFN_TEST_COUNTS",
    "GROUND_TRUTH_FILE",
    "read_density_dataset",
    "read_infn_predictions",
    "infn_test_labels",
]

PROJECTIONS = ("CC_L", "CC_R", "MLO_L", "MLO_R")
DENSITY_CLASSES = ("A", "B", "C", "D")
#: Split name -> top folder of the INFN layout.
SPLIT_SETS = {"train": "TrainingSet", "validation": "ValidationSet", "test": "TestSet"}
#: Images per class (A, B, C, D) in each projection of the INFN test set.
INFN_TEST_COUNTS = (14, 51, 50, 13)
#: Per-image truth of a synthetic set (seed, dense fraction, ...), at its root.
GROUND_TRUTH_FILE = "ground_truth.csv"

_FILENAME_PATTERN = re.compile(
    r"^(?P<patient_id>[^_]+)_(?P<exam>\d+)_(?P<label>[ABCD])_(?P<view>CC|MLO)_(?P<side>[LR])\.png$")
_COLUMNS = ["path", "projection", "view", "side", "split", "label", "label_index", "patient_id"]


# --------------------------------------------------------------------------- read

def read_density_dataset(root):
    """Index a density set in the INFN layout (synthetic or the real INFN TestSet).

    ``root`` may be the folder holding TrainingSet/ValidationSet/TestSet, one
    of those, or any folder above ``<PROJ>/<split>/<class>/<file>.png``.

    Returns
    -------
    pandas.DataFrame
        Columns ``path``, ``projection``, ``view``, ``side``, ``split``,
        ``label`` (letter, from the class folder), ``label_index`` (A=0 ...
        D=3) and ``patient_id`` (from the file name, None if it does not
        follow the convention). Rows are sorted by projection, split, class
        folder and file name as a string: within one projection and split
        this is the Keras directory-iterator order of the published
        prediction files.
    """
    rows = []
    for path in Path(root).rglob("*.png"):
        projection, split, label = (path.parts[-4:-1] + ("",) * 3)[:3]
        if projection not in PROJECTIONS or split not in SPLIT_SETS or label not in DENSITY_CLASSES:
            continue
        match = _FILENAME_PATTERN.match(path.name)
        view, side = projection.split("_")
        rows.append({"path": str(path), "projection": projection, "view": view, "side": side,
                     "split": split, "label": label, "label_index": DENSITY_CLASSES.index(label),
                     "patient_id": match["patient_id"] if match else None})
    rows.sort(key=lambda row: (PROJECTIONS.index(row["projection"]), list(SPLIT_SETS).index(row["split"]),
                               row["label"], Path(row["path"]).name))
    return pd.DataFrame(rows, columns=_COLUMNS)


def read_infn_predictions(path):
    """Read a published INFN prediction file: (n, 4) softmax rows for A, B, C, D.

    The files hold 128 rows, in the order of :func:`read_density_dataset`
    for the test split of one projection, and no image names.
    """
    predictions = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if predictions.shape[1] != len(DENSITY_CLASSES):
        raise ValueError(f"{path}: expected 4 columns (A, B, C, D), got {predictions.shape[1]}")
    return predictions


def infn_test_labels():
    """True class indices of the rows of the INFN prediction files: 14x0, 51x1, 50x2, 13x3."""
    return np.repeat(np.arange(len(DENSITY_CLASSES)), INFN_TEST_COUNTS)
