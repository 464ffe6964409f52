"""BreakHis on disk: its file-name convention, readers of its layouts, and the A-MIL layout.

(The A-MIL bags are built in :mod:`course_lib.amil.data`.)

BreakHis [1]_ has 7,909 RGB PNGs of 700 x 460 px from 82 patients, at 40X,
100X, 200X and 400X. Every file name carries all labels
(``SOB_M_DC-14-2523-40-010.png``, see
:func:`parse_breakhis_filename`), so a reader
needs the folders only for the train/test split. Three folder layouts are
handled:

``"archive"``, the official download::

    BreaKHis_v1/histology_slides/breast/<benign|malignant>/SOB/<subtype folder>/
        SOB_<B|M>_<subtype>_<year>-<patient id>/<40X|100X|200X|400X>/<file>.png

  The archive itself has no split; :func:`course_lib.phantoms.breakhis_set.build_breakhis_phantom_dataset`
  writes one to ``Folds.csv`` (columns ``fold, mag, grp, filename``, filename
  relative to the root), modelled on the fold table that circulates with the
  Kaggle copy of the archive.

``"kaggle"``, the "BreakHis fold1" layout the A-MIL code starts from::

    fold1/<train|test>/<40X|100X|200X|400X>/<B_40X|M_40X|...>/<file>.png

  The class folders are the class letter and the magnification folder name
  (``B_40X``, ``M_400X``); the reader only uses their first letter.

A-MIL's own layout, written by :func:`make_amil_layout`::

    <40X|...>/<train|test>/<0|1>/<file>.png

Synthetic data sets also hold a ``masks/`` folder that mirrors the image tree:
``masks/<relative path of the image>`` is an 8-bit PNG, 255 inside the
malignant region and 0 elsewhere (all 0 for benign images).

References
----------
.. [1] Spanhol FA, Oliveira LS, Petitjean C, Heutte L. A dataset for breast
       cancer histopathological image classification. IEEE Trans Biomed Eng
       63(7):1455-1462, 2016.
"""

import os
import re
import shutil
from pathlib import Path

import pandas as pd

from course_lib.io import atomic_output


__all__ = [
    "LAYOUTS",
    "BENIGN_SUBTYPES",
    "MALIGNANT_SUBTYPES",
    "SUBTYPES",
    "MAGNIFICATIONS",
    "breakhis_filename",
    "parse_breakhis_filename",
    "read_breakhis",
    "make_amil_layout",
]

LAYOUTS = ("kaggle", "archive")
ARCHIVE_ROOT = Path("BreaKHis_v1", "histology_slides", "breast")
MASKS_FOLDER = "masks"
FOLDS_FILE = "Folds.csv"

_COLUMNS = ["path", "label", "class_name", "subtype", "patient_id", "magnification",
            "split", "fold", "mask_path"]


def magnification_folder(magnification):
    """Folder name of a magnification: 40 -> "40X"."""
    return f"{int(magnification)}X"


# --------------------------------------------------------------------------- names

#: BreakHis subtype codes and the folder names of the official archive.
BENIGN_SUBTYPES = {
    "A": "adenosis",
    "F": "fibroadenoma",
    "PT": "phyllodes_tumor",
    "TA": "tubular_adenoma",
}
MALIGNANT_SUBTYPES = {
    "DC": "ductal_carcinoma",
    "LC": "lobular_carcinoma",
    "MC": "mucinous_carcinoma",
    "PC": "papillary_carcinoma",
}
SUBTYPES = {**BENIGN_SUBTYPES, **MALIGNANT_SUBTYPES}
SUBTYPES_OF = {"benign": BENIGN_SUBTYPES, "malignant": MALIGNANT_SUBTYPES}
_CLASS_LETTER = {"benign": "B", "malignant": "M"}

MAGNIFICATIONS = (40, 100, 200, 400)

