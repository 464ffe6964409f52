"""Tests of the synthetic CBIS-DDSM tree and of reading, matching and converting it."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from course_lib.phantoms.cbis_ddsm_tree import build_cbis_ddsm_phantom_tree
from course_lib.datasets.cbis_ddsm import (
    CALC_COLUMNS,
    CSV_NAMES,
    MASS_COLUMNS,
    convert_cbis_ddsm,
    index_dicoms,
    match_cbis_ddsm,
    read_cbis_ddsm_csvs,
)
from course_lib.io import read_png
from course_lib.phantoms.mammogram import make_mammogram

SHAPE = (368, 240)
LESION_KEY = ["patient_id", "side", "view", "abn_num", "abnormality_type"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(root, truth) of a 6-patient phantom tree shared by the read-only tests."""
    root = tmp_path_factory.mktemp("cbis")
    return root, build_cbis_ddsm_phantom_tree(root, n_patients=6, seed=0, shape=SHAPE)


@pytest.fixture(scope="module")
def converted(built, tmp_path_factory):
    """(out_dir, metadata) of converting the shared tree."""
    out_dir = tmp_path_factory.mktemp("cbis_png")
    return out_dir, convert_cbis_ddsm(built[0], out_dir)


@pytest.fixture
def tree_copy(built, tmp_path):
    """A private copy of the shared tree, free to damage; (root, truth with its paths)."""
    root, truth = built
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    truth = truth.copy()
    for column in ("full_file", "roi_mask_file", "cropped_file"):
        truth[column] = [str(copy / Path(p).relative_to(root)) for p in truth[column]]
    return copy, truth


def _raw_csvs(root):
    return {name: pd.read_csv(root / name, dtype=str) for name in CSV_NAMES.values()}


def _written(truth):
    """Every DICOM file the builder wrote."""
    return set(truth.full_file) | set(truth.roi_mask_file) | set(truth.cropped_file)


def _series_uid(path):
    return pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID


def test_tree_has_the_tcia_layout(built):
    root, truth = built
    full = re.compile(
        r"CBIS-DDSM/(Mass|Calc)-(Training|Test)_P_S\d{4}_(LEFT|RIGHT)_(CC|MLO)/"
        r"\d\d-\d\d-\d{4}-DDSM-\d{5}/1\.000000-full mammogram images-\d{5}/1-1\.dcm"
    )
    lesion = re.compile(
        r"CBIS-DDSM/(Mass|Calc)-(Training|Test)_P_S\d{4}_(LEFT|RIGHT)_(CC|MLO)_\d/"
        r"\d\d-\d\d-\d{4}-DDSM-\d{5}/1\.000000-(ROI mask|cropped) images-\d{5}/1-[12]\.dcm"
    )
    for row in truth.itertuples():
        assert full.fullmatch(Path(row.full_file).relative_to(root).as_posix())
        for path in (row.roi_mask_file, row.cropped_file):
            assert lesion.fullmatch(Path(path).relative_to(root).as_posix())
    assert truth.single_series.any() and not truth.single_series.all()
    # Patient-level split; both splits have masses and calcifications.
    assert truth.groupby("patient_id").split.nunique().eq(1).all()
    assert set(zip(truth.abnormality_type, truth.split)) == set(CSV_NAMES)
    # A mammogram with a mass and calcifications is stored under both prefixes.
    folders = {p.name for p in (root / "CBIS-DDSM").iterdir()}
    assert any(f.startswith("Mass-") and "Calc-" + f[5:] in folders for f in folders)


def test_headers_carry_the_uids_of_the_csv_paths(built):
    root, truth = built
    raw = _raw_csvs(root)
    for row in truth.itertuples():
        path = raw[row.source_csv]["image file path"][row.csv_row].strip()
        _, study, series, _ = path.split("/")
        ds = pydicom.dcmread(row.full_file, stop_before_pixels=True)
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (study, series)
        assert Path(row.full_file).parent.name.endswith(series[-5:])
        assert Path(row.full_file).parents[1].name.endswith(study[-5:])
        assert "SYNTHETIC" in ds.SeriesDescription and ds.PatientID.startswith("SYNTH-")
        assert not (root / "CBIS-DDSM" / path).exists()  # the real mismatch


