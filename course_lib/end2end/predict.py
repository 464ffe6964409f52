"""Inference: model input, flip test-time augmentation, model averaging, dense heatmaps, Grad-CAM.

- :func:`model_input`: stored grey levels -> the model's units (the rule of
  :mod:`course_lib.end2end.scaling`), then the featurewise mean is subtracted and
  the grey channel repeated when the backbone wants three.
- :func:`predict_cancer`: P(cancer) of whole images; with ``flips=True`` the mean
  of the softmax outputs on the image and its horizontal, vertical and
  horizontal+vertical flips (Shen et al.'s 4-prediction augmentation).
- :func:`dense_heatmap`: the patch classifier over a whole image in ONE fully
  convolutional pass (:func:`course_lib.end2end.model.heatmap_model`);
  :func:`patch_loop_heatmap` computes the same by cutting every patch, the slow
  way, to check it.
- :func:`grad_cam`: Grad-CAM (Selvaraju et al., ICCV 2017) of a whole-image
  model at one of its convolutional layers.
"""

import numpy as np

from course_lib.end2end.scaling import to_model_units

__all__ = ["model_input", "predict_cancer", "average_models", "dense_heatmap", "patch_loop_heatmap",
           "heatmap_geometry", "grad_cam", "FLIPS"]

#: The four views of flip augmentation: (flip rows, flip columns).
FLIPS = ((False, False), (False, True), (True, False), (True, True))


def model_input(images, bits, mean, channels=1):
    """(N, H, W) stored grey levels -> (N, H, W, channels) float32 model input."""
    units = to_model_units(np.asarray(images), bits, mean)
    units = units[..., None]
    return np.repeat(units, channels, axis=-1) if channels > 1 else units


def _flip(x, rows, cols):
    if rows:
        x = x[:, ::-1]
    if cols:
        x = x[:, :, ::-1]
    return np.ascontiguousarray(x)


def predict_cancer(model, x, flips=True, batch_size=8):
    """P(cancer) (softmax column 1) of each image of ``x`` (model input, N x H x W x C)."""
    views = FLIPS if flips else FLIPS[:1]
    outputs = [model.predict(_flip(x, r, c), batch_size=batch_size, verbose=0)[:, 1] for r, c in views]
    return np.mean(outputs, axis=0)


def average_models(probabilities):
    """Model averaging: the arithmetic mean of several models' P(cancer)."""
    return np.mean(np.asarray(probabilities, dtype=np.float64), axis=0)


def heatmap_geometry(patch_model, patch_size):
    """(stride, window) of the dense heatmap: cell (i, j) is the patch at (i*stride, j*stride)."""
    from course_lib.end2end.model import trunk_of

    trunk = trunk_of(patch_model)
    channels = trunk.input_shape[-1]
    sizes = [int(trunk(np.zeros((1, s, s, channels), "float32")).shape[1]) for s in (patch_size, 2 * patch_size)]
    return patch_size // (sizes[1] - sizes[0]), patch_size


def dense_heatmap(patch_model, x, patch_size, batch_size=4):
    """Class-probability maps (N, h, w, n_classes) of ``x`` in one convolutional pass."""
    from course_lib.end2end.model import heatmap_model

    return heatmap_model(patch_model, patch_size).predict(x, batch_size=batch_size, verbose=0)


def patch_loop_heatmap(patch_model, image, patch_size, stride, batch_size=256):
    """The same map for one image (H, W, C) the slow way: cut every patch and classify it."""
    rows = (image.shape[0] - patch_size) // stride + 1
    cols = (image.shape[1] - patch_size) // stride + 1
    patches = np.stack([
        image[i * stride:i * stride + patch_size, j * stride:j * stride + patch_size]
        for i in range(rows) for j in range(cols)
    ])
    probabilities = patch_model.predict(patches, batch_size=batch_size, verbose=0)
    return probabilities.reshape(rows, cols, -1)


def grad_cam(model, x, layer_name, class_index=1):
    """Grad-CAM maps (N, h, w) of a whole-image ``model`` at ``layer_name`` of its top blocks.

    ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of d y_c / d A_k, where y_c is
    the class score *before* the softmax (Selvaraju et al. use the logit); each map
    is divided by its maximum (all-zero maps stay zero). ``layer_name`` names a
    layer of the nested ``"top"`` model (e.g. ``"top2_1_relu"``, ``"heatmap"``), or
    ``"trunk_map"`` for the trunk's output map; the score is ``"image_logits"``.
    """
    import keras
    import tensorflow as tf

    from course_lib.end2end.model import top_of, trunk_of

    top = top_of(model)
    maps_and_logits = keras.Model(top.inputs, [top.get_layer(layer_name).output,
                                               top.get_layer("image_logits").output])
    features = tf.convert_to_tensor(trunk_of(model).predict(x, verbose=0))
    with tf.GradientTape() as tape:
        tape.watch(features)
        maps, logits = maps_and_logits(features, training=False)
        score = logits[:, class_index]
    gradients = tape.gradient(score, maps)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)).numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1)
    return cam / np.where(peak > 0, peak, 1.0)[:, None, None]
