"""Training GMIC (not part of the official release): the paper's loss and a plain loop.

The loss of Shen et al. (2021), for image-level labels y (benign, malignant):

    L = BCE(y, y_global) + BCE(y, y_local) + BCE(y, y_fusion) + beta * mean(A)

where A is the saliency map; the last term keeps the map sparse so that it points at
lesions instead of lighting up the whole breast. ROI retrieval is not differentiable,
so the local network learns from whatever crops the current saliency map selects.
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.models.gmic import GMIC


@dataclass(frozen=True)
class TrainingSettings:
    """One training run. The ``full`` profile of notebook 05 uses the paper's setting
    (full resolution, Adam); the phantom run uses a reduced window on the CPU."""

    epochs: int = 10
    batch_size: int = 4
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    beta: float = 1e-4  # weight of the saliency sparsity term
    seed: int = 0


@dataclass
class TrainingHistory:
    """Per-epoch mean loss (and its parts) and wall time."""

    loss: list = field(default_factory=list)
    parts: list = field(default_factory=list)
    seconds: list = field(default_factory=list)


def gmic_loss(output, labels, beta):
    """The GMIC training loss and its parts (a dict of floats, for logging).

    ``labels`` is an (N, 2) float tensor of 0/1 (benign, malignant).
    """
    bce = F.binary_cross_entropy
    parts = {
        "global": bce(output.y_global.clamp(1e-6, 1 - 1e-6), labels),
        "local": bce(output.y_local.clamp(1e-6, 1 - 1e-6), labels),
        "fusion": bce(output.y_fusion.clamp(1e-6, 1 - 1e-6), labels),
        "saliency": output.saliency_map.mean(),
    }
    total = parts["global"] + parts["local"] + parts["fusion"] + beta * parts["saliency"]
    return total, {name: float(value) for name, value in parts.items()}


def train_gmic(model: GMIC, windows, labels, settings=TrainingSettings(), device="cpu", log=print):
    """Train ``model`` on normalised windows (N, H, W) float32 and labels (N, 2) in place.

    Returns a :class:`TrainingHistory`. Batches are drawn from a generator seeded with
    ``settings.seed``, so a run is repeatable on the same machine.
    """
    torch.manual_seed(settings.seed)
    generator = np.random.default_rng(settings.seed)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate,
                                 weight_decay=settings.weight_decay)
    windows = torch.as_tensor(np.asarray(windows, dtype=np.float32))
    labels = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    history = TrainingHistory()
    steps = math.ceil(len(windows) / settings.batch_size)
    for epoch in range(settings.epochs):
        start = time.perf_counter()
        order = generator.permutation(len(windows))
        totals, parts_sum = 0.0, {}
        for step in range(steps):
            index = order[step * settings.batch_size:(step + 1) * settings.batch_size]
            batch = windows[index][:, None].to(device)
            output = model(batch)
            loss, parts = gmic_loss(output, labels[index].to(device), settings.beta)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            totals += float(loss) * len(index)
            for name, value in parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + value * len(index)
        history.loss.append(totals / len(windows))
        history.parts.append({k: v / len(windows) for k, v in parts_sum.items()})
        history.seconds.append(time.perf_counter() - start)
        log(f"epoch {epoch + 1}/{settings.epochs}: loss {history.loss[-1]:.4f} "
            f"({', '.join(f'{k} {v:.3f}' for k, v in history.parts[-1].items())}) "
            f"in {history.seconds[-1]:.0f} s")
    model.eval()
    return history


def predict_views(model, windows, device="cpu", batch_size=8):
    """Run ``model`` on (N, H, W) windows; returns numpy y_fusion (N, 2), saliency (N, 2, h, w)
    and patch locations (N, K, 2)."""
    model.to(device).eval()
    fusion, saliency, locations = [], [], []
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            batch = torch.as_tensor(np.asarray(windows[start:start + batch_size], np.float32))[:, None]
            output = model(batch.to(device))
            fusion.append(output.y_fusion.cpu().numpy())
            saliency.append(output.saliency_map.cpu().numpy())
            locations.append(output.patch_locations.cpu().numpy())
    return np.concatenate(fusion), np.concatenate(saliency), np.concatenate(locations)


def evaluate_localisation(y_fusion, saliency, labels, benign_masks, malignant_masks):
    """Image-level AUC per class, and saliency localisation on the views with a lesion.

    Returns a dict: ``auc_benign``, ``auc_malignant``, ``pointing_game`` (fraction of
    lesion views whose class saliency peaks on the lesion, both classes pooled),
    ``pointing_game_n`` and ``saliency_dice`` (mean Dice of the saliency thresholded at 0.5).
    """
    from sklearn.metrics import roc_auc_score

    from course_lib.metrics import pointing_game_hit, saliency_dice

    result = {}
    for channel, name in enumerate(("benign", "malignant")):
        y = labels[:, channel]
        result[f"auc_{name}"] = float(roc_auc_score(y, y_fusion[:, channel])) if 0 < y.sum() < len(y) else float("nan")
    hits, dices = [], []
    for channel, masks in enumerate((benign_masks, malignant_masks)):
        for index in np.flatnonzero(labels[:, channel]):
            hits.append(pointing_game_hit(saliency[index, channel], masks[index]))
            dices.append(saliency_dice(saliency[index, channel], masks[index]))
    result["pointing_game"] = float(np.mean(hits)) if hits else float("nan")
    result["pointing_game_n"] = len(hits)
    result["saliency_dice"] = float(np.mean(dices)) if dices else float("nan")
    return result
