"""NYU's histogram baseline for breast density, with its published weights.

Wu N., Geras K. J., Shen Y. et al., *Breast density classification with deep
convolutional neural networks*, ICASSP 2018 (arXiv:1711.03674); weights and
sample exam from github.com/nyukat/breast_density_classifier (BSD-2-Clause).

The model is small enough to write out in full:

1. each of the four views (8-bit PNG) is standardised on its own: subtract
   its mean, divide by its standard deviation;
2. a 50-bin histogram of the standardised values over their own min..max,
   normalised to sum to 1;
3. the four histograms are concatenated in the order L-CC, R-CC, L-MLO,
   R-MLO (200 features);
4. dense 200 -> 100, ReLU, dense 100 -> 4, softmax.

Everything here is NumPy; the weights are read from NYU's TensorFlow
checkpoint (``fully_connected`` = the first layer, ``fully_connected_2`` =
the output layer; these are the same numbers as the PyTorch ``model.p``).
``dtype`` chooses the arithmetic: float64 reproduces the published
probabilities to better than 1e-3, float32 moves the few pixels whose value
falls on a bin edge into the neighbouring bin.
"""

import numpy as np

__all__ = [
    "VIEW_ORDER",
    "N_BINS",
    "PUBLISHED_SAMPLE_PROBABILITIES",
    "CHECKPOINT_KEYS",
    "view_histogram",
    "exam_features",
    "load_histogram_weights",
    "histogram_model_predict",
]

#: Order in which the four views' histograms are concatenated.
VIEW_ORDER = ("L-CC", "R-CC", "L-MLO", "R-MLO")
N_BINS = 50
#: The README of nyukat/breast_density_classifier: its sample exam, histogram model (A, B, C, D).
PUBLISHED_SAMPLE_PROBABILITIES = (0.0819444, 0.78304, 0.133503, 0.00151265)
#: Registry keys of the checkpoint files (index first; the data file must sit beside it).
CHECKPOINT_KEYS = (
    "nyu-density/saved_models/BreastDensity_BaselineHistogramModel/model.ckpt.index",
    "nyu-density/saved_models/BreastDensity_BaselineHistogramModel/model.ckpt.data-00000-of-00001",
)


def view_histogram(image, dtype=np.float64, n_bins=N_BINS):
    """Standardise one view and return its normalised ``n_bins`` histogram.

    >>> view_histogram(np.array([[0, 0, 255, 255]], np.uint8), n_bins=2).tolist()
    [0.5, 0.5]
    """
    x = np.asarray(image).astype(dtype)
    x = (x - x.mean()) / x.std()
    counts, _ = np.histogram(x, bins=n_bins)
    return (counts / counts.sum()).astype(dtype)


def exam_features(views, dtype=np.float64):
    """The 200 features of one exam: ``views`` maps each of :data:`VIEW_ORDER` to a 2-D image."""
    missing = [v for v in VIEW_ORDER if v not in views]
    if missing:
        raise ValueError(f"the histogram model needs the views {VIEW_ORDER}; missing {missing}")
    return np.concatenate([view_histogram(views[v], dtype) for v in VIEW_ORDER])


def load_histogram_weights(checkpoint_prefix):
    """Read NYU's checkpoint (path without ``.index``) into a dict of NumPy arrays.

    Returns ``{"w1": (200, 100), "b1": (100,), "w2": (100, 4), "b2": (4,)}``.
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(checkpoint_prefix))
    names = {"w1": "fully_connected/weights", "b1": "fully_connected/biases",
             "w2": "fully_connected_2/weights", "b2": "fully_connected_2/biases"}
    weights = {key: reader.get_tensor(name) for key, name in names.items()}
    if weights["w1"].shape != (4 * N_BINS, 100) or weights["w2"].shape != (100, 4):
        raise ValueError(f"{checkpoint_prefix}: not the histogram model's checkpoint "
                         f"(shapes {weights['w1'].shape}, {weights['w2'].shape})")
    return weights


def histogram_model_predict(views, weights, dtype=np.float64):
    """Density probabilities (A, B, C, D) of one exam, computed in ``dtype`` throughout."""
    features = exam_features(views, dtype)
    w = {key: np.asarray(value, dtype) for key, value in weights.items()}
    hidden = np.maximum(features @ w["w1"] + w["b1"], 0)
    logits = hidden @ w["w2"] + w["b2"]
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()
