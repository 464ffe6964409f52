"""A SYNTHETIC CBIS-DDSM look-alike download, with every quirk of the real one.

:func:`build_cbis_ddsm_phantom_tree` writes phantom mammograms (DICOM, with ROI masks and
cropped lesions) in the folder tree a TCIA download writes, plus the four description
CSVs, reproducing the quirks listed in :mod:`course_lib.datasets.cbis_ddsm` (whose
readers then work the same on it and on the real download): CSV paths that do not match
the folders, two spellings of the density column, trailing newlines, swapped
cropped-image and ROI-mask paths, mammograms stored under both Mass- and Calc-.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.uid import generate_uid
from scipy import ndimage

from course_lib.datasets.cbis_ddsm import (
    CALC_COLUMNS, CSV_NAMES, DEFAULT_SHAPE, MASS_COLUMNS, PATH_COLUMNS, SPLIT_WORDS, TYPE_WORDS,
)
from course_lib.io import atomic_output
from course_lib.phantoms.dicom_writer import write_phantom_dicom
from course_lib.phantoms.mammogram import FULL_SHAPE, PIXELS_PER_MM, make_mammogram

__all__ = ["build_cbis_ddsm_phantom_tree"]


# --- synthetic tree -------------------------------------------------------------------

_UID_NAMESPACE = "course-kit synthetic CBIS-DDSM tree"
# Fixed study dates in TCIA's folder format: the tree never depends on the clock.
_STUDY_DATES = ("07-20-2016", "08-07-2016", "08-29-2017", "09-06-2017")
# Lesions of one breast; every patient has a breast with a mass and one with
# calcifications, so mass and calc CSVs exist in both splits. The pairs put
# a mass and calcifications on one mammogram (stored under Mass- and Calc-).
_MASS_BREAST = (
    ("malignant_mass",),
    ("benign_mass",),
    ("benign_mass", "calcifications"),
    ("malignant_mass", "benign_mass"),
)
_CALC_BREAST = (("calcifications",), ("calcifications", "malignant_mass"))
_PHANTOM_TYPES = {"benign_mass": "mass", "malignant_mass": "mass", "calcifications": "calc"}
# BI-RADS assessments and their probabilities given the pathology.
_ASSESSMENTS = {
    "MALIGNANT": ((0, 3, 4, 5), (0.05, 0.05, 0.45, 0.45)),
    "BENIGN": ((2, 3, 4), (0.3, 0.4, 0.3)),
    "BENIGN_WITHOUT_CALLBACK": ((2, 3), (0.8, 0.2)),
}
_SWAPPED_FRACTION = 0.25
_NEWLINE_FRACTION = 0.3
_SINGLE_SERIES_FRACTION = 0.5
_CROP_MARGIN_MM = 5.0  # context around the lesion in the cropped image


def _uid(seed, *parts):
    """A UID derived from the tree's seed and ``parts``, never from the clock."""
    return generate_uid(entropy_srcs=[_UID_NAMESPACE, str(seed), *map(str, parts)])


def _write_dicom(path, image, phantom, folder, study, series, instance):
    """Write ``image`` (the phantom or part of it) as one file of a CBIS-DDSM series.

    ``study`` has ``uid`` and ``date``, ``series`` ``uid`` and
    ``description``. The pixels and synthetic labels come from
    :func:`write_phantom_dicom`; the UIDs, dates and descriptions are then
    replaced, and the file moved into place only when complete.
    """
    with atomic_output(path) as tmp:
        # Crops keep the pixel size of the mammogram they come from.
        spacing = FULL_SHAPE[0] / (PIXELS_PER_MM * phantom.image.shape[0])
        write_phantom_dicom(
            tmp, image, phantom.view, phantom.side, bits_stored=16,
            patient_id=f"SYNTH-{folder}", pixel_spacing_mm=spacing,
        )  # fmt: skip
        ds = pydicom.dcmread(tmp)
        ds.StudyInstanceUID = study["uid"]
        ds.SeriesInstanceUID = series["uid"]
        month, day, year = study["date"].split("-")
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = year + month + day
        ds.StudyDescription = "SYNTHETIC DDSM"
        ds.SeriesDescription = f"SYNTHETIC {series['description']}"
        ds.InstanceNumber = instance
        ds.save_as(tmp, enforce_file_format=True)


