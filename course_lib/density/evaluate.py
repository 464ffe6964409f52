"""Figures of merit for BI-RADS density: the INFN ones, and what the density literature reports.

The INFN use case (Scapicchio, Lizzi et al., 2021) reports accuracy,
macro-averaged recall and precision and confusion matrices, per projection
and after averaging the projections' probability vectors: right = mean of
CC_R and MLO_R, left = mean of CC_L and MLO_L, total = mean of all four
(:func:`combine_projections`), each followed by an argmax.

Density papers also quote Cohen's kappa, because the classes are ordered
(A < B < C < D) and a B read as C is a smaller error than an A read as D:
linear weights charge |i - j|, quadratic weights (i - j)^2. On the same
predictions quadratic kappa reads higher whenever most errors are one class
off, because a one-class error costs 1/9 of the worst error instead of 1/3
(Lehman et al., Radiology 2019, quote linear kappa: 0.67 against the
original readers, 0.78 against a consensus). :func:`kappa_with_ci` adds a
bootstrap 95 % interval (``scipy.stats.bootstrap``, subjects resampled with
replacement), which on 128 subjects is about +-0.1 wide. Screening rules
care about dense (C, D) against non-dense (A, B): :func:`dense_vs_nondense`.
"""

import numpy as np

from course_lib.io import atomic_output

__all__ = [
    "CLASS_NAMES",
    "PROJECTION_FILES",
    "PredictionFileError",
    "read_prediction_file",
    "write_prediction_file",
    "combine_projections",
    "figures_of_merit",
    "weighted_kappa",
    "kappa_with_ci",
    "dense_vs_nondense",
]

CLASS_NAMES = ("A", "B", "C", "D")
#: The original's prediction file of each projection.
PROJECTION_FILES = {"CC_R": "predictions_ccr.txt", "CC_L": "predictions_ccl.txt",
                    "MLO_R": "predictions_mlor.txt", "MLO_L": "predictions_mlol.txt"}


class PredictionFileError(ValueError):
    """A prediction file without the expected rows and four probability columns."""


def read_prediction_file(path, n_rows=None):
    """Read a prediction file of the original's format: rows of 4 probabilities (A, B, C, D).

    ``n_rows`` (128 for the INFN test set) is checked when given. Rows must
    sum to 1 within 1e-3.
    """
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise PredictionFileError(f"{path}: not a table of numbers ({error})") from error
    if table.shape[1] != len(CLASS_NAMES):
        raise PredictionFileError(f"{path}: {table.shape[1]} columns, expected 4 (probabilities of A, B, C, D)")
    if n_rows is not None and len(table) != n_rows:
        raise PredictionFileError(f"{path}: {len(table)} rows, expected {n_rows} (one per test image, "
                                  "in class-folder then file-name order)")
    bad = np.flatnonzero(np.abs(table.sum(axis=1) - 1) > 1e-3)
    if bad.size:
        raise PredictionFileError(f"{path}: rows {bad[:5].tolist()} do not sum to 1: not softmax probabilities")
    return table


def write_prediction_file(path, probabilities):
    """Write probabilities as the original did: space-separated ``%.18e``, no header, atomically."""
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(CLASS_NAMES):
        raise PredictionFileError(f"{path}: expected an (n, 4) array, got {probabilities.shape}")
    with atomic_output(path) as tmp:
        np.savetxt(tmp, probabilities, fmt="%.18e")
    return path


def combine_projections(probabilities):
    """Right, left and total (per subject) probabilities from a dict ``{projection: (n, 4)}``.

    Arithmetic means of the probability vectors, as the original. Sets whose
    projections are absent are left out.
    """
    groups = {"right": ("CC_R", "MLO_R"), "left": ("CC_L", "MLO_L"), "total": ("CC_R", "MLO_R", "CC_L", "MLO_L")}
    shapes = {np.shape(p) for p in probabilities.values()}
    if len(shapes) > 1:
        raise PredictionFileError(f"projections have different shapes {sorted(shapes)}: rows must be the same subjects")
    return {name: np.mean([probabilities[p] for p in members], axis=0)
            for name, members in groups.items() if all(p in probabilities for p in members)}


