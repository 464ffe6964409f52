"""CBIS-DDSM: a synthetic look-alike download, and reading, matching and converting one.

CBIS-DDSM (Lee et al., Sci Data 2017, hosted by TCIA) ships scanned-film
mammograms as DICOM, one folder per image and per lesion, and four
description CSVs with one row per lesion. Using it means working around its
known quirks:

- the CSV paths (``<folder>/<StudyInstanceUID>/<SeriesInstanceUID>/000000.dcm``)
  do not match the folders a TCIA download writes
  (``<folder>/<date>-DDSM-<n>/1.000000-full mammogram images-<n>/1-1.dcm``);
- mass and calc CSVs spell the density column differently
  ("breast_density" and "breast density");
- some path strings end with a newline;
- in some rows the cropped-image and ROI-mask paths are swapped;
- a mammogram with a mass and calcifications is stored twice, once under
  ``Mass-...`` and once under ``Calc-...``.

:func:`build_cbis_ddsm_phantom_tree` writes a small SYNTHETIC tree with all of
these quirks, so the course can run the whole pipeline without the 160 GB
download. :func:`read_cbis_ddsm_csvs`, :func:`index_dicoms`,
:func:`match_cbis_ddsm` and :func:`convert_cbis_ddsm` work the same on the
real download and on the phantom tree.
"""

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.uid import generate_uid
from scipy import ndimage

from course_lib.io import atomic_output
from course_lib.dicom import read_mammogram, to_png16
from course_lib.io import write_png
from course_lib.phantoms.dicom_writer import write_phantom_dicom
from course_lib.phantoms.mammogram import FULL_SHAPE, PIXELS_PER_MM, make_mammogram

__all__ = [
    "build_cbis_ddsm_phantom_tree",
    "read_cbis_ddsm_csvs",
    "index_dicoms",
    "match_cbis_ddsm",
    "convert_cbis_ddsm",
    "CSV_NAMES",
    "MASS_COLUMNS",
    "CALC_COLUMNS",
    "DEFAULT_SHAPE",
]

#: Description CSV file name of each (abnormality type, split).
CSV_NAMES = {
    ("mass", "train"): "mass_case_description_train_set.csv",
    ("mass", "test"): "mass_case_description_test_set.csv",
    ("calc", "train"): "calc_case_description_train_set.csv",
    ("calc", "test"): "calc_case_description_test_set.csv",
}

_PATH_COLUMNS = ["image file path", "cropped image file path", "ROI mask file path"]
#: Column names of the mass CSVs, in CBIS-DDSM's order and spelling.
MASS_COLUMNS = [
    "patient_id", "breast_density", "left or right breast", "image view",
    "abnormality id", "abnormality type", "mass shape", "mass margins",
    "assessment", "pathology", "subtlety", *_PATH_COLUMNS,
]  # fmt: skip
#: Column names of the calc CSVs: note "breast density" with a space.
CALC_COLUMNS = [
    "patient_id", "breast density", "left or right breast", "image view",
    "abnormality id", "abnormality type", "calc type", "calc distribution",
    "assessment", "pathology", "subtlety", *_PATH_COLUMNS,
]  # fmt: skip

#: Phantom size: an eighth of the full field, so a tree builds in seconds.
DEFAULT_SHAPE = (368, 240)

# Folder prefixes of the tree, e.g. "Mass-Training".
_TYPE_WORDS = {"mass": "Mass", "calc": "Calc"}
_SPLIT_WORDS = {"train": "Training", "test": "Test"}

_CSV_NAME = re.compile(r"(mass|calc)_case_description_(train|test)_set\.csv")
# CSV column -> table column; the others keep their names.
_RENAMES = {
    "breast density": "breast_density",
    "left or right breast": "side",
    "image view": "view",
    "abnormality id": "abn_num",
    "mass shape": "mass_shape",
    "mass margins": "mass_margins",
    "calc type": "calc_type",
    "calc distribution": "calc_distribution",
    "image file path": "csv_image_path",
    "cropped image file path": "csv_cropped_path",
    "ROI mask file path": "csv_roi_path",
}
_UID = re.compile(r"[0-9]+(\.[0-9]+)+")

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
        folder = f"{_TYPE_WORDS[abn_type]}-{_SPLIT_WORDS[split]}_{patient}_{side}_{phantom.view}"
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
    newline_columns = [str(rng.choice(_PATH_COLUMNS)) if flag else None for flag in newline]
    columns = MASS_COLUMNS if abn_type == "mass" else CALC_COLUMNS
    rows = []
    for record, swap, newline_column in zip(records, swapped, newline_columns):
        cropped, roi = record["csv_cropped"], record["csv_roi"]
        if swap:
            cropped, roi = roi, cropped
        paths = dict(zip(_PATH_COLUMNS, (record["csv_full"], cropped, roi)))
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


