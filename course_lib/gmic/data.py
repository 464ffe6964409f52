"""GMIC-style exams: synthetic phantoms written in GMIC's sample-data layout, and readers.

The layout (docs/original_pipelines.md, GMIC data formats) that GMIC's scripts and the kit's loaders read::

    <root>/images/<exam>_<VIEW>.png                      16-bit PNG, as the detector wrote it
                                                          (R views face left)
    <root>/segmentation/<exam>_<VIEW>_<benign|malignant>.png
                                                          8-bit 0/255, in the *model frame*:
                                                          the preprocessed window, facing right
    <root>/exam_list_before_cropping.json                 the kit's exam-list format
    <root>/exam_list_before_cropping.pkl                  the same, as GMIC's legacy pickle

Segmentations exist only for views with a lesion of that class, as in GMIC's samples.
The phantoms are synthetic (CC0) and say so in every exam's ``synthetic`` key.
"""

import pickle
from pathlib import Path

import numpy as np

from course_lib.exam_list import LABEL_KEYS, VIEWS, cancer_label, write_exam_list
from course_lib.gmic.config import GMICGeometry
from course_lib.gmic.preprocess import mask_in_model_frame, preprocess_view
from course_lib.io import atomic_output, write_png
from course_lib.phantoms.mammogram import make_mammogram


DENSE_RANGE = (0.1, 0.85)


def _exam_phantoms(exam_index, seed, shape, dense_range=DENSE_RANGE, lesion_contrast=1.0):
    """Four views of one synthetic patient: one density, at most one lesion kind on one side."""
    rng = np.random.default_rng([seed, exam_index])
    dense_fraction = float(rng.uniform(*dense_range))
    lesion_side = rng.choice(["L", "R", None], p=[0.35, 0.35, 0.30])
    # Half the lesion breasts benign, half malignant (masses or calcifications).
    kind = str(rng.choice(["benign_mass", "malignant_mass", "calcifications"], p=[0.5, 0.25, 0.25]))
    phantoms = {}
    for number, view in enumerate(VIEWS):
        side, projection = view.split("-")
        lesions = (kind,) if side == lesion_side else ()
        phantoms[view] = make_mammogram(int(rng.integers(2**31)) + number, view=projection, side=side,
                                        shape=shape, dense_fraction=dense_fraction, lesions=lesions,
                                        lesion_contrast=lesion_contrast)
    return phantoms


def build_gmic_phantom_exams(root, n_exams, seed=0, shape=None, geometry=GMICGeometry.quarter()):
    """Write ``n_exams`` synthetic exams in GMIC's sample-data layout under ``root``.

    Returns the exam list (also written as JSON and as GMIC's legacy pickle).
    """
    root = Path(root)
    exams = []
    for exam_index in range(n_exams):
        phantoms = _exam_phantoms(exam_index, seed, shape)
        exam = {"horizontal_flip": "NO", "synthetic": True}
        flags = dict.fromkeys(LABEL_KEYS, 0)
        for view, phantom in phantoms.items():
            short = f"{exam_index}_{view}"
            exam[view] = [short]
            write_png(root / "images" / f"{short}.png", phantom.image)
            for name in ("benign", "malignant"):
                exam[f"{view}_{name}_seg"] = [f"{short}_{name}"]
            side = "left" if view.startswith("L") else "right"
            flags[f"{side}_benign"] |= int(phantom.benign_mask.any())
            flags[f"{side}_malignant"] |= int(phantom.malignant_mask.any())
            if phantom.benign_mask.any() or phantom.malignant_mask.any():
                _, info = preprocess_view(phantom.image, view, "NO", geometry)
                for name, mask in (("benign", phantom.benign_mask), ("malignant", phantom.malignant_mask)):
                    if mask.any():
                        framed = mask_in_model_frame(mask, view, info, "NO", geometry)
                        write_png(root / "segmentation" / f"{short}_{name}.png", framed.astype(np.uint8) * 255)
        exam["cancer_label"] = cancer_label(**flags)
        exams.append(exam)
    write_exam_list(root / "exam_list_before_cropping.json", exams)
    with atomic_output(root / "exam_list_before_cropping.pkl") as tmp:
        tmp.write_bytes(pickle.dumps(exams, protocol=4))
    return exams


def segmentation_paths(seg_dir, short_name):
    """The (benign, malignant) segmentation paths of one image, None where absent
    (GMIC probes the files; the exam list's ``*_seg`` keys list names that may not exist)."""
    seg_dir = Path(seg_dir)
    found = [seg_dir / f"{short_name}_{name}.png" for name in ("benign", "malignant")]
    return tuple(p if p.is_file() else None for p in found)


def gmic_phantom_views(n_exams, seed=0, shape=None, geometry=GMICGeometry.quarter(), dense_range=DENSE_RANGE,
                       lesion_contrast=1.0):
    """Model-ready SYNTHETIC views, in memory: what training and evaluation consume.

    Returns a dict of arrays over the ``4 * n_exams`` views: ``windows`` (N, H, W) float32
    standardised inputs, ``labels`` (N, 2) benign/malignant, ``benign_masks`` and
    ``malignant_masks`` (N, H, W) bool in the model frame, and ``names`` ("<exam>_<VIEW>").
    The same exams as :func:`build_gmic_phantom_exams` with the same seed (and the
    default ``dense_range``, the interval the dense fraction is drawn from, and
    ``lesion_contrast``, see :func:`~course_lib.phantoms.mammogram.make_mammogram`).
    """
    windows, labels, benign, malignant, names = [], [], [], [], []
    for exam_index in range(n_exams):
        for view, phantom in _exam_phantoms(exam_index, seed, shape, dense_range, lesion_contrast).items():
            window, info = preprocess_view(phantom.image, view, "NO", geometry)
            windows.append(window)
            labels.append((int(phantom.benign_mask.any()), int(phantom.malignant_mask.any())))
            benign.append(mask_in_model_frame(phantom.benign_mask, view, info, "NO", geometry))
            malignant.append(mask_in_model_frame(phantom.malignant_mask, view, info, "NO", geometry))
            names.append(f"{exam_index}_{view}")
    return {
        "windows": np.stack(windows),
        "labels": np.array(labels, dtype=np.float32),
        "benign_masks": np.stack(benign),
        "malignant_masks": np.stack(malignant),
        "names": names,
    }
