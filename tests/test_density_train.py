"""Training the four projections with one shared trace gives exactly the models of separate runs."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from course_lib.density.train import phantom_split_arrays, train_projection, train_projections  # noqa: E402
from course_lib.phantoms.density_set import build_density_phantom_dataset  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return build_density_phantom_dataset(tmp_path_factory.mktemp("density"), 3, projections=("CC_L", "CC_R"),
                                         shape=(128, 84), seed=5, splits={"train": 0.67, "validation": 0.33})


def test_shared_trace_gives_the_models_of_separate_runs(phantoms):
    # CC_R is trained second: it starts from weights, Adam moments and a dropout state that CC_L has moved
    recipe = dict(epochs=2, batch_size=4)
    shared = train_projections(phantoms, ["CC_L", "CC_R"], SIZE, "short", seed=3, **recipe)
    arrays = phantom_split_arrays(phantoms, "CC_R", SIZE)
    (x_train, y_train, _), (x_val, y_val, _) = arrays["train"], arrays["validation"]
    alone, alone_history = train_projection(x_train, y_train, x_val, y_val, SIZE, "short", seed=3, **recipe)
    model, history = shared["CC_R"]
    assert history == alone_history
    for ours, theirs in zip(model.get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    # and the two projections' models are their own, not one model twice
    assert shared["CC_L"][0] is not model
    assert not np.array_equal(shared["CC_L"][0].get_weights()[0], model.get_weights()[0])