_FILENAME_PATTERN = re.compile(
    r"^(?P<procedure>[A-Z]+)_(?P<letter>[BM])_(?P<subtype>[A-Z]+)"
    r"-(?P<year>\d+)-(?P<patient_id>[A-Za-z0-9]+)"
    r"-(?P<magnification>\d+)-(?P<seq>\d+)\.png$",
    re.IGNORECASE,
)


def breakhis_filename(label, subtype, patient_id, magnification, seq, year=14, procedure="SOB"):
    """BreakHis file name, e.g. ``SOB_M_DC-14-12345-100-001.png``.

    The fields are: biopsy procedure, class letter (B/M), subtype code, year,
    patient (slide) id, magnification and a 3-digit sequence number.
    """
    if label not in SUBTYPES_OF:
        raise ValueError(f"label must be 'benign' or 'malignant', got {label!r}")
    if subtype not in SUBTYPES_OF[label]:
        raise ValueError(
            f"subtype {subtype!r} is not {label}; choose from {sorted(SUBTYPES_OF[label])}"
        )
    if magnification not in MAGNIFICATIONS:
        raise ValueError(f"magnification must be one of {MAGNIFICATIONS}, got {magnification!r}")
    if not re.fullmatch(r"[A-Za-z0-9]+", str(patient_id)):
        raise ValueError(f"patient_id must be alphanumeric, got {patient_id!r}")
    return (
        f"{procedure}_{_CLASS_LETTER[label]}_{subtype}-{int(year):02d}-{patient_id}"
        f"-{int(magnification)}-{int(seq):03d}.png"
    )


def parse_breakhis_filename(name):
    """Split a BreakHis file name (or path) into its labelled fields.

    Returns
    -------
    fields : dict
        ``procedure``, ``label`` ("benign"/"malignant"), ``label_index`` (0/1),
        ``subtype`` (code), ``subtype_name`` (archive folder name), ``year``,
        ``patient_id``, ``magnification`` (int) and ``seq`` (int).

    Raises
    ------
    ValueError
        If the name does not follow the convention.
    """
    basename = os.path.basename(os.fspath(name))
    match = _FILENAME_PATTERN.match(basename)
    if match is None:
        raise ValueError(
            f"{basename!r} is not a BreakHis file name like 'SOB_B_A-14-22549AB-40-001.png'"
        )
    label = "benign" if match["letter"].upper() == "B" else "malignant"
    subtype = match["subtype"].upper()
    if subtype not in SUBTYPES_OF[label]:
        raise ValueError(f"{basename!r}: subtype {subtype!r} is not a {label} BreakHis subtype")
    return {
        "procedure": match["procedure"].upper(),
        "label": label,
        "label_index": int(label == "malignant"),
        "subtype": subtype,
        "subtype_name": SUBTYPES[subtype],
        "year": int(match["year"]),
        "patient_id": match["patient_id"],
        "magnification": int(match["magnification"]),
        "seq": int(match["seq"]),
    }


# --------------------------------------------------------------------------- read

def read_breakhis(root, fold=1):
    """Index the BreakHis images under ``root``, whatever the layout.

    Works on the "archive" and "kaggle" layouts, on A-MIL's layout and on a
    flat folder of original files: labels come from the file names, the split
    from a ``train``/``test`` folder on the path or from ``Folds.csv``.
    Files whose names are not BreakHis names are ignored, and so is the
    ``masks/`` tree.

    Parameters
    ----------
    root : path-like
    fold : int
        Fold to keep where the layout has several (``fold<k>`` folders or
        ``Folds.csv``); images outside any fold structure are always kept.

    Returns
    -------
    pandas.DataFrame
        One row per image, sorted by path: ``path`` (str), ``label`` (0 benign,
        1 malignant), ``class_name``, ``subtype`` (code), ``patient_id``,
        ``magnification`` (int), ``split`` ("train"/"test" or None), ``fold``
        (int or None) and ``mask_path`` (str or None).
    """
    root = Path(root)
    folds = _read_folds(root / FOLDS_FILE, fold)
    rows = []
    for path in sorted(root.rglob("*.png")):
        relative = path.relative_to(root)
        if relative.parts[0] == MASKS_FOLDER:
            continue
        try:
            fields = parse_breakhis_filename(path.name)
        except ValueError:
            continue
        fold_of_path = _fold_from_parts(relative.parts)
        if fold_of_path is not None and fold_of_path != fold:
            continue
        split = _split_from_parts(relative.parts)
        if split is None and relative.as_posix() in folds:
            split, fold_of_path = folds[relative.as_posix()], fold
        mask = root / MASKS_FOLDER / relative
        rows.append({
            "path": str(path),
            "label": fields["label_index"],
            "class_name": fields["label"],
            "subtype": fields["subtype"],
            "patient_id": fields["patient_id"],
            "magnification": fields["magnification"],
            "split": split,
            "fold": fold_of_path,
            "mask_path": str(mask) if mask.is_file() else None,
        })
    table = pd.DataFrame(rows, columns=_COLUMNS)
    return table.astype({"label": int, "magnification": int}) if len(table) else table


