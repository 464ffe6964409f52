"""Numbers for A-MIL: bag accuracy and AUC with bootstrap intervals, localisation AUC, UCSB benchmark.

- :func:`bag_metrics` gives accuracy (threshold 0.5) and ROC AUC of bag
  probabilities, with 95 % percentile-bootstrap intervals that resample
  *patients* (images of one patient are not independent).
- :func:`localisation_auc` scores a per-patch map (attention weights, or
  Grad-CAM averaged over each patch) against tumour masks: for each malignant
  bag, the ROC AUC of the map for telling tumour patches (more than half
  inside the mask) from the others; the mean over bags. 0.5 is chance.
- :func:`ucsb_benchmark` runs repeated stratified 10-fold cross-validation on the
  UCSB breast-cancer bags: attention MIL, gated attention MIL and a
  mean-pooling logistic regression.
"""

import numpy as np

__all__ = ["bag_metrics", "localisation_auc", "ucsb_benchmark", "format_interval"]


def _auc(labels, scores):
    """ROC AUC as the Mann-Whitney statistic (ties count one half); NaN without both classes.

    The same number as ``sklearn.metrics.roc_auc_score``, without its input checks, which
    cost more than the AUC itself in a 1,000-resample bootstrap.
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if not positives or not negatives:
        return float("nan")
    ranks = rankdata(np.asarray(scores, float))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def bag_metrics(labels, probabilities, groups=None, n_bootstrap=1000, seed=0):
    """Accuracy and AUC with 95 % bootstrap intervals.

    Parameters
    ----------
    labels, probabilities : (n,) arrays
    groups : (n,) array, optional
        Patient of each bag; the bootstrap resamples patients (all of their
        bags at once). Without it, bags are resampled.

    Returns
    -------
    dict
        ``accuracy``, ``auc`` and ``accuracy_ci``, ``auc_ci`` (2-tuples), ``n``.
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, float)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    unique = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in unique]
    rng = np.random.default_rng(seed)
    accuracy = lambda idx: float(np.mean((probabilities[idx] >= 0.5) == labels[idx]))  # noqa: E731
    samples = {"accuracy": [], "auc": []}
    for _ in range(n_bootstrap):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(unique), len(unique))])
        samples["accuracy"].append(accuracy(idx))
        samples["auc"].append(_auc(labels[idx], probabilities[idx]))
    everything = np.arange(len(labels))
    result = {"accuracy": accuracy(everything), "auc": _auc(labels, probabilities), "n": len(labels)}
    for name, values in samples.items():
        values = np.asarray(values)
        values = values[~np.isnan(values)]  # resamples of one class have no AUC
        result[f"{name}_ci"] = (tuple(float(q) for q in np.quantile(values, [0.025, 0.975])) if len(values)
                                else (float("nan"), float("nan")))
    return result


def format_interval(value, interval, decimals=3):
    """``0.917 [0.833, 1.000]``."""
    return f"{value:.{decimals}f} [{interval[0]:.{decimals}f}, {interval[1]:.{decimals}f}]"


def localisation_auc(patch_scores, tumour_fractions, threshold=0.5):
    """Mean over bags of the AUC of a per-patch score for tumour vs non-tumour patches.

    Parameters
    ----------
    patch_scores : list of (n_i,) arrays
        Attention weights, or a pixel map averaged per patch.
    tumour_fractions : list of (n_i,) arrays
        Fraction of each patch inside the tumour mask.
    threshold : float
        A patch is tumour when its fraction is above ``threshold``.

    Returns
    -------
    mean_auc : float
        NaN when no bag has both tumour and non-tumour patches.
    per_bag : list of float
        One AUC per bag that has both kinds of patch (others are left out).
    """
    per_bag = []
    for scores, fractions in zip(patch_scores, tumour_fractions):
        tumour = np.asarray(fractions) > threshold
        if 0 < tumour.sum() < len(tumour):
            per_bag.append(_auc(tumour, scores))
    return (float(np.mean(per_bag)) if per_bag else float("nan")), per_bag


# --------------------------------------------------------------------------- UCSB

def _standardise(train_bags, bags):
    """z-score instance features with the training folds' mean and standard deviation."""
    stacked = np.concatenate(train_bags)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0) + 1e-6
    return [(b - mean) / std for b in bags]


def _fit_predict_attention(train_bags, train_labels, test_bags, gated, seed, epochs, learning_rate):
    """Train a vector attention-MIL on the training folds and return test bag probabilities."""
    import torch

    from course_lib.amil.data import pad_bags
    from course_lib.amil.model import bag_nll, vector_mil

    torch.manual_seed(seed)
    model = vector_mil(train_bags[0].shape[1], gated=gated)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    padded, mask = pad_bags([torch.from_numpy(b) for b in train_bags])
    labels = torch.tensor(np.asarray(train_labels, np.float32))
    for _ in range(epochs):  # full batch of padded bags: 52 bags are one step
        optimiser.zero_grad()
        bag_nll(model(padded, mask).probability, labels).mean().backward()
        optimiser.step()
    with torch.inference_mode():
        padded, mask = pad_bags([torch.from_numpy(b) for b in test_bags])
        return model.eval()(padded, mask).probability.numpy()


def _fit_predict_mean_pooling(train_bags, train_labels, test_bags):
    """Logistic regression on each bag's mean instance (the non-MIL baseline)."""
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(C=0.1, solver="liblinear", random_state=0)
    classifier.fit(np.stack([b.mean(axis=0) for b in train_bags]), train_labels)
    return classifier.predict_proba(np.stack([b.mean(axis=0) for b in test_bags]))[:, 1]


def ucsb_benchmark(bags, labels, repeats=5, folds=10, seed=0, epochs=60, learning_rate=1e-3):
    """Repeated stratified k-fold CV of three bag classifiers on feature-vector bags.

    Features are standardised inside each training fold. Each repeat gives
    one accuracy and one AUC per method, computed over the pooled
    out-of-fold predictions of all 58 bags.

    Returns
    -------
    dict
        ``{method: {"accuracy": (repeats,), "auc": (repeats,)}}`` for
        ``"attention"``, ``"gated attention"`` and ``"mean-pooling LR"``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads cost more than they give
    try:
        return _cross_validate(bags, np.asarray(labels), repeats, folds, seed, epochs, learning_rate)
    finally:
        torch.set_num_threads(threads)


def _cross_validate(bags, labels, repeats, folds, seed, epochs, learning_rate):
    """The loop of :func:`ucsb_benchmark`."""
    from sklearn.model_selection import StratifiedKFold

    methods = ("attention", "gated attention", "mean-pooling LR")
    results = {m: {"accuracy": [], "auc": []} for m in methods}
    for repeat in range(repeats):
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
        predictions = {m: np.zeros(len(labels)) for m in methods}
        for fold, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            scaled = _standardise([bags[i] for i in train], bags)
            train_bags, test_bags = [scaled[i] for i in train], [scaled[i] for i in test]
            fold_seed = 1000 * (seed + repeat) + fold
            for method, gated in (("attention", False), ("gated attention", True)):
                predictions[method][test] = _fit_predict_attention(
                    train_bags, labels[train], test_bags, gated, fold_seed, epochs, learning_rate)
            predictions["mean-pooling LR"][test] = _fit_predict_mean_pooling(train_bags, labels[train], test_bags)
        for method in methods:
            results[method]["accuracy"].append(float(np.mean((predictions[method] >= 0.5) == labels)))
            results[method]["auc"].append(_auc(labels, predictions[method]))
    return {m: {k: np.array(v) for k, v in r.items()} for m, r in results.items()}