# --- reading the CSVs -----------------------------------------------------------------

_CSV_TABLE_COLUMNS = [
    "patient_id", "side", "view", "abn_num", "abnormality_type", "pathology",
    "malignant", "breast_density", "assessment", "subtlety", "split",
    "mass_shape", "mass_margins", "calc_type", "calc_distribution",
    "csv_image_path", "csv_cropped_path", "csv_roi_path",
    "image_study_uid", "image_series_uid", "cropped_study_uid",
    "cropped_series_uid", "roi_study_uid", "roi_series_uid", "source_csv",
]  # fmt: skip


def _uids_from_csv_path(path):
    """(StudyInstanceUID, SeriesInstanceUID) of a CSV path, or (None, None)."""
    parts = path.split("/") if isinstance(path, str) else []
    if len(parts) >= 4 and _UID.fullmatch(parts[-3]) and _UID.fullmatch(parts[-2]):
        return parts[-3], parts[-2]
    return None, None


def _read_description_csv(path, abn_type, split):
    """One description CSV with normalised column names and values."""
    table = pd.read_csv(path, dtype=str)
    table.columns = table.columns.str.strip()
    table = table.rename(columns=_RENAMES)
    for column in table.columns:
        table[column] = table[column].str.strip()  # also drops the trailing newlines
    table["abnormality_type"] = abn_type  # the file says it; the column says "calcification"
    table["split"] = split
    table["source_csv"] = path.name
    table["side"] = table["side"].str.upper()
    table["view"] = table["view"].str.upper()
    for column in ("abn_num", "breast_density", "assessment", "subtlety"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    table["malignant"] = table["pathology"].str.upper().str.startswith("MALIGNANT")
    for name in ("image", "cropped", "roi"):
        uids = [_uids_from_csv_path(p) for p in table[f"csv_{name}_path"]]
        table[f"{name}_study_uid"] = [u[0] for u in uids]
        table[f"{name}_series_uid"] = [u[1] for u in uids]
    return table.reindex(columns=_CSV_TABLE_COLUMNS)


def read_cbis_ddsm_csvs(root):
    """All CBIS-DDSM description CSVs under ``root`` as one normalised table.

    Columns: patient_id, side (LEFT/RIGHT), view (CC/MLO), abn_num,
    abnormality_type (mass/calc, from the file name), pathology, malignant
    (pathology starts with "MALIGNANT"), breast_density (from either
    spelling), assessment, subtlety, split (train/test), the mass and calc
    descriptors, the CSV's own paths ``csv_image_path``,
    ``csv_cropped_path``, ``csv_roi_path`` (whitespace stripped; they do not
    exist on disk) and the UIDs parsed from them (``image_series_uid``, ...).
    """
    paths = sorted(p for p in Path(root).rglob("*.csv") if _CSV_NAME.fullmatch(p.name))
    if not paths:
        raise FileNotFoundError(
            f"no CBIS-DDSM description CSV ({', '.join(CSV_NAMES.values())}) under {root}"
        )
    tables = [_read_description_csv(p, *_CSV_NAME.fullmatch(p.name).groups()) for p in paths]
    return pd.concat(tables, ignore_index=True)


# --- indexing and matching the DICOM files -------------------------------------------

_HEADER_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SeriesDescription", "Rows", "Columns"]


def _header(path):
    """Header facts of one DICOM, or a ``problem`` saying why it cannot be read."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        facts = {tag: ds.get(tag) for tag in _HEADER_TAGS}
        missing = [tag for tag, value in facts.items() if value is None]
        facts["problem"] = f"header lacks {', '.join(missing)}" if missing else None
    except Exception as error:  # any unreadable file is reported, not fatal
        facts = {"problem": f"unreadable DICOM: {type(error).__name__}: {error}"}
    return facts


def index_dicoms(root):
    """Every ``*.dcm`` under ``root`` with its header facts (pixels not read).

    Columns: path, folder (the CBIS-DDSM folder three levels up, e.g.
    ``Mass-Training_P_00001_LEFT_CC_1``), StudyInstanceUID,
    SeriesInstanceUID, SeriesDescription, Rows, Columns and problem (why a
    file could not be read; missing otherwise).
    """
    paths = sorted(
        Path(directory) / name
        for directory, _, names in os.walk(Path(root))
        for name in names
        if name.lower().endswith(".dcm")
    )
    index = pd.DataFrame(
        [{"path": str(p), "folder": p.parents[2].name, **_header(p)} for p in paths],
        columns=["path", "folder", *_HEADER_TAGS, "problem"],
    )
    for tag in ("StudyInstanceUID", "SeriesInstanceUID", "SeriesDescription"):
        index[tag] = index[tag].map(lambda v: None if v is None or pd.isna(v) else str(v))
    index[["Rows", "Columns"]] = index[["Rows", "Columns"]].astype("Int64")
    return index


def _top_folder(csv_path):
    """First component of a CSV path, e.g. ``Mass-Training_P_00001_LEFT_CC``."""
    return csv_path.split("/")[0] if isinstance(csv_path, str) and csv_path else None


def _candidates(series_uids, folders, by_series, by_folder):
    """Index positions of the files of ``series_uids``, else of the CSV's ``folders``.

    The folder is the fallback for files whose UIDs differ from the CSV's or
    whose header could not be read.
    """
    found = {i for uid in series_uids if uid for i in by_series.get(uid, ())}
    if not found:
        found = {i for folder in folders if folder for i in by_folder.get(folder, ())}
    return sorted(found)


def _match_full(row, index, by_series, by_folder):
    """(full image path, its (rows, cols) or None, problem)."""
    folder = _top_folder(row.csv_image_path)
    found = _candidates([row.image_series_uid], [folder], by_series, by_folder)
    if len(found) != 1:
        what = "no DICOM" if not found else f"{len(found)} DICOMs"
        return None, None, f"full mammogram: {what} for {folder}"
    file = index.loc[found[0]]
    shape = None if pd.isna(file.Rows) else (int(file.Rows), int(file.Columns))
    return file.path, shape, None


def _match_lesion(row, full_shape, index, by_series, by_folder):
    """(ROI mask path, cropped image path, problems) of one CSV row.

    The CSV sometimes swaps the two paths, so they are told apart by size:
    the ROI mask has the full mammogram's size, the cropped image is smaller.
    Without a readable full image the larger file is taken as the mask.
    """
    found = _candidates(
        [row.roi_series_uid, row.cropped_series_uid],
        [_top_folder(row.csv_roi_path), _top_folder(row.csv_cropped_path)],
        by_series,
        by_folder,
    )
    folder = _top_folder(row.csv_roi_path)
    if not found:
        return None, None, [f"ROI mask and cropped image: no DICOM for {folder}"]
    files = index.loc[found]
    problems = [f"{p}: {q}" for p, q in zip(files.path, files.problem) if isinstance(q, str)]
    files = files[files.Rows.notna()]
    shapes = list(zip(files.Rows.astype(int), files.Columns.astype(int)))
    if full_shape is None and shapes:
        full_shape = max(shapes, key=lambda s: s[0] * s[1])
    is_mask = np.array([s == full_shape for s in shapes], bool)
    paths = {}
    for name, chosen in (("ROI mask", is_mask), ("cropped image", ~is_mask)):
        if chosen.sum() == 1:
            paths[name] = files.path[chosen].iloc[0]
        else:
            paths[name] = None
            problems.append(f"{name}: {chosen.sum()} candidate DICOMs in {folder}")
    return paths["ROI mask"], paths["cropped image"], problems


def match_cbis_ddsm(csv_table, dicom_index):
    """Find each CSV row's files on disk.

    Files are found by the SeriesInstanceUIDs in the CSV paths, else by the
    CSV's top folder names (``Mass-Training_P_00001_LEFT_CC`` for the full
    image, ``..._1`` for the lesion). Swapped ROI-mask and cropped-image
    paths are resolved by size (see ``_match_lesion``).

    Returns
    -------
    DataFrame
        ``csv_table`` plus ``full_path``, ``roi_mask_path``, ``cropped_path``
        and ``problem`` (why a path is missing; missing when all were found).
        Every row is kept.
    """
    by_series = dicom_index.groupby("SeriesInstanceUID").groups
    by_folder = dicom_index.groupby("folder").groups
    matched = []
    for row in csv_table.itertuples():
        full_path, full_shape, full_problem = _match_full(row, dicom_index, by_series, by_folder)
        roi_path, cropped_path, problems = _match_lesion(
            row, full_shape, dicom_index, by_series, by_folder
        )
        problems = [full_problem, *problems] if full_problem else problems
        matched.append(
            {
                "full_path": full_path,
                "roi_mask_path": roi_path,
                "cropped_path": cropped_path,
                "problem": "; ".join(problems) or None,
            }
        )
    return pd.concat([csv_table.reset_index(drop=True), pd.DataFrame(matched)], axis=1)


# --- conversion -----------------------------------------------------------------------


def _full_png_name(row):
    """``<patient>_<SIDE>_<VIEW>.png``: calc and mass copies share it."""
    return f"full/{row.patient_id}_{row.side}_{row.view}.png"


def _roi_png_name(row):
    """``<Calc|Mass>-<Training|Test>_<patient>_<SIDE>_<VIEW>_<abn>.png``."""
    prefix = f"{_TYPE_WORDS[row.abnormality_type]}-{_SPLIT_WORDS[row.split]}"
    return f"roi/{prefix}_{row.patient_id}_{row.side}_{row.view}_{row.abn_num}.png"


def _convert_full(dicom_path, png_path, side):
    """16-bit PNG holding the DICOM's values unchanged."""
    image, info = read_mammogram(dicom_path, laterality=side[0])
    write_png(png_path, to_png16(image, info.bits_stored))


