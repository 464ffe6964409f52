"""Shen et al.'s all-convolutional models in Keras 3: patch classifier -> whole-image classifier.

Shen et al. (Scientific Reports 9:12495, 2019) first train a *patch classifier*:
a convolutional trunk, global average pooling and a softmax layer over patch
classes. Its trunk is size-agnostic, so it is then applied to a whole mammogram
(1152x896 in the paper), giving a feature map instead of a vector; *top blocks*
(ResNet-style bottleneck units or VGG-style conv blocks) are added on that map,
then global average pooling and a 2-way softmax (no cancer / cancer). The whole
model trains end to end from image labels only.

Here every patch model is ``input -> trunk (one nested keras.Model named "trunk")
-> GlobalAveragePooling2D -> Dropout -> Dense "patch_head"``. The original finds
the trunk by a fixed negative layer index, which lands one layer off when the
head has no Dropout; taking the nested ``trunk`` by name cannot.

Backbones (:data:`BACKBONES`):

- ``"resnet50"``, ``"vgg16"``: ``keras.applications`` without their top, 3-channel
  input (the grey image repeated); ImageNet weights only with ``weights="imagenet"``
  *and* when they can be downloaded, else random initialisation with a warning.
- ``"kit_small"``: a small from-scratch trunk for CPUs, 1-channel input like the
  paper's "YaroslavNet": four blocks of 3x3 conv (no padding) -> BN -> ReLU ->
  2x2 max-pool, widths 16-32-64-128, stride 16. Without padding, the trunk applied
  to a whole image computes *exactly* what it computes on each patch, which is
  what makes the one-pass heatmap of :func:`heatmap_model` equal to a patch loop.
"""

import warnings

__all__ = [
    "BACKBONES",
    "KIT_SMALL_WIDTHS",
    "patch_classifier",
    "trunk_of",
    "trunk_stride",
    "resnet_top",
    "vgg_top",
    "whole_image_classifier",
    "top_of",
    "heatmap_model",
    "to_channels",
]

#: Backbones and their input channels.
BACKBONES = {"kit_small": 1, "resnet50": 3, "vgg16": 3}
#: Channel widths of the kit's small trunk, one block each.
KIT_SMALL_WIDTHS = (16, 32, 64, 128)


def _keras():
    import keras

    return keras