def test_csvs_have_cbis_names_columns_and_quirks(built):
    root, truth = built
    raw = _raw_csvs(root)
    for (abn_type, _), name in CSV_NAMES.items():
        assert list(raw[name].columns) == (MASS_COLUMNS if abn_type == "mass" else CALC_COLUMNS)
    assert "breast_density" in MASS_COLUMNS and "breast density" in CALC_COLUMNS
    paths = pd.concat([t[c] for t in raw.values() for c in MASS_COLUMNS[-3:]])
    assert paths.str.endswith("\n").any() and not paths.str.endswith("\n").all()
    # In a swapped row of a two-series lesion, the "ROI mask" path names the
    # cropped-images series.
    swapped = truth[truth.swapped & ~truth.single_series]
    assert len(swapped) > 0
    for row in swapped.itertuples():
        roi_path = raw[row.source_csv]["ROI mask file path"][row.csv_row].strip()
        assert roi_path.split("/")[2] == _series_uid(row.cropped_file)
    pathology = pd.concat([t.pathology for t in raw.values()])
    assert set(pathology) <= {"MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK"}
    assert set(pd.concat([t.assessment for t in raw.values()]).astype(int)) <= set(range(6))


def test_same_seed_gives_the_same_bytes(tmp_path):
    a = build_cbis_ddsm_phantom_tree(tmp_path / "a", n_patients=2, seed=3, shape=SHAPE)
    build_cbis_ddsm_phantom_tree(tmp_path / "b", n_patients=2, seed=3, shape=SHAPE)
    files = [p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()]
    assert len(files) == len(_written(a)) + len(CSV_NAMES)
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_read_normalises_both_csv_flavours(built):
    root, truth = built
    table = read_cbis_ddsm_csvs(root)
    assert len(table) == len(truth)
    assert set(table.abnormality_type) == {"mass", "calc"}
    assert set(table.split) == {"train", "test"}
    assert set(table.side) == {"LEFT", "RIGHT"} and set(table.view) == {"CC", "MLO"}
    assert table.breast_density.between(1, 4).all()  # from both spellings
    assert (table.malignant == table.pathology.str.startswith("MALIGNANT")).all()
    for column in ("csv_image_path", "csv_cropped_path", "csv_roi_path"):
        assert (table[column] == table[column].str.strip()).all()
    for column in ("image_study_uid", "image_series_uid", "roi_series_uid", "cropped_series_uid"):
        assert table[column].str.fullmatch(r"[0-9.]+").all()
    merged = table.merge(truth, on=LESION_KEY)
    assert len(merged) == len(truth)
    assert (merged.breast_density_x == merged.breast_density_y).all()
    assert (merged.pathology_x == merged.pathology_y).all()


def test_index_reads_headers(built):
    root, truth = built
    index = index_dicoms(root)
    assert set(index.path) == _written(truth)
    assert index.problem.isna().all()
    full = index.set_index("path").loc[truth.full_file.iloc[0]]
    assert (full.Rows, full.Columns) == SHAPE
    assert full.folder == Path(truth.full_file.iloc[0]).parents[2].name


def test_match_finds_every_file_and_undoes_swaps(built):
    root, truth = built
    matched = match_cbis_ddsm(read_cbis_ddsm_csvs(root), index_dicoms(root))
    assert matched.problem.isna().all()
    merged = matched.merge(truth, on=LESION_KEY)
    assert len(merged) == len(truth) and merged.swapped.any()
    assert (merged.full_path == merged.full_file).all()
    assert (merged.roi_mask_path == merged.roi_mask_file).all()
    assert (merged.cropped_path == merged.cropped_file).all()


def test_match_falls_back_to_folder_names(built):
    root, truth = built
    table = read_cbis_ddsm_csvs(root)
    for column in ("image_series_uid", "roi_series_uid", "cropped_series_uid"):
        table[column] = "1.2.3.4"  # UIDs that are nowhere on disk
    matched = match_cbis_ddsm(table, index_dicoms(root))
    assert matched.problem.isna().all()
    assert set(matched.roi_mask_path) == set(truth.roi_mask_file)


