"""Keras Grad-CAM: against a hand computation, finite differences, bad layers, softmax handling."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from course_lib.explain.keras_gradcam import GradCAMLayerError, feature_layers, gradcam  # noqa: E402


def tiny_model(final_softmax_layer=True, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(3, 3, padding="same", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if final_softmax_layer:
        x = keras.layers.Dense(3, name="logits")(x)
        outputs = keras.layers.Softmax(name="probabilities")(x)
    else:
        outputs = keras.layers.Dense(3, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs)


IMAGES = np.random.default_rng(1).normal(size=(2, 12, 12, 1)).astype(np.float32)


def test_automatic_layer_is_the_last_4d_one_and_maps_are_normalised():
    model = tiny_model()
    assert feature_layers(model) == ["conv1", "features"]
    result = gradcam(model, IMAGES)
    assert result.layer == "features" and result.maps.shape == (2, 12, 12)
    for m in result.maps:
        assert m.min() == 0.0 and (m.max() == 1.0 or m.max() == 0.0)
    np.testing.assert_array_equal(result.class_index, result.scores.argmax(axis=1))


def test_weights_are_the_mean_gradient_of_the_logit_checked_by_finite_differences():
    """Shifting channel k by eps changes the logit by eps * sum_ij dy/dA_k[i, j] = eps * h * w * alpha_k."""
    model = tiny_model()
    result = gradcam(model, IMAGES[:1], class_index=1, upsample=False)
    head = keras.Model(model.get_layer("pool").input, model.get_layer("logits").output)
    features = keras.Model(model.inputs, model.get_layer("features").output)(IMAGES[:1]).numpy().astype(np.float64)
    eps = 1e-2
    numeric = np.zeros(features.shape[-1])
    for k in range(features.shape[-1]):
        up, down = features.copy(), features.copy()
        up[..., k] += eps
        down[..., k] -= eps  # shifting a whole channel = summing its gradient over (i, j)
        diff = head(up.astype(np.float32)).numpy()[0, 1] - head(down.astype(np.float32)).numpy()[0, 1]
        numeric[k] = diff / (2 * eps) / (features.shape[1] * features.shape[2])
    np.testing.assert_allclose(result.weights[0], numeric, rtol=1e-3, atol=1e-6)
    expected = np.maximum((features[0] * result.weights[0]).sum(-1), 0)
    np.testing.assert_allclose(result.raw[0], expected, rtol=1e-5, atol=1e-6)


def test_a_softmax_activation_is_swapped_for_the_logit_and_restored():
    model = tiny_model(final_softmax_layer=False)
    probabilities = model.predict(IMAGES, verbose=0)
    result = gradcam(model, IMAGES, class_index=[0, 2])
    assert not np.allclose(result.scores.sum(axis=1), 1)  # logits, not probabilities
    np.testing.assert_allclose(tf.nn.softmax(result.scores).numpy(), probabilities, atol=1e-5)
    np.testing.assert_allclose(model.predict(IMAGES, verbose=0), probabilities)  # activation restored
    assert result.class_index.tolist() == [0, 2]


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(GradCAMLayerError, match="Valid layers \\(2\\): conv1, features"):
        gradcam(tiny_model(), IMAGES, layer="pool")
    with pytest.raises(GradCAMLayerError, match="nope"):
        gradcam(tiny_model(), IMAGES, layer="nope")


def test_map_changes_when_weights_are_randomised():
    """Adebayo et al. (NeurIPS 2018): a map that survives weight randomisation explains nothing."""
    first = gradcam(tiny_model(seed=0), IMAGES, class_index=0).maps
    second = gradcam(tiny_model(seed=5), IMAGES, class_index=0).maps
    assert np.abs(first - second).mean() > 0.05
