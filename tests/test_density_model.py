"""The INFN density ResNet: exact counts, stable names, architecture checks on load."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from course_lib.density.model import (  # noqa: E402
    GRADCAM_LAYER, ArchitectureMismatchError, build_density_resnet, check_architecture, layer_summary,
    load_density_model,
)


@pytest.fixture(scope="module")
def full_size_model():
    return build_density_resnet(650)


def test_counts_at_650_match_the_original(full_size_model):
    summary = layer_summary(full_size_model)
    assert summary == {"conv_layers": 41, "batch_norm_layers": 41, "add_layers": 12, "params": 2_262_660,
                       "trainable_params": 2_249_988, "non_trainable_params": 12_672}


def test_shapes_and_names_at_650(full_size_model):
    assert full_size_model.get_layer(GRADCAM_LAYER).output.shape == (None, 21, 21, 256)
    assert full_size_model.get_layer("stem_pool").output.shape == (None, 163, 163, 64)
    assert full_size_model.get_layer("stage1_block3_out").output.shape == (None, 163, 163, 128)
    assert full_size_model.get_layer("stage2_block1_add").output.shape == (None, 82, 82, 256)
    leaky = [layer for layer in full_size_model.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert leaky and all(abs(layer.negative_slope - 0.3) < 1e-9 for layer in leaky)
    shortcuts = [layer.name for layer in full_size_model.layers if layer.name.endswith("shortcut_conv")]
    assert shortcuts == [f"stage{s}_block1_shortcut_conv" for s in (1, 2, 3, 4)]


def test_input_size_is_a_parameter_and_one_channel_saves_1152():
    small = build_density_resnet(64)
    assert small.count_params() == 2_262_660  # all convolutions are size-independent
    assert build_density_resnet(64, channels=1).count_params() == 2_261_508
    probabilities = small.predict(np.zeros((2, 64, 64, 3), np.float32), verbose=0)
    assert probabilities.shape == (2, 4) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_a_different_architecture_is_refused_with_the_layers_named(tmp_path):
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(8, 3, name="stem_conv")(inputs)
    other = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(ArchitectureMismatchError, match=r"stem_conv.*different shapes|missing: .*stage"):
        check_architecture(other, "other.keras")
    path = tmp_path / "other.keras"
    other.save(path)
    with pytest.raises(ArchitectureMismatchError, match="missing"):
        load_density_model(path)


def test_a_saved_model_loads_back_identically(tmp_path):
    model = build_density_resnet(32)
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    again = load_density_model(path, input_size=32)
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