def _series_folder(tree, folder, study, series):
    """TCIA download folder of a series.

    ``<folder>/<date>-DDSM-<n>/1.000000-<description>-<n>``, where the numbers
    are the last five digits of the study and series UIDs.
    """
    return (
        tree
        / folder
        / f"{study['date']}-DDSM-{study['uid'][-5:]}"
        / f"1.000000-{series['description']}-{series['uid'][-5:]}"
    )


def _csv_path(folder, study, series, number):
    """A path as the description CSVs write it (the pre-2017 NBIA layout)."""
    return f"{folder}/{study['uid']}/{series['uid']}/{number:06d}.dcm"


def _new_study(seed, folder, rng):
    """UID and TCIA-style date of the study of ``folder``."""
    return {"uid": _uid(seed, folder, "study"), "date": str(rng.choice(_STUDY_DATES))}


def _write_full(tree, phantom, folder, seed, rng):
    """Full mammogram series of ``folder``; returns (disk path, CSV path)."""
    study = _new_study(seed, folder, rng)
    series = {"uid": _uid(seed, folder, "full"), "description": "full mammogram images"}
    path = _series_folder(tree, folder, study, series) / "1-1.dcm"
    _write_dicom(path, phantom.image, phantom, folder, study, series, 1)
    return path, _csv_path(folder, study, series, 0)


def _crop_box(lesion_mask):
    """Slices of the lesion's bounding box widened by ``_CROP_MARGIN_MM`` of context."""
    margin = round(_CROP_MARGIN_MM * PIXELS_PER_MM * lesion_mask.shape[0] / FULL_SHAPE[0])
    (box,) = ndimage.find_objects(lesion_mask.astype(np.uint8))
    return tuple(slice(max(b.start - margin, 0), b.stop + margin) for b in box)


def _write_lesion(tree, phantom, lesion_mask, folder, seed, rng):
    """ROI mask and cropped image of one lesion.

    Like CBIS-DDSM, some lesions keep both files in one "ROI mask images"
    series (as 1-1.dcm and 1-2.dcm, in either order), others use a second
    "cropped images" series. Returns a dict of disk and CSV paths.
    """
    study = _new_study(seed, folder, rng)
    mask_series = {"uid": _uid(seed, folder, "roi"), "description": "ROI mask images"}
    mask_folder = _series_folder(tree, folder, study, mask_series)
    single_series = rng.random() < _SINGLE_SERIES_FRACTION
    if single_series:
        crop_series, crop_folder = mask_series, mask_folder
        mask_number, crop_number = (1, 2) if rng.random() < 0.5 else (2, 1)
        csv_crop, csv_mask = (_csv_path(folder, study, mask_series, n) for n in (0, 1))
    else:
        crop_series = {"uid": _uid(seed, folder, "cropped"), "description": "cropped images"}
        crop_folder = _series_folder(tree, folder, study, crop_series)
        mask_number = crop_number = 1
        csv_crop = _csv_path(folder, study, crop_series, 0)
        csv_mask = _csv_path(folder, study, mask_series, 0)
    mask = lesion_mask.astype(np.uint16) * 255
    crop = phantom.image[_crop_box(lesion_mask)]
    mask_path = mask_folder / f"1-{mask_number}.dcm"
    crop_path = crop_folder / f"1-{crop_number}.dcm"
    _write_dicom(mask_path, mask, phantom, folder, study, mask_series, mask_number)
    _write_dicom(crop_path, crop, phantom, folder, study, crop_series, crop_number)
    return {
        "roi_mask_file": str(mask_path),
        "cropped_file": str(crop_path),
        "csv_roi": csv_mask,
        "csv_cropped": csv_crop,
        "single_series": single_series,
    }


