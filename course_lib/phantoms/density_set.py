"""A SYNTHETIC BI-RADS density data set in the INFN folder layout.

:func:`build_density_phantom_dataset` writes mammogram phantoms of known density class,
converted by :func:`to_infn_style` to look like the INFN TestSet's 8-bit images, in the
layout that :func:`course_lib.datasets.density.read_density_dataset` reads.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from course_lib.datasets.density import (
    DENSITY_CLASSES, GROUND_TRUTH_FILE, PROJECTIONS, SPLIT_SETS, read_density_dataset,
)
from course_lib.io import atomic_output, write_png
from course_lib.phantoms.mammogram import DENSITY_THRESHOLDS, make_mammogram

__all__ = ["build_density_phantom_dataset", "to_infn_style"]


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
            write_png(path, image)
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
    """Convert a mammogram phantom to an image like the INFN TestSet's (8-bit, background 0, flat muscle patch).

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
