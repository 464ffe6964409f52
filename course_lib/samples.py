"""``data_samples/``: the kit's small synthetic sample data, rebuilt byte for byte from code.

Every file under ``data_samples/`` except the hand-written ``README.md`` is made
by :func:`build_samples` from the kit's phantom builders with fixed seeds, so
the folder can be checked rather than trusted::

    course-kit samples            # regenerate data_samples/
    course-kit samples --check    # regenerate into a temporary folder and compare

``MANIFEST.csv`` lists the path, size and sha256 of every generated file. All of
it is SYNTHETIC phantom data (CC0), not for clinical use.
"""

import csv
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from course_lib.exam_list import VIEWS
from course_lib.io import atomic_output
from course_lib.paths import DATA_SAMPLES

__all__ = [
    "DATA_SAMPLES",
    "MANIFEST_NAME",
    "README_NAME",
    "SAMPLE_SHAPE",
    "DicomVariant",
    "DICOM_VARIANTS",
    "build_samples",
    "compare_samples",
    "file_manifest",
]

MANIFEST_NAME = "MANIFEST.csv"
#: Hand-written: kept by :func:`build_samples`, ignored by :func:`compare_samples`.
README_NAME = "README.md"
#: Phantom size (rows, cols) of the small samples: an eighth of the full field.
SAMPLE_SHAPE = (368, 240)

_DICOM_SEED = 2024


@dataclass(frozen=True)
class DicomVariant:
    """One way of storing the sample DICOM exam.

    ``image_bits`` is the phantom's bit depth, ``views`` the views written and
    ``options`` the keyword arguments of
    :func:`~course_lib.phantoms.dicom_writer.write_phantom_dicom`.
    """

    image_bits: int
    views: tuple = VIEWS
    options: dict = field(default_factory=dict)


#: Sub-folder of ``dicom/`` -> how its files are written. All but the first
#: are RLE Lossless, which keeps the folder small.
DICOM_VARIANTS = {
    "mono2_12bit_explicit": DicomVariant(12, options={"bits_stored": 12}),
    "mono2_12bit_rle": DicomVariant(12, options={"bits_stored": 12, "transfer_syntax": "rle"}),
    "mono1_14bit": DicomVariant(
        14, options={"bits_stored": 14, "photometric": "MONOCHROME1", "transfer_syntax": "rle"}
    ),
    "voi_window_16bit": DicomVariant(
        16, options={"bits_stored": 16, "voi": "window", "transfer_syntax": "rle"}
    ),
    # One file: the sequence is the same for every view.
    "voi_lut_sequence": DicomVariant(
        12, views=("L-CC",), options={"bits_stored": 12, "voi": "sequence", "transfer_syntax": "rle"}
    ),
    # 12-bit values stored as value + 1024 in 14 bits, the modality LUT subtracts it again.
    "rescale": DicomVariant(
        12, options={"bits_stored": 14, "rescale": (1.0, -1024.0), "transfer_syntax": "rle"}
    ),
}


# --------------------------------------------------------------------------- build

def _write_dicom_samples(root):
    """One four-view phantom exam under ``root/<variant>/<view>.dcm`` for each DICOM variant."""
    from course_lib.phantoms.dicom_writer import write_phantom_dicom
    from course_lib.phantoms.mammogram import make_mammogram

    for name, variant in DICOM_VARIANTS.items():
        for number, view in enumerate(VIEWS):
            if view not in variant.views:
                continue
            side, projection = view.split("-")
            phantom = make_mammogram(_DICOM_SEED + number, view=projection, side=side,
                                     shape=SAMPLE_SHAPE, bits=variant.image_bits)
            # A patient ID per variant gives each folder its own study and instance UIDs.
            write_phantom_dicom(root / name / f"{view}.dcm", phantom.image, projection, side,
                                patient_id=f"SYNTH-{name.upper()}", **variant.options)


