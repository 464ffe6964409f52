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

:func:`train_projections` trains one model per projection but traces Keras'
training step once for all of them (about 30 s per trace with Adam on a
2-core CPU, more than a short run's training), with the same numbers as
separate :func:`train_projection` runs.

:func:`configure_determinism` makes a run repeatable: same seed, same
numbers (``keras.utils.set_random_seed``,
``tf.config.experimental.enable_op_determinism()``, fixed thread counts).
"""

import contextlib

import numpy as np

from course_lib.density.model import DROPOUT
from course_lib.distributed import synchronise_keras_batchnorm
from course_lib.io import atomic_output

__all__ = [
    "RECIPES",
    "HISTORY_FILES",
    "configure_determinism",
    "recalibrate_batch_norm",
    "train_projection",
    "write_history",
    "PHANTOM_INPUT_SIZE",
    "PHANTOM_SHAPE",
    "save_weights_float16",
    "load_weights_float16",
    "phantom_split_arrays",
    "train_projections",
]

RECIPES = {
    "original": dict(optimizer="sgd", learning_rate=0.01, batch_size=4, epochs=100, augment=True, dropout=DROPOUT,
                     bn_momentum=0.99, recalibrate_bn=False, reduce_lr_patience=15, reduce_lr_factor=0.1,
                     min_learning_rate=0.001),
    "short": dict(optimizer="adam", learning_rate=1e-3, batch_size=16, epochs=10, augment=False, dropout=DROPOUT,
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


def recalibrate_batch_norm(model, images, max_images=512, seed=0):
    """Set every batch-norm layer's moving mean and variance to the statistics of ``images``.

    One forward pass in training mode over all the images as one batch, with
    every momentum set to 0: each layer normalises with, and stores, the
    exact statistics of the batch as the layers before it transform it.
    ``images`` are model inputs (NHWC, centred); at most ``max_images`` of
    them (a seeded random subset) are used, to bound memory.
    """
    import keras

    images = np.asarray(images, np.float32)
    if len(images) > max_images:
        images = images[np.sort(np.random.default_rng(seed).choice(len(images), max_images, replace=False))]
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [norm.momentum for norm in norms]
    try:
        for norm in norms:
            norm.momentum = 0.0
        model(images, training=True)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
    return model


def _optimizer(recipe):
    import keras

    if recipe["optimizer"] == "sgd":
        return keras.optimizers.SGD(recipe["learning_rate"])
    if recipe["optimizer"] == "adam":
        return keras.optimizers.Adam(recipe["learning_rate"])
    raise ValueError(f"unknown optimizer {recipe['optimizer']!r}: 'sgd' or 'adam'")


def train_projection(train_images, train_labels, val_images, val_labels, input_size, recipe="short",
                     seed=0, checkpoint_path=None, verbose=0, strategy=None, **overrides):
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
    strategy : tf.distribute.Strategy, optional
        Train data-parallel (:func:`course_lib.distributed.keras_strategy`): the model
        is built and compiled in its scope with synchronised batch norm; the recipe's
        ``batch_size`` is the global batch, split over the replicas.

    Returns
    -------
    model : keras.Model
        The best model by validation accuracy when ``checkpoint_path`` is
        given, else the last.
    history : dict of lists
        ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``learning_rate``.
    """
    recipe = _recipe(recipe, overrides)
    model = _compiled_model(input_size, recipe, seed, strategy)
    return _fit(model, train_images, train_labels, val_images, val_labels, recipe, seed, checkpoint_path, verbose)


def _recipe(recipe, overrides):
    return dict(RECIPES[recipe] if isinstance(recipe, str) else recipe, **overrides)


def _compiled_model(input_size, recipe, seed, strategy):
    """A freshly initialised, compiled model (seeded), its optimizer's state already built."""
    from course_lib.density.model import build_density_resnet

    configure_determinism(seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_density_resnet(input_size, dropout=recipe["dropout"], bn_momentum=recipe["bn_momentum"])
        if strategy is not None:
            synchronise_keras_batchnorm(model)
        model.compile(optimizer=_optimizer(recipe), loss="categorical_crossentropy", metrics=["accuracy"])
        model.optimizer.build(model.trainable_variables)
    return model


def _fit(model, train_images, train_labels, val_images, val_labels, recipe, seed, checkpoint_path, verbose):
    """Train ``model`` (from :func:`_compiled_model`) with ``recipe``; returns ``(model, history)``."""
    import keras

    from course_lib.density.data import centre_images, make_dataset
    from course_lib.progress import keras_callbacks

    train = make_dataset(train_images, train_labels, recipe["batch_size"], augment=recipe["augment"],
                         shuffle=True, seed=seed)
    validation = make_dataset(val_images, val_labels, batch_size=32)
    # verbose=0: the kit's one bar over all steps, in a notebook or a terminal (Keras' own, verbose=1: a terminal only)
    callbacks = [] if verbose else keras_callbacks("training density")
    if recipe["reduce_lr_patience"]:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            "val_loss", factor=recipe["reduce_lr_factor"], patience=recipe["reduce_lr_patience"],
            min_lr=recipe["min_learning_rate"]))
    if checkpoint_path is not None:
        callbacks.append(keras.callbacks.ModelCheckpoint(str(checkpoint_path), monitor="val_accuracy",
                                                         mode="max", save_best_only=True))
    fit = model.fit(train, validation_data=validation, epochs=recipe["epochs"], callbacks=callbacks,
                    verbose=verbose, shuffle=False)  # the dataset shuffles, seeded
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