def _kit_small_trunk(widths=KIT_SMALL_WIDTHS, channels=1, weight_decay=1e-4):
    """The kit's small valid-padded trunk as a keras.Model on (None, None, channels)."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((None, None, channels))
    x = inputs
    for i, width in enumerate(widths, start=1):
        x = layers.Conv2D(width, 3, padding="valid", kernel_initializer="he_normal",
                          kernel_regularizer=keras.regularizers.L2(weight_decay), name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.Activation("relu", name=f"block{i}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    return keras.Model(inputs, x, name="trunk")


def _application_trunk(backbone, weights):
    """ResNet50 or VGG16 from keras.applications, no top, as the "trunk" model."""
    keras = _keras()
    build = {"resnet50": keras.applications.ResNet50, "vgg16": keras.applications.VGG16}[backbone]
    if weights not in (None, "imagenet"):
        raise ValueError(f"weights must be None or 'imagenet', got {weights!r}")
    model = None
    if weights == "imagenet":
        try:
            model = build(include_top=False, weights="imagenet", input_shape=(None, None, 3))
        except Exception as error:  # offline, blocked or a corrupt cache: train from scratch
            warnings.warn(f"ImageNet weights for {backbone} unavailable ({type(error).__name__}: {error}); "
                          "using random initialisation (weights=None)")
    if model is None:
        model = build(include_top=False, weights=None, input_shape=(None, None, 3))
    return keras.Model(model.input, model.output, name="trunk")


def patch_classifier(backbone="kit_small", patch_size=48, n_classes=3, weights=None, dropout=0.5,
                     weight_decay=1e-4):
    """Patch classifier: trunk -> global average pool -> Dropout -> Dense softmax ("patch_head").

    ``patch_size`` only fixes the input shape; the trunk itself accepts any size.
    At 224x224: ResNet50 with 3 classes has 23,593,859 parameters, VGG16 14,716,227.
    """
    keras = _keras()
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {list(BACKBONES)}")
    trunk = _kit_small_trunk() if backbone == "kit_small" else _application_trunk(backbone, weights)
    inputs = keras.Input((patch_size, patch_size, BACKBONES[backbone]), name="patch")
    x = keras.layers.GlobalAveragePooling2D(name="patch_gap")(trunk(inputs))
    x = keras.layers.Dropout(dropout, name="patch_dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="patch_head",
                                 kernel_regularizer=keras.regularizers.L2(weight_decay))(x)
    return keras.Model(inputs, outputs, name=f"patch_{backbone}")


def trunk_of(model):
    """The nested convolutional trunk of a patch or whole-image model (the truncation point)."""
    return model.get_layer("trunk")


def trunk_stride(model):
    """Total stride of the trunk, measured: input size / output size on a 224-pixel-multiple input."""
    import numpy as np

    trunk = trunk_of(model)
    size = 256
    out = trunk(np.zeros((1, size, size, trunk.input_shape[-1]), "float32"))
    return size // int(out.shape[1]) if trunk.name else None


def to_channels(images, channels):
    """(N, H, W) grey images -> (N, H, W, channels), the grey values repeated."""
    import numpy as np

    images = np.asarray(images, dtype="float32")[..., None]
    return np.repeat(images, channels, axis=-1) if channels > 1 else images


def _conv_bn_relu(x, filters, size, strides, dropout, weight_decay, name):
    keras = _keras()
    layers = keras.layers
    x = layers.Conv2D(filters, size, strides=strides, padding="same", kernel_initializer="he_normal",
                      kernel_regularizer=keras.regularizers.L2(weight_decay), name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.Dropout(dropout, name=f"{name}_drop")(x) if dropout else x


def resnet_top(x, depths=(512, 512), repetitions=(2, 2), expansion=2, dropout=0.0, weight_decay=1e-4):
    """ResNet-style top blocks, the paper's "[512-512-1024]x2" with the defaults.

    One stage per depth ``d``, each of ``repetitions`` post-activation bottleneck units:
    1x1 conv d (the stage's first unit strides 2 here) -> BN -> ReLU -> Dropout ->
    3x3 conv d -> BN -> ReLU -> Dropout -> 1x1 conv d*expansion -> BN; shortcut the
    identity, or in a stage's first unit a strided 1x1 conv -> BN; add -> ReLU -> Dropout.
    """
    keras = _keras()
    layers = keras.layers
    regulariser = keras.regularizers.L2(weight_decay)
    for stage, (depth, count) in enumerate(zip(depths, repetitions), start=1):
        for unit in range(1, count + 1):
            name = f"top{stage}_unit{unit}"
            strides = 2 if unit == 1 else 1
            y = _conv_bn_relu(x, depth, 1, strides, dropout, weight_decay, f"{name}_a")
            y = _conv_bn_relu(y, depth, 3, 1, dropout, weight_decay, f"{name}_b")
            y = layers.Conv2D(depth * expansion, 1, kernel_initializer="he_normal",
                              kernel_regularizer=regulariser, name=f"{name}_c_conv")(y)
            y = layers.BatchNormalization(name=f"{name}_c_bn")(y)
            if unit == 1:
                x = layers.Conv2D(depth * expansion, 1, strides=2, padding="valid",
                                  kernel_initializer="he_normal", kernel_regularizer=regulariser,
                                  name=f"{name}_shortcut_conv")(x)
                x = layers.BatchNormalization(name=f"{name}_shortcut_bn")(x)
            x = layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))
            if dropout:
                x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    return x


def vgg_top(x, depths=(512, 512), repetitions=(1, 1), dropout=0.0, weight_decay=1e-4):
    """VGG-style top blocks, the paper's "512x1" per block: ``r`` x [3x3 conv -> BN -> ReLU -> Dropout] -> 2x2 max-pool."""
    keras = _keras()
    for block, (depth, count) in enumerate(zip(depths, repetitions), start=1):
        for i in range(1, count + 1):
            x = _conv_bn_relu(x, depth, 3, 1, dropout, weight_decay, f"top{block}_{i}")
        x = keras.layers.MaxPooling2D(2, name=f"top{block}_pool")(x)
    return x


def whole_image_classifier(patch_model, image_shape, top="vgg", depths=None, repetitions=None,
                           dropout=0.0, weight_decay=1e-4):
    """Whole-image model: the patch model's trunk on a whole image, top blocks, GAP, 2-way softmax.

    ``image_shape`` is (rows, cols), e.g. (1152, 896) as in the paper. ``top`` is
    ``"resnet"`` (:func:`resnet_top`), ``"vgg"`` (:func:`vgg_top`) or ``"heatmap"``
    (:func:`_heatmap_top`: the patch head as a heatmap, max pooling, FC 16-8 and a
    shortcut; the paper's YaroslavNet row); ``depths``
    default to 512 per block for ResNet50/VGG16 trunks and to the trunk's width for
    ``kit_small``. The trunk layer is shared with ``patch_model`` (same weights);
    the top blocks, pooling and head form a second nested model, ``"top"``
    (:func:`top_of`), so that stage 1 of training can run on the trunk's maps.
    At 1152x896: ResNet50 + [512-512-1024]x2 has 40,942,466 parameters, VGG16 + two
    512x1 blocks 19,439,426, VGG16 + [512-512-1024]x2 29,710,146.
    """
    keras = _keras()
    trunk = trunk_of(patch_model)
    channels = trunk.input_shape[-1]
    width = trunk.output_shape[-1]
    depths = tuple(depths or ((512, 512) if width >= 512 else (width, width)))
    inputs = keras.Input((*image_shape, channels), name="image")
    features = trunk(inputs)
    top_input = keras.Input(features.shape[1:], name="trunk_map")
    if top == "heatmap":
        logits = _heatmap_top(top_input, patch_model, dropout)
    else:
        if top == "resnet":
            x = resnet_top(top_input, depths, repetitions or (2,) * len(depths), dropout=dropout,
                           weight_decay=weight_decay)
        elif top == "vgg":
            x = vgg_top(top_input, depths, repetitions or (1,) * len(depths), dropout=dropout,
                        weight_decay=weight_decay)
        else:
            raise ValueError(f"top must be 'resnet', 'vgg' or 'heatmap', got {top!r}")
        x = keras.layers.GlobalAveragePooling2D(name="image_gap")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="image_dropout")(x)
        logits = keras.layers.Dense(2, kernel_initializer="he_normal", name="image_logits",
                                    kernel_regularizer=keras.regularizers.L2(weight_decay))(x)
    outputs = keras.layers.Activation("softmax", name="image_softmax")(logits)
    top_model = keras.Model(top_input, outputs, name="top")
    if top == "heatmap":  # the heatmap starts as the patch classifier itself
        top_model.get_layer("heatmap").set_weights(patch_model.get_layer("patch_head").get_weights())
    return keras.Model(inputs, top_model(features), name=f"whole_image_{top}")