def test_unmatched_rows_are_kept_and_explained(tree_copy, tmp_path):
    root, truth = tree_copy
    lost_lesion, lost_full = truth.iloc[0], truth.iloc[-1]
    shutil.rmtree(Path(lost_lesion.roi_mask_file).parents[2])
    shutil.rmtree(Path(lost_full.full_file).parents[2])
    matched = match_cbis_ddsm(read_cbis_ddsm_csvs(root), index_dicoms(root))
    assert len(matched) == len(truth)
    lesion_row = matched[matched.roi_mask_path.isna()]
    assert len(lesion_row) == 1 and "ROI mask" in lesion_row.problem.iloc[0]
    full_rows = matched[matched.full_path.isna()]
    assert len(full_rows) >= 1 and full_rows.problem.str.contains("full mammogram").all()
    assert matched.problem.notna().sum() == len(lesion_row) + len(full_rows)
    # Conversion reports the same rows and nothing more.
    metadata = convert_cbis_ddsm(root, tmp_path / "out")
    assert (metadata.problem.fillna("") == matched.problem.fillna("")).all()
    assert metadata.roi_png.isna().sum() == 1


def test_convert_writes_the_dicom_values_and_lesion_masks(built, converted):
    root, truth = built
    out_dir, metadata = converted
    assert metadata.problem.isna().all() and len(metadata) == len(truth)
    views = truth.groupby(["patient_id", "side", "view"])
    assert len(list((out_dir / "full").iterdir())) == len(views)
    saved = pd.read_csv(out_dir / "metadata.csv")
    assert list(saved.columns) == list(metadata.columns)
    merged = metadata.merge(truth, on=LESION_KEY)
    for row in merged.itertuples():
        full = read_png(out_dir / row.full_png, expect_bits=16)
        np.testing.assert_array_equal(full, pydicom.dcmread(row.full_file).pixel_array)
        mask = read_png(out_dir / row.roi_png, expect_bits=8)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
        phantom = make_mammogram(
            row.phantom_seed, row.view, row.side[0], SHAPE,
            dense_fraction=row.dense_fraction, lesions=row.lesion_kinds.split(";"),
        )  # fmt: skip
        np.testing.assert_array_equal(mask == 255, phantom.lesion_masks[row.lesion_index].mask)
        np.testing.assert_array_equal(full, phantom.image)


def test_convert_twice_skips_and_changes_nothing(built, converted):
    root, _ = built
    out_dir, _ = converted
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out_dir.rglob("*") if p.is_file()}
    convert_cbis_ddsm(root, out_dir)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out_dir.rglob("*") if p.is_file()}
    pngs = [p for p in before if p.suffix == ".png"]
    assert len(pngs) > 0 and all(before[p] == after[p] for p in pngs)
    assert before.keys() == after.keys()
    assert before[out_dir / "metadata.csv"][1] == after[out_dir / "metadata.csv"][1]


def test_corrupt_dicom_is_reported_and_the_rest_converts(tree_copy, tmp_path):
    root, truth = tree_copy
    # A mammogram stored once (no calc/mass twin), so no other copy can stand in.
    copies = truth.groupby(["patient_id", "side", "view"]).full_file.transform("nunique")
    broken = truth[copies == 1].iloc[0]
    Path(broken.full_file).write_bytes(b"not a DICOM file")
    metadata = convert_cbis_ddsm(root, tmp_path / "out")
    hit = (metadata.patient_id == broken.patient_id) & (metadata.side == broken.side) & (
        metadata.view == broken.view
    )
    assert metadata.problem[hit].str.contains("full/").all()
    assert metadata.full_png[hit].isna().all()
    assert metadata.problem[~hit].isna().all() and metadata.full_png[~hit].notna().all()
    assert metadata.roi_png.notna().all()  # the masks of the broken mammogram convert too
