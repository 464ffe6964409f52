"""Training GMIC (not part of the official release): the paper's loss and a plain loop.

The loss of Shen et al. (2021), for image-level labels y (benign, malignant):

    L = BCE(y, y_global) + BCE(y, y_local) + BCE(y, y_fusion) + beta * |A|_1

where A is the saliency map and |A|_1 its L1 norm, the SUM over both classes and every
cell (averaged over the batch); the paper searched beta log-uniformly between about
10**-5.5 and 10**-3.5. The term keeps the map sparse so that it points at lesions instead
of lighting up the whole breast. (A mean instead of the sum would make it 2 x 46 x 30 =
2,760 times smaller at full size: no regulariser at all.) ROI retrieval is not differentiable,
so the local network learns from whatever crops the current saliency map selects.

The paper is *weakly* supervised: image labels only. To train from scratch on a CPU in
minutes, the kit's phantom weights add an optional term, ``mask_weight * BCE(A, M)``,
where M marks the saliency cells that touch a lesion of each class (from the phantoms'
masks). ``mask_weight=0`` is the paper's loss.

Batch normalisation: with small batches whose padding fraction varies from view to view,
the running statistics drift away from what the network learnt, and a model that localises
well in training mode does not in eval mode. :func:`recalibrate_batchnorm` re-estimates them
with one pass over training images after each epoch.
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from course_lib import distributed
from course_lib.gmic.model import GMIC
from course_lib.progress import beside, progress_bar

__all__ = ["TrainingSettings", "TrainingHistory", "gmic_loss", "lesion_cells", "recalibrate_batchnorm",
           "train_gmic", "train_phantom_weights"]


@dataclass(frozen=True)
class TrainingSettings:
    """One training run. The ``full`` profile of notebook 05 uses the paper's setting
    (full resolution, Adam); the phantom run uses a reduced window on the CPU."""

    epochs: int = 10
    batch_size: int = 4
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    beta: float = 1e-4  # weight of the saliency L1 term; the paper's range is about 10**-5.5 .. 10**-3.5
    mask_weight: float = 0.0  # 0: the paper's weakly supervised loss; > 0 adds lesion-cell supervision
    seed: int = 0


@dataclass
class TrainingHistory:
    """Per-epoch mean loss (and its parts) and wall time."""

    loss: list = field(default_factory=list)
    parts: list = field(default_factory=list)
    seconds: list = field(default_factory=list)


LESION_CELL_WEIGHT = 50.0


def gmic_loss(output, labels, beta, cell_targets=None, mask_weight=0.0):
    """The GMIC training loss and its parts (a dict of floats, for logging).

    ``labels`` is an (N, 2) float tensor of 0/1 (benign, malignant). ``cell_targets``
    (N, 2, h, w) and ``mask_weight`` add the optional lesion-cell term (see the module
    docstring); without them this is the paper's loss.
    """
    bce = F.binary_cross_entropy
    parts = {
        "global": bce(output.y_global.clamp(1e-6, 1 - 1e-6), labels),
        "local": bce(output.y_local.clamp(1e-6, 1 - 1e-6), labels),
        "fusion": bce(output.y_fusion.clamp(1e-6, 1 - 1e-6), labels),
        # The paper's L1 norm: a sum over classes and cells (the maps are >= 0), mean over the batch.
        "saliency": output.saliency_map.flatten(1).sum(dim=1).mean(),
    }
    total = parts["global"] + parts["local"] + parts["fusion"] + beta * parts["saliency"]
    if mask_weight:
        # Lesion cells are about 1 % of all cells: weigh them up so that the term is not
        # won by predicting "no lesion" everywhere.
        weights = 1.0 + (LESION_CELL_WEIGHT - 1.0) * cell_targets
        parts["cells"] = bce(output.saliency_map.clamp(1e-6, 1 - 1e-6), cell_targets, weight=weights)
        total = total + mask_weight * parts["cells"]
    return total, {name: float(value.detach()) for name, value in parts.items()}


def lesion_cells(benign_masks, malignant_masks, stride=64):
    """(N, 2, H/stride, W/stride) float targets: 1 where a cell touches a lesion of that class."""
    masks = torch.as_tensor(np.stack([benign_masks, malignant_masks], axis=1), dtype=torch.float32)
    return F.max_pool2d(masks, stride)


def recalibrate_batchnorm(model, windows, batch_size=8, device="cpu", max_images=160):
    """Re-estimate every BatchNorm's running mean and variance as plain averages over
    (up to ``max_images``) training windows, without changing any weight.

    Under torchrun every process passes the same windows and runs a share of the batches;
    the averages are then combined, so each process ends with the statistics of all of them.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    starts = range(0, min(len(windows), max_images), batch_size)
    mine = starts[distributed.current().rank::distributed.current().world_size]
    with torch.no_grad():
        for start in mine:
            model(torch.as_tensor(np.asarray(windows[start:start + batch_size], np.float32))[:, None].to(device))
    distributed.average_batchnorm_statistics(model, len(mine))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)


