"""Training A-MIL: the study's recipe, without its defects, reproducible to the printed digit.

Recipe (Patil et al., WIECON-ECE 2019): Adam, learning rate 1e-4, betas
(0.9, 0.999), weight decay 1e-4, Bernoulli log-likelihood of the bag label,
one model per magnification. Differences, on purpose:

- each epoch visits every training bag exactly once, in an order drawn from a
  seeded generator (the original data set reshuffled its own list inside every
  item fetch, so an epoch sampled with replacement);
- batches of padded bags (``batch_size`` > 1) are allowed; with
  ``batch_size=1`` training is the study's one bag per step;
- optionally (``augment=True``, not in the study) every training bag is turned
  and re-stained at every visit (:func:`course_lib.amil.data.augment_bag`);
- optionally (``average_from``, not in the study) the model ends as the mean of
  its weights after each of the last epochs: stochastic weight averaging
  (Izmailov et al., UAI 2018), steadier than any single epoch;
- determinism: ``torch.use_deterministic_algorithms(True)``, a fixed number of
  CPU threads and seeds, so the same settings print the same numbers.
"""

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from course_lib import distributed
from course_lib.amil.data import CROP_SHAPE, PATCH_SIZE, augment_bag, grid_shape, image_to_bag, pad_bags
from course_lib.amil.model import AttentionMIL, bag_nll
from course_lib.progress import beside, progress_bar

__all__ = ["TrainSettings", "make_deterministic", "ImageBags", "train_amil", "predict_bags", "model_config",
           "amil_from_config", "save_kit_weights", "load_kit_model", "KIT_WARNING"]

KIT_WARNING = ("Trained on SYNTHETIC histology phantoms only. Not for clinical use; its outputs on real "
               "BreakHis images are a demonstration, not a diagnosis.")


@dataclass(frozen=True)
class TrainSettings:
    """Training settings; the defaults are the study's (20 epochs, one bag per step, a constant learning rate).

    ``lr_schedule="cosine"`` lowers the learning rate after every epoch along half a cosine,
    from ``learning_rate`` towards 0 (not in the study). ``augment=True`` turns each patch and
    re-stains each bag at every visit (:func:`course_lib.amil.data.augment_bag`; not in the study).
    ``average_from=k`` > 0 ends training with the mean of the weights after epochs k, k + 1, ...,
    ``epochs`` (stochastic weight averaging; not in the study).
    """

    epochs: int = 20
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 1
    seed: int = 1
    threads: int = 2
    lr_schedule: str = "constant"
    augment: bool = False
    average_from: int = 0