def figures_of_merit(y_true, probabilities):
    """Accuracy, macro recall and precision, per-class recall, confusion matrix, linear and quadratic kappa.

    >>> fom = figures_of_merit([0, 1, 2, 3], np.eye(4)[[0, 1, 3, 3]])
    >>> fom["accuracy"], fom["confusion"][2].tolist(), round(fom["kappa_linear"], 3)
    (0.75, [0, 0, 0, 1], 0.818)
    """
    from sklearn import metrics

    y_true = np.asarray(y_true)
    y_pred = np.asarray(probabilities).argmax(axis=1)
    labels = list(range(len(CLASS_NAMES)))
    return {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "recall_macro": float(metrics.recall_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)),
        "precision_macro": float(metrics.precision_score(y_true, y_pred, average="macro", labels=labels,
                                                         zero_division=0)),
        "recall_per_class": metrics.recall_score(y_true, y_pred, average=None, labels=labels, zero_division=0),
        "confusion": metrics.confusion_matrix(y_true, y_pred, labels=labels),
        "kappa_linear": weighted_kappa(y_true, y_pred, "linear"),
        "kappa_quadratic": weighted_kappa(y_true, y_pred, "quadratic"),
    }


def weighted_kappa(y_true, y_pred, weights="linear", n_classes=len(CLASS_NAMES)):
    """Cohen's kappa with ``None``, ``"linear"`` or ``"quadratic"`` weights, in NumPy.

    kappa = 1 - sum(w * observed) / sum(w * expected), with w_ij = |i - j|
    (linear) or (i - j)^2 (quadratic) and the expected table the outer
    product of the two marginals; equal to scikit-learn's
    ``cohen_kappa_score`` and fast enough to bootstrap.

    >>> round(weighted_kappa([0, 1, 2, 3], [0, 1, 3, 3], "quadratic"), 3)
    0.917
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    observed = np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, n_classes)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    distance = np.abs(np.subtract.outer(np.arange(n_classes), np.arange(n_classes)))
    weight = {None: (distance > 0).astype(float), "linear": distance, "quadratic": distance**2.0}[weights]
    disagreement = (weight * expected).sum()
    return float(1.0 - (weight * observed).sum() / disagreement) if disagreement else 1.0


def kappa_with_ci(y_true, y_pred, weights="linear", n_resamples=2000, seed=0, confidence=0.95):
    """Weighted Cohen's kappa and its bootstrap confidence interval (percentile method).

    Subjects are resampled in pairs (truth, prediction) with
    ``scipy.stats.bootstrap(paired=True)``; ``seed`` makes the interval repeatable.

    Returns
    -------
    (kappa, low, high) : floats
    """
    from scipy import stats

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)

    def statistic(t, p):
        return weighted_kappa(t, p, weights)

    result = stats.bootstrap((y_true, y_pred), statistic, paired=True, vectorized=False,
                             n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                             random_state=np.random.default_rng(seed))
    return float(statistic(y_true, y_pred)), float(result.confidence_interval.low), float(
        result.confidence_interval.high)


def dense_vs_nondense(y_true, probabilities):
    """Binary dense (C, D) against non-dense (A, B): Cohen's kappa and AUC of P(C) + P(D)."""
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    probabilities = np.asarray(probabilities)
    truth = np.asarray(y_true) >= 2
    score = probabilities[:, 2:].sum(axis=1)
    predicted = probabilities.argmax(axis=1) >= 2
    return {"kappa": float(cohen_kappa_score(truth, predicted)), "auc": float(roc_auc_score(truth, score)),
            "n_dense": int(truth.sum()), "n_total": int(truth.size)}
