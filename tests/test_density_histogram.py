"""NYU's histogram density model with its published weights on its sample exam (reproduction 2)."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from course_lib.density.data import load_grey8  # noqa: E402
from course_lib.density.histogram_model import (  # noqa: E402
    CHECKPOINT_KEYS, PUBLISHED_SAMPLE_PROBABILITIES, VIEW_ORDER, exam_features, histogram_model_predict,
    load_histogram_weights, view_histogram,
)


@pytest.fixture
def exam_and_weights(registry_file):
    index = registry_file(CHECKPOINT_KEYS[0])
    registry_file(CHECKPOINT_KEYS[1])
    views = {v: load_grey8(registry_file(f"nyu-density/images/{v}.png")) for v in VIEW_ORDER}
    return views, load_histogram_weights(str(index)[: -len(".index")])


def test_float64_reproduces_the_published_probabilities(exam_and_weights):
    views, weights = exam_and_weights
    probabilities = histogram_model_predict(views, weights, np.float64)
    np.testing.assert_allclose(probabilities, PUBLISHED_SAMPLE_PROBABILITIES, atol=1e-3)
    assert probabilities.argmax() == int(np.argmax(PUBLISHED_SAMPLE_PROBABILITIES)) == 1


def test_float32_moves_values_across_bin_edges(exam_and_weights):
    views, weights = exam_and_weights
    f64, f32 = exam_features(views, np.float64), exam_features(views, np.float32)
    assert np.abs(f64 - f32).max() > 1e-4  # whole pixels changed bins, not rounding noise
    p64, p32 = (histogram_model_predict(views, weights, d) for d in (np.float64, np.float32))
    assert 5e-4 < np.abs(p64 - p32).max() < 5e-3 and p32.argmax() == p64.argmax()


def test_histogram_is_normalised_and_views_are_required():
    h = view_histogram(np.random.default_rng(0).integers(0, 256, (50, 40)).astype(np.uint8))
    assert h.shape == (50,) and h.sum() == pytest.approx(1)
    with pytest.raises(ValueError, match="missing \\['R-MLO'\\]"):
        exam_features({v: np.eye(3) for v in VIEW_ORDER[:3]})