def train_gmic(model: GMIC, windows, labels, settings=TrainingSettings(), device="cpu", log=print,
               after_epoch=None, cell_targets=None):
    """Train ``model`` on normalised windows (N, H, W) float32 and labels (N, 2) in place.

    Returns a :class:`TrainingHistory`. Batches are drawn from a generator seeded with
    ``settings.seed``, so a run is repeatable on the same machine. ``after_epoch(epoch,
    model)`` is called after each epoch (in eval mode), e.g. to validate and keep the best.

    Under ``torchrun`` (:mod:`course_lib.distributed`) each process passes the same data and
    takes its part of every batch: ``settings.batch_size`` is the global batch, so N processes
    compute the gradients of one process (BatchNorm synchronised), only the main process logs,
    and ``after_epoch`` runs on every process (write files where ``distributed.current().is_main``).
    """
    torch.manual_seed(settings.seed)
    generator = np.random.default_rng(settings.seed)
    context = distributed.join(device)
    device = context.device
    log = distributed.main_process_only(log)
    model.to(device).train()
    trained = distributed.wrap(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate,
                                 weight_decay=settings.weight_decay)
    windows = torch.as_tensor(np.asarray(windows, dtype=np.float32))
    labels = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    history = TrainingHistory()
    steps = math.ceil(len(windows) / settings.batch_size)
    bar = progress_bar(settings.epochs * steps, "training GMIC", "step")  # main process only
    log, after_epoch = beside(bar, log), beside(bar, after_epoch)  # their lines do not run into the bar
    for epoch in range(settings.epochs):
        start = time.perf_counter()
        order = generator.permutation(len(windows))
        totals, parts_sum = 0.0, {}
        for step in range(steps):
            index, share = distributed.local_part(order[step * settings.batch_size:(step + 1) * settings.batch_size])
            batch = windows[index][:, None].to(device)
            with distributed.synchronised_batchnorm(model):
                output = trained(batch)
            targets = None if cell_targets is None else cell_targets[index].to(device)
            loss, parts = gmic_loss(output, labels[index].to(device), settings.beta, targets, settings.mask_weight)
            optimiser.zero_grad()
            (loss * share).backward()  # share: 1 on a single process
            optimiser.step()
            totals += float(loss.detach()) * len(index)
            for name, value in parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + value * len(index)
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.4f}", refresh=False)
            bar.update()
        totals, *sums = distributed.all_sum([totals, *parts_sum.values()])
        parts_sum = dict(zip(parts_sum, sums))
        history.loss.append(totals / len(windows))
        history.parts.append({k: v / len(windows) for k, v in parts_sum.items()})
        history.seconds.append(time.perf_counter() - start)
        log(f"epoch {epoch + 1}/{settings.epochs}: loss {history.loss[-1]:.4f} "
            f"({', '.join(f'{k} {v:.3f}' for k, v in history.parts[-1].items())}) "
            f"in {history.seconds[-1]:.0f} s")
        sample = generator.permutation(len(windows))[:160]
        recalibrate_batchnorm(model, windows[sample], settings.batch_size, device)
        if after_epoch is not None:
            model.eval()
            after_epoch(epoch, model)
            model.train()
    bar.close()
    model.eval()
    return history



