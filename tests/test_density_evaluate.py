"""Density figures of merit: the published INFN numbers from its prediction files, kappa, bad files."""

import numpy as np
import pytest

from course_lib.datasets.density import infn_test_labels
from course_lib.density.evaluate import (
    PROJECTION_FILES, PredictionFileError, combine_projections, dense_vs_nondense, figures_of_merit,
    kappa_with_ci, read_prediction_file, weighted_kappa, write_prediction_file,
)

# Published by the INFN use case (README: accuracy 0.81, recall 0.81, precision 0.80), per set here:
PUBLISHED = {  # accuracy, macro recall, macro precision
    "CC_R": (0.7734, 0.7882, 0.7642), "MLO_R": (0.7422, 0.6992, 0.7167), "CC_L": (0.7500, 0.7474, 0.7596),
    "MLO_L": (0.7188, 0.7518, 0.6948), "right": (0.8047, 0.7934, 0.7939), "left": (0.7656, 0.7559, 0.7729),
    "total": (0.8125, 0.8127, 0.8026),
}


@pytest.fixture
def infn_predictions(registry_file):
    return {p: read_prediction_file(registry_file(f"infn-density/myproject/Predictions/{name}"), n_rows=128)
            for p, name in PROJECTION_FILES.items()}


def test_published_figures_of_merit_are_reproduced(infn_predictions):
    y = infn_test_labels()
    sets = {**infn_predictions, **combine_projections(infn_predictions)}
    for name, (accuracy, recall, precision) in PUBLISHED.items():
        fom = figures_of_merit(y, sets[name])
        assert fom["accuracy"] == pytest.approx(accuracy, abs=6e-5), name
        assert fom["recall_macro"] == pytest.approx(recall, abs=1.1e-4), name
        assert fom["precision_macro"] == pytest.approx(precision, abs=6e-5), name
    total = figures_of_merit(y, sets["total"])
    assert total["confusion"].tolist() == [[12, 2, 0, 0], [3, 40, 7, 1], [0, 6, 42, 2], [0, 0, 3, 10]]
    assert total["kappa_quadratic"] > total["kappa_linear"]  # most errors are one class off


def test_kappa_interval_and_dense_vs_nondense(infn_predictions):
    y = infn_test_labels()
    predicted = combine_projections(infn_predictions)["total"].argmax(axis=1)
    kappa, low, high = kappa_with_ci(y, predicted, "linear", n_resamples=500)
    assert low < kappa < high and 0.1 < high - low < 0.3  # 128 subjects: wide
    assert kappa_with_ci(y, predicted, "linear", n_resamples=500) == (kappa, low, high)  # seeded
    binary = dense_vs_nondense(y, combine_projections(infn_predictions)["total"])
    assert binary["n_dense"] == 63 and 0.5 < binary["auc"] <= 1


def test_weighted_kappa_equals_scikit_learn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        t, p = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
        for weights in (None, "linear", "quadratic"):
            assert weighted_kappa(t, p, weights) == pytest.approx(
                cohen_kappa_score(t, p, weights=weights, labels=[0, 1, 2, 3]), abs=1e-12)


def test_prediction_files_round_trip_and_bad_files_are_named(tmp_path):
    probabilities = np.random.default_rng(1).dirichlet(np.ones(4), size=6)
    path = write_prediction_file(tmp_path / "predictions_ccr.txt", probabilities)
    first = path.read_text().splitlines()[0].split(" ")
    assert len(first) == 4 and all("e" in value and len(value.split("e")[0]) == 20 for value in first)
    np.testing.assert_array_equal(read_prediction_file(path, n_rows=6), probabilities)
    with pytest.raises(PredictionFileError, match="6 rows, expected 128"):
        read_prediction_file(path, n_rows=128)
    (tmp_path / "three.txt").write_text("0.2 0.3 0.5\n0.1 0.1 0.8\n")
    with pytest.raises(PredictionFileError, match="three.txt: 3 columns, expected 4"):
        read_prediction_file(tmp_path / "three.txt")
    (tmp_path / "logits.txt").write_text("1 2 3 4\n")
    with pytest.raises(PredictionFileError, match="do not sum to 1"):
        read_prediction_file(tmp_path / "logits.txt")