def make_deterministic(seed, threads=2):
    """Deterministic torch on the CPU: deterministic kernels, ``threads`` threads, seeded."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


class ImageBags:
    """A sequence of bags built on the fly from uint8 images (a bag of 400 patches is 3.8 MB in float32).

    >>> bags = ImageBags(np.zeros((2, 460, 700, 3), np.uint8))
    >>> len(bags), tuple(bags[1].shape)
    (2, (400, 3, 28, 28))
    """

    def __init__(self, images, crop=CROP_SHAPE, patch=PATCH_SIZE, names=None):
        self.images, self.crop, self.patch = images, crop, patch
        self.names = names

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        name = self.names[index] if self.names is not None else f"image {index}"
        return image_to_bag(self.images[index], self.crop, self.patch, name=name)


def _batches(order, batch_size):
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def train_amil(model, bags, labels, settings=TrainSettings(), device="cpu", log=print, after_epoch=None):
    """Train ``model`` on ``bags`` (a sequence of (n_i, ...) tensors) with bag ``labels`` (0/1).

    ``after_epoch(epoch, model)``, if given, is called after each epoch (e.g. to
    score held-out bags); the model is put back in training mode afterwards.

    Under ``torchrun`` (:mod:`course_lib.distributed`) each process passes the same bags and
    takes its part of every batch: ``settings.batch_size`` is the global batch (at least the
    number of processes), the gradients are those of one process, only the main process logs.

    Returns
    -------
    history : dict
        ``loss`` and ``accuracy`` per epoch (training bags, from the forward
        pass that is trained on), ``steps``, the seconds spent building
        bags (``data_seconds``) and in the model (``model_seconds``), and the
        number of epochs whose weights were averaged (``averaged_epochs``, 0 without).
    """
    labels = torch.tensor(np.asarray(labels, dtype=np.float32))
    if len(bags) != len(labels):
        raise ValueError(f"{len(bags)} bags but {len(labels)} labels")
    make_deterministic(settings.seed, settings.threads)
    context = distributed.join(device)
    device = context.device
    log = None if log is None else distributed.main_process_only(log)
    model.to(device).train()
    trained = distributed.wrap(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, betas=(0.9, 0.999),
                                 weight_decay=settings.weight_decay)
    if settings.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {settings.lr_schedule!r}")
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs)
                if settings.lr_schedule == "cosine" else None)
    if not 0 <= settings.average_from <= settings.epochs:
        raise ValueError(f"average_from must be 0 (no averaging) or an epoch 1..{settings.epochs}, "
                         f"got {settings.average_from}")
    average, averaged = None, 0
    generator = torch.Generator().manual_seed(settings.seed)
    augmentation = torch.Generator().manual_seed(settings.seed + 1)  # its own stream: the bag order stays the same
    history = {"loss": [], "accuracy": [], "steps": 0, "data_seconds": 0.0, "model_seconds": 0.0}
    bar = progress_bar(settings.epochs * len(_batches(range(len(bags)), settings.batch_size)), "training A-MIL",
                       "step")  # main process only
    log, after_epoch = beside(bar, log), beside(bar, after_epoch)  # their lines do not run into the bar
    for epoch in range(settings.epochs):
        total_loss, correct = 0.0, 0
        for batch in _batches(torch.randperm(len(bags), generator=generator).tolist(), settings.batch_size):
            start = time.perf_counter()
            # One augmentation seed per bag of the whole batch, on every process: a bag is augmented alike
            # whatever the number of processes.
            seeds = dict(zip(batch, torch.randint(2**62, (len(batch),), generator=augmentation).tolist()))
            batch, share = distributed.local_part(batch)  # all of it on a single process (share 1)
            padded, mask = pad_bags([augment_bag(bags[i], seeds[i]) if settings.augment else bags[i]
                                     for i in batch])
            middle = time.perf_counter()
            target = labels[batch].to(device)
            output = trained(padded.to(device), mask.to(device))
            losses = bag_nll(output.probability, target)
            optimiser.zero_grad()
            (losses.mean() * share).backward()
            optimiser.step()
            history["data_seconds"] += middle - start
            history["model_seconds"] += time.perf_counter() - middle
            history["steps"] += 1
            total_loss += float(losses.detach().sum())
            correct += int(((output.probability.detach() >= 0.5).float() == target).sum())
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(losses.detach().mean()):.4f}", refresh=False)
            bar.update()
        total_loss, correct = distributed.all_sum([total_loss, correct])
        history["loss"].append(total_loss / len(bags))
        history["accuracy"].append(correct / len(bags))
        if log is not None:
            log(f"epoch {epoch + 1}/{settings.epochs}: loss {history['loss'][-1]:.4f}, "
                f"training accuracy {history['accuracy'][-1]:.3f}")
        if schedule is not None:
            schedule.step()
        if settings.average_from and epoch + 1 >= settings.average_from:
            averaged += 1  # a running mean: average += (weights - average) / count
            current = {k: v.detach().clone() for k, v in model.state_dict().items()}
            average = current if average is None else {k: average[k] + (current[k] - average[k]) / averaged
                                                       for k in average}
        if after_epoch is not None:
            after_epoch(epoch, model)
            model.train()
    bar.close()
    if average is not None:
        model.load_state_dict(average)
    history["averaged_epochs"] = averaged
    return history


@torch.inference_mode()
def predict_bags(model, bags, batch_size=4, device="cpu"):
    """Bag probabilities (n,) and attention weights (list of (n_i,) arrays) of a trained model."""
    model.to(device).eval()
    probabilities, attention = [], []
    for batch in _batches(list(range(len(bags))), batch_size):
        members = [bags[i] for i in batch]
        padded, mask = pad_bags(members)
        output = model(padded.to(device), mask.to(device))
        probabilities += output.probability.cpu().tolist()
        attention += [output.attention[k, :len(bag)].cpu().numpy() for k, bag in enumerate(members)]
    return np.array(probabilities), attention


def model_config(gated=False, centre_inputs=False, attention_smoothing=0.0, crop=CROP_SHAPE, patch=PATCH_SIZE):
    """An A-MIL model's settings as a model card's ``config``: what :func:`amil_from_config` rebuilds it from."""
    return {"gated": gated, "centre_inputs": centre_inputs, "attention_smoothing": attention_smoothing,
            "crop": list(crop), "patch": patch}


def amil_from_config(config):
    """A new (untrained) :class:`AttentionMIL` as a card's ``config`` describes it.

    Cards written before attention smoothing existed have no ``attention_smoothing``: none.

    >>> amil_from_config(model_config(attention_smoothing=0.5)).pooling.grid
    (16, 25)
    """
    return AttentionMIL(gated=config["gated"], centre_inputs=config.get("centre_inputs", False),
                        grid=grid_shape(tuple(config.get("crop", CROP_SHAPE)), config.get("patch", PATCH_SIZE)),
                        attention_smoothing=config.get("attention_smoothing", 0.0))


def save_kit_weights(model, path, card):
    """Write ``model``'s weights in float16 (``path``) and its model card (``path`` with .json).

    The card gets the checkpoint's sha256, its dtype and the kit's warning.
    """
    import hashlib

    from course_lib.io import atomic_output

    path = Path(path)
    state = {k: v.detach().to(torch.float16).cpu() for k, v in model.state_dict().items()}
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
    card = dict(card, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), dtype="float16",
                warning=KIT_WARNING)
    with atomic_output(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(card, indent=1) + "\n")
    return card


def load_kit_model(path, device="cpu"):
    """An :class:`AttentionMIL` (or whatever the card's ``model_kind`` says) from kit weights.

    Returns ``(model, card)``; the float16 weights are cast to float32.
    """
    path = Path(path)
    card = json.loads(path.with_suffix(".json").read_text())
    if card.get("model_kind", "amil") == "cnn":
        from course_lib.amil.explain import PatchCNN

        model = PatchCNN(centre_inputs=card["config"].get("centre_inputs", False))
    else:
        model = amil_from_config(card["config"])
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.to(device).eval(), card


def settings_card(settings):
    """A TrainSettings as a plain dict for a model card."""
    return asdict(settings)


def _deviations(settings, config):
    """What ``settings`` and the model ``config`` change in the study's recipe, one phrase each, for a model card."""
    smoothing = config["attention_smoothing"]
    return (([] if not config["centre_inputs"] else ["inputs mapped from [0, 1] to [-1, 1]"])
            + ([f"attention scores smoothed over the patch grid before the softmax (Sm operator of Castro-Macias "
                f"et al. 2024, alpha {smoothing:g}; study: none)"] if smoothing else [])
            + ([f"learning rate {settings.learning_rate:g} (study: 1e-4)"] if settings.learning_rate != 1e-4 else [])
            + ([f"{settings.lr_schedule} learning-rate schedule over the epochs (study: constant)"]
               if settings.lr_schedule != "constant" else [])
            + (["every training bag's patches turned and the bag re-stained at every visit (study: none)"]
               if settings.augment else [])
            + ([f"the mean of the weights after epochs {settings.average_from}-{settings.epochs} (stochastic "
                f"weight averaging; study: the last epoch's weights)"] if settings.average_from else []))


def _training_options(settings, config):
    """The ``course-kit amil train`` options that give ``settings`` and the model ``config``."""
    smoothing = config["attention_smoothing"]
    return (f"--epochs {settings.epochs} --learning-rate {settings.learning_rate:g} "
            f"--batch-size {settings.batch_size} --seed {settings.seed} --threads {settings.threads}"
            + (f" --lr-schedule {settings.lr_schedule}" if settings.lr_schedule != "constant" else "")
            + (" --augment" if settings.augment else "")
            + (f" --average-from {settings.average_from}" if settings.average_from else "")
            + (" --centre-inputs" if config["centre_inputs"] else "")
            + (f" --attention-smoothing {smoothing:g}" if smoothing else ""))


def _crops(images, indices):
    """(len(indices), 3, 448, 700) float tensor of centre crops."""
    from course_lib.amil.data import as_rgb_float, fit_to_crop

    return torch.stack([torch.from_numpy(np.ascontiguousarray(
        fit_to_crop(as_rgb_float(images[i]), CROP_SHAPE)[0])).permute(2, 0, 1) for i in indices])


def train_cnn(model, images, labels, settings=TrainSettings(batch_size=8), device="cpu", log=print):
    """Train the CNN baseline (:class:`~course_lib.amil.explain.PatchCNN`) on whole crops.

    Same optimiser, loss and determinism as :func:`train_amil`; ``images`` are
    uint8 (n, rows, 700, 3) arrays.
    """
    if settings.augment or settings.average_from or settings.lr_schedule != "constant":
        raise ValueError("the CNN baseline trains with the plain recipe: augment, average_from and lr_schedule "
                         "are A-MIL options")
    labels = torch.tensor(np.asarray(labels, dtype=np.float32))
    make_deterministic(settings.seed, settings.threads)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    history = {"loss": [], "accuracy": [], "steps": 0}
    for epoch in range(settings.epochs):
        total_loss, correct = 0.0, 0
        for batch in _batches(torch.randperm(len(images), generator=generator).tolist(), settings.batch_size):
            target = labels[batch].to(device)
            probability = torch.sigmoid(model(_crops(images, batch).to(device))[:, 0])
            losses = bag_nll(probability, target)
            optimiser.zero_grad()
            losses.mean().backward()
            optimiser.step()
            history["steps"] += 1
            total_loss += float(losses.detach().sum())
            correct += int(((probability.detach() >= 0.5).float() == target).sum())
        history["loss"].append(total_loss / len(images))
        history["accuracy"].append(correct / len(images))
        if log is not None:
            log(f"epoch {epoch + 1}/{settings.epochs}: loss {history['loss'][-1]:.4f}, "
                f"training accuracy {history['accuracy'][-1]:.3f}")
    return history


@torch.inference_mode()
def predict_cnn(model, images, batch_size=8, device="cpu"):
    """Malignant probabilities (n,) of the CNN baseline."""
    model.to(device).eval()
    return np.concatenate([torch.sigmoid(model(_crops(images, batch).to(device))[:, 0]).cpu().numpy()
                           for batch in _batches(list(range(len(images))), batch_size)])


def _as_stored(model):
    """Round the weights through float16, as stored, so that the card's metrics are the checkpoint's."""
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})