# --------------------------------------------------------------------------- phantom models

#: The kit's phantom-trained models: input size, phantom size and training set.
PHANTOM_INPUT_SIZE = 64
PHANTOM_SHAPE = (256, 168)
#: Patients per class and split fractions of the kit's phantom training set.
PHANTOM_SET = {"n_per_class": 100, "seed": 0, "splits": {"train": 0.7, "validation": 0.1, "test": 0.2}}


def save_weights_float16(model, path):
    """Store every weight of ``model`` as float16 in a compressed ``.npz``, keyed ``layer/index``."""
    arrays = {f"{layer.name}/{i}": np.asarray(w, np.float32).astype(np.float16)
              for layer in model.layers for i, w in enumerate(layer.weights)}
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return path


def load_weights_float16(model, path):
    """Load :func:`save_weights_float16` output into ``model``; names and shapes must match exactly."""
    from course_lib.density.model import ArchitectureMismatchError

    with np.load(path) as stored:
        expected = {f"{layer.name}/{i}": w for layer in model.layers for i, w in enumerate(layer.weights)}
        missing = sorted(set(expected) - set(stored.files))
        unexpected = sorted(set(stored.files) - set(expected))
        reshaped = sorted(k for k in set(expected) & set(stored.files) if tuple(expected[k].shape) != stored[k].shape)
        if missing or unexpected or reshaped:
            raise ArchitectureMismatchError(
                f"{path}: weights do not fit this model; missing {missing[:4]}, unexpected {unexpected[:4]}, "
                f"different shapes {reshaped[:4]}")
        for key, variable in expected.items():
            variable.assign(stored[key].astype(np.float32))
    return model


def phantom_split_arrays(frame, projection, size):
    """``{split: (uint8 images, labels, rows)}`` of one projection of a density frame."""
    from course_lib.density.data import load_images

    out = {}
    for split in ("train", "validation", "test"):
        rows = frame[(frame["projection"] == projection) & (frame["split"] == split)].reset_index(drop=True)
        if len(rows):
            out[split] = (load_images(list(rows["path"]), size), rows["label_index"].to_numpy(), rows)
    return out


def train_projections(frame, projections, input_size, recipe="short", seed=0, verbose=0, strategy=None,
                      **overrides):
    """Train one model per projection of ``frame``; returns ``{projection: (model, history)}``.

    Each model is the one :func:`train_projection` would give for that
    projection alone, but the projections share one compiled model, so that
    Keras traces the training step once instead of once per projection
    (about 30 s each for this network with Adam on a 2-core CPU, longer than
    a short run's training): before each projection the initial weights
    (and the dropout's random state) and the optimizer's initial state are
    put back, and the trained weights are then copied into a model of the
    projection's own.
    """
    from course_lib.density.data import check_layout
    from course_lib.density.model import build_density_resnet

    check_layout(frame, projections, ("train", "validation"))
    recipe = _recipe(recipe, overrides)
    shared = _compiled_model(input_size, recipe, seed, strategy)
    initial = [variable.numpy() for variable in shared.variables]
    initial_optimizer = [variable.numpy() for variable in shared.optimizer.variables]
    trained = {}
    for projection in projections:
        for variable, value in zip(shared.variables, initial):
            variable.assign(value)
        for variable, value in zip(shared.optimizer.variables, initial_optimizer):
            variable.assign(value)
        arrays = phantom_split_arrays(frame, projection, input_size)
        (x_train, y_train, _), (x_val, y_val, _) = arrays["train"], arrays["validation"]
        model, history = _fit(shared, x_train, y_train, x_val, y_val, recipe, seed, None, verbose)
        own = build_density_resnet(input_size, dropout=recipe["dropout"], bn_momentum=recipe["bn_momentum"])
        own.set_weights(model.get_weights())
        trained[projection] = own, history
    return trained
