"""Evaluation: ROC AUC with a bootstrap interval, calibration, operating points, pointing game.

- :func:`auc_with_ci`: ROC AUC and a percentile bootstrap 95 % interval
  (images resampled with replacement, a fixed seed, resamples with one class only
  skipped).
- :func:`calibration_table`: predicted vs observed cancer rate per probability bin,
  and the Brier score.
- :func:`operating_points`: sensitivity and specificity at the thresholds users
  ask about: 0.5, the one reaching a target sensitivity, and Youden's J.
- :func:`pointing_hit`: does the maximum of a map point at the lesion?
"""

import numpy as np

__all__ = ["auc_with_ci", "calibration_table", "operating_points", "pointing_hit", "window_centres"]


def auc_with_ci(labels, scores, n_boot=1000, seed=0, level=0.95):
    """(AUC, low, high): ROC AUC and its percentile bootstrap interval.

    >>> auc, low, high = auc_with_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_boot=200)
    >>> round(auc, 3), low <= auc <= high
    (0.75, True)
    """
    from sklearn.metrics import roc_auc_score

    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    if len(np.unique(labels)) != 2:
        raise ValueError("AUC needs both classes among the labels")
    auc = float(roc_auc_score(labels, scores))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(labels), len(labels))
        if labels[pick].min() != labels[pick].max():
            values.append(roc_auc_score(labels[pick], scores[pick]))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return auc, float(low), float(high)


def calibration_table(labels, scores, n_bins=5):
    """(DataFrame with bin, n, mean predicted, observed rate; Brier score), equal-width bins."""
    import pandas as pd

    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    bins = np.minimum((scores * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            rows.append({"bin": f"{b / n_bins:.1f}-{(b + 1) / n_bins:.1f}", "n": int(inside.sum()),
                         "mean_predicted": float(scores[inside].mean()),
                         "observed_rate": float(labels[inside].mean())})
    brier = float(np.mean((scores - labels) ** 2))
    return pd.DataFrame(rows), brier


def _rates(labels, scores, threshold):
    predicted = scores >= threshold
    sensitivity = float(predicted[labels == 1].mean())
    specificity = float((~predicted[labels == 0]).mean())
    return sensitivity, specificity


def operating_points(labels, scores, target_sensitivity=0.9):
    """Thresholds and their sensitivity/specificity: 0.5, the highest one reaching
    ``target_sensitivity``, and the one maximising Youden's J (sensitivity + specificity - 1)."""
    import pandas as pd
    from sklearn.metrics import roc_curve

    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    thresholds = np.clip(thresholds, 0.0, 1.0)
    reaching = np.flatnonzero(tpr >= target_sensitivity)
    chosen = {
        "0.5 (default)": 0.5,
        f"sensitivity >= {target_sensitivity:g}": float(thresholds[reaching[0]]),
        "Youden's J": float(thresholds[np.argmax(tpr - fpr)]),
    }
    rows = []
    for name, threshold in chosen.items():
        sensitivity, specificity = _rates(labels, scores, threshold)
        rows.append({"rule": name, "threshold": threshold, "sensitivity": sensitivity, "specificity": specificity})
    return pd.DataFrame(rows)


def window_centres(map_shape, image_shape, stride=None, window=None):
    """Image coordinates (rows, cols) of the centre of each map cell and the cell's half size.

    With ``stride`` and ``window`` (a dense patch heatmap), cell i is the patch
    starting at i * stride, centre i * stride + window / 2, and it speaks for the
    whole window. Without them the map is taken to tile the image evenly.
    """
    if stride is None:
        step = np.array(image_shape, float) / np.array(map_shape, float)
        rows = (np.arange(map_shape[0]) + 0.5) * step[0]
        cols = (np.arange(map_shape[1]) + 0.5) * step[1]
        return rows, cols, step / 2
    rows = np.arange(map_shape[0]) * stride + window / 2
    cols = np.arange(map_shape[1]) * stride + window / 2
    return rows, cols, np.array([window / 2, window / 2])


def pointing_hit(score_map, lesion_mask, stride=None, window=None):
    """Pointing game (Zhang et al., ECCV 2016): does the map's maximum fall on the lesion?

    A hit when the lesion covers at least one pixel of the image region the
    maximal cell speaks for (:func:`window_centres`): its patch window for a dense
    heatmap, its own tile for a coarse map such as Grad-CAM's.
    """
    score_map, lesion_mask = np.asarray(score_map), np.asarray(lesion_mask, bool)
    rows, cols, half = window_centres(score_map.shape, lesion_mask.shape, stride, window)
    i, j = np.unravel_index(np.argmax(score_map), score_map.shape)
    top, bottom = int(round(rows[i] - half[0])), int(round(rows[i] + half[0]))
    left, right = int(round(cols[j] - half[1])), int(round(cols[j] + half[1]))
    return bool(lesion_mask[max(top, 0):bottom, max(left, 0):right].any())
