"""The kit's phantom-trained density models: cards, registry entries, and that they grade held-out phantoms."""

import hashlib
import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from course_lib import data  # noqa: E402
from course_lib.datasets.density import PROJECTIONS  # noqa: E402
from course_lib.density.evaluate import combine_projections, figures_of_merit  # noqa: E402
from course_lib.density.model import build_density_resnet, weight_file_name  # noqa: E402
from course_lib.density.predict import predict_images  # noqa: E402
from course_lib.density.train import (  # noqa: E402
    PHANTOM_INPUT_SIZE, PHANTOM_SHAPE, load_weights_float16, phantom_split_arrays,
)
from course_lib.paths import PRETRAINED  # noqa: E402
from course_lib.phantoms.density_set import build_density_phantom_dataset  # noqa: E402


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_card_matches_weights_and_registry(projection):
    weights = PRETRAINED / weight_file_name(projection)
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["dtype"] == "float16" and weights.stat().st_size <= 10 * 2**20
    assert "synthetic" in card["warning"].lower() and "not for clinical use" in card["warning"].lower()
    assert card["command"].startswith("python -m course_lib.cli density train")
    assert data.fetch(f"course-kit/pretrained/{weight_file_name(projection)}") == weights


def test_models_grade_held_out_phantoms_well_above_chance(tmp_path):
    frame = build_density_phantom_dataset(tmp_path, 5, shape=PHANTOM_SHAPE, seed=11, splits={"test": 1.0})
    probabilities, labels = {}, None
    for projection in PROJECTIONS:
        model = load_weights_float16(build_density_resnet(PHANTOM_INPUT_SIZE), PRETRAINED / weight_file_name(projection))
        images, labels, _ = phantom_split_arrays(frame, projection, PHANTOM_INPUT_SIZE)["test"]
        probabilities[projection] = predict_images(model, images)
    total = figures_of_merit(labels, combine_projections(probabilities)["total"])
    # chance is 0.25 and kappa 0; an untrained model predicts one class
    assert total["accuracy"] >= 0.5 and total["kappa_quadratic"] >= 0.6, total
    assert len(np.unique(np.argmax(probabilities["CC_L"], axis=1))) >= 3


def test_weights_of_another_size_are_refused():
    from course_lib.density.model import ArchitectureMismatchError

    with pytest.raises(ArchitectureMismatchError, match="weights do not fit"):
        load_weights_float16(build_density_resnet(PHANTOM_INPUT_SIZE, channels=1), PRETRAINED / weight_file_name("CC_L"))
