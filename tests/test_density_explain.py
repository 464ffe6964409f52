"""Density Grad-CAM helpers: phantom masks in the image frame, mask scores, the original's overlay."""

import numpy as np
import pytest

from course_lib.density.explain import (
    dense_mass_fraction, original_style_overlay, phantom_with_masks, resize_mask,
)


def test_phantom_masks_share_the_cropped_frame_and_the_class():
    phantom = phantom_with_masks(5, "MLO_R", 0.6, shape=(256, 168))
    assert phantom.synthetic and phantom.label == "C"
    assert phantom.image.shape == phantom.dense_mask.shape == phantom.breast_mask.shape
    assert not (phantom.dense_mask & ~phantom.breast_mask).any()
    assert (phantom.image[phantom.breast_mask] > 0).all()
    small = resize_mask(phantom.dense_mask, 32)
    assert small.shape == (32, 32) and small.dtype == bool


def test_mass_fraction_tells_a_dense_map_from_a_uniform_one():
    phantom = phantom_with_masks(6, "CC_L", 0.4, shape=(256, 168))
    uniform = phantom.breast_mask.astype(float)
    on, base = dense_mass_fraction(uniform, phantom.dense_mask, phantom.breast_mask)
    assert on == pytest.approx(base) and 0.3 < base < 0.5
    assert dense_mass_fraction(phantom.dense_mask.astype(float), phantom.dense_mask, phantom.breast_mask)[0] == 1.0
    assert np.isnan(dense_mass_fraction(np.zeros_like(uniform), phantom.dense_mask, phantom.breast_mask)[0])


def test_original_overlay_saturates_and_contours_the_seismic_red_band():
    image = np.full((4, 4), 128, np.uint8)
    saliency = np.linspace(0, 1, 16).reshape(4, 4)
    overlay, red = original_style_overlay(image, saliency)
    assert overlay.shape == (4, 4, 4) and overlay.dtype == np.uint8 and (overlay[..., 3] == 255).all()
    band = saliency[red >= 250]
    assert band.min() >= 0.45 and band.max() <= 0.8  # seismic's red channel saturates for about 0.50-0.76
