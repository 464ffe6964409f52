"""How well GMIC classifies and localises: image AUC per class, pointing game, saliency Dice.

Used by notebook 05 and by ``course-kit gmic train`` to score a model on held-out phantoms
whose lesion masks are known.
"""

import numpy as np
import torch

__all__ = ["predict_views", "evaluate_localisation"]


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