def _lesion_description(kind, rng):
    """Pathology and the CSV's descriptors of a phantom lesion of ``kind``."""
    if kind == "benign_mass":
        pathology = str(rng.choice(["BENIGN", "BENIGN_WITHOUT_CALLBACK"], p=[0.7, 0.3]))
        shape_type = str(rng.choice(["OVAL", "ROUND", "LOBULATED"]))
        margins_distribution = str(rng.choice(["CIRCUMSCRIBED", "OBSCURED"], p=[0.8, 0.2]))
    elif kind == "malignant_mass":
        pathology, shape_type, margins_distribution = "MALIGNANT", "IRREGULAR", "SPICULATED"
    else:
        # The phantom's calcification clusters are malignant.
        pathology = "MALIGNANT"
        shape_type = str(rng.choice(["PLEOMORPHIC", "FINE_LINEAR_BRANCHING", "AMORPHOUS"]))
        margins_distribution = "CLUSTERED"
    values, probabilities = _ASSESSMENTS[pathology]
    return {
        "pathology": pathology,
        "assessment": int(rng.choice(values, p=probabilities)),
        "subtlety": int(rng.integers(2, 6)),
        "shape_type": shape_type,
        "margins_distribution": margins_distribution,
    }


def _write_view(tree, phantom, patient, split, seed, rng):
    """Every series of one phantom mammogram; one record per lesion."""
    side = "LEFT" if phantom.side == "L" else "RIGHT"
    records = []
    for abn_type in ("mass", "calc"):
        lesions = [
            (i, m) for i, m in enumerate(phantom.lesion_masks) if _PHANTOM_TYPES[m.kind] == abn_type
        ]
        if not lesions:
            continue
        folder = f"{TYPE_WORDS[abn_type]}-{SPLIT_WORDS[split]}_{patient}_{side}_{phantom.view}"
        full_file, csv_full = _write_full(tree, phantom, folder, seed, rng)
        for abn_num, (lesion_index, lesion) in enumerate(lesions, start=1):
            files = _write_lesion(tree, phantom, lesion.mask, f"{folder}_{abn_num}", seed, rng)
            records.append(
                {
                    "patient_id": patient,
                    "side": side,
                    "view": phantom.view,
                    "abn_num": abn_num,
                    "abnormality_type": abn_type,
                    "split": split,
                    "kind": lesion.kind,
                    "lesion_index": lesion_index,
                    "breast_density": "ABCD".index(phantom.density) + 1,
                    "full_file": str(full_file),
                    "csv_full": csv_full,
                    **files,
                    **_lesion_description(lesion.kind, rng),
                }
            )
    return records


def _chosen(rng, n, fraction):
    """Boolean mask of ``n`` rows with ``round(fraction * n)`` (at least one) chosen."""
    chosen = np.zeros(n, bool)
    if n:
        chosen[rng.choice(n, max(1, round(fraction * n)), replace=False)] = True
    return chosen


def _write_csv(table, path):
    """Write ``table`` as CSV, atomically."""
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False)


def _write_description_csv(root, abn_type, split, records, rng):
    """One description CSV with CBIS-DDSM's columns and quirks; returns the truth rows."""
    swapped = _chosen(rng, len(records), _SWAPPED_FRACTION)
    newline = _chosen(rng, len(records), _NEWLINE_FRACTION)
    newline_columns = [str(rng.choice(PATH_COLUMNS)) if flag else None for flag in newline]
    columns = MASS_COLUMNS if abn_type == "mass" else CALC_COLUMNS
    rows = []
    for record, swap, newline_column in zip(records, swapped, newline_columns):
        cropped, roi = record["csv_cropped"], record["csv_roi"]
        if swap:
            cropped, roi = roi, cropped
        paths = dict(zip(PATH_COLUMNS, (record["csv_full"], cropped, roi)))
        if newline_column:
            paths[newline_column] += "\n"
        values = [
            record["patient_id"], record["breast_density"], record["side"], record["view"],
            record["abn_num"], "mass" if abn_type == "mass" else "calcification",
            record["shape_type"], record["margins_distribution"], record["assessment"],
            record["pathology"], record["subtlety"], *paths.values(),
        ]  # fmt: skip
        rows.append(dict(zip(columns, values)))
    name = CSV_NAMES[(abn_type, split)]
    _write_csv(pd.DataFrame(rows, columns=columns), root / name)
    truth = pd.DataFrame(records)
    truth.insert(0, "csv_row", range(len(truth)))
    truth.insert(0, "source_csv", name)
    truth["swapped"] = swapped
    truth["newline_column"] = newline_columns
    return truth


