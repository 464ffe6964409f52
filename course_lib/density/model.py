"""The INFN density ResNet in Keras 3: one model per projection, 4 BI-RADS classes.

Architecture (Scapicchio, Lizzi et al., ML-INFN use case, 2021; the residual
design follows He et al., CVPR 2016, with the bottleneck modules of the
INFN repository's README):

- stem: 3x3 convolution (64, stride 2) -> batch norm -> LeakyReLU -> 3x3 max
  pool (stride 2);
- four stages of three bottleneck modules each, ``stage1`` .. ``stage4``:
  1x1 conv (mid) -> BN -> LeakyReLU -> 3x3 conv (mid, stride s) -> BN ->
  LeakyReLU -> 1x1 conv (out) -> BN, plus a shortcut (identity, or a strided
  1x1 conv + BN in the first module of each stage), added, then LeakyReLU;
  widths 64/128 in stage 1 and 128/256 in stages 2-4 (the original keeps
  them; it does not double them as its comments suggest);
- head: dropout 0.2 -> global average pooling -> dense 4 (``logits``) ->
  softmax (``probabilities``).

LeakyReLU keeps Keras' default negative slope of 0.3 (not PyTorch's 0.01),
every layer keeps Keras' defaults (Glorot-uniform, biases, BN momentum 0.99,
epsilon 1e-3) and padding is "same". At 650x650x3 the model has 41
convolutions and 2,262,660 parameters (2,249,988 trainable).

Layer names are stable and say what each layer is, e.g. ``stage4_block3_add``
(the output of the 12th and last residual addition, the Grad-CAM layer of the
original) or ``stage2_block1_shortcut_conv``. The softmax is a separate layer
after ``logits``, so Grad-CAM can take the pre-softmax score without
rebuilding the model.
"""

import numpy as np

__all__ = [
    "INPUT_SIZE",
    "N_CLASSES",
    "LEAKY_SLOPE",
    "STAGES",
    "GRADCAM_LAYER",
    "DROPOUT",
    "ArchitectureMismatchError",
    "build_density_resnet",
    "layer_summary",
    "check_architecture",
    "load_density_model",
    "weight_file_name",
]

#: The original's input side: 650x650 pixels, 3 identical channels.
INPUT_SIZE = 650
N_CLASSES = 4
#: Keras' default LeakyReLU slope, which the original used everywhere.
LEAKY_SLOPE = 0.3
#: (stage name, bottleneck width, output width, stride of the first module).
STAGES = (("stage1", 64, 128, 1), ("stage2", 128, 256, 2), ("stage3", 128, 256, 2), ("stage4", 128, 256, 2))
BLOCKS_PER_STAGE = 3
#: The original's Grad-CAM target: the last residual addition (before its LeakyReLU).
GRADCAM_LAYER = "stage4_block3_add"
#: Keras' default batch-norm momentum, which the original kept.
BN_MOMENTUM = 0.99
#: The dropout rate before global average pooling.
DROPOUT = 0.2


class ArchitectureMismatchError(ValueError):
    """A Keras model or weight file that is not the INFN density ResNet."""


def _conv_bn(x, filters, kernel, stride, name, keras, bn_momentum):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", name=f"{name}_conv")(x)
    return keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)


def _bottleneck(x, mid, out, stride, project, name, keras, bn_momentum):
    """One residual module; ``project`` forces a 1x1 shortcut convolution."""
    y = _conv_bn(x, mid, 1, 1, f"{name}_reduce", keras, bn_momentum)
    y = keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_reduce_relu")(y)
    y = _conv_bn(y, mid, 3, stride, f"{name}_spatial", keras, bn_momentum)
    y = keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_spatial_relu")(y)
    y = _conv_bn(y, out, 1, 1, f"{name}_expand", keras, bn_momentum)
    shortcut = _conv_bn(x, out, 1, stride, f"{name}_shortcut", keras, bn_momentum) if project or stride != 1 else x
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_out")(y)


