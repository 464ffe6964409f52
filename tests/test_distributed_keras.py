"""Keras under tf.distribute: MirroredStrategy over two logical CPU devices trains like one device.

A small convolutional model with BatchNorm takes two SGD steps on a global batch of 8
(4 per replica). Each run is a subprocess (logical devices must be set before TensorFlow
starts; pytest's process has started it). With the BatchNorm layers synchronised
(:func:`course_lib.distributed.synchronise_keras_batchnorm`) the weights and moving
statistics equal the one-device run; with per-replica statistics they do not.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

GLOBAL_BATCH = 8


def program(mode, out):
    import tensorflow as tf

    from course_lib import distributed

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    devices = distributed.use_logical_cpus(2) if mode != "single" else ["/cpu:0"]
    import keras

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    strategy = distributed.keras_strategy(devices=devices)
    with strategy.scope():
        model = keras.Sequential([
            keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, use_bias=False), keras.layers.BatchNormalization(),
            keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
        rng = np.random.default_rng(1)  # the same starting weights in every run
        model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) if w.ndim > 1 else w
                           for w in model.get_weights()])
        if mode == "mirrored":
            distributed.synchronise_keras_batchnorm(model)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2 * GLOBAL_BATCH, 16, 16, 1)).astype(np.float32)
    images[:GLOBAL_BATCH // 2] += 1.0
    labels = keras.utils.to_categorical(rng.integers(0, 3, 2 * GLOBAL_BATCH), 3)
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(GLOBAL_BATCH)
    history = model.fit(data, epochs=1, verbose=0, shuffle=False)
    Path(out).write_text(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"],
                                     "weights": [w.tolist() for w in model.get_weights()]}))


def run(mode, tmp_path):
    out = tmp_path / f"{mode}.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    done = subprocess.run([sys.executable, __file__, mode, str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_mirrored_strategy_over_two_devices_trains_like_one_device(tmp_path):
    single, mirrored, unsynchronised = (run(mode, tmp_path) for mode in ("single", "mirrored", "unsynchronised"))
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    assert mirrored["loss"] == pytest.approx(single["loss"], rel=1e-5)
    moved = 0
    for got, expected, start in zip(mirrored["weights"], single["weights"], unsynchronised["weights"]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        moved += int(not np.allclose(expected, start, rtol=1e-5, atol=1e-6))
    # Per-replica BatchNorm statistics (Keras' default) give other weights: the test can fail.
    assert moved >= 1


def test_global_batch_and_learning_rate_scaling():
    from course_lib import distributed

    assert distributed.global_batch_size(4, 2) == 8
    assert distributed.scaled_learning_rate(0.01, 4, 8) == pytest.approx(0.02)


if __name__ == "__main__":
    program(*sys.argv[1:])