def _patch_window(patch_model):
    """m: the trunk map size of one patch (the window the patch head averages over)."""
    import numpy as np

    trunk = trunk_of(patch_model)
    size = patch_model.input_shape[1]
    return int(trunk(np.zeros((1, size, size, trunk.input_shape[-1]), "float32")).shape[1])


def _heatmap_top(x, patch_model, dropout, pool_size=5, fc_units=(16, 8)):
    """The paper's "heatmap + max pooling + FC16-8 + shortcut" top; returns the 2 logits.

    Average pooling over each patch window (stride 1) -> Dropout -> Dense with the
    patch classes' units and ReLU (the "heatmap", initialised with the patch head)
    -> max-pool ``pool_size`` -> flatten -> Dropout -> FC 16 and 8 (BN, ReLU,
    Dropout) -> Dense 2, plus a Dense 2 straight from the flattened heatmap (the
    "shortcut").
    """
    keras = _keras()
    layers = keras.layers
    n_classes = patch_model.output_shape[-1]
    x = layers.AveragePooling2D(_patch_window(patch_model), strides=1, name="patch_window_mean")(x)
    if dropout:
        x = layers.Dropout(dropout, name="heatmap_dropout")(x)
    heat = layers.Dense(n_classes, activation="relu", name="heatmap")(x)
    flat = layers.Flatten(name="heatmap_flat")(layers.MaxPooling2D(pool_size, name="heatmap_pool")(heat))
    y = layers.Dropout(dropout, name="fc_dropout")(flat) if dropout else flat
    for units in fc_units:
        y = layers.Dense(units, name=f"fc{units}")(y)
        y = layers.BatchNormalization(name=f"fc{units}_bn")(y)
        y = layers.Activation("relu", name=f"fc{units}_relu")(y)
        if dropout:
            y = layers.Dropout(dropout, name=f"fc{units}_drop")(y)
    return layers.Add(name="image_logits")([layers.Dense(2, name="fc_out")(y),
                                            layers.Dense(2, name="shortcut_out")(flat)])


def top_of(model):
    """The nested top blocks + head of a whole-image model (input: the trunk's map)."""
    return model.get_layer("top")


def heatmap_model(patch_model, patch_size):
    """The patch classifier as a fully convolutional model: one pass -> a probability heatmap.

    A patch of ``patch_size`` gives the trunk an m x m map (m = patch size through the
    trunk), which the patch model averages and feeds to its Dense head. On a whole
    image the trunk's map is larger; averaging every m x m window (average pooling,
    stride 1) and applying the same Dense head at each position (a 1x1 convolution)
    gives, at cell (i, j), the patch model's output for the patch whose top-left
    corner is (i * stride, j * stride). Output: (N, h, w, n_classes) softmax maps.
    """
    import numpy as np

    keras = _keras()
    trunk = trunk_of(patch_model)
    head = patch_model.get_layer("patch_head")
    probe = trunk(np.zeros((1, patch_size, patch_size, trunk.input_shape[-1]), "float32"))
    m = int(probe.shape[1])
    inputs = keras.Input((None, None, trunk.input_shape[-1]), name="image")
    x = trunk(inputs)
    x = keras.layers.AveragePooling2D(pool_size=m, strides=1, padding="valid", name="patch_window_mean")(x)
    outputs = head(x)  # Dense acts on the last axis: the same weights at every position
    return keras.Model(inputs, outputs, name="dense_heatmap")
