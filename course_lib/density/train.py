"""Training the INFN density ResNet, one model per projection, reproducibly.

Two recipes (:data:`RECIPES`):

- ``"original"``: what the INFN script actually ran (Scapicchio, Lizzi et
  al., 2021): the string ``"sgd"``, i.e. plain SGD with learning rate 0.01
  and no momentum (the RMSprop and Nesterov optimisers it also built were
  never passed to ``compile``), batch 4, 100 epochs, the augmentation of
  :mod:`course_lib.density.data`, ReduceLROnPlateau on the validation loss
  (factor 0.1, patience 15, floor 0.001), the best model by validation
  accuracy kept.
- ``"short"``: a CPU lesson of a minute per projection at a reduced input
  size. It is NOT the original's recipe and says so: Adam (lr 1e-3), batch
  16, no augmentation, batch-norm momentum 0.9, and after training the
  batch-norm statistics are recomputed exactly on the training images
  (:func:`recalibrate_batch_norm`). Without the last two, a few dozen steps
  leave the moving statistics near their initial values and the model
  predicts one class at inference.

:func:`configure_determinism` makes a run repeatable: same seed, same
numbers (``keras.utils.set_random_seed``,
``tf.config.experimental.enable_op_determinism()``, fixed thread counts).
"""

import numpy as np

from course_lib.io import atomic_output

__all__ = [
    "RECIPES",
    "HISTORY_FILES",
    "configure_determinism",
    "recalibrate_batch_norm",
    "train_projection",
    "write_history",
]

RECIPES = {
    "original": dict(optimizer="sgd", learning_rate=0.01, batch_size=4, epochs=100, augment=True,
                     bn_momentum=0.99, recalibrate_bn=False, reduce_lr_patience=15, reduce_lr_factor=0.1,
                     min_learning_rate=0.001),
    "short": dict(optimizer="adam", learning_rate=1e-3, batch_size=16, epochs=10, augment=False,
                  bn_momentum=0.9, recalibrate_bn=True, reduce_lr_patience=None, reduce_lr_factor=0.1,
                  min_learning_rate=0.0),
}
#: The original's per-epoch history files (one ``%.18e`` float per line).
HISTORY_FILES = {"loss": "loss_train.txt", "accuracy": "acc_train.txt",
                 "val_loss": "loss_val.txt", "val_accuracy": "acc_val.txt"}


def configure_determinism(seed=0, threads=2):
    """Seed Python, NumPy and Keras, make TF ops deterministic, fix the thread counts.

    Thread counts can only be set before TensorFlow runs its first op; if it
    already has, the counts in force are kept (and returned).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime is already initialised
        pass
    return {"seed": seed, "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}


def recalibrate_batch_norm(model, images, batch_size=256):
    """Set every batch-norm layer's moving mean and variance to the exact statistics of ``images``.

    ``images`` are model inputs (NHWC, already centred). Layers are visited
    in order, so each sees the recalibrated layers before it.
    """
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for norm in norms:
        probe = keras.Model(model.inputs, norm.input)
        features = np.concatenate([np.asarray(probe(images[i:i + batch_size], training=False))
                                   for i in range(0, len(images), batch_size)])
        axes = tuple(range(features.ndim - 1))
        norm.moving_mean.assign(features.mean(axis=axes, dtype=np.float64).astype(np.float32))
        norm.moving_variance.assign(features.var(axis=axes, dtype=np.float64).astype(np.float32))
    return model


def _optimizer(recipe):
    import keras

    if recipe["optimizer"] == "sgd":
        return keras.optimizers.SGD(recipe["learning_rate"])
    if recipe["optimizer"] == "adam":
        return keras.optimizers.Adam(recipe["learning_rate"])
    raise ValueError(f"unknown optimizer {recipe['optimizer']!r}: 'sgd' or 'adam'")


def train_projection(train_images, train_labels, val_images, val_labels, input_size, recipe="short",
                     seed=0, checkpoint_path=None, verbose=0, **overrides):
    """Train one projection's model from uint8 images (:func:`~course_lib.density.data.load_images`).

    Parameters
    ----------
    train_images, val_images : uint8 arrays (n, size, size)
    train_labels, val_labels : int arrays (A=0 .. D=3)
    input_size : int
    recipe : str or dict
        A key of :data:`RECIPES` or a full recipe dict; ``overrides`` replace
        single entries (e.g. ``epochs=3``).
    seed : int
    checkpoint_path : path-like, optional
        Where to keep the best model by validation accuracy (``.keras``).
    verbose : int
        Keras' progress display (1: a progress bar per epoch).

    Returns
    -------
    model : keras.Model
        The best model by validation accuracy when ``checkpoint_path`` is
        given, else the last.
    history : dict of lists
        ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``learning_rate``.
    """
    import keras

    from course_lib.density.data import centre_images, make_dataset
    from course_lib.density.model import build_density_resnet

    recipe = dict(RECIPES[recipe] if isinstance(recipe, str) else recipe, **overrides)
    configure_determinism(seed)
    model = build_density_resnet(input_size, bn_momentum=recipe["bn_momentum"])
    model.compile(optimizer=_optimizer(recipe), loss="categorical_crossentropy", metrics=["accuracy"])
    train = make_dataset(train_images, train_labels, recipe["batch_size"], augment=recipe["augment"],
                         shuffle=True, seed=seed)
    validation = make_dataset(val_images, val_labels, batch_size=32)
    callbacks = []
    if recipe["reduce_lr_patience"]:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            "val_loss", factor=recipe["reduce_lr_factor"], patience=recipe["reduce_lr_patience"],
            min_lr=recipe["min_learning_rate"]))
    if checkpoint_path is not None:
        callbacks.append(keras.callbacks.ModelCheckpoint(str(checkpoint_path), monitor="val_accuracy",
                                                         mode="max", save_best_only=True))
    fit = model.fit(train, validation_data=validation, epochs=recipe["epochs"], callbacks=callbacks,
                    verbose=verbose)
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    if checkpoint_path is not None:
        model = keras.models.load_model(checkpoint_path, compile=False)
    if recipe["recalibrate_bn"]:
        recalibrate_batch_norm(model, centre_images(train_images))
    return model, history


def write_history(history, folder):
    """Write the original's four history files (``loss_train.txt`` ...) into ``folder``."""
    from pathlib import Path

    written = []
    for key, name in HISTORY_FILES.items():
        if key in history:
            with atomic_output(Path(folder) / name) as tmp:
                np.savetxt(tmp, np.asarray(history[key], np.float64), fmt="%.18e")
            written.append(name)
    return written
