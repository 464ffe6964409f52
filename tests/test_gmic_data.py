"""Synthetic exams in GMIC's sample-data layout, read back by the kit's loaders."""

import json

import numpy as np
import pytest

from course_lib.exam_list import VIEWS, read_exam_list, view_labels
from course_lib.gmic.config import GMICGeometry
from course_lib.gmic.data import build_gmic_phantom_exams, segmentation_paths
from course_lib.gmic.preprocess import crop_mammogram, mask_in_model_frame, place_in_window, preprocess_view
from course_lib.io import read_png
from course_lib.phantoms.mammogram import make_mammogram

QUARTER = GMICGeometry.quarter()


@pytest.fixture(scope="module")
def exams_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gmic_phantoms")
    build_gmic_phantom_exams(root, 6, seed=0)
    return root


def test_layout_and_exam_lists(exams_root):
    exams = read_exam_list(exams_root / "exam_list_before_cropping.json")
    assert read_exam_list(exams_root / "exam_list_before_cropping.pkl") == exams
    assert len(exams) == 6 and all(e["synthetic"] for e in exams)
    for exam in exams:
        for view in VIEWS:
            (short,) = exam[view]
            image = read_png(exams_root / "images" / f"{short}.png")
            assert image.dtype == np.uint16 and image.max() <= 4095


def test_labels_agree_with_the_segmentations(exams_root):
    exams = json.loads((exams_root / "exam_list_before_cropping.json").read_text())
    assert any(e["cancer_label"]["benign"] for e in exams) and any(e["cancer_label"]["malignant"] for e in exams)
    for exam in exams:
        for view in VIEWS:
            benign, malignant = view_labels(exam["cancer_label"], view)
            benign_path, malignant_path = segmentation_paths(exams_root / "segmentation", exam[view][0])
            assert (benign_path is not None) == bool(benign)
            assert (malignant_path is not None) == bool(malignant)
            for path in (benign_path, malignant_path):
                if path is not None:
                    seg = read_png(path, expect_bits=8)
                    assert seg.shape == QUARTER.window and set(np.unique(seg)) == {0, 255}


def test_segmentation_lies_on_the_lesion_in_the_model_frame():
    phantom = make_mammogram(3, view="MLO", side="R", lesions=("benign_mass",))
    window, info = preprocess_view(phantom.image, "R-MLO", "NO", QUARTER)
    framed = mask_in_model_frame(phantom.benign_mask, "R-MLO", info, "NO", QUARTER)
    assert framed.sum() == phantom.benign_mask.sum()
    cropped, _ = crop_mammogram(phantom.image, "R-MLO", "NO", buffer=QUARTER.crop_buffer, iterations=QUARTER.crop_iterations)
    placed = place_in_window(cropped, "R-MLO", info["best_center"], "NO", QUARTER.window)
    lesion_pixels = np.flatnonzero(phantom.benign_mask)
    assert np.array_equal(np.sort(placed[framed]), np.sort(phantom.image.ravel()[lesion_pixels]))
    # The right breast faces right in the model frame: its chest wall is at column 0.
    assert placed[:, :10].any() and window.shape == QUARTER.window


def test_building_twice_gives_identical_bytes(tmp_path):
    build_gmic_phantom_exams(tmp_path / "a", 2, seed=5)
    build_gmic_phantom_exams(tmp_path / "b", 2, seed=5)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
