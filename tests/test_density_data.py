"""Density data pipeline: layout errors, conversions with warnings, centring, seeded augmentation."""

import warnings

import numpy as np
import pytest
from PIL import Image

from course_lib.phantoms.density_set import build_density_phantom_dataset
from course_lib.density.data import (
    AUGMENTATION, ImageConversionWarning, LayoutError, centre_images, check_layout, load_grey8, load_images,
)


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("density")
    return root, build_density_phantom_dataset(root, 5, projections=("CC_L", "MLO_R"), shape=(128, 84), seed=0)


def test_missing_projection_and_class_are_listed_with_what_was_found(phantom_set):
    root, frame = phantom_set
    check_layout(frame, ("CC_L", "MLO_R"), ("train", "validation", "test"), root)
    with pytest.raises(LayoutError, match=r"no images for CC_R/train/A.*Found: CC_L/test/A"):
        check_layout(frame, ("CC_R",), ("train",), root)
    without_d = frame[frame["label"] != "D"]
    with pytest.raises(LayoutError, match=r"CC_L/train/D.*\(6 missing\)"):
        check_layout(without_d, ("CC_L", "MLO_R"), ("train", "validation", "test"), root)


def test_images_are_resized_nearest_and_centred_per_image(phantom_set):
    _, frame = phantom_set
    paths = list(frame["path"][:3])
    images = load_images(paths, 32)
    assert images.shape == (3, 32, 32) and images.dtype == np.uint8
    original = np.asarray(Image.open(paths[0]))
    assert set(np.unique(images[0])) <= set(np.unique(original))  # nearest: no new grey levels
    x = centre_images(images)
    assert x.shape == (3, 32, 32, 3) and np.abs(x.mean(axis=(1, 2, 3))).max() < 1e-6
    np.testing.assert_allclose(x[0, ..., 0], images[0] / 255.0 - (images[0] / 255.0).mean(), atol=1e-6)


def test_other_bit_depths_and_rgb_are_converted_with_a_warning_naming_the_file(tmp_path):
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(np.array([[0, 1000], [2000, 4000]], np.uint16)).save(sixteen)
    with pytest.warns(ImageConversionWarning, match="sixteen.png: scaled from I;16"):
        grey = load_grey8(sixteen)
    assert grey.dtype == np.uint8 and grey.max() == 255 and grey[0, 1] == 64
    rgb = tmp_path / "colour.png"
    Image.fromarray(np.full((4, 4, 3), 100, np.uint8)).save(rgb)
    with pytest.warns(ImageConversionWarning, match="colour.png: converted from RGB"):
        assert load_grey8(rgb).max() == 100
    eight = tmp_path / "eight.png"
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(eight)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_grey8(eight).max() == 7
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(OSError, match="broken.png"):
        load_grey8(tmp_path / "broken.png")


def test_augmentation_is_the_originals_with_nearest_fill_and_seeded():
    pytest.importorskip("tensorflow")
    from course_lib.density.data import augmentation_layers, make_dataset

    layers = augmentation_layers(0)
    assert [layer.fill_mode for layer in layers.layers] == ["nearest"] * 3
    assert AUGMENTATION["flips"] is False and layers.layers[0].factor[1] == pytest.approx(10 / 360)
    images = np.tile(np.linspace(0, 255, 24, dtype=np.float32), (6, 24, 1)).astype(np.uint8)

    def batches(seed):
        return [b[0].numpy() for b in make_dataset(images, np.arange(6) % 4, 3, augment=True, shuffle=True,
                                                   seed=seed)]

    first, again, other = batches(0), batches(0), batches(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))
    assert first[0].shape == (3, 24, 24, 3)
