"""Grad-CAM for any Keras 3 image classifier (TensorFlow backend).

Selvaraju R. R. et al., *Grad-CAM: Visual explanations from deep networks
via gradient-based localization*, ICCV 2017. For a target layer with
feature maps A_k (h x w x C) and a class score y_c:

    alpha_k = mean over (i, j) of d y_c / d A_k[i, j]      (channel weights)
    map     = ReLU( sum_k alpha_k A_k )                     (h x w)

then the map is upsampled to the input size and min-max normalised to
[0, 1]. The score is the **pre-softmax** one (the logit), as keras-vis did
by swapping the softmax for a linear activation: the softmax's gradient
for class c also depends on every other class, and vanishes when the model
is confident, so maps of a confident model would be flat noise.

The API is one function and one helper:

- :func:`gradcam` ``(model, images, layer=None, class_index=None)``: the
  layer by name, or automatically the last layer with a 4-D output; the
  class chosen, or the predicted one;
- :func:`feature_layers` ``(model)``: the names a layer may take.

Model outputs are treated as follows: a final ``Softmax`` layer (or
``Activation("softmax")``) is skipped and its input used; a final layer
with ``activation="softmax"`` (e.g. ``Dense``) has it swapped for the
identity during the computation; any other output is used as it is.
"""

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

__all__ = ["GradCAMResult", "GradCAMLayerError", "feature_layers", "gradcam"]


class GradCAMLayerError(ValueError):
    """The requested target layer does not exist or has no 4-D (image-like) output."""


@dataclass
class GradCAMResult:
    """Grad-CAM of a batch.

    Attributes
    ----------
    maps : ndarray (n, H, W)
        Upsampled to the input size (``upsample=True``) and normalised to [0, 1].
    raw : ndarray (n, h, w)
        ReLU of the weighted sum at the layer's resolution, not normalised.
    weights : ndarray (n, C)
        Channel weights alpha_k.
    class_index : ndarray (n,)
        The class each map explains.
    scores : ndarray (n, n_classes)
        Pre-softmax scores.
    layer : str
    """

    maps: np.ndarray
    raw: np.ndarray
    weights: np.ndarray
    class_index: np.ndarray
    scores: np.ndarray
    layer: str


def _output_rank(layer):
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # layers without one defined output
        return None


def feature_layers(model):
    """Names of the layers with a 4-D output (batch, h, w, channels), in model order."""
    return [layer.name for layer in model.layers if _output_rank(layer) == 4 and layer is not model.layers[0]]


def _target_layer(model, layer):
    names = feature_layers(model)
    if layer is None:
        if not names:
            raise GradCAMLayerError(f"model {model.name!r} has no layer with a 4-D output")
        return model.get_layer(names[-1])
    if layer not in names:
        raise GradCAMLayerError(
            f"{layer!r} is not a 4-D layer of model {model.name!r}. Valid layers ({len(names)}): "
            + ", ".join(names))
    return model.get_layer(layer)


def _is_softmax(function):
    import keras

    return function is keras.activations.softmax or getattr(function, "__name__", "") == "softmax"


@contextmanager
def _pre_softmax(model):
    """Yield the output tensor of the pre-softmax score, swapping a final softmax activation if needed."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and _is_softmax(last.activation)):
        yield last.input
        return
    activation = getattr(last, "activation", None)
    if activation is not None and _is_softmax(activation):
        last.activation = keras.activations.linear
        try:
            yield model.outputs[0]
        finally:
            last.activation = activation
        return
    yield model.outputs[0]


def _resize(maps, size):
    import tensorflow as tf

    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0].numpy()


def gradcam(model, images, layer=None, class_index=None, upsample=True):
    """Grad-CAM maps of ``images`` for a Keras classifier.

    Parameters
    ----------
    model : keras.Model
        A functional (or Sequential) model whose output is class
        probabilities or scores.
    images : array (n, H, W, C)
        Model inputs, preprocessed as the model expects.
    layer : str, optional
        Target layer name; default the last layer with a 4-D output. An
        unknown or non-4-D name raises :class:`GradCAMLayerError` listing the
        valid ones.
    class_index : int or sequence of int, optional
        Class to explain (one for all images, or one per image); default the
        predicted class of each image.
    upsample : bool
        Resize the maps (bilinear) to the input's H x W before normalising.

    Returns
    -------
    GradCAMResult

    Examples
    --------
    >>> import keras
    >>> inputs = keras.Input((8, 8, 1))
    >>> features = keras.layers.Conv2D(2, 3, padding="same", name="features")(inputs)
    >>> pooled = keras.layers.GlobalAveragePooling2D()(features)
    >>> model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    >>> result = gradcam(model, np.ones((1, 8, 8, 1), "float32"), class_index=2)
    >>> result.layer, result.maps.shape, result.weights.shape
    ('features', (1, 8, 8), (1, 2))
    """
    import keras
    import tensorflow as tf

    target = _target_layer(model, layer)
    images = tf.convert_to_tensor(np.asarray(images, np.float32))
    with _pre_softmax(model) as score_tensor:
        probe = keras.Model(model.inputs, [target.output, score_tensor])
        with tf.GradientTape() as tape:
            features, scores = probe(images, training=False)
            chosen = (tf.argmax(scores, axis=1, output_type=tf.int32) if class_index is None
                      else tf.broadcast_to(tf.constant(class_index, tf.int32), [images.shape[0]]))
            selected = tf.gather(scores, chosen, axis=1, batch_dims=1)
        gradients = tape.gradient(selected, features)
    weights = tf.reduce_mean(gradients, axis=(1, 2))
    raw = tf.nn.relu(tf.einsum("nhwc,nc->nhw", features, weights)).numpy()
    maps = _resize(raw, images.shape[1:3]) if upsample else raw.copy()
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    maps = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0).astype(np.float32)
    return GradCAMResult(maps=maps, raw=raw, weights=weights.numpy(), class_index=chosen.numpy(),
                         scores=scores.numpy(), layer=target.name)
