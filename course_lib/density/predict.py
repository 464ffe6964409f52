"""Predictions of the density models, written in the original's text format.

The original wrote, per projection, a file of one row per test image (class
folder A, B, C, D, then file names sorted as strings) and four
space-separated ``%.18e`` softmax columns, no header and no image names
(``predictions_ccr.txt`` ...). Rows of the four files are the same subjects
only because every projection folder holds the same patients; here the
image names travel beside the rows (``names``), and are written to a
``.names.txt`` file next to each prediction file, so nothing depends on it.
"""

from pathlib import Path

import numpy as np

from course_lib.io import atomic_output

__all__ = ["predict_images", "predict_split", "write_predictions"]


def predict_images(model, images, batch_size=8):
    """Softmax probabilities (n, 4) of uint8 images (n, size, size), centred as in training."""
    from course_lib.density.data import centre_images

    images = np.asarray(images)
    size = model.input_shape[1]
    if images.shape[1:] != (size, size):
        raise ValueError(f"images are {images.shape[1:]}, the model takes {size}x{size}: "
                         "load them with course_lib.density.data.load_images(paths, size)")
    # eager calls: no tf.function to trace (model.predict traces once per new batch shape)
    return np.concatenate([np.asarray(model(centre_images(images[i:i + batch_size]), training=False))
                           for i in range(0, len(images), batch_size)]).astype(np.float64)


def predict_split(model, frame, projection, split="test", batch_size=8):
    """Predict one projection's images of ``frame`` (:func:`~course_lib.datasets.density.read_density_dataset`).

    Returns ``(rows, probabilities)``: the frame's rows in the original's
    order and their (n, 4) probabilities.
    """
    from course_lib.density.data import load_images

    rows = frame[(frame["projection"] == projection) & (frame["split"] == split)].reset_index(drop=True)
    if rows.empty:
        raise FileNotFoundError(f"no {projection} images in the {split!r} split")
    images = load_images(list(rows["path"]), model.input_shape[1])
    return rows, predict_images(model, images, batch_size)


def write_predictions(output_dir, projection, probabilities, names=None):
    """Write ``predictions_<proj>.txt`` (original format) and, given ``names``, a ``.names.txt`` beside it."""
    from course_lib.density.evaluate import PROJECTION_FILES, write_prediction_file

    path = Path(output_dir) / PROJECTION_FILES[projection]
    write_prediction_file(path, probabilities)
    written = [path]
    if names is not None:
        names_path = path.with_suffix(".names.txt")
        with atomic_output(names_path) as tmp:
            tmp.write_text("".join(f"{Path(n).name}\n" for n in names))
        written.append(names_path)
    return written