def build_density_resnet(input_size=INPUT_SIZE, channels=3, dropout=DROPOUT, bn_momentum=BN_MOMENTUM,
                         name="infn_density_resnet"):
    """Build the (untrained) INFN density ResNet.

    Parameters
    ----------
    input_size : int
        Side of the square input; 650 in the original, smaller for CPU lessons.
    channels : int
        3 in the original (a grey image repeated), 1 saves 1,152 parameters.
    dropout : float
    bn_momentum : float
        Keras' default 0.99, as the original. A short run of a few dozen
        steps needs less (0.9): with 0.99 the moving statistics that
        inference uses are still mostly their initial values after 60 steps.

    Returns
    -------
    keras.Model
        Outputs softmax probabilities for A, B, C, D.

    >>> model = build_density_resnet(64)
    >>> sum(type(layer).__name__ == "Conv2D" for layer in model.layers), model.count_params()
    (41, 2262660)
    """
    import keras

    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = _conv_bn(inputs, 64, 3, 2, "stem", keras, bn_momentum)
    x = keras.layers.LeakyReLU(LEAKY_SLOPE, name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, mid, out, stride in STAGES:
        for block in range(1, BLOCKS_PER_STAGE + 1):
            first = block == 1
            x = _bottleneck(x, mid, out, stride if first else 1, first, f"{stage}_block{block}", keras,
                            bn_momentum)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = keras.layers.Dense(N_CLASSES, name="logits")(x)
    outputs = keras.layers.Softmax(name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def layer_summary(model):
    """Counts that define the architecture: conv/BN/add layers and parameters."""
    kinds = [type(layer).__name__ for layer in model.layers]
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {"conv_layers": kinds.count("Conv2D"), "batch_norm_layers": kinds.count("BatchNormalization"),
            "add_layers": kinds.count("Add"), "params": int(model.count_params()),
            "trainable_params": trainable, "non_trainable_params": int(model.count_params()) - trainable}


def _weight_shapes(model):
    return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.weights}


def check_architecture(model, source="model"):
    """Raise :class:`ArchitectureMismatchError` naming the layers that differ from the INFN ResNet.

    Compared layer by layer (names and weight shapes) with a reference built
    at the model's own input size, so the message says which layers are
    missing, unexpected or shaped differently.
    """
    shape = model.input_shape
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2]:
        raise ArchitectureMismatchError(f"{source}: input shape {shape} is not a square image (None, n, n, c)")
    expected = _weight_shapes(build_density_resnet(shape[1], shape[3]))
    found = _weight_shapes(model)
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = sorted(name for name in set(expected) & set(found) if expected[name] != found[name])
    if missing or unexpected or reshaped:
        parts = [f"{label}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''} ({len(names)})"
                 for label, names in (("missing", missing), ("unexpected", unexpected),
                                      ("different shapes", reshaped)) if names]
        raise ArchitectureMismatchError(
            f"{source} is not the INFN density ResNet: " + "; ".join(parts)
            + ". Build it with course_lib.density.model.build_density_resnet and load weights into that.")
    return model


def load_density_model(path, input_size=None):
    """Load a Keras file (``.keras``, or ``.h5``/``.weights.h5``) holding the INFN density ResNet.

    A whole-model file is loaded and checked with :func:`check_architecture`;
    a weights-only file is loaded into a fresh :func:`build_density_resnet`
    (``input_size`` then says its size, default 650). Either way a file that
    is not this architecture raises :class:`ArchitectureMismatchError` naming
    the layers that differ.
    """
    import keras

    name = str(path)
    if name.endswith(".weights.h5"):
        model = build_density_resnet(input_size or INPUT_SIZE)
        try:
            model.load_weights(path)
        except ValueError as error:
            raise ArchitectureMismatchError(f"{path}: weights do not fit the INFN density ResNet ({error})") from error
        return model
    try:
        model = keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as error:
        raise ArchitectureMismatchError(
            f"{path}: not a Keras model file this kit can read ({type(error).__name__}: {error}). "
            "For a Keras 2 .h5 file (the original's), use "
            "course_lib.density.keras2_weights.build_from_keras2_h5.") from error
    return check_architecture(model, source=name)


def weight_file_name(projection):
    """File name of the kit's float16 phantom weights of one projection: ``density_phantom_CC_L.npz``."""
    return f"density_phantom_{projection}.npz"
