"""BreakHis layouts: synthetic builders, readers, the A-MIL layout and MIL bags."""

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from course_lib.datasets.breakhis import (
    make_amil_layout,
    SUBTYPES,
    read_breakhis,
)
from course_lib.phantoms.breakhis_set import build_breakhis_phantom_dataset
from course_lib.phantoms.histology import make_histology

MAGNIFICATIONS = (40, 200)
REAL_KEYS = [
    "breakhis/SOB_B_A-14-22549AB-40-001.png",
    "breakhis/SOB_B_F-14-25197-100-001.png",
    "breakhis/SOB_B_F-14-25197-200-032.png",
    "breakhis/SOB_B_F-14-25197-40-023.png",
    "breakhis/SOB_B_F-14-25197-400-033.png",
    "breakhis/SOB_B_F-14-9133-40-001.png",
    "breakhis/SOB_B_PT-14-21998AB-40-001.png",
    "breakhis/SOB_B_TA-14-3411F-40-001.png",
    "breakhis/SOB_M_DC-14-2523-40-010.png",
    "breakhis/SOB_M_LC-14-12204-40-001.png",
    "breakhis/SOB_M_MC-14-10147-40-001.png",
    "breakhis/SOB_M_PC-14-9146-40-001.png",
]


@pytest.fixture(scope="module", params=["kaggle", "archive"])
def built(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    table = build_breakhis_phantom_dataset(root, n_patients=4, images_per_patient_per_mag=1,
                                           layout=request.param, seed=3,
                                           magnifications=MAGNIFICATIONS)
    return request.param, root, table


def relative(path, root):
    return Path(path).relative_to(root).as_posix()


def test_builder_writes_every_image_once(built):
    _, _, table = built
    assert len(table) == 4 * 1 * len(MAGNIFICATIONS)
    assert table["path"].is_unique
    assert set(table["patient_id"]) == {f"SYN{k:04d}" for k in range(1, 5)}
    assert table.groupby("patient_id")["subtype"].nunique().eq(1).all()
    assert table["split"].isin(["train", "test"]).all() and table["fold"].eq(1).all()


def test_exact_layout(built):
    layout, root, table = built
    if layout == "kaggle":
        pattern = re.compile(r"fold1/(train|test)/(\d+)X/([BM])_(\d+)X/(SOB_[BM]_\w+-14-SYN\d{4}-\d+-\d{3}\.png)")
    else:
        pattern = re.compile(r"BreaKHis_v1/histology_slides/breast/(benign|malignant)/SOB/(\w+)/"
                             r"SOB_([BM])_(\w+)_14-(SYN\d{4})/(\d+)X/(SOB_[BM]_\w+-14-SYN\d{4}-\d+-\d{3}\.png)")
        assert (root / "Folds.csv").is_file()
    for row in table.itertuples():
        match = pattern.fullmatch(relative(row.path, root))
        assert match, row.path
        groups = match.groups()
        if layout == "kaggle":
            split, mag, letter, mag_again, _ = groups
            assert split == row.split and int(mag) == int(mag_again) == row.magnification
        else:
            class_name, subtype_folder, letter, subtype, patient, mag, _ = groups
            assert class_name == row.class_name and subtype_folder == SUBTYPES[row.subtype]
            assert subtype == row.subtype and patient == row.patient_id
            assert int(mag) == row.magnification
        assert letter == "BM"[row.label]


def test_masks_mirror_the_image_tree(built):
    _, root, table = built
    for row in table.itertuples():
        assert relative(row.mask_path, root) == "masks/" + relative(row.path, root)
        with Image.open(row.path) as image, Image.open(row.mask_path) as mask:
            assert image.mode == "RGB" and image.size == (700, 460)
            assert mask.mode == "L" and mask.size == (700, 460)
            values = np.unique(np.asarray(mask))
        assert set(values) <= {0, 255}
        assert (255 in values) == (row.class_name == "malignant")


def test_split_is_by_patient_and_covers_both_classes(built):
    _, _, table = built
    assert table.groupby("patient_id")["split"].nunique().eq(1).all()
    for split in ("train", "test"):
        assert set(table.loc[table["split"] == split, "label"]) == {0, 1}


def test_builder_is_deterministic(tmp_path):
    first = build_breakhis_phantom_dataset(tmp_path / "a", 2, 1, seed=5, magnifications=(100,))
    second = build_breakhis_phantom_dataset(tmp_path / "b", 2, 1, seed=5, magnifications=(100,))
    assert [relative(p, tmp_path / "a") for p in first["path"]] == [
        relative(p, tmp_path / "b") for p in second["path"]]
    for a, b in zip(first["path"], second["path"]):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        build_breakhis_phantom_dataset(tmp_path, 2, 1, layout="imagenet")


def file_digests(paths):
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


@pytest.mark.parametrize("mode", ["copy", "symlink"])
def test_amil_layout(built, tmp_path, mode):
    _, _, table = built
    before = file_digests(table["path"])
    amil = make_amil_layout(table, tmp_path / "AMIL_Data", mode=mode)
    assert file_digests(table["path"]) == before  # sources untouched
    for row in amil.itertuples():
        path = Path(row.path)
        assert relative(path, tmp_path / "AMIL_Data") == (
            f"{row.magnification}X/{row.split}/{row.label}/{Path(row.source_path).name}")
        assert path.is_symlink() == (mode == "symlink")
        assert path.read_bytes() == Path(row.source_path).read_bytes()
    again = read_breakhis(tmp_path / "AMIL_Data")
    columns = ["label", "subtype", "patient_id", "magnification", "split"]
    key = ["patient_id", "magnification", "split"]
    assert (again[columns].sort_values(key).reset_index(drop=True)
            .equals(table[columns].sort_values(key).reset_index(drop=True)))


def test_amil_layout_needs_a_split(tmp_path):
    phantom = make_histology(0, "benign", "A", 40)
    Image.fromarray(phantom.image).save(tmp_path / phantom.filename)
    table = read_breakhis(tmp_path)
    assert table["split"].isna().all()
    with pytest.raises(ValueError, match="split"):
        make_amil_layout(table, tmp_path / "amil")


def test_reader_ignores_other_files(tmp_path):
    phantom = make_histology(0, "malignant", "PC", 400)
    Image.fromarray(phantom.image).save(tmp_path / phantom.filename)
    Image.fromarray(phantom.image).save(tmp_path / "vgg_224.png")
    (tmp_path / "notes.txt").write_text("not an image")
    table = read_breakhis(tmp_path)
    assert table["path"].map(lambda p: Path(p).name).tolist() == [phantom.filename]
    assert table.loc[0, "subtype"] == "PC" and table.loc[0, "magnification"] == 400


@pytest.mark.mirror
def test_real_breakhis_files(registry_file):
    paths = [registry_file(key) for key in REAL_KEYS]
    folder = paths[0].parent
    table = read_breakhis(folder)
    table = table[table["path"].map(lambda p: Path(p).name).isin([p.name for p in paths])]
    assert len(table) == 12
    assert table["label"].sum() == 4 and set(table.loc[table["label"] == 1, "subtype"]) == {
        "DC", "LC", "MC", "PC"}
    assert sorted(table["magnification"]) == [40] * 9 + [100, 200, 400]
    assert set(table["patient_id"]) == {"22549AB", "25197", "9133", "21998AB", "3411F", "2523",
                                        "12204", "10147", "9146"}
    assert table["split"].isna().all() and table["mask_path"].isna().all()
