"""The end2end intensity rule: the rescale factor follows the data's real bit depth."""

import numpy as np
import pytest
from PIL import Image

from course_lib.end2end.scaling import (
    PAPER_RESCALE_FACTOR, featurewise_mean, infer_bit_depth, rescale_factor, scaling_note, to_model_units,
)
from course_lib.phantoms.mammogram import make_mammogram


def test_paper_factor_is_255_over_65535():
    assert round(PAPER_RESCALE_FACTOR, 6) == 0.003891
    assert rescale_factor(16) == PAPER_RESCALE_FACTOR


def test_12_bit_data_in_a_16_bit_png_is_not_scaled_by_255_over_65535(tmp_path):
    image = make_mammogram(3, "CC", "L", (184, 120), bits=12).image
    path = tmp_path / "view.png"
    Image.fromarray(image).save(path)
    with Image.open(path) as img:
        stored = np.asarray(img)
    assert stored.dtype == np.uint16 and stored.max() <= 4095  # 12-bit data, 16-bit container
    bits = infer_bit_depth(stored.max())
    assert bits == 12
    units = to_model_units(stored, bits)
    naive = stored * PAPER_RESCALE_FACTOR
    assert units.max() == pytest.approx(float(stored.max()) * 255 / 4095, rel=1e-6)
    assert units.max() > 150 and naive.max() < 16  # the silent 16x error the rule avoids
    assert "16.0x the paper's" in scaling_note(bits)


@pytest.mark.parametrize("value, bits", [(0, 8), (255, 8), (256, 10), (1023, 10), (4095, 12), (16383, 14), (16384, 16)])
def test_inferred_depth_is_the_smallest_that_holds_the_maximum(value, bits):
    assert infer_bit_depth(value) == bits


def test_values_above_the_stated_depth_are_an_error():
    with pytest.raises(ValueError, match="do not fit in 12 bits"):
        to_model_units(np.array([0, 5000]), 12)
    with pytest.raises(ValueError):
        infer_bit_depth(70000)


def test_featurewise_mean_is_in_0_255_units():
    images = [np.full((4, 4), 4095), np.zeros((4, 4))]
    assert featurewise_mean(images, 12) == pytest.approx(127.5)