#: The SYNTHETIC data of the kit's weights: training, held-out and validation patients never overlap (other
#: seeds). The validation patients only give the card its per-epoch curve (to choose the number of epochs
#: without looking at the held-out patients).
PHANTOM_TRAIN_SEED, PHANTOM_TEST_SEED, PHANTOM_VALIDATION_SEED = 1, 2, 3


def _validation_scorer(validation):
    """``score(model)`` -> (bag accuracy, attention localisation AUC) on the validation ``PhantomSet``.

    The localisation AUC is NaN when no validation image is malignant.
    """
    from course_lib.amil.data import patch_fractions
    from course_lib.amil.evaluate import localisation_auc

    labels = validation.table["label"].to_numpy()
    malignant = np.flatnonzero(labels == 1)
    fractions = [patch_fractions(validation.masks[k]) for k in malignant]

    def score(model):
        probabilities, attention = predict_bags(model, ImageBags(validation.images))
        localisation, _ = localisation_auc([attention[k] for k in malignant], fractions)
        return float(np.mean((probabilities >= 0.5) == labels)), localisation
    return score


def _validation_curve(score, curve, best):
    """An ``after_epoch`` hook: validation accuracy and attention localisation AUC appended to ``curve``.

    ``score`` is a :func:`_validation_scorer`. ``best`` (a dict) keeps the epoch and a copy of the
    weights where accuracy + localisation AUC, the lesson's two targets, is highest (the later epoch on a tie).
    """
    def after_epoch(epoch, model):
        accuracy, localisation = score(model)
        curve.append({"epoch": epoch + 1, "accuracy": round(accuracy, 4),
                      "attention_localisation_auc": round(localisation, 4)})
        total = accuracy + (0.0 if np.isnan(localisation) else localisation)  # NaN: no malignant validation image
        if total >= best.get("score", -np.inf):
            best.update(score=total, epoch=epoch + 1,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
    return after_epoch


def train_phantom_kit(kind, out, settings, train_patients=40, images_per_patient=4, test_patients=12,
                      magnification=40, centre_inputs=True, test_images_per_patient=3, validation_patients=8,
                      keep_best_epoch=False, attention_smoothing=0.0, what_helped=None, log=print):
    """Train the kit's weights on SYNTHETIC phantom patients and write them with a model card.

    ``kind``: "amil", "gated" or "cnn". ``validation_patients`` (x 2 images, seed
    :data:`PHANTOM_VALIDATION_SEED`) are scored after every epoch of an A-MIL model:
    the card's ``validation_curve``; with ``keep_best_epoch`` the weights written are those of
    the epoch with the highest validation accuracy + localisation AUC (early stopping on the
    validation patients, never on the held-out ones). With ``settings.average_from`` the averaged
    weights are written and their validation scores are the card's ``validation_of_average``.
    ``attention_smoothing``: alpha of the attention scores' smoothing over the patch grid (A-MIL only;
    :func:`course_lib.amil.model.smooth_over_grid`). ``what_helped``: a sentence for the card.
    Returns the card (with held-out metrics).
    """
    from course_lib.amil.data import patch_fractions, phantom_patients
    from course_lib.amil.evaluate import bag_metrics, localisation_auc

    start = time.perf_counter()
    make_deterministic(settings.seed, settings.threads)  # the weights' initialisation too
    train = phantom_patients(train_patients, images_per_patient, PHANTOM_TRAIN_SEED, magnification)
    test = phantom_patients(test_patients, test_images_per_patient, PHANTOM_TEST_SEED, magnification)
    labels, test_labels = train.table["label"].to_numpy(), test.table["label"].to_numpy()
    config = model_config(kind == "gated", centre_inputs, attention_smoothing)
    if kind == "cnn":
        if keep_best_epoch or attention_smoothing:
            raise ValueError("keep_best_epoch and attention_smoothing are for A-MIL models, not the CNN baseline")
        from course_lib.amil.explain import PatchCNN

        model = PatchCNN(centre_inputs=centre_inputs)
        history = train_cnn(model, train.images, labels, settings, log=log)
        _as_stored(model)
        probabilities = predict_cnn(model, test.images)
        localisation, curve, best, validation_of_average = None, None, {}, None
    else:
        model = amil_from_config(config)
        curve, best, validation_of_average = [], {}, None
        if keep_best_epoch and not validation_patients:
            raise ValueError("keep_best_epoch needs validation patients")
        if keep_best_epoch and settings.average_from:
            raise ValueError("keep_best_epoch keeps one epoch and average_from averages several: choose one")
        score = (_validation_scorer(phantom_patients(validation_patients, 2, PHANTOM_VALIDATION_SEED, magnification))
                 if validation_patients else None)
        hook = _validation_curve(score, curve, best) if score else None
        history = train_amil(model, ImageBags(train.images), labels, settings, log=log, after_epoch=hook)
        if keep_best_epoch:
            model.load_state_dict(best["state"])
        elif settings.average_from and score:
            accuracy, localisation = score(model)
            validation_of_average = {"accuracy": round(accuracy, 4),
                                     "attention_localisation_auc": round(localisation, 4)}
        _as_stored(model)
        probabilities, attention = predict_bags(model, ImageBags(test.images))
        malignant = np.flatnonzero(test_labels == 1)
        localisation, _ = localisation_auc([attention[k] for k in malignant],
                                           [patch_fractions(test.masks[k]) for k in malignant])
    metrics = bag_metrics(test_labels, probabilities, groups=test.table["patient_id"].to_numpy())
    card = {
        "model": {"amil": "attention MIL (Ilse et al. 2018), non-gated, as in Patil et al. 2019",
                  "gated": "gated attention MIL (Ilse et al. 2018)",
                  "cnn": "CNN baseline on whole 448x700 crops (course_lib.amil.explain.PatchCNN)"}[kind],
        "model_kind": "cnn" if kind == "cnn" else "amil",
        "config": config,
        "deviations_from_the_study": _deviations(settings, config)
        + ([f"epoch {best['epoch']} of {settings.epochs} kept on the validation patients (study: the last)"]
           if keep_best_epoch else []),
        "data": (f"SYNTHETIC phantoms from course_lib.amil.data.phantom_patients at {magnification}X: "
                 f"{train_patients} training patients x {images_per_patient} images (seed {PHANTOM_TRAIN_SEED}), "
                 f"{test_patients} held-out patients x {test_images_per_patient} images (seed {PHANTOM_TEST_SEED})"),
        "command": (f"course-kit amil train --model {kind} --train-patients {train_patients} "
                    f"--images-per-patient {images_per_patient} --test-patients {test_patients} "
                    + _training_options(settings, config)
                    + (f" --validation-patients {validation_patients}" if validation_patients != 8 else "")
                    + (" --keep-best-epoch" if keep_best_epoch else "")),
        "settings": settings_card(settings),
        "what_helped": what_helped,
        "steps": history["steps"],
        "training_loss": [round(v, 4) for v in history["loss"]],
        "validation_curve": curve or None,
        "epoch_kept": best["epoch"] if keep_best_epoch else None if settings.average_from else settings.epochs,
        "validation_of_average": validation_of_average,
        "training_seconds": round(time.perf_counter() - start),
        "test_metrics": {"accuracy": round(metrics["accuracy"], 4), "auc": round(metrics["auc"], 4),
                         "attention_localisation_auc": None if localisation is None else round(localisation, 4)},
    }
    return save_kit_weights(model, Path(out) / f"amil_phantom_{kind}.pt", card)


# --------------------------------------------------------------------------- full profile

def _patient_level(table, test_fraction, seed, log):
    """``table`` with a patient-level split: the layout's own, or a new one where it has none or mixes patients."""
    from course_lib.amil.data import patient_split

    if table["split"].notna().all():
        sides = table.groupby("patient_id")["split"].nunique()
        if (sides == 1).all():
            return table
        import warnings

        warnings.warn(f"{int((sides > 1).sum())} patients have images on both sides of the layout's split: "
                      f"split again by patient (test fraction {test_fraction}, seed {seed})", stacklevel=3)
    elif log is not None:
        log(f"no split in the layout: patient-level split made (test fraction {test_fraction}, seed {seed})")
    return patient_split(table, test_fraction, seed)


def train_per_magnification(table, out, settings=TrainSettings(), gated=False, centre_inputs=False,
                            attention_smoothing=0.0, magnifications=None, test_fraction=0.3, split_seed=0,
                            crop=CROP_SHAPE, n_bootstrap=1000, device="cpu", log=print):
    """The ``full`` profile: one A-MIL model per magnification, trained and scored on a patient-level split.

    Parameters
    ----------
    table : pandas.DataFrame
        A BreakHis table (:func:`course_lib.amil.data.breakhis_table` ``.images``). Its
        ``split`` is kept when every patient is on one side; otherwise the table is split
        by patient (``test_fraction``, ``split_seed``), the same split for every magnification.
    out : path-like
        Folder for ``amil_breakhis_<mag>X.pt`` + model card per magnification and
        ``amil_breakhis_summary.csv``.
    settings : TrainSettings
        The study's recipe by default (20 epochs, lr 1e-4, one bag per step).
    magnifications : sequence of int, optional
        Those present in the table by default.
    gated, centre_inputs, attention_smoothing
        The model (:func:`model_config`); the study's by default.
    crop : (int, int)
        Bag crop; the study's 448 x 700 by default (smaller only to test quickly).

    Returns
    -------
    pandas.DataFrame
        One row per magnification: image and patient counts, accuracy and AUC with their
        95 % patient-bootstrap intervals, localisation AUC (where tumour masks exist, as in
        the phantom trees; else NaN) and the weights file name.
    """
    import pandas as pd

    from course_lib.amil.data import ImageFiles, patch_fractions
    from course_lib.amil.evaluate import bag_metrics, localisation_auc
    from course_lib.io import atomic_output

    if not len(table):
        raise ValueError("the BreakHis table is empty: no images to train on")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = _patient_level(table, test_fraction, split_seed, log)
    magnifications = sorted(table["magnification"].unique()) if magnifications is None else magnifications
    config = model_config(gated, centre_inputs, attention_smoothing, crop)
    rows = []
    for magnification in magnifications:
        part = table[table["magnification"] == int(magnification)]
        train_rows, test_rows = part[part["split"] == "train"], part[part["split"] == "test"]
        if not len(train_rows) or not len(test_rows) or train_rows["label"].nunique() < 2:
            raise ValueError(f"{magnification}X: {len(train_rows)} training and {len(test_rows)} test images; "
                             "each magnification needs both classes in training and some test images")
        if log is not None:
            log(f"{magnification}X: {len(train_rows)} training images ({train_rows['patient_id'].nunique()} patients), "
                f"{len(test_rows)} test images ({test_rows['patient_id'].nunique()} patients)")
        start = time.perf_counter()
        make_deterministic(settings.seed, settings.threads)  # the same initialisation for every magnification
        model = amil_from_config(config)
        names = lambda rows: [Path(p).name for p in rows["path"]]  # noqa: E731
        history = train_amil(model, ImageBags(ImageFiles(train_rows["path"]), crop, names=names(train_rows)),
                             train_rows["label"].to_numpy(), settings, device=device, log=log)
        _as_stored(model)
        probabilities, attention = predict_bags(model, ImageBags(ImageFiles(test_rows["path"]), crop,
                                                                 names=names(test_rows)), device=device)
        labels = test_rows["label"].to_numpy()
        metrics = bag_metrics(labels, probabilities, groups=test_rows["patient_id"].to_numpy(),
                              n_bootstrap=n_bootstrap)
        localisation = float("nan")
        masked = [k for k in np.flatnonzero(labels == 1) if isinstance(test_rows["mask_path"].iloc[k], str)]
        if masked:
            masks = ImageFiles([test_rows["mask_path"].iloc[k] for k in masked])
            localisation, _ = localisation_auc([attention[k] for k in masked],
                                               [patch_fractions(masks[j], crop) for j in range(len(masked))])
        weights = f"amil_breakhis_{int(magnification)}X.pt"
        card = {
            "model": ("gated attention MIL (Ilse et al. 2018)" if gated
                      else "attention MIL (Ilse et al. 2018), non-gated, as in Patil et al. 2019"),
            "model_kind": "amil",
            "config": config,
            "magnification": int(magnification),
            "deviations_from_the_study": _deviations(settings, config),
            "data": (f"BreakHis at {magnification}X, patient-level split: {len(train_rows)} training images of "
                     f"{train_rows['patient_id'].nunique()} patients, {len(test_rows)} test images of "
                     f"{test_rows['patient_id'].nunique()} patients"),
            "command": ("course-kit amil train --per-magnification ROOT " + _training_options(settings, config)
                        + (" --model gated" if gated else "")),
            "settings": settings_card(settings),
            "steps": history["steps"],
            "training_loss": [round(v, 4) for v in history["loss"]],
            "training_seconds": round(time.perf_counter() - start),
            "test_metrics": {"accuracy": round(metrics["accuracy"], 4),
                             "accuracy_ci": [round(v, 4) for v in metrics["accuracy_ci"]],
                             "auc": round(metrics["auc"], 4), "auc_ci": [round(v, 4) for v in metrics["auc_ci"]],
                             "attention_localisation_auc": None if np.isnan(localisation) else round(localisation, 4)},
        }
        save_kit_weights(model, out / weights, card)
        rows.append({"magnification": int(magnification), "train_images": len(train_rows),
                     "test_images": len(test_rows), "test_patients": test_rows["patient_id"].nunique(),
                     "accuracy": metrics["accuracy"], "accuracy_low": metrics["accuracy_ci"][0],
                     "accuracy_high": metrics["accuracy_ci"][1], "auc": metrics["auc"],
                     "auc_low": metrics["auc_ci"][0], "auc_high": metrics["auc_ci"][1],
                     "localisation_auc": localisation, "weights": weights})
    summary = pd.DataFrame(rows)
    with atomic_output(out / "amil_breakhis_summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    return summary