def _read_folds(path, fold):
    """``{relative path: split}`` of one fold of a Folds.csv, or {} when there is none."""
    if not path.is_file():
        return {}
    table = pd.read_csv(path)
    table = table[table["fold"] == fold]
    return {Path(name).as_posix(): _normalise_split(group)
            for name, group in zip(table["filename"], table["grp"])}


def _normalise_split(name):
    """Lower-case split name, with the spellings of "validation" merged."""
    name = str(name).lower()
    return "validation" if name in ("val", "valid", "validation") else name


def _split_from_parts(parts):
    """The first train/test/validation folder on a relative path, or None."""
    for part in parts[:-1]:
        if part.lower() in ("train", "test", "val", "valid", "validation"):
            return _normalise_split(part)
    return None


def _fold_from_parts(parts):
    """k of the first ``fold<k>`` folder on a relative path, or None."""
    for part in parts[:-1]:
        if part.lower().startswith("fold") and part[4:].isdigit():
            return int(part[4:])
    return None


# --------------------------------------------------------------------------- A-MIL

def make_amil_layout(df, dest, mode="copy"):
    """Lay the images of ``df`` out as A-MIL expects: ``<mag>X/<split>/<0|1>/<file>``.

    The source files are never modified. With ``mode="copy"`` each file is
    copied (atomically); with ``mode="symlink"`` an absolute symbolic link to
    the source is made instead, which saves space but breaks if the source
    moves. Masks are not copied; ``mask_path`` keeps pointing at the source.

    Parameters
    ----------
    df : pandas.DataFrame
        From :func:`read_breakhis`; every row needs a ``split``.
    dest : path-like
        Output folder (created).
    mode : {"copy", "symlink"}

    Returns
    -------
    pandas.DataFrame
        ``df`` with ``path`` pointing into ``dest`` and the original path in
        ``source_path``.
    """
    if mode not in ("copy", "symlink"):
        raise ValueError(f"mode must be 'copy' or 'symlink', got {mode!r}")
    if df["split"].isna().any():
        raise ValueError("every image needs a split: read a layout with train/test folders or "
                         "Folds.csv, or fill df['split'] first")
    dest = Path(dest)
    targets = [dest / magnification_folder(mag) / split / str(label) / Path(path).name
               for path, mag, split, label in zip(df["path"], df["magnification"], df["split"],
                                                  df["label"])]
    if len(set(targets)) != len(targets):
        raise ValueError("two images would land on the same A-MIL path (same file name twice?)")
    for source, target in zip(df["path"], targets):
        _place(Path(source), target, mode)
    laid_out = df.copy()
    laid_out["source_path"] = laid_out["path"]
    laid_out["path"] = [str(t) for t in targets]
    return laid_out


def _place(source, target, mode):
    """Copy or symlink ``source`` to ``target`` atomically, replacing what is there."""
    if mode == "copy":
        with atomic_output(target) as tmp:
            shutil.copyfile(source, tmp)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
    os.symlink(source.resolve(), tmp)
    os.replace(tmp, target)
