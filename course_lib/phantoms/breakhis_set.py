"""A SYNTHETIC BreakHis look-alike, written in a real BreakHis folder layout.

:func:`build_breakhis_phantom_dataset` writes histology phantoms
(:func:`~course_lib.phantoms.histology.make_histology`) with BreakHis file names in the
``"kaggle"`` or ``"archive"`` layout that :func:`course_lib.datasets.breakhis.read_breakhis`
reads, plus their tumour masks under ``masks/``.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from course_lib.datasets.breakhis import (
    ARCHIVE_ROOT, BENIGN_SUBTYPES, FOLDS_FILE, LAYOUTS, MAGNIFICATIONS, MALIGNANT_SUBTYPES, MASKS_FOLDER,
    SUBTYPES, magnification_folder, parse_breakhis_filename, read_breakhis,
)
from course_lib.io import atomic_output, write_png
from course_lib.phantoms.histology import make_histology

__all__ = ["build_breakhis_phantom_dataset"]


def build_breakhis_phantom_dataset(root, n_patients, images_per_patient_per_mag, layout="kaggle",
                                   seed=0, magnifications=MAGNIFICATIONS, test_fraction=0.3):
    """Write a synthetic BreakHis look-alike in a real BreakHis folder layout.

    Patients alternate between benign and malignant (in a shuffled order) and
    cycle through the four subtypes of their class; all of a patient's images
    share its subtype. The train/test split is made per patient, within each
    class, so no patient is on both sides. The same arguments write the same
    files.

    Parameters
    ----------
    root : path-like
        Output folder (created).
    n_patients : int
        Number of synthetic patients; ids are ``SYN0001``, ``SYN0002``, ...
    images_per_patient_per_mag : int
    layout : {"kaggle", "archive"}
        See the module docstring. "kaggle" writes ``fold1``; "archive" writes
        ``BreaKHis_v1/...`` and ``Folds.csv`` (fold 1).
    seed : int
    magnifications : sequence of int
    test_fraction : float
        Fraction of each class's patients put in the test split (at least
        one when the class has two patients or more).

    Returns
    -------
    pandas.DataFrame
        :func:`read_breakhis` of ``root``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(root)
    patients = _synthetic_patients(n_patients, test_fraction, seed)
    fold_rows = []
    for patient_index, patient in enumerate(patients):
        for magnification in magnifications:
            for seq in range(1, images_per_patient_per_mag + 1):
                image_seed = _image_seed(seed, patient_index, magnification, seq)
                phantom = make_histology(image_seed, patient["label"], patient["subtype"],
                                         magnification, patient_id=patient["patient_id"], seq=seq)
                relative = _relative_path(layout, phantom, patient["split"])
                write_png(root / relative, phantom.image)
                write_png(root / MASKS_FOLDER / relative, phantom.tumour_mask.astype(np.uint8) * 255)
                fold_rows.append({"fold": 1, "mag": int(magnification), "grp": patient["split"],
                                  "filename": relative.as_posix()})
    if layout == "archive":
        with atomic_output(root / FOLDS_FILE) as tmp:
            pd.DataFrame(fold_rows).to_csv(tmp, index=False)
    return read_breakhis(root)


def _synthetic_patients(n_patients, test_fraction, seed):
    """Patient records: id, label, subtype and split (split per class, per patient)."""
    rng = np.random.default_rng([seed, 0])
    labels = np.array(["benign", "malignant"] * (n_patients // 2 + 1))[:n_patients]
    labels = labels[rng.permutation(n_patients)]
    patients = []
    counts = {"benign": 0, "malignant": 0}
    for k, label in enumerate(labels):
        codes = sorted(BENIGN_SUBTYPES if label == "benign" else MALIGNANT_SUBTYPES)
        patients.append({"patient_id": f"SYN{k + 1:04d}", "label": str(label),
                         "subtype": codes[counts[label] % len(codes)], "split": "train"})
        counts[label] += 1
    for label, count in counts.items():
        n_test = int(round(test_fraction * count))
        if count >= 2:
            n_test = min(max(n_test, 1), count - 1)  # both splits see every class
        members = [p for p in patients if p["label"] == label]
        for index in rng.permutation(len(members))[:n_test]:
            members[index]["split"] = "test"
    return patients


def _image_seed(seed, patient_index, magnification, seq):
    """Independent, reproducible seed for one image."""
    return int(np.random.SeedSequence([seed, patient_index, magnification, seq]).generate_state(1)[0])


def _relative_path(layout, phantom, split):
    """Where an image goes in ``layout``, relative to the root."""
    fields = parse_breakhis_filename(phantom.filename)
    mag = magnification_folder(phantom.magnification)
    if layout == "kaggle":
        return Path("fold1", split, mag, f"{fields['label'][0].upper()}_{mag}", phantom.filename)
    patient_folder = (f"{fields['procedure']}_{fields['label'][0].upper()}_{fields['subtype']}"
                      f"_{fields['year']:02d}-{fields['patient_id']}")
    return Path(ARCHIVE_ROOT, fields["label"], fields["procedure"], SUBTYPES[fields["subtype"]],
                patient_folder, mag, phantom.filename)
