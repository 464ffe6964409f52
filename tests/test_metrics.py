"""Metrics and the reproduction check used by the notebooks."""

import numpy as np
import pytest

from course_lib.metrics import ReproductionError, check_reproduced, dice, pointing_game_hit, saliency_dice


def test_check_reproduced_prints_and_passes(capsys):
    check_reproduced("accuracy CC_R", 0.77343, 0.7734, tolerance=5e-5)
    assert capsys.readouterr().out.strip() == "accuracy CC_R: 0.7734 (published 0.7734, tolerance 5e-05) ok"


def test_check_reproduced_raises_on_a_changed_number():
    with pytest.raises(ReproductionError, match="published 0.7734"):
        check_reproduced("accuracy CC_R", 0.76, 0.7734, tolerance=1e-4)


def test_dice():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    a[:2] = True
    b[1:3] = True
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_pointing_game_uses_the_cell_of_the_maximum():
    mask = np.zeros((128, 64), bool)
    mask[70:80, 10:20] = True          # inside cell (1, 0) of a 64-px grid
    hit_map = np.array([[0.1], [0.9]])
    miss_map = np.array([[0.9], [0.1]])
    assert pointing_game_hit(hit_map, mask)
    assert not pointing_game_hit(miss_map, mask)
    with pytest.raises(ValueError, match="whole multiple"):
        pointing_game_hit(np.zeros((3, 1)), mask)


def test_saliency_dice_upsamples_cells_to_blocks():
    mask = np.zeros((128, 64), bool)
    mask[64:, :] = True
    assert saliency_dice(np.array([[0.2], [0.8]]), mask) == 1.0
    assert saliency_dice(np.array([[0.8], [0.2]]), mask) == 0.0