def train_phantom_weights(recipe, out, command, log=print):
    """Train GMIC on SYNTHETIC phantoms at quarter scale; write ``out``.pt (float16) and its model card.

    The best epoch on the validation phantoms (pointing game + mean AUC) is kept and scored on
    held-out test phantoms. Returns the model card (a dict).
    """
    import hashlib
    import json
    from pathlib import Path

    from course_lib.gmic.config import GMICGeometry
    from course_lib.gmic.data import gmic_phantom_views
    from course_lib.gmic.evaluate import evaluate_localisation, predict_views
    from course_lib.gmic.weights import phantom_model
    from course_lib.io import atomic_output

    def views(n_exams, seed):
        return gmic_phantom_views(n_exams, seed=seed, dense_range=tuple(recipe.dense_range),
                                  lesion_contrast=recipe.lesion_contrast)

    train, validation, test = (views(recipe.train_exams, 1), views(recipe.validation_exams, 2),
                               views(recipe.test_exams, 3))
    log(f"SYNTHETIC views: train {len(train['names'])}, validation {len(validation['names'])}, "
        f"test {len(test['names'])}; positives (benign, malignant) in train: {train['labels'].sum(0)}")

    def score(model, split):
        y, saliency, _ = predict_views(model, split["windows"])
        return evaluate_localisation(y, saliency, split["labels"], split["benign_masks"], split["malignant_masks"])

    best = {"value": -1.0}

    def keep_best(epoch, model):
        result = score(model, validation)
        value = result["pointing_game"] + np.nanmean([result["auc_benign"], result["auc_malignant"]])
        log(f"  validation after epoch {epoch + 1}: {json.dumps({k: round(v, 3) for k, v in result.items()})}")
        if value > best["value"]:
            best.update(value=value, epoch=epoch + 1,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})

    model = phantom_model(seed=0)
    settings = TrainingSettings(epochs=recipe.epochs, batch_size=recipe.batch_size,
                                learning_rate=recipe.learning_rate, beta=recipe.beta,
                                mask_weight=recipe.mask_weight, seed=0)
    targets = lesion_cells(train["benign_masks"], train["malignant_masks"])
    history = train_gmic(model, train["windows"], train["labels"], settings, after_epoch=keep_best,
                         cell_targets=targets, log=log)
    model.load_state_dict(best["state"])
    metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in score(model, test).items()}
    log(f"best epoch {best['epoch']}; held-out SYNTHETIC test: {metrics}")

    out = Path(out)
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    with atomic_output(out.with_suffix(".pt")) as tmp:
        torch.save(half, tmp)
    digest = hashlib.sha256(out.with_suffix(".pt").read_bytes()).hexdigest()
    quarter = GMICGeometry.quarter()
    card = {
        "model": "GMIC (Shen et al. 2021), model index 1 settings, quarter scale",
        "config": {"percent_t": 0.02, "input_shape": list(quarter.window), "crop_shape": list(quarter.roi_shape)},
        "loss": (f"GMIC's loss (BCE on y_global, y_local, y_fusion + beta * L1 norm of the saliency maps, "
                 f"beta {recipe.beta})"
                 + (f" + {recipe.mask_weight} * BCE(saliency, lesion cells): NOT the paper's weakly supervised "
                    "setting" if recipe.mask_weight else ": the paper's weakly supervised setting, image labels only")),
        "data": (f"SYNTHETIC phantoms from course_lib.gmic.data.gmic_phantom_views, dense fraction drawn "
                 f"from {tuple(recipe.dense_range)}, lesion contrast x{recipe.lesion_contrast}: "
                 f"{recipe.train_exams} training exams (seed 1), {recipe.validation_exams} validation exams "
                 f"(seed 2, best epoch), {recipe.test_exams} test exams (seed 3)"),
        "command": command,
        "settings": vars(settings),
        "epochs_run": recipe.epochs,
        "best_epoch": best["epoch"],
        "steps": recipe.epochs * int(np.ceil(len(train["names"]) / recipe.batch_size)),
        "training_loss": [round(v, 4) for v in history.loss],
        "training_seconds": round(sum(history.seconds)),
        "test_metrics": metrics,
        "sha256": digest,
        "dtype": "float16",
        "warning": ("Trained on synthetic phantoms only. Not for clinical use; "
                    "its outputs on real mammograms mean nothing."),
    }
    with atomic_output(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(card, indent=1) + "\n")
    log(f"wrote {out.with_suffix('.pt')} (sha256 {digest}) and its model card {out.with_suffix('.json')}")
    return card
