"""Benchmark the INFN density ResNet (Keras 3, TensorFlow): inference, training steps, tf.data, XLA.

Measured in one run, so the ratios mean something on any machine:

- inference images/s at 650x650 (batch 4) and at the lesson's 64x64;
- a training step (SGD, categorical cross-entropy) at 64x64 batch 16 (the short recipe) and at 650x650
  batch 4 (the original recipe), plain and compiled with ``jit_compile=True`` (XLA): their ratio;
- the ``tf.data`` input pipeline (augmentation + centring, batch 4 at 650x650) in batches/s, against
  the training step: ratio > 1 means training never waits on data;
- the four projections trained for one epoch on a small SYNTHETIC set (48x48, batch 8, Adam): one
  model each (four traces of the training step) against ``train_projections``' one shared trace.

Usage::

    python benchmarks/bench_density.py [--repeats 3] [--skip-650] [--skip-four-projections]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from timing import median_seconds  # noqa: E402


def train_step_seconds(size, batch, repeats, jit):
    import keras

    from course_lib.density.model import build_density_resnet

    keras.utils.set_random_seed(0)
    model = build_density_resnet(size)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy", jit_compile=jit)
    x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[np.arange(batch) % 4]
    return median_seconds(lambda: model.train_on_batch(x, y), repeats)


def inference_images_per_second(size, batch, repeats):
    import keras

    from course_lib.density.model import build_density_resnet

    keras.utils.set_random_seed(0)
    model = build_density_resnet(size)
    x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
    return batch / median_seconds(lambda: model.predict_on_batch(x), repeats)


def pipeline_batches_per_second(size, batch, n_batches=8):
    from course_lib.density.data import make_dataset

    images = np.random.default_rng(0).integers(0, 256, (batch * n_batches, size, size), dtype=np.uint8)
    dataset = make_dataset(images, np.arange(len(images)) % 4, batch, augment=True, shuffle=True)
    for _ in dataset.take(1):
        pass
    start = time.perf_counter()
    count = sum(1 for _ in dataset)
    return count / (time.perf_counter() - start)


def four_projections_seconds(shared, size=48):
    """Seconds to train the four projections for one epoch: separate models, or one shared trace."""
    import tempfile

    from course_lib.datasets.density import PROJECTIONS
    from course_lib.density.train import phantom_split_arrays, train_projection, train_projections
    from course_lib.phantoms.density_set import build_density_phantom_dataset

    recipe = dict(epochs=1, batch_size=8)
    with tempfile.TemporaryDirectory() as root:
        frame = build_density_phantom_dataset(root, 4, shape=(128, 84), splits={"train": 0.75, "validation": 0.25})
        start = time.perf_counter()
        if shared:
            train_projections(frame, PROJECTIONS, size, **recipe)
        else:
            for projection in PROJECTIONS:
                arrays = phantom_split_arrays(frame, projection, size)
                (x_train, y_train, _), (x_val, y_val, _) = arrays["train"], arrays["validation"]
                train_projection(x_train, y_train, x_val, y_val, size, **recipe)
        return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-650", action="store_true", help="only the 64x64 measurements")
    parser.add_argument("--skip-four-projections", action="store_true",
                        help="skip the four-projection training (five traces of the training step, minutes)")
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(os.cpu_count() or 2)
    rows = [("inference 64x64 batch 16", f"{inference_images_per_second(64, 16, args.repeats):.1f} images/s")]
    plain = train_step_seconds(64, 16, args.repeats, jit=False)
    xla = train_step_seconds(64, 16, args.repeats, jit=True)
    rows += [("train step 64x64 batch 16", f"{plain:.3f} s"),
             ("  jit_compile=True", f"{xla:.3f} s  (ratio jit/plain {xla / plain:.2f})")]
    if not args.skip_650:
        rows.append(("inference 650x650 batch 4", f"{inference_images_per_second(650, 4, args.repeats):.2f} images/s"))
        step = train_step_seconds(650, 4, args.repeats, jit=False)
        step_xla = train_step_seconds(650, 4, args.repeats, jit=True)
        rows += [("train step 650x650 batch 4", f"{step:.2f} s"),
                 ("  jit_compile=True", f"{step_xla:.2f} s  (ratio jit/plain {step_xla / step:.2f})")]
        per_second = pipeline_batches_per_second(650, 4)
        rows.append(("tf.data 650x650 batch 4 (augmented)",
                     f"{per_second:.1f} batches/s = {per_second * step:.1f}x the training step's need"))
    if not args.skip_four_projections:
        separate, shared = four_projections_seconds(shared=False), four_projections_seconds(shared=True)
        rows += [("4 projections, 1 epoch, separate models", f"{separate:.1f} s"),
                 ("  one shared trace (train_projections)", f"{shared:.1f} s  (ratio shared/separate "
                                                             f"{shared / separate:.2f})")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
