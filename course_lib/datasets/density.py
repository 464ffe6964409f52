"""BI-RADS density data sets in the INFN layout: a synthetic builder and readers.

The INFN density classifier (SEED_SPECS section 1) trains one network per
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
from PIL import Image

from course_lib.io import atomic_output
from course_lib.phantoms.mammogram import DENSITY_THRESHOLDS, make_mammogram

__all__ = [
    "PROJECTIONS",
    "DENSITY_CLASSES",
    "SPLIT_SETS",
    "INFN_TEST_COUNTS",
    "GROUND_TRUTH_FILE",
    "build_density_phantom_dataset",
    "to_infn_style",
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


# --------------------------------------------------------------------------- build

def build_density_phantom_dataset(root, n_per_class, projections=PROJECTIONS, splits=None, seed=0,
                                  shape=None):
    """Write synthetic mammograms (synthetic data) in the INFN folder layout.

    Each synthetic patient has one density class and appears in every
    projection, as in the INFN test set; patients, not images, are split.
    A patient's dense fraction is drawn from the middle of its class's band
    (:data:`~course_lib.phantoms.mammogram.DENSITY_THRESHOLDS`) and each
    phantom's measured class is checked against its folder.

    Parameters
    ----------
    root : path-like
        Output folder (created).
    n_per_class : int
        Patients per class.
    projections : sequence of str
        Subset of :data:`PROJECTIONS`.
    splits : dict, optional
        Fraction of each class's patients per split, keys from
        :data:`SPLIT_SETS`; default ``{"train": 0.6, "validation": 0.2,
        "test": 0.2}``.
    seed : int
    shape : (int, int), optional
        Phantom size before cropping; the mammogram phantom's default if None.

    Returns
    -------
    pandas.DataFrame
        :func:`read_density_dataset` of ``root``. The per-image truth is also
        written to ``root / GROUND_TRUTH_FILE``.
    """
    splits = {"train": 0.6, "validation": 0.2, "test": 0.2} if splits is None else dict(splits)
    if set(splits) - set(SPLIT_SETS):
        raise ValueError(f"splits must be among {list(SPLIT_SETS)}, got {list(splits)}")
    if set(projections) - set(PROJECTIONS):
        raise ValueError(f"projections must be among {PROJECTIONS}, got {list(projections)}")
    root = Path(root)
    truth = []
    for patient in _density_patients(n_per_class, splits, seed):
        for projection in projections:
            phantom, image = _infn_phantom(seed, patient, projection, shape)
            view, side = projection.split("_")
            name = f"{patient['patient_id']}_1_{patient['label']}_{view}_{side}.png"
            path = (root / SPLIT_SETS[patient["split"]] / projection / patient["split"]
                    / patient["label"] / name)
            with atomic_output(path) as tmp:
                Image.fromarray(image).save(tmp, format="PNG")
            truth.append({"path": path.relative_to(root).as_posix(), "patient_id": patient["patient_id"],
                          "projection": projection, "split": patient["split"],
                          "label": patient["label"], "seed": phantom.seed,
                          "dense_fraction": phantom.measured_dense_fraction,
                          "measured_label": phantom.density, "synthetic": True})
    with atomic_output(root / GROUND_TRUTH_FILE) as tmp:
        pd.DataFrame(truth).to_csv(tmp, index=False)
    return read_density_dataset(root)


def _density_patients(n_per_class, splits, seed):
    """Patient records (number, id, label, split, dense fraction); split by patient within each class."""
    rng = np.random.default_rng([seed, 1])
    edges = (0.0, *DENSITY_THRESHOLDS, 1.0)
    patients = []
    for k, label in enumerate(DENSITY_CLASSES):
        # the middle 60 % of the class's band keeps the measured class stable
        low, high = edges[k], edges[k + 1]
        fractions = rng.uniform(low + 0.2 * (high - low), high - 0.2 * (high - low), n_per_class)
        for split, fraction in zip(_allocate(n_per_class, splits, rng), fractions):
            patients.append({"label": label, "split": split, "dense_fraction": float(fraction)})
    # ids in random order, so that an id says nothing about the class
    for number, index in enumerate(rng.permutation(len(patients)), start=1):
        patients[index].update(number=number, patient_id=f"SYN{number:04d}")
    return patients


def _allocate(n, fractions, rng):
    """Shuffled list of ``n`` split names in the given proportions (largest remainder)."""
    names = list(fractions)
    weights = np.array([fractions[name] for name in names], float)
    quotas = n * weights / weights.sum()
    counts = np.floor(quotas).astype(int)
    for index in np.argsort(counts - quotas)[: n - counts.sum()]:
        counts[index] += 1
    return list(rng.permutation(np.repeat(names, counts)))


def _infn_phantom(seed, patient, projection, shape, attempts=5):
    """A phantom of the patient's class for one projection, and its INFN-style image."""
    view, side = projection.split("_")
    for attempt in range(attempts):
        sequence = np.random.SeedSequence([seed, patient["number"], PROJECTIONS.index(projection), attempt])
        rng = np.random.default_rng(sequence)
        # the same breast in four views: a little spread around the patient's fraction
        fraction = float(np.clip(patient["dense_fraction"] + rng.normal(0, 0.02), 0.02, 0.98))
        phantom = make_mammogram(int(sequence.generate_state(1)[0]), view=view, side=side,
                                 shape=shape, dense_fraction=fraction, lesions=())
        if phantom.density == patient["label"]:
            image = to_infn_style(phantom, fat_level=rng.uniform(140, 165),
                                  max_level=rng.uniform(185, 230))
            return phantom, image
    raise RuntimeError(f"no phantom of class {patient['label']} for {patient['patient_id']} "
                       f"{projection} in {attempts} attempts")


def to_infn_style(phantom, fat_level=150.0, max_level=210.0):
    """Convert a mammogram phantom to an image like the INFN set's (SEED_SPECS 1.2).

    Grey levels are mapped linearly so that fatty tissue (the median of the
    non-dense breast) lands on ``fat_level`` and the 99.9th percentile of the
    breast on ``max_level``; the background is set to 0 (breast pixels to at
    least 1), an MLO pectoral muscle is replaced by the mean breast grey
    level, and the image is cropped to the breast's bounding box.

    Parameters
    ----------
    phantom : course_lib.phantoms.mammogram.MammogramPhantom
    fat_level, max_level : float
        INFN images have fatty tissue at about 140-165 and peaks at 172-234.

    Returns
    -------
    image : 2-D uint8 ndarray
    """
    breast = phantom.breast_mask
    tissue = breast & ~phantom.pectoral_mask
    values = phantom.image.astype(np.float64)
    fat_pixels = tissue & ~phantom.dense_mask
    fat = np.median(values[fat_pixels if fat_pixels.any() else tissue])
    top = np.percentile(values[tissue], 99.9)
    grey = fat_level + (values - fat) * (max_level - fat_level) / max(top - fat, 1.0)
    grey = np.clip(np.rint(grey), 1, 255)
    grey[~breast] = 0
    grey[phantom.pectoral_mask] = np.rint(grey[tissue].mean())
    rows = np.flatnonzero(breast.any(axis=1))
    cols = np.flatnonzero(breast.any(axis=0))
    return grey[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1].astype(np.uint8)


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
