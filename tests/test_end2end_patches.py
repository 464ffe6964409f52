"""Patch sampling: overlap rules, hard negatives, background, split, class modes, files, bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from course_lib.end2end.data import write_phantom_cases
from course_lib.end2end.patches import (
    CLASS_NAMES, Lesion, SamplingSettings, _Overlap, blob_centres, lesion_class, overlap, patient_split,
    roi_centres, sample_patches, sample_view, segment_breast,
)
from course_lib.phantoms.mammogram import make_mammogram

SHAPE = (184, 120)
SMALL = SamplingSettings(patch_size=24, n_roi=6, n_background=6, n_hard=3)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    write_phantom_cases(root, n_patients=6, seed=1, shape=SHAPE)
    return root


def _phantom_view(kinds=("malignant_mass", "benign_mass"), seed=5):
    phantom = make_mammogram(seed, "MLO", "L", SHAPE, lesions=kinds, lesion_contrast=2.0)
    lesions = [Lesion(m.mask, "MALIGNANT" if m.malignant else "BENIGN", "mass", i + 1)
               for i, m in enumerate(phantom.lesion_masks)]
    return phantom, lesions


def test_overlap_counts_lesion_or_window_fraction():
    mask = np.zeros((100, 100), bool)
    mask[40:60, 40:60] = True  # 400 pixels
    assert overlap((50, 50), mask, 10) == 1.0  # window full of lesion
    assert overlap((50, 50), mask, 40) == 1.0  # lesion fully inside the window
    assert overlap((40, 50), mask, 10) == pytest.approx(0.5)  # half the window
    assert overlap((5, 5), mask, 10) == 0.0
    # Near the border the window is clipped to the image.
    edge = np.zeros((20, 20), bool)
    edge[:4, :4] = True
    assert overlap((0, 0), edge, 8) == 1.0


def test_roi_patches_respect_the_cutoff_and_background_keeps_clear_of_every_lesion():
    phantom, lesions = _phantom_view()
    patches = sample_view(phantom.image, lesions, SMALL, name="view")
    roi = [p for p in patches if p.kind == "roi"]
    others = [p for p in patches if p.kind != "roi"]
    assert len(roi) == SMALL.n_roi * len(lesions) and len(others) == SMALL.n_background
    assert all(p.overlap > SMALL.roi_cutoff for p in roi)
    assert {p.class_name for p in roi} == {"malignant", "benign"}
    union = np.logical_or.reduce([lesion.mask for lesion in lesions])
    for patch in others:  # recomputed on the original image from the recorded centre
        assert overlap(patch.centre, union, SMALL.patch_size) <= SMALL.background_cutoff + 1e-9
        assert patch.class_name == "background"
    for patch in roi[:3]:  # patches hold the image's own grey levels at their centre
        r, c = patch.centre
        assert patch.pixels[SMALL.patch_size // 2, SMALL.patch_size // 2] == phantom.image[r, c]


def test_cutoff_is_lowered_after_repeated_failures():
    mask = np.zeros((60, 60), bool)
    mask[30, 5:55] = True  # a thin line: no 10x10 window holds 75 % of it or is 75 % full
    lesion_overlap = _Overlap(mask, 10, (0, 60, 0, 60))
    rng = np.random.default_rng(0)
    centres, values, cutoff = roi_centres(lesion_overlap, (25, 36, 5, 55), 3, rng, patience=50)
    assert cutoff < 0.75 and all(v > cutoff for v in values) and len(centres) == 3


def test_blob_detector_finds_bright_spots_and_ignores_large_regions():
    image = np.zeros((80, 80))
    image[20:24, 30:34] = 250  # a small bright blob
    image[50:80, 0:80] = 250  # a large bright region: larger than the maximum area
    assert blob_centres(image, max_area=200) == [(22, 32)]  # centre of mass, rounded half to even


def test_hard_negatives_come_from_blobs():
    phantom, lesions = _phantom_view(("calcifications",), seed=11)
    patches = sample_view(phantom.image, lesions, SMALL, name="calc view")
    assert sum(p.kind == "hard_negative" for p in patches) >= 1


def test_breast_segmentation_finds_the_breast():
    phantom = make_mammogram(2, "CC", "R", SHAPE)
    mask, (rows, cols) = segment_breast(phantom.image)
    assert (mask & phantom.breast_mask).sum() / phantom.breast_mask.sum() > 0.95
    assert not mask[:, :2].any()  # right breast: chest wall on the right, air on the left


def test_sampling_is_reproducible_per_view():
    phantom, lesions = _phantom_view()
    first = sample_view(phantom.image, lesions, SMALL, name="a")
    again = sample_view(phantom.image, lesions, SMALL, name="a")
    other = sample_view(phantom.image, lesions, SMALL, name="b")
    assert [p.centre for p in first] == [p.centre for p in again]
    assert [p.centre for p in first] != [p.centre for p in other]


def test_class_modes():
    assert CLASS_NAMES[3] == ("background", "benign", "malignant")
    assert lesion_class("MALIGNANT", "calc", 5) == "calc_mal" and lesion_class("BENIGN", "mass", 5) == "mass_ben"
    assert lesion_class("MALIGNANT", "calc", 3) == "malignant"
    with pytest.raises(ValueError):
        SamplingSettings(n_classes=4)


def test_patient_split_is_patient_level_and_stratified():
    patients = [f"P{i:02d}" for i in range(40) for _ in range(4)]  # four views each
    cancer = [i % 2 == 0 for i in range(40) for _ in range(4)]
    split = patient_split(patients, cancer, val_size=0.1, test_size=0.2, seed=3)
    assert set(split) == set(patients)
    for name, expected in (("test", 8), ("val", 4), ("train", 28)):
        members = [p for p, s in split.items() if s == name]
        assert len(members) == expected
        assert sum(int(p[1:]) % 2 == 0 for p in members) == expected // 2  # half of each split has cancer


@pytest.mark.parametrize("n_classes", [3, 5])
def test_folder_sampling_writes_16_bit_pngs_an_index_and_patient_lists(cases, tmp_path, n_classes):
    settings = SamplingSettings(patch_size=24, n_roi=4, n_background=4, n_hard=2, n_classes=n_classes)
    report = sample_patches(cases, tmp_path, settings, val_size=0.2, test_size=0.2)
    index = pd.read_csv(tmp_path / "index.csv")
    assert len(index) == len(report.index) > 0 and not report.problems
    assert set(index.class_name) <= set(CLASS_NAMES[n_classes]) and "background" in set(index.class_name)
    first = tmp_path / index.file[0]
    with Image.open(first) as img:
        assert img.mode == "I;16" and img.size == (24, 24)
    for split in ("train", "val", "test"):
        patients = (tmp_path / split / "pat_lst.txt").read_text().split()
        assert set(index.patient_id[index.split == split]) <= set(patients)
    assert index.groupby("patient_id").split.nunique().max() == 1


def test_sampling_resumes_without_rewriting(cases, tmp_path):
    sample_patches(cases, tmp_path, SMALL)
    index = pd.read_csv(tmp_path / "index.csv")
    stamps = {f: (tmp_path / f).stat().st_mtime_ns for f in index.file}
    sample_patches(cases, tmp_path, SMALL)
    assert pd.read_csv(tmp_path / "index.csv").equals(index)
    assert stamps == {f: (tmp_path / f).stat().st_mtime_ns for f in index.file}


# --- bad input ---------------------------------------------------------------------------

def _copy_cases(cases, tmp_path):
    import shutil

    root = tmp_path / "cases"
    shutil.copytree(cases, root)
    return root, pd.read_csv(root / "metadata.csv")


def test_mask_of_another_size_names_both_files_and_sizes(cases, tmp_path):
    root, lesions = _copy_cases(cases, tmp_path)
    Image.fromarray(np.zeros((50, 40), np.uint8)).save(root / lesions.roi_png[0])
    report = sample_patches(root, tmp_path / "out", SMALL)
    (message,) = [p for p in report.problems if "same size" in p]
    assert lesions.roi_png[0] in message and lesions.full_png[0] in message
    assert "50x40" in message and f"{SHAPE[0]}x{SHAPE[1]}" in message
    assert len(report.index) > 0  # the other views went on


def test_empty_mask_is_skipped_and_reported(cases, tmp_path):
    root, lesions = _copy_cases(cases, tmp_path)
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(root / lesions.roi_png[0])
    report = sample_patches(root, tmp_path / "out", SMALL)
    assert any("empty ROI mask" in p and lesions.roi_png[0] in p for p in report.problems)


def test_missing_files_are_listed_and_the_rest_goes_on(cases, tmp_path):
    root, lesions = _copy_cases(cases, tmp_path)
    (root / lesions.full_png[0]).unlink()
    report = sample_patches(root, tmp_path / "out", SMALL)
    missing = [p for p in report.problems if "missing file" in p]
    assert missing and lesions.full_png[0] in missing[0]
    assert len(report.index) > 0
    assert "problems.txt" in {p.name for p in (tmp_path / "out").iterdir()}


def test_patch_larger_than_the_image_is_a_clear_error():
    phantom, lesions = _phantom_view()
    with pytest.raises(ValueError, match="patch size 256 is larger than the image"):
        sample_view(phantom.image, lesions, SamplingSettings(patch_size=256), name="small view")


def test_inputs_are_not_modified(cases, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in cases.rglob("*") if p.is_file()}
    sample_patches(cases, tmp_path, SMALL)
    assert before == {p: p.stat().st_mtime_ns for p in cases.rglob("*") if p.is_file()}


def test_cbis_ddsm_tree_with_missing_files_is_sampled_and_the_missing_listed(tmp_path):
    from course_lib.datasets.cbis_ddsm import convert_cbis_ddsm
    from course_lib.phantoms.cbis_ddsm_tree import build_cbis_ddsm_phantom_tree

    truth = build_cbis_ddsm_phantom_tree(tmp_path / "tree", n_patients=2, seed=0)
    Path(truth.full_file[0]).unlink()  # the CSV now points to a file that is not there
    converted = convert_cbis_ddsm(tmp_path / "tree", tmp_path / "png")
    assert converted.full_png.isna().any()
    report = sample_patches(tmp_path / "png", tmp_path / "patches", SamplingSettings(n_classes=5),
                            val_size=0.0, test_size=0.0)
    assert any("missing file" in p for p in report.problems)
    assert len(report.index) > 0 and set(report.index.class_name) <= set(CLASS_NAMES[5])
