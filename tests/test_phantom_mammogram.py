"""Tests of the synthetic mammogram phantom and its power-law texture."""

import numpy as np
import pytest
from scipy import ndimage

from course_lib.phantoms.mammogram import (
    DENSITY_THRESHOLDS,
    FULL_SHAPE,
    LESION_KINDS,
    density_from_fraction,
    make_mammogram,
)
from course_lib.phantoms.texture import fit_power_law_exponent, power_law_noise

ALL_LESIONS = tuple(LESION_KINDS)


def _arrays(phantom):
    return [
        phantom.image,
        phantom.breast_mask,
        phantom.dense_mask,
        phantom.pectoral_mask,
        phantom.benign_mask,
        phantom.malignant_mask,
        *(lesion.mask for lesion in phantom.lesion_masks),
    ]


@pytest.mark.parametrize("view", ["CC", "MLO"])
def test_same_seed_gives_identical_arrays(view):
    a = make_mammogram(7, view, "L", lesions=ALL_LESIONS)
    b = make_mammogram(7, view, "L", lesions=ALL_LESIONS)
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.labels == b.labels and a.density == b.density


def test_different_seeds_differ():
    a = make_mammogram(1)
    b = make_mammogram(2)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.breast_mask, b.breast_mask)


def test_lesions_leave_the_anatomy_unchanged():
    plain = make_mammogram(3, "MLO")
    with_mass = make_mammogram(3, "MLO", lesions=("benign_mass",))
    np.testing.assert_array_equal(plain.breast_mask, with_mass.breast_mask)
    np.testing.assert_array_equal(plain.dense_mask, with_mass.dense_mask)
    changed = plain.image != with_mass.image
    assert changed.any()
    assert not (changed & ~with_mass.breast_mask).any()


def test_image_is_synthetic_uint16_in_12_bits():
    phantom = make_mammogram(0, lesions=ALL_LESIONS)
    assert phantom.synthetic is True
    assert phantom.image.dtype == np.uint16
    assert phantom.image.shape == (736, 480)
    assert phantom.image.max() <= 4095
    assert phantom.image[phantom.breast_mask].mean() > 10 * phantom.image[
        ~phantom.breast_mask
    ].mean()


@pytest.mark.parametrize(
    "fraction, letter",
    [
        (0.0, "A"),
        (0.2499, "A"),
        (0.25, "B"),
        (0.4999, "B"),
        (0.5, "C"),
        (0.75, "D"),
        (1.0, "D"),
    ],
)
def test_density_from_fraction_uses_birads_quartiles(fraction, letter):
    assert DENSITY_THRESHOLDS == (0.25, 0.50, 0.75)
    assert density_from_fraction(fraction) == letter


def test_density_from_fraction_rejects_out_of_range():
    with pytest.raises(ValueError):
        density_from_fraction(1.2)


@pytest.mark.parametrize("requested", [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95])
@pytest.mark.parametrize("view", ["CC", "MLO"])
def test_measured_density_follows_request_and_label_follows_it(requested, view):
    phantom = make_mammogram(11, view, dense_fraction=requested)
    tissue = phantom.breast_mask & ~phantom.pectoral_mask
    measured = phantom.dense_mask.sum() / tissue.sum()
    assert phantom.measured_dense_fraction == pytest.approx(measured)
    assert measured == pytest.approx(requested, abs=0.01)
    assert phantom.density == density_from_fraction(measured)
    assert not (phantom.dense_mask & ~tissue).any()


@pytest.mark.parametrize("side", ["L", "R"])
@pytest.mark.parametrize("view", ["CC", "MLO"])
def test_masks_and_labels_agree(view, side):
    phantom = make_mammogram(5, view, side, lesions=ALL_LESIONS)
    tissue = phantom.breast_mask & ~phantom.pectoral_mask
    assert [lesion.kind for lesion in phantom.lesion_masks] == list(ALL_LESIONS)
    benign = np.zeros_like(phantom.breast_mask)
    malignant = np.zeros_like(phantom.breast_mask)
    for lesion in phantom.lesion_masks:
        assert lesion.mask.any()
        assert not (lesion.mask & ~tissue).any()
        assert lesion.malignant == LESION_KINDS[lesion.kind]
        (malignant if lesion.malignant else benign)[...] |= lesion.mask
    np.testing.assert_array_equal(phantom.benign_mask, benign)
    np.testing.assert_array_equal(phantom.malignant_mask, malignant)
    imaged, other = ("left", "right") if side == "L" else ("right", "left")
    assert phantom.labels == {
        f"{imaged}_benign": 1,
        f"{imaged}_malignant": 1,
        f"{other}_benign": 0,
        f"{other}_malignant": 0,
    }


@pytest.mark.parametrize(
    "lesions, benign, malignant",
    [
        ((), 0, 0),
        (("benign_mass",), 1, 0),
        (("malignant_mass",), 0, 1),
        (("calcifications",), 0, 1),
    ],
)
def test_labels_set_iff_mask_non_empty(lesions, benign, malignant):
    phantom = make_mammogram(2, "CC", "L", lesions=lesions)
    labels = phantom.labels
    assert labels["left_benign"] == benign == int(phantom.benign_mask.any())
    assert labels["left_malignant"] == malignant == int(phantom.malignant_mask.any())
    assert labels["right_benign"] == labels["right_malignant"] == 0


def test_random_lesions_follow_probability():
    drawn = [
        len(make_mammogram(s, lesions="random", lesion_probability=0.5).lesion_masks)
        for s in range(40)
    ]
    assert set(drawn) == {0, 1}
    assert 10 <= sum(drawn) <= 30
    assert not make_mammogram(0, lesions="random", lesion_probability=0.0).lesion_masks
    assert make_mammogram(0, lesions="random", lesion_probability=1.0).lesion_masks


