"""end2end models: the paper's parameter counts at full size, the one-pass heatmap, Grad-CAM."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from course_lib.end2end.model import (  # noqa: E402
    heatmap_model, patch_classifier, top_of, trunk_of, whole_image_classifier,
)
from course_lib.end2end.predict import (  # noqa: E402
    dense_heatmap, grad_cam, heatmap_geometry, patch_loop_heatmap, predict_cancer,
)

FULL = (1152, 896)


@pytest.mark.parametrize("backbone, n_classes, expected", [
    ("resnet50", 3, 23_593_859), ("resnet50", 5, 23_597_957), ("vgg16", 3, 14_716_227), ("vgg16", 5, 14_717_253),
])
def test_patch_classifier_parameter_counts(backbone, n_classes, expected):
    assert patch_classifier(backbone, 224, n_classes).count_params() == expected


@pytest.mark.parametrize("backbone, top, trunk_params, total", [
    ("resnet50", "resnet", 23_587_712, 40_942_466),  # ResNet50 + [512-512-1024]x2
    ("vgg16", "vgg", 14_714_688, 19_439_426),  # VGG16 + two 512x1 blocks
    ("vgg16", "resnet", 14_714_688, 29_710_146),  # the "hybrid"
])
def test_whole_image_parameter_counts_at_full_size(backbone, top, trunk_params, total):
    patch = patch_classifier(backbone, 224, 3)
    model = whole_image_classifier(patch, FULL, top=top)
    assert trunk_of(model).count_params() == trunk_params
    assert model.count_params() == total
    assert model.output_shape == (None, 2)
    # the trunk is shared with the patch model, not copied
    assert trunk_of(model) is trunk_of(patch)


def test_full_size_maps_are_36_by_28_then_9_by_7():
    model = whole_image_classifier(patch_classifier("vgg16", 224, 3), FULL, top="resnet")
    assert tuple(top_of(model).input_shape[1:3]) == (36, 28)
    assert tuple(top_of(model).get_layer("image_gap").input.shape[1:3]) == (9, 7)


def _randomised(model, seed=0):
    """Random weights everywhere, BatchNorm statistics included, so equalities are not trivial."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if w.ndim == 1:
            weights.append(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))  # BN gamma/var/mean/beta, biases
        else:
            weights.append(rng.normal(0, np.sqrt(2 / np.prod(w.shape[:-1])), w.shape).astype(w.dtype))
    model.set_weights(weights)
    return model


def test_one_pass_heatmap_equals_the_patch_by_patch_loop():
    patch_size = 48
    model = _randomised(patch_classifier("kit_small", patch_size, 3))
    stride, window = heatmap_geometry(model, patch_size)
    assert (stride, window) == (16, 48)
    rng = np.random.default_rng(1)
    image = rng.normal(0, 1, (1, 112, 96, 1)).astype("float32")  # moderate logits: no saturated softmax
    fast = dense_heatmap(model, image, patch_size)[0]
    slow = patch_loop_heatmap(model, image[0], patch_size, stride)
    assert fast.shape == slow.shape == (5, 4, 3)
    np.testing.assert_allclose(fast, slow, atol=1e-5, rtol=0)
    assert slow.std() > 1e-3  # not a constant map


def test_heatmap_model_reuses_the_patch_head():
    model = patch_classifier("kit_small", 48, 5)
    dense = heatmap_model(model, 48)
    assert dense.output_shape[-1] == 5 and dense.count_params() == model.count_params()


def test_flip_augmentation_averages_four_predictions():
    model = _randomised(whole_image_classifier(patch_classifier("kit_small", 48, 3), (128, 112)))
    x = np.random.default_rng(2).normal(0, 1, (2, 128, 112, 1)).astype("float32")
    views = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
    expected = np.mean([model.predict(np.ascontiguousarray(v), verbose=0)[:, 1] for v in views], axis=0)
    np.testing.assert_allclose(predict_cancer(model, x, flips=True), expected, rtol=1e-5)
    assert not np.allclose(predict_cancer(model, x, flips=False), expected)


def test_grad_cam_matches_a_direct_computation():
    import tensorflow as tf

    model = _randomised(whole_image_classifier(patch_classifier("kit_small", 48, 3), (128, 112)))
    x = np.random.default_rng(3).normal(0, 50, (1, 128, 112, 1)).astype("float32")
    cam = grad_cam(model, x, "top2_1_relu")
    top = top_of(model)
    inner = keras.Model(top.inputs, [top.get_layer("top2_1_relu").output, top.get_layer("image_gap").output])
    features = tf.constant(trunk_of(model)(x))
    with tf.GradientTape() as tape:
        maps, pooled = inner(features)
        head = top.get_layer("image_logits")
        logit = tf.tensordot(pooled, head.kernel[:, 1], 1) + head.bias[1]
    grads = tape.gradient(logit, maps).numpy()[0]
    raw = np.maximum((maps.numpy()[0] * grads.mean(axis=(0, 1))).sum(-1), 0)
    np.testing.assert_allclose(cam[0], raw / raw.max(), atol=1e-5)


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="unknown backbone"):
        patch_classifier("alexnet")
    with pytest.raises(ValueError, match="top must be"):
        whole_image_classifier(patch_classifier("kit_small"), (128, 112), top="dense")


def test_grad_cam_agrees_with_the_core_keras_gradcam():
    core = pytest.importorskip("course_lib.explain.keras_gradcam")
    model = _randomised(whole_image_classifier(patch_classifier("kit_small", 48, 3), (128, 112)), seed=4)
    x = np.random.default_rng(5).normal(0, 1, (2, 128, 112, 1)).astype("float32")
    mine = grad_cam(model, x, "top2_1_relu")
    features = trunk_of(model).predict(x, verbose=0)
    result = core.gradcam(top_of(model), features, layer="top2_1_relu", class_index=1, upsample=False)
    peak = result.raw.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(mine, result.raw / np.where(peak > 0, peak, 1), atol=1e-5)