def _sample_builders():
    """Sample folder name -> function writing it into the folder it is given.

    Imported here, not at module level, so that the command line starts fast.
    """
    from course_lib.phantoms.breakhis_set import build_breakhis_phantom_dataset
    from course_lib.phantoms.cbis_ddsm_tree import build_cbis_ddsm_phantom_tree
    from course_lib.phantoms.density_set import build_density_phantom_dataset
    from course_lib.gmic.data import build_gmic_phantom_exams

    return {
        "dicom": _write_dicom_samples,
        # Seed 3: exam 0 has malignant calcifications on the left, exam 1 a benign mass on the right.
        "gmic_exams": partial(build_gmic_phantom_exams, n_exams=2, seed=3),
        # Three patients per class, one in each split: one image per class, projection and split.
        "density": partial(build_density_phantom_dataset, n_per_class=3, seed=0, shape=SAMPLE_SHAPE,
                           splits={"train": 1, "validation": 1, "test": 1}),
        # Four patients, so that both splits hold a benign and a malignant one; one
        # magnification, as the 700 x 460 RGB images are ~0.5 MB each.
        "breakhis": partial(build_breakhis_phantom_dataset, n_patients=4, images_per_patient_per_mag=1,
                            layout="kaggle", seed=0, magnifications=(400,)),
        # Seed 2: every CBIS-DDSM quirk occurs, a mammogram under both Mass- and Calc- included.
        "cbis_ddsm": partial(build_cbis_ddsm_phantom_tree, n_patients=2, seed=2, shape=SAMPLE_SHAPE),
    }


def _sample_files(root):
    """Relative POSIX paths of the files under ``root``, sorted, without the README."""
    root = Path(root)
    paths = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(p for p in paths if p != README_NAME)


def file_manifest(root):
    """``(path, bytes, sha256)`` of every file under ``root`` but the README and the manifest."""
    root = Path(root)
    rows = []
    for path in _sample_files(root):
        if path != MANIFEST_NAME:
            data = (root / path).read_bytes()
            rows.append((path, len(data), hashlib.sha256(data).hexdigest()))
    return rows


def _write_manifest(root):
    """Write ``root/MANIFEST.csv`` and return its rows."""
    rows = file_manifest(root)
    manifest = Path(root) / MANIFEST_NAME
    with atomic_output(manifest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "bytes", "sha256"])
        writer.writerows(rows)
    return rows


def _write_samples(root):
    """Write every sample folder, then the manifest, into ``root``; return the manifest rows."""
    root = Path(root)
    for name, build in _sample_builders().items():
        build(root / name)
    return _write_manifest(root)


def _check_replaceable(dest):
    """Refuse to replace a folder that holds files but no manifest: it is not a samples folder."""
    if not dest.exists():
        return
    others = [p for p in dest.iterdir() if p.name != README_NAME]
    if others and not (dest / MANIFEST_NAME).is_file():
        raise ValueError(f"{dest} holds files but no {MANIFEST_NAME}: not replacing it with samples")


def _swap_in(staging, dest):
    """Put the folder ``staging`` in the place of ``dest`` with two renames, then drop the old one."""
    retired = Path(tempfile.mkdtemp(prefix=f".{dest.name}-old-", dir=dest.parent))
    try:
        if dest.exists():
            os.replace(dest, retired / dest.name)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(retired)


def build_samples(dest=DATA_SAMPLES):
    """Regenerate the sample folder ``dest`` from code; its ``README.md`` is kept as it is.

    Everything is written into a fresh folder beside ``dest`` first, which then
    replaces ``dest``: a failure leaves ``dest`` untouched. Returns the manifest
    rows ``(path, bytes, sha256)``.
    """
    dest = Path(dest)
    _check_replaceable(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-new-", dir=dest.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes owner-only folders
        rows = _write_samples(staging)
        if (dest / README_NAME).is_file():
            shutil.copy2(dest / README_NAME, staging / README_NAME)
        _swap_in(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


# --------------------------------------------------------------------------- check

def _tree_differences(expected, actual):
    """What differs between two sample folders: missing, extra and differing files."""
    expected_files, actual_files = set(_sample_files(expected)), set(_sample_files(actual))
    differences = [f"missing: {p}" for p in sorted(expected_files - actual_files)]
    differences += [f"extra: {p}" for p in sorted(actual_files - expected_files)]
    differences += [f"differs: {p}" for p in sorted(expected_files & actual_files)
                    if (Path(expected) / p).read_bytes() != (Path(actual) / p).read_bytes()]
    return differences


def compare_samples(dest=DATA_SAMPLES):
    """Regenerate the samples into a temporary folder and compare them with ``dest``.

    Returns a list of differences (``"missing: PATH"``, ``"extra: PATH"``,
    ``"differs: PATH"``); empty when ``dest`` is exactly what the code makes.
    ``README.md`` is not compared.
    """
    with tempfile.TemporaryDirectory(prefix="course-kit-samples-") as tmp:
        fresh = Path(tmp) / "data_samples"
        _write_samples(fresh)
        return _tree_differences(fresh, dest)
