"""Training: the patch stage (three-stage fine-tuning) and the whole-image stage (two stages).

Shen et al. (Scientific Reports 9:12495, 2019) fine-tune the patch classifier in
three stages: (1) only the Dense head, (2) the last convolutional block too,
(3) everything, each at a smaller learning rate. The stage arguments are
*cumulative end epochs*: ``(1, 5, 15)`` means 1, then 4, then 10 epochs
(:func:`stage_schedule`). The whole-image model trains in two stages: (1) the
trunk frozen, only the top blocks and head learn; (2) everything, at a smaller
learning rate; after every epoch the validation ROC AUC is computed and the
best weights kept.

Determinism: :func:`make_deterministic` seeds Python, NumPy and Keras, enables
TensorFlow's deterministic ops and fixes the thread counts, so a run prints the
same numbers every time on the same machine. Batches are class-balanced by
construction (each batch holds every class equally often, drawn with a seeded
generator) and augmented with random horizontal and vertical flips; the paper's
rotations, shears, zooms and channel shifts are left out to keep CPU runs short.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from course_lib.progress import progress_bar

__all__ = ["make_deterministic", "stage_schedule", "TOP_BLOCK_PREFIX", "PatchTrainingSettings",
           "ImageTrainingSettings", "load_patch_split", "train_patch_classifier", "train_whole_image",
           "save_weights_float16", "load_weights"]

#: Name prefix of the trunk layers unfrozen in stage 2 of the patch schedule ("the last conv block").
TOP_BLOCK_PREFIX = {"kit_small": "block4", "resnet50": "conv5_", "vgg16": "block5"}


def make_deterministic(seed=0, threads=2):
    """Seed everything and make TensorFlow deterministic; call before building models.

    Thread counts can only be set before TensorFlow runs its first op; later calls
    keep the counts already in place. Returns a short description.
    """
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised: counts are fixed for this process
        pass
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    return (f"seed {seed}, deterministic ops, threads intra "
            f"{tf.config.threading.get_intra_op_parallelism_threads()} inter "
            f"{tf.config.threading.get_inter_op_parallelism_threads()}")


def stage_schedule(end_epochs, learning_rates):
    """[(stage, epochs in the stage, learning rate)] from cumulative end epochs.

    >>> stage_schedule((1, 5, 15), (1e-2, 1e-4, 1e-6))
    [(1, 1, 0.01), (2, 4, 0.0001), (3, 10, 1e-06)]
    """
    if any(b < a for a, b in zip(end_epochs, end_epochs[1:])):
        raise ValueError(f"end epochs must not decrease (they are cumulative): {end_epochs}")
    previous, stages = 0, []
    for stage, (end, rate) in enumerate(zip(end_epochs, learning_rates), start=1):
        stages.append((stage, end - previous, rate))
        previous = end
    return stages


@dataclass
class PatchTrainingSettings:
    """Patch stage: cumulative end epochs of the 3 stages and their learning rates."""

    end_epochs: tuple = (1, 3, 6)
    learning_rates: tuple = (1e-3, 1e-3, 3e-4)
    batch_size: int = 32
    steps_per_epoch: int = 40
    seed: int = 0


@dataclass
class ImageTrainingSettings:
    """Whole-image stage: cumulative end epochs of the 2 stages and their learning rates."""

    end_epochs: tuple = (4, 8)
    learning_rates: tuple = (1e-3, 1e-4)
    batch_size: int = 8
    seed: int = 0
    history: list = field(default_factory=list)


def _read_png(path):
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img)


def load_patch_split(patch_dir, split, n_classes=None):
    """(patches uint16 N x P x P, labels) of one split of a :func:`sample_patches` folder.

    Raises a clear error when a class folder the index lists is missing.
    """
    import pandas as pd

    patch_dir = Path(patch_dir)
    index = pd.read_csv(patch_dir / "index.csv")
    index = index[index.split == split]
    if index.empty:
        raise ValueError(f"no {split} patches in {patch_dir / 'index.csv'}")
    for class_name in sorted(index.class_name.unique()):
        if not (patch_dir / split / class_name).is_dir():
            raise FileNotFoundError(
                f"class folder {patch_dir / split / class_name} is missing: re-run the patch sampling")
    patches = np.stack([_read_png(patch_dir / f) for f in index.file])
    return patches, index.label.to_numpy()


def _balanced_indices(labels, n, rng):
    """``n`` indices, every class equally often (drawn with replacement), shuffled."""
    classes = np.unique(labels)
    per_class = -(-n // len(classes))
    chosen = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class) for c in classes])
    return rng.permutation(chosen)[:n]


def _random_flips(x, rng):
    rows = rng.random(len(x)) < 0.5
    cols = rng.random(len(x)) < 0.5
    x = x.copy()
    x[rows] = x[rows, ::-1]
    x[cols] = x[cols, :, ::-1]
    return x


def _set_patch_stage(model, backbone, stage):
    """Freeze what stage 1/2/3 of the patch schedule freezes."""
    from course_lib.end2end.model import trunk_of

    trunk = trunk_of(model)
    trunk.trainable = stage > 1
    if stage == 2:
        started = False
        for layer in trunk.layers:
            started = started or layer.name.startswith(TOP_BLOCK_PREFIX[backbone])
            layer.trainable = started


def _compile(model, rate, loss):
    """Compile with Adam at ``rate``, inside the strategy the model was built under (the
    optimizer's variables must live on the same replicas as the model's)."""
    import keras

    with model.distribute_strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss, metrics=["accuracy"])


def train_patch_classifier(model, backbone, x, y, settings=PatchTrainingSettings(), x_val=None, y_val=None):
    """Train ``model`` on patch input ``x`` (model units) with the three-stage schedule.

    Returns one dict per epoch (stage, loss, accuracy, val_accuracy).
    """
    import keras

    rng = np.random.default_rng(settings.seed)
    n_classes = model.output_shape[-1]
    targets = keras.utils.to_categorical(y, n_classes)
    history, epoch = [], 0
    bar = progress_bar(settings.end_epochs[-1], "training patches", "epoch")
    for stage, epochs, rate in stage_schedule(settings.end_epochs, settings.learning_rates):
        _set_patch_stage(model, backbone, stage)
        _compile(model, rate, "categorical_crossentropy")
        for _ in range(epochs):
            epoch += 1
            chosen = _balanced_indices(y, settings.steps_per_epoch * settings.batch_size, rng)
            fit = model.fit(_random_flips(x[chosen], rng), targets[chosen], batch_size=settings.batch_size,
                            epochs=1, shuffle=False, verbose=0)
            row = {"epoch": epoch, "stage": stage, "loss": round(float(fit.history["loss"][0]), 4),
                   "accuracy": round(float(fit.history["accuracy"][0]), 4)}
            if x_val is not None:
                predicted = model.predict(x_val, batch_size=256, verbose=0).argmax(axis=1)
                row["val_accuracy"] = round(float(np.mean(predicted == y_val)), 4)
            history.append(row)
            bar.set_postfix({k: v for k, v in row.items() if k != "epoch"}, refresh=False)
            bar.update()
    bar.close()
    return history


def _flip_maps(x):
    """The image batch ``x`` (N x H x W x C) and its horizontal, vertical and double flips."""
    return [np.ascontiguousarray(x[:, ::-1 if r else 1, ::-1 if c else 1])
            for r, c in ((0, 0), (0, 1), (1, 0), (1, 1))]


def _set_image_stage(trunk, stage):
    """Stage 1 freezes the trunk; stage 2 trains it, its BatchNorm layers excepted.

    Frozen BatchNorm layers keep normalising with the statistics of the patch
    stage; trained on batches of a few whole images they would switch to those
    batches' statistics, which differ from the patches', and the loss jumps.
    """
    trunk.trainable = stage > 1
    if stage > 1:
        for layer in trunk.layers:
            if "BatchNormalization" in type(layer).__name__:
                layer.trainable = False


def train_whole_image(model, x, y, x_val, y_val, settings=ImageTrainingSettings()):
    """Two-stage training of a whole-image model; keeps the weights of the best validation AUC.

    ``x``, ``x_val`` are model input (N x H x W x C), ``y``, ``y_val`` 0/1 cancer labels.
    Stage 1 freezes the trunk, so its maps are computed once, for the image and its
    three flips, and the top blocks train on them (the same updates as training the
    whole model with the trunk frozen, without recomputing the trunk every epoch).
    Stage 2 trains everything but the trunk's BatchNorm statistics. Returns one dict per epoch (stage, loss, val_auc).
    """
    import keras
    from sklearn.metrics import roc_auc_score

    from course_lib.end2end.model import top_of, trunk_of

    rng = np.random.default_rng(settings.seed)
    targets = keras.utils.to_categorical(y, 2)
    trunk, top = trunk_of(model), top_of(model)
    n = len(y) - len(y) % settings.batch_size or len(y)
    history, epoch, best = [], 0, (-1.0, None, 0)
    stages = stage_schedule(settings.end_epochs, settings.learning_rates)
    flipped_maps = None
    val_maps = None
    bar = progress_bar(settings.end_epochs[-1], "training whole images", "epoch")
    for stage, epochs, rate in stages:
        _set_image_stage(trunk, stage)
        for layer in top.layers:  # the paper also freezes the heatmap layer in stage 1
            if layer.name == "heatmap":
                layer.trainable = stage > 1
        if stage == 1 and epochs:
            flipped_maps = [trunk.predict(f, batch_size=settings.batch_size, verbose=0) for f in _flip_maps(x)]
            val_maps = trunk.predict(x_val, batch_size=settings.batch_size, verbose=0)
            _compile(top, rate, "categorical_crossentropy")
        else:
            _compile(model, rate, "categorical_crossentropy")
        for _ in range(epochs):
            epoch += 1
            chosen = _balanced_indices(y, n, rng)
            if stage == 1:
                flip = rng.integers(0, 4, len(chosen))
                batch = np.stack([flipped_maps[f][i] for f, i in zip(flip, chosen)])
                fit = top.fit(batch, targets[chosen], batch_size=settings.batch_size, epochs=1,
                              shuffle=False, verbose=0)
                scores = top.predict(val_maps, batch_size=settings.batch_size, verbose=0)[:, 1]
            else:
                fit = model.fit(_random_flips(x[chosen], rng), targets[chosen], batch_size=settings.batch_size,
                                epochs=1, shuffle=False, verbose=0)
                scores = model.predict(x_val, batch_size=settings.batch_size, verbose=0)[:, 1]
            auc = float(roc_auc_score(y_val, scores)) if len(set(y_val)) == 2 else float("nan")
            history.append({"epoch": epoch, "stage": stage, "loss": round(float(fit.history["loss"][0]), 4),
                            "val_auc": round(auc, 4)})
            bar.set_postfix(stage=stage, loss=history[-1]["loss"], val_auc=history[-1]["val_auc"], refresh=False)
            bar.update()
            if auc > best[0]:
                best = (auc, model.get_weights(), epoch)
    bar.close()
    trunk.trainable = True
    if best[1] is not None:
        model.set_weights(best[1])
    history.append({"best_epoch": best[2], "best_val_auc": round(best[0], 4)})
    return history


def save_weights_float16(models, path, card=None):
    """Save the weights of ``models`` ({name: keras model}) as float16 arrays in one ``.npz``.

    A JSON model card (``card`` plus sha256, dtype and parameter counts) goes beside
    it with the suffix ``.json``. Returns the sha256 of the weights file.
    """
    import hashlib

    from course_lib.io import atomic_output

    path = Path(path)
    arrays = {f"{name}/{i:03d}": np.asarray(w).astype(np.float16)
              for name, model in models.items() for i, w in enumerate(model.get_weights())}
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if card is not None:
        counts = {name: int(model.count_params()) for name, model in models.items()}
        card = {**card, "sha256": digest, "dtype": "float16", "parameters": counts}
        with atomic_output(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(card, indent=1) + "\n")
    return digest


def load_weights(models, path):
    """Load float16 weights written by :func:`save_weights_float16` into ``models`` (as float32)."""
    with np.load(path) as arrays:
        for name, model in models.items():
            keys = sorted(k for k in arrays.files if k.startswith(f"{name}/"))
            weights = [arrays[k].astype(np.float32) for k in keys]
            expected = [tuple(w.shape) for w in model.get_weights()]
            if [w.shape for w in weights] != expected:
                raise ValueError(f"{path}: the {name!r} weights do not match the model "
                                 f"({len(weights)} arrays, {len(expected)} expected)")
            model.set_weights(weights)
    return models


def settings_dict(settings):
    """A JSON-friendly copy of a settings dataclass."""
    return {k: v for k, v in asdict(settings).items() if k != "history"}