def _convert_roi(dicom_path, png_path, side):
    """8-bit 0/255 PNG of a binary ROI mask."""
    mask, _ = read_mammogram(dicom_path, laterality=side[0])
    values = np.unique(mask)
    if values.size > 2:
        raise ValueError(f"ROI mask is not binary ({values.size} distinct values)")
    write_png(png_path, np.where(mask > 0, 255, 0).astype(np.uint8))


def _convert_once(convert, dicom_path, out_dir, png_name, side, overwrite):
    """Run ``convert`` unless its output exists; returns a problem or None.

    Without a source there is nothing to do: matching already said why.
    """
    if pd.isna(dicom_path):
        return None
    png_path = out_dir / png_name
    if png_path.exists() and not overwrite:
        return None
    try:
        convert(dicom_path, png_path, side)
    except Exception as error:  # one bad file must not stop the other thousands
        return f"{png_name} from {dicom_path}: {type(error).__name__}: {error}"
    return None


def convert_cbis_ddsm(root, out_dir, *, overwrite=False):
    """Convert a CBIS-DDSM download (real or phantom) to PNGs and one table.

    Writes ``out_dir/full/<patient>_<SIDE>_<VIEW>.png`` (16-bit, the DICOM
    values; calc and mass copies of one mammogram are identical, so the
    first by path is read),
    ``out_dir/roi/<Calc|Mass>-<Training|Test>_<patient>_<SIDE>_<VIEW>_<abn>.png``
    (8-bit, 0/255) and ``out_dir/metadata.csv`` (one row per lesion: the
    columns of :func:`match_cbis_ddsm`, ``full_png`` and ``roi_png`` relative
    to ``out_dir``, and every problem met). Existing PNGs are kept unless
    ``overwrite``; a file that fails is reported in ``problem`` and the rest
    is converted.

    Returns
    -------
    DataFrame
        The table written to ``metadata.csv``.
    """
    out_dir = Path(out_dir)
    (out_dir / "full").mkdir(parents=True, exist_ok=True)
    (out_dir / "roi").mkdir(parents=True, exist_ok=True)
    table = match_cbis_ddsm(read_cbis_ddsm_csvs(root), index_dicoms(root))
    table["full_png"] = [_full_png_name(row) for row in table.itertuples()]
    table["roi_png"] = [_roi_png_name(row) for row in table.itertuples()]
    problems = [[p] if isinstance(p, str) else [] for p in table.problem]

    for png_name, rows in table.groupby("full_png").groups.items():
        sources = sorted(table.full_path[rows].dropna())
        source = sources[0] if sources else None
        side = table.side[rows[0]]
        problem = _convert_once(_convert_full, source, out_dir, png_name, side, overwrite)
        if problem:
            for i in rows:
                problems[i].append(problem)
    for i, row in enumerate(table.itertuples()):
        problem = _convert_once(
            _convert_roi, row.roi_mask_path, out_dir, row.roi_png, row.side, overwrite
        )
        if problem:
            problems[i].append(problem)

    table["problem"] = ["; ".join(p) or None for p in problems]
    for column in ("full_png", "roi_png"):
        exists = [(out_dir / name).exists() for name in table[column]]
        table[column] = table[column].where(exists, None)
    _write_csv(table, out_dir / "metadata.csv")
    return table
