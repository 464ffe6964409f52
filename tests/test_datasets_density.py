"""Density data sets in the INFN layout: synthetic builder, readers, published predictions."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from course_lib.datasets.density import (
    DENSITY_CLASSES,
    GROUND_TRUTH_FILE,
    INFN_TEST_COUNTS,
    PROJECTIONS,
    SPLIT_SETS,
    infn_test_labels,
    read_density_dataset,
    read_infn_predictions,
)
from course_lib.phantoms.density_set import build_density_phantom_dataset
from course_lib.phantoms.mammogram import DENSITY_THRESHOLDS, density_from_fraction

SHAPE = (368, 240)  # half the phantom default: keeps the tests quick
INFN = "infn-density/myproject"
# docs/original_pipelines.md, INFN figures of merit: accuracy of each published prediction file against infn_test_labels().
PUBLISHED_ACCURACY = {"ccr": 0.7734, "mlor": 0.7422, "ccl": 0.7500, "mlol": 0.7188}
REAL_TESTSET = {
    "CC_L": ["124", "110", "145", "1302"],
    "CC_R": ["1251", "1103", "145", "1346"],
    "MLO_L": ["2205", "111", "1301", "1302"],
    "MLO_R": ["124", "110", "145", "1302"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("density")
    table = build_density_phantom_dataset(
        root, n_per_class=3, splits={"train": 1, "validation": 1, "test": 1}, seed=2, shape=SHAPE)
    return root, table


def test_every_patient_in_every_projection_with_one_class(built):
    _, table = built
    assert len(table) == 4 * 3 * 4
    per_patient = table.groupby("patient_id")
    assert all(sorted(group) == sorted(PROJECTIONS) for _, group in per_patient["projection"])
    assert per_patient["label"].nunique().eq(1).all()
    assert per_patient["split"].nunique().eq(1).all()  # split by patient
    # one patient of each class in each split
    assert (table.groupby(["split", "label"])["patient_id"].nunique() == 1).all()


def test_exact_layout_and_names(built):
    root, table = built
    pattern = re.compile(r"(\w+Set)/(CC|MLO)_([LR])/(\w+)/([ABCD])/(SYN\d{4})_1_([ABCD])_(CC|MLO)_([LR])\.png")
    for row in table.itertuples():
        match = pattern.fullmatch(Path(row.path).relative_to(root).as_posix())
        assert match, row.path
        top, view, side, split, folder, patient, letter, view_again, side_again = match.groups()
        assert top == SPLIT_SETS[split] and split == row.split
        assert f"{view}_{side}" == row.projection and (view, side) == (view_again, side_again)
        assert folder == letter == row.label and row.label_index == DENSITY_CLASSES.index(letter)
        assert patient == row.patient_id


def test_measured_class_equals_folder(built):
    root, table = built
    truth = pd.read_csv(root / GROUND_TRUTH_FILE)
    assert len(truth) == len(table) and truth["synthetic"].all()
    assert (truth["measured_label"] == truth["label"]).all()
    assert (truth["dense_fraction"].map(density_from_fraction) == truth["label"]).all()
    assert set(truth["path"]) == {Path(p).relative_to(root).as_posix() for p in table["path"]}


def test_images_look_like_the_infn_ones(built):
    """8-bit grey, cropped to the breast, black background, flat pectoral patch in MLO (docs/original_pipelines.md, INFN TestSet)."""
    _, table = built
    for row in table.itertuples():
        with Image.open(row.path) as image:
            assert image.mode == "L"
            pixels = np.asarray(image)
        breast = pixels > 0
        assert 0.02 < (~breast).mean() < 0.5  # background exists and is exactly 0
        # tight crop: the breast touches all four borders
        assert breast[0].any() and breast[-1].any() and breast[:, 0].any() and breast[:, -1].any()
        chest_wall = pixels[:, 0] if row.side == "L" else pixels[:, -1]
        assert (chest_wall > 0).mean() > 0.9
        assert 150 < pixels.max() <= 255
        if row.view == "MLO":
            corner = pixels[0, 0] if row.side == "L" else pixels[0, -1]
            patch = pixels == corner
            assert patch.mean() > 0.02
            assert abs(int(corner) - pixels[breast & ~patch].mean()) < 2.5


def test_reader_order_is_the_keras_order(built):
    _, table = built
    for (projection, split), group in table.groupby(["projection", "split"], sort=False):
        keys = list(zip(group["label"], group["path"].map(lambda p: Path(p).name)))
        assert keys == sorted(keys)
    assert list(table["projection"].drop_duplicates()) == list(PROJECTIONS)


def test_string_order_not_numeric_order(tmp_path):
    """'1103_...' sorts before '110_...' (as Keras lists them), and class folders come first."""
    names = {"B": ["110_1_B_CC_R.png", "1103_1_B_CC_R.png"], "A": ["2_1_A_CC_R.png"]}
    for letter, files in names.items():
        folder = tmp_path / "TestSet" / "CC_R" / "test" / letter
        folder.mkdir(parents=True)
        for name in files:
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / name)
    (tmp_path / "TestSet" / "CC_R" / "test" / "README.png").write_bytes(b"")  # not in a class folder
    table = read_density_dataset(tmp_path)
    assert table["patient_id"].tolist() == ["2", "1103", "110"]
    assert table["label_index"].tolist() == [0, 1, 1]


def test_builder_is_deterministic(tmp_path):
    kwargs = dict(n_per_class=1, projections=("MLO_R",), splits={"train": 1}, seed=9, shape=SHAPE)
    first = build_density_phantom_dataset(tmp_path / "a", **kwargs)
    second = build_density_phantom_dataset(tmp_path / "b", **kwargs)
    assert len(first) == 4
    for a, b in zip(first["path"], second["path"]):
        assert Path(a).relative_to(tmp_path / "a") == Path(b).relative_to(tmp_path / "b")
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="splits"):
        build_density_phantom_dataset(tmp_path, 1, splits={"training": 1})
    with pytest.raises(ValueError, match="projections"):
        build_density_phantom_dataset(tmp_path, 1, projections=("CC",))


def test_class_bands_follow_the_phantom_thresholds():
    assert DENSITY_THRESHOLDS == (0.25, 0.50, 0.75)  # the builder draws from the middle of these


def test_infn_test_labels():
    labels = infn_test_labels()
    assert labels.shape == (128,)
    assert np.bincount(labels).tolist() == list(INFN_TEST_COUNTS) == [14, 51, 50, 13]
    assert np.all(np.diff(labels) >= 0)


@pytest.mark.mirror
def test_real_infn_testset(registry_file):
    paths = [registry_file(f"{INFN}/TestSet/{projection}/test/{letter}/{patient}_1_{letter}_{projection}.png")
             for projection, patients in REAL_TESTSET.items()
             for letter, patient in zip(DENSITY_CLASSES, patients)]
    myproject = paths[0].parents[4]
    for root in (myproject, myproject / "TestSet"):
        table = read_density_dataset(root)
        table = table[table["path"].isin([str(p) for p in paths])]
        assert len(table) == 16 and table["split"].eq("test").all()
        for projection, patients in REAL_TESTSET.items():
            rows = table[table["projection"] == projection]
            assert rows["patient_id"].tolist() == patients
            assert rows["label"].tolist() == list(DENSITY_CLASSES)
    for path in paths:
        with Image.open(path) as image:
            assert image.mode == "L"


@pytest.mark.mirror
@pytest.mark.parametrize("name,accuracy", PUBLISHED_ACCURACY.items())
def test_published_prediction_accuracy(registry_file, name, accuracy):
    predictions = read_infn_predictions(registry_file(f"{INFN}/Predictions/predictions_{name}.txt"))
    assert predictions.shape == (128, 4)
    assert np.allclose(predictions.sum(axis=1), 1.0, atol=1e-5)
    measured = np.mean(predictions.argmax(axis=1) == infn_test_labels())
    assert round(measured, 4) == accuracy


@pytest.mark.mirror
def test_published_total_accuracy(registry_file):
    """Mean of the four projections' probabilities, then argmax: 0.8125 (docs/original_pipelines.md, INFN figures of merit)."""
    mean = np.mean([read_infn_predictions(registry_file(f"{INFN}/Predictions/predictions_{name}.txt"))
                    for name in PUBLISHED_ACCURACY], axis=0)
    assert np.mean(mean.argmax(axis=1) == infn_test_labels()) == 0.8125


def test_predictions_need_four_columns(tmp_path):
    (tmp_path / "bad.txt").write_text("0.5 0.5\n0.2 0.8\n")
    with pytest.raises(ValueError, match="4 columns"):
        read_infn_predictions(tmp_path / "bad.txt")
