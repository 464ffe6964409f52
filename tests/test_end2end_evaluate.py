"""end2end evaluation: AUC interval, calibration, operating points, pointing game."""

import numpy as np
import pytest

from course_lib.end2end.evaluate import auc_with_ci, calibration_table, operating_points, pointing_hit


def test_auc_interval_contains_the_auc_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    def sample(n):
        labels = rng.integers(0, 2, n)
        return labels, labels + rng.normal(0, 1.2, n)
    small = auc_with_ci(*sample(60))
    large = auc_with_ci(*sample(2000))
    assert small[1] <= small[0] <= small[2] and large[1] <= large[0] <= large[2]
    assert (large[2] - large[1]) < (small[2] - small[1]) / 3
    with pytest.raises(ValueError, match="both classes"):
        auc_with_ci([1, 1, 1], [0.2, 0.3, 0.4])


def test_operating_points_reach_the_target_sensitivity():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.4, 0.6, 0.65, 0.8, 0.9, 0.95])
    table = operating_points(labels, scores, target_sensitivity=0.9).set_index("rule")
    assert table.loc["sensitivity >= 0.9", "sensitivity"] >= 0.9
    assert table.loc["0.5 (default)", "sensitivity"] == pytest.approx(5 / 6)
    assert table.loc["0.5 (default)", "specificity"] == pytest.approx(3 / 4)


def test_calibration_of_a_perfectly_calibrated_score():
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, 20000)
    labels = rng.uniform(0, 1, 20000) < scores
    table, brier = calibration_table(labels, scores, n_bins=5)
    np.testing.assert_allclose(table.observed_rate, table.mean_predicted, atol=0.03)
    assert brier == pytest.approx(1 / 6, abs=0.01)  # E[p(1-p)] for uniform p


def test_pointing_game_on_heatmap_windows_and_coarse_maps():
    mask = np.zeros((96, 80), bool)
    mask[60:66, 40:46] = True
    heat = np.zeros((4, 3))  # 48-pixel windows at stride 16
    heat[2, 1] = 1.0  # window rows 32..80, cols 16..64: holds the lesion
    assert pointing_hit(heat, mask, stride=16, window=48)
    heat[:] = 0
    heat[0, 0] = 1.0  # rows 0..48: misses it
    assert not pointing_hit(heat, mask, stride=16, window=48)
    coarse = np.zeros((3, 2))  # 32x40 tiles
    coarse[1, 1] = 1.0  # rows 32..64, cols 40..80: holds the lesion
    assert pointing_hit(coarse, mask)
    coarse[:] = 0
    coarse[0, 0] = 1.0
    assert not pointing_hit(coarse, mask)
