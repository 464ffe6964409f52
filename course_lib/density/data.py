"""Images in, model inputs out: the INFN density pipeline's data side, in tf.data.

Per image, in the original's order (Scapicchio, Lizzi et al., ML-INFN, 2021):

1. read the PNG as 8-bit grey (other bit depths and RGB are converted, with
   a :class:`ImageConversionWarning` naming the file);
2. resize to ``size`` x ``size`` ignoring the aspect ratio, **nearest
   neighbour** (what Keras' directory iterator did);
3. training only: random rotation within +-10 degrees, shifts within +-20 %
   of each side, zoom in [0.8, 1.2] drawn separately for x and y, no flips
   (a flip would turn a left breast into a right one);
4. divide by 255;
5. subtract the image's own mean over all pixels and channels (the
   original's sample-wise centring; no division by the std);
6. repeat the grey channel 3 times (the model takes 3 identical channels).

Augmentation uses Keras 3 preprocessing layers. Their defaults differ from
the removed ``ImageDataGenerator``: they fill with ``"reflect"`` where the
original filled with ``"nearest"`` (the edge pixel repeated), so every layer
here says ``fill_mode="nearest"`` and ``interpolation="bilinear"`` (the
generator's order-1 spline) explicitly.

Images are decoded once into memory (a few MB at teaching sizes); tf.data
then shuffles, augments and batches them, so training never waits on disk.
"""

import warnings
from pathlib import Path

import numpy as np

__all__ = [
    "AUGMENTATION",
    "ImageConversionWarning",
    "LayoutError",
    "check_layout",
    "load_grey8",
    "load_images",
    "centre_images",
    "augmentation_layers",
    "make_dataset",
]

#: The original's augmentation, in the units of Keras' preprocessing layers.
AUGMENTATION = {"rotation_degrees": 10.0, "shift_fraction": 0.2, "zoom_range": (0.8, 1.2),
                "fill_mode": "nearest", "interpolation": "bilinear", "flips": False}


class ImageConversionWarning(UserWarning):
    """An input image was not 8-bit grey and was converted."""


class LayoutError(FileNotFoundError):
    """A density folder lacks projections, splits or classes the pipeline needs."""


def check_layout(frame, projections, splits, root="the data folder", classes=("A", "B", "C", "D")):
    """Raise :class:`LayoutError` unless every (projection, split, class) has images.

    ``frame`` is :func:`course_lib.datasets.density.read_density_dataset` of
    ``root``. The message lists what is missing and what was found.
    """
    found = set(zip(frame["projection"], frame["split"], frame["label"])) if len(frame) else set()
    missing = [f"{p}/{s}/{c}" for p in projections for s in splits for c in classes if (p, s, c) not in found]
    if missing:
        present = sorted({f"{p}/{s}/{c}" for p, s, c in found})
        raise LayoutError(
            f"{root}: no images for {', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''} "
            f"({len(missing)} missing). Found: {', '.join(present) if present else 'nothing'}. "
            "Expected <Set>/<PROJ>/<split>/<A|B|C|D>/*.png (see course_lib.datasets.density).")


def load_grey8(path):
    """Read an image file as a 2-D uint8 array, converting (with a warning) what is not 8-bit grey.

    16-bit images are scaled by their own maximum to 0..255; RGB(A) and
    palette images are converted to luminance.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode == "L":
                return np.asarray(image).copy()
            if mode in ("I;16", "I;16B", "I", "F"):
                array = np.asarray(image).astype(np.float64)
                top = array.max() if array.max() > 0 else 1.0
                grey = np.clip(np.rint(array * 255.0 / top), 0, 255).astype(np.uint8)
                how = f"scaled from {mode} (max {top:g}) to 8 bits"
            else:
                grey = np.asarray(image.convert("L")).copy()
                how = f"converted from {mode} to 8-bit grey"
    except OSError as error:
        raise OSError(f"{path}: cannot be read as an image ({error})") from error
    warnings.warn(f"{path}: {how}; the INFN models expect 8-bit grey PNGs", ImageConversionWarning, stacklevel=2)
    return grey


def load_images(paths, size):
    """Load and resize (nearest neighbour, aspect ratio ignored) to a (n, size, size) uint8 array."""
    from PIL import Image

    out = np.empty((len(paths), size, size), np.uint8)
    for index, path in enumerate(paths):
        grey = Image.fromarray(load_grey8(path))
        out[index] = np.asarray(grey.resize((size, size), Image.Resampling.NEAREST))
    return out


def centre_images(images):
    """Steps 4-6 in NumPy: /255, subtract each image's mean, 3 channels (float32, NHWC).

    >>> x = centre_images(np.full((2, 4, 4), 51, np.uint8))
    >>> x.shape, float(abs(x).max())
    ((2, 4, 4, 3), 0.0)
    """
    x = np.asarray(images, np.float32) / np.float32(255.0)
    x = x - x.reshape(len(x), -1).mean(axis=1, dtype=np.float32)[:, None, None]
    return np.repeat(x[..., None], 3, axis=-1)


def augmentation_layers(seed=0):
    """The original's random transforms as a Keras ``Sequential`` (applied to 0..255 values)."""
    import keras

    a = AUGMENTATION
    zoom = (a["zoom_range"][0] - 1.0, a["zoom_range"][1] - 1.0)
    common = dict(fill_mode=a["fill_mode"], interpolation=a["interpolation"])
    # Keras' RandomZoom factor f means "zoom out by f": sizes scale by 1 + f.
    return keras.Sequential([
        keras.layers.RandomRotation(a["rotation_degrees"] / 360.0, seed=seed, **common),
        keras.layers.RandomTranslation(a["shift_fraction"], a["shift_fraction"], seed=seed + 1, **common),
        keras.layers.RandomZoom(zoom, zoom, seed=seed + 2, **common),
    ], name="infn_augmentation")


def make_dataset(images, labels=None, batch_size=4, augment=False, shuffle=False, seed=0):
    """A ``tf.data.Dataset`` of model inputs (and one-hot labels) from :func:`load_images` output.

    Deterministic for a given ``seed`` (with
    ``tf.config.experimental.enable_op_determinism()``): shuffling and the
    augmentation layers are seeded, and maps keep their order.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(images, np.float32)[..., None])
    parts = (x,) if labels is None else (x, tf.one_hot(np.asarray(labels), 4))
    dataset = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augment:
        layers = augmentation_layers(seed)
        dataset = dataset.map(lambda x, *y: (layers(x, training=True), *y))

    def centre(x, *y):
        x = x / 255.0
        x = x - tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
        return (tf.repeat(x, 3, axis=-1), *y) if y else tf.repeat(x, 3, axis=-1)

    return dataset.map(centre).prefetch(2)
