"""GMIC training: the loss, the optional lesion-cell term, BatchNorm recalibration, metrics."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_lib.gmic.model import GMIC  # noqa: E402
from course_lib.gmic.config import gmic_config  # noqa: E402
from course_lib.gmic.evaluate import evaluate_localisation  # noqa: E402
from course_lib.gmic.train import (  # noqa: E402
    LESION_CELL_WEIGHT, TrainingSettings, gmic_loss, lesion_cells, recalibrate_batchnorm, train_gmic,
)

SMALL = dict(input_shape=(256, 192), crop_shape=(64, 64))  # 4x3 saliency cells


def small_model(seed=0):
    torch.manual_seed(seed)
    return GMIC(gmic_config("5", **SMALL))


def _bce(p, y, weight=None):
    """Binary cross-entropy written out in numpy (float64), independently of torch."""
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    terms = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.mean(terms if weight is None else weight * terms))


def test_each_loss_part_is_its_formula():
    model = small_model().train()
    images = torch.randn(2, 1, 256, 192)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    output = model(images)
    total, parts = gmic_loss(output, labels, beta=0.5)
    y = labels.numpy()
    as_numpy = {name: getattr(output, name).detach().numpy() for name in ("y_global", "y_local", "y_fusion")}
    expected = {
        "global": _bce(as_numpy["y_global"], y),
        "local": _bce(as_numpy["y_local"], y),
        "fusion": _bce(as_numpy["y_fusion"], y),
        "saliency": float(output.saliency_map.detach().numpy().astype(np.float64).sum(axis=(1, 2, 3)).mean()),
    }
    for name, value in expected.items():
        assert parts[name] == pytest.approx(value, rel=1e-5), name
    assert float(total.detach()) == pytest.approx(expected["global"] + expected["local"] + expected["fusion"]
                                                  + 0.5 * expected["saliency"], rel=1e-5)
    assert "cells" not in parts

    targets = torch.zeros(2, 2, 4, 3)
    targets[0, 0, 1, 1] = 1
    with_cells, parts = gmic_loss(output, labels, beta=0.5, cell_targets=targets, mask_weight=2.0)
    weight = 1.0 + (LESION_CELL_WEIGHT - 1.0) * targets.numpy()
    cells = _bce(output.saliency_map.detach().numpy(), targets.numpy(), weight)
    assert parts["cells"] == pytest.approx(cells, rel=1e-5)
    assert float(with_cells.detach()) == pytest.approx(float(total.detach()) + 2.0 * cells, rel=1e-5)


def test_lesion_cells_mark_the_cells_a_mask_touches():
    benign = np.zeros((1, 256, 192), bool)
    benign[0, 70:80, 130:140] = True  # cell (1, 2)
    cells = lesion_cells(benign, np.zeros_like(benign))
    assert cells.shape == (1, 2, 4, 3)
    assert cells[0, 0].nonzero().tolist() == [[1, 2]] and cells[0, 1].sum() == 0


def test_recalibration_changes_statistics_not_weights():
    model = small_model().eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    recalibrate_batchnorm(model, np.random.default_rng(0).normal(3.0, 2.0, (4, 256, 192)).astype(np.float32), 2)
    bn = model.ds_net.final_bn
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert bn.momentum == 0.1 and not model.training


def test_training_reduces_the_loss_and_is_repeatable():
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(8, 256, 192)).astype(np.float32)
    windows[:4, 100:140, 60:100] += 4.0  # a bright "lesion" on the positive views
    labels = np.array([[0, 1]] * 4 + [[0, 0]] * 4, np.float32)
    settings = TrainingSettings(epochs=4, batch_size=4, learning_rate=1e-3)
    first = train_gmic(small_model(), windows, labels, settings, log=lambda *a: None)
    second = train_gmic(small_model(), windows, labels, settings, log=lambda *a: None)
    assert first.loss[-1] < first.loss[0]
    assert first.loss == pytest.approx(second.loss, rel=1e-5)


def test_evaluate_localisation_scores_a_perfect_and_a_wrong_map():
    masks = np.zeros((2, 128, 64), bool)
    masks[0, 70:80, 10:20] = True  # cell (1, 0)
    labels = np.array([[1, 0], [0, 0]], np.float32)
    saliency = np.zeros((2, 2, 2, 1))
    saliency[0, 0, 1, 0] = 0.9
    good = evaluate_localisation(np.array([[0.9, 0.1], [0.1, 0.1]]), saliency, labels, masks, np.zeros_like(masks))
    assert good["pointing_game"] == 1.0 and good["auc_benign"] == 1.0 and good["pointing_game_n"] == 1
    saliency[0, 0] = [[0.9], [0.1]]
    wrong = evaluate_localisation(np.array([[0.1, 0.1], [0.9, 0.1]]), saliency, labels, masks, np.zeros_like(masks))
    assert wrong["pointing_game"] == 0.0 and wrong["auc_benign"] == 0.0