def build_cbis_ddsm_phantom_tree(
    root, n_patients=6, seed=0, shape=DEFAULT_SHAPE, test_fraction=1 / 3
):
    """Write a SYNTHETIC CBIS-DDSM download: DICOM tree and description CSVs.

    Layout as a TCIA download writes it, e.g.
    ``root/CBIS-DDSM/Mass-Training_P_S0001_LEFT_CC/07-20-2016-DDSM-<n>/
    1.000000-full mammogram images-<n>/1-1.dcm`` and
    ``.../Mass-Training_P_S0001_LEFT_CC_1/...-DDSM-<n>/1.000000-ROI mask images-<n>/1-1.dcm``;
    the four description CSVs go to ``root``, with CBIS-DDSM's names,
    columns and quirks (see the module docstring). Each patient (``P_S0001``
    ...) has four views and lies in one split; every breast has one or two
    lesions, and a breast with a mass and calcifications appears under both
    ``Mass-`` and ``Calc-``.

    Parameters
    ----------
    root : str or path
    n_patients : int
    seed : int
        The same seed gives the same bytes.
    shape : (int, int)
        Phantom size (rows, cols).
    test_fraction : float
        Fraction of patients in the test split (at least one when
        ``n_patients >= 2``).

    Returns
    -------
    truth : DataFrame
        One row per lesion: what the CSVs say, the files actually written
        (``full_file``, ``roi_mask_file``, ``cropped_file``), the quirks of
        the row (``swapped``, ``newline_column``) and how to redraw its
        phantom (``phantom_seed``, ``dense_fraction``, ``lesion_kinds``,
        ``lesion_index``).
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be at least 1, got {n_patients}")
    root = Path(root)
    tree = root / "CBIS-DDSM"
    tree.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_test = min(max(round(n_patients * test_fraction), 1), n_patients - 1)
    test_numbers = set(rng.choice(np.arange(1, n_patients + 1), n_test, replace=False).tolist())
    records = []
    for number in range(1, n_patients + 1):
        patient = f"P_S{number:04d}"
        split = "test" if number in test_numbers else "train"
        dense_fraction = float(rng.uniform(0.1, 0.85))
        mass_side = rng.choice(["L", "R"])
        for side_index, side in enumerate(("L", "R")):
            menu = _MASS_BREAST if side == mass_side else _CALC_BREAST
            kinds = menu[rng.integers(len(menu))]
            for view_index, view in enumerate(("CC", "MLO")):
                sequence = np.random.SeedSequence([seed, number, side_index, view_index])
                phantom_seed = int(sequence.generate_state(1)[0])
                phantom = make_mammogram(
                    phantom_seed, view, side, shape, dense_fraction=dense_fraction, lesions=kinds
                )
                for record in _write_view(tree, phantom, patient, split, seed, rng):
                    record.update(
                        phantom_seed=phantom_seed,
                        dense_fraction=dense_fraction,
                        lesion_kinds=";".join(kinds),
                    )
                    records.append(record)
    truths = []
    for (abn_type, split), name in CSV_NAMES.items():
        selected = [r for r in records if (r["abnormality_type"], r["split"]) == (abn_type, split)]
        if selected:
            truths.append(_write_description_csv(root, abn_type, split, selected, rng))
    return pd.concat(truths, ignore_index=True)


