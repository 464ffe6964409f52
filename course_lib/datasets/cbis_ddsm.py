"""CBIS-DDSM: reading, matching and converting a download (real or the kit's look-alike).

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

:func:`course_lib.phantoms.cbis_ddsm_tree.build_cbis_ddsm_phantom_tree` writes a
small SYNTHETIC tree with all of these quirks, so the course can run the whole
pipeline without the 160 GB download. :func:`read_cbis_ddsm_csvs`, :func:`index_dicoms`,
:func:`match_cbis_ddsm` and :func:`convert_cbis_ddsm` work the same on the
real download and on the phantom tree.
"""

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from course_lib.dicom import read_mammogram, to_png16
from course_lib.io import atomic_output, write_png

__all__ = [
    "read_cbis_ddsm_csvs",
    "index_dicoms",
    "match_cbis_ddsm",
    "convert_cbis_ddsm",
    "CSV_NAMES",
    "MASS_COLUMNS",
    "CALC_COLUMNS",
    "PATH_COLUMNS",
    "TYPE_WORDS",
    "SPLIT_WORDS",
    "DEFAULT_SHAPE",
]

#: Description CSV file name of each (abnormality type, split).
CSV_NAMES = {
    ("mass", "train"): "mass_case_description_train_set.csv",
    ("mass", "test"): "mass_case_description_test_set.csv",
    ("calc", "train"): "calc_case_description_train_set.csv",
    ("calc", "test"): "calc_case_description_test_set.csv",
}

PATH_COLUMNS = ["image file path", "cropped image file path", "ROI mask file path"]
#: Column names of the mass CSVs, in CBIS-DDSM's order and spelling.
MASS_COLUMNS = [
    "patient_id", "breast_density", "left or right breast", "image view",
    "abnormality id", "abnormality type", "mass shape", "mass margins",
    "assessment", "pathology", "subtlety", *PATH_COLUMNS,
]  # fmt: skip
#: Column names of the calc CSVs: note "breast density" with a space.
CALC_COLUMNS = [
    "patient_id", "breast density", "left or right breast", "image view",
    "abnormality id", "abnormality type", "calc type", "calc distribution",
    "assessment", "pathology", "subtlety", *PATH_COLUMNS,
]  # fmt: skip

#: Phantom size: an eighth of the full field, so a tree builds in seconds.
DEFAULT_SHAPE = (368, 240)

# Folder prefixes of the tree, e.g. "Mass-Training".
#: Folder prefix words of a TCIA download: ``Mass-Training_...``, ``Calc-Test_...``.
TYPE_WORDS = {"mass": "Mass", "calc": "Calc"}
SPLIT_WORDS = {"train": "Training", "test": "Test"}

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
    prefix = f"{TYPE_WORDS[row.abnormality_type]}-{SPLIT_WORDS[row.split]}"
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
    with atomic_output(out_dir / "metadata.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table