def test_unknown_lesion_kind_is_rejected():
    with pytest.raises(ValueError):
        make_mammogram(0, lesions=("cyst",))


@pytest.mark.parametrize("view", ["CC", "MLO"])
def test_left_faces_right_and_right_is_mirrored(view):
    left = make_mammogram(4, view, "L")
    right = make_mammogram(4, view, "R")
    half = left.breast_mask.shape[1] // 2
    assert left.breast_mask[:, :half].sum() > 2 * left.breast_mask[:, half:].sum()
    assert right.breast_mask[:, half:].sum() > 2 * right.breast_mask[:, :half].sum()
    np.testing.assert_array_equal(right.breast_mask, left.breast_mask[:, ::-1])
    np.testing.assert_array_equal(right.image, left.image[:, ::-1])
    # Chest wall on the left edge for L: the breast touches it.
    assert left.breast_mask[:, 0].sum() > 0.5 * left.breast_mask.shape[0]


@pytest.mark.parametrize("side", ["L", "R"])
def test_mlo_has_pectoral_muscle_in_upper_chest_wall_corner(side):
    phantom = make_mammogram(6, "MLO", side)
    muscle = phantom.pectoral_mask
    chest_wall = 0 if side == "L" else -1
    assert muscle.any()
    assert muscle[0].any(), "muscle must touch the top edge"
    assert muscle[:, chest_wall].any(), "muscle must touch the chest-wall edge"
    assert not (muscle & ~phantom.breast_mask).any()
    rows = np.flatnonzero(muscle.any(axis=1))
    assert rows.max() < muscle.shape[0] * 0.6
    # The muscle is brighter than the breast tissue around it.
    tissue = phantom.breast_mask & ~muscle
    assert phantom.image[muscle].mean() > phantom.image[tissue].mean()


def test_cc_has_no_pectoral_muscle():
    assert not make_mammogram(6, "CC", "L").pectoral_mask.any()


@pytest.mark.parametrize("view", ["CC", "MLO"])
@pytest.mark.parametrize("side", ["L", "R"])
def test_air_surrounds_breast_away_from_chest_wall(view, side):
    phantom = make_mammogram(8, view, side)
    breast = phantom.breast_mask
    nipple_side = -1 if side == "L" else 0
    assert not breast[:, nipple_side].any()
    columns = np.flatnonzero(breast.any(axis=0))
    assert columns.size < 0.9 * breast.shape[1]
    if view == "CC":
        assert not breast[0].any() and not breast[-1].any()
    air = phantom.image[~breast]
    assert np.percentile(air, 99) < 0.01 * 4095


@pytest.mark.parametrize("seed", [0, 1])
def test_breast_edge_falls_off_but_skin_line_is_bright(seed):
    phantom = make_mammogram(seed, "CC", "L")
    distance = ndimage.distance_transform_edt(phantom.breast_mask)
    image = phantom.image.astype(float)
    mm = 736 / 294.4  # pixels per millimetre at the default size
    skin = image[(distance > 0) & (distance <= 1)].mean()
    falloff = image[(distance > 4 * mm) & (distance < 8 * mm)].mean()
    interior = image[distance > 30 * mm].mean()
    assert falloff < 0.8 * interior
    assert skin > falloff


@pytest.mark.parametrize("beta", [2.5, 3.2])
def test_fitted_beta_matches_requested(beta):
    # Half the full size: at the default size one fit scatters by ~0.13, so
    # a rare phantom lands beyond 0.3; at half size the scatter is ~0.07.
    fitted = []
    for seed in range(4):
        for view in ("CC", "MLO"):
            phantom = make_mammogram(seed, view, beta=beta, shape=(1472, 960))
            tissue = phantom.breast_mask & ~phantom.pectoral_mask
            fitted.append(fit_power_law_exponent(phantom.image, tissue))
    fitted = np.array(fitted)
    assert np.all(np.abs(fitted - beta) < 0.3), fitted


def test_fitted_beta_is_unbiased_at_default_size():
    fitted = []
    for seed in range(8):
        phantom = make_mammogram(seed, ("CC", "MLO")[seed % 2], beta=3.0)
        tissue = phantom.breast_mask & ~phantom.pectoral_mask
        fitted.append(fit_power_law_exponent(phantom.image, tissue))
    assert abs(np.mean(fitted) - 3.0) < 0.1, fitted


def test_power_law_noise_has_requested_slope():
    rng = np.random.default_rng(0)
    field = power_law_noise((512, 512), 3.0, rng)
    assert field.mean() == pytest.approx(0.0, abs=1e-6)
    assert field.std() == pytest.approx(1.0, rel=1e-5)
    fitted = fit_power_law_exponent(field, np.ones(field.shape, bool))
    assert fitted == pytest.approx(3.0, abs=0.2)


def test_full_size_generation():
    phantom = make_mammogram(0, "MLO", "R", shape=FULL_SHAPE, lesions=ALL_LESIONS)
    assert phantom.image.shape == FULL_SHAPE
    assert phantom.image.dtype == np.uint16 and phantom.image.max() <= 4095
    assert phantom.pectoral_mask.any() and phantom.malignant_mask.any()
    assert phantom.measured_dense_fraction == pytest.approx(0.3, abs=0.01)


def test_bits_sets_full_scale():
    phantom = make_mammogram(0, bits=14, lesions=("calcifications",))
    assert 4095 < phantom.image.max() <= 2**14 - 1
