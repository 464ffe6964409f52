"""The lesson's whole run on SYNTHETIC phantoms, in four calls (used by the CLI and notebook 03).

1. :func:`prepare` writes the phantom folder, splits patients (stratified on
   cancer), samples patches and fixes the intensity rule (bit depth, featurewise mean);
2. :func:`train` trains the patch classifier (three stages) then the whole-image
   classifier (two stages);
3. :func:`evaluate` scores held-out exams: AUC with and without flips (bootstrap
   interval), pointing game of the dense patch heatmap and of Grad-CAM;
4. :func:`save` / :func:`load` store the kit's weights (float16) with a model card.
"""

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from course_lib.distributed import synchronise_keras_batchnorm
from course_lib.end2end.data import PHANTOM_SHAPE, image_table, lesion_masks_of, load_images, write_phantom_cases
from course_lib.end2end.patches import SamplingSettings, patient_split, sample_patches
from course_lib.end2end.scaling import featurewise_mean, infer_bit_depth
from course_lib.end2end.train import ImageTrainingSettings, PatchTrainingSettings

__all__ = ["LessonSettings", "prepare", "train", "evaluate", "save", "load", "GRAD_CAM_LAYER", "WARNING"]

#: The layer whose Grad-CAM the lesson scores, per top: the last activation map of the top blocks.
GRAD_CAM_LAYER = {"vgg": "top2_1_relu", "resnet": "top2_unit2_out", "heatmap": "heatmap"}
WARNING = ("Trained on SYNTHETIC phantoms only (lesions 3x more conspicuous than the realistic default). "
           "Not for clinical use; "
           "its outputs on real mammograms mean nothing.")


@dataclass
class LessonSettings:
    """Everything that fixes the lesson's run; the defaults are the recipe of the kit's weights."""

    n_patients: int = 60
    seed: int = 0
    shape: tuple = PHANTOM_SHAPE
    lesion_contrast: float = 3.0
    val_size: float = 0.15
    test_size: float = 0.25
    backbone: str = "kit_small"
    top: str = "vgg"
    top_depths: tuple = (64, 64)
    top_dropout: float = 0.3
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    patch_training: PatchTrainingSettings = field(
        default_factory=lambda: PatchTrainingSettings(end_epochs=(1, 6, 12)))
    image_training: ImageTrainingSettings = field(
        default_factory=lambda: ImageTrainingSettings(end_epochs=(20, 22), learning_rates=(3e-4, 3e-5)))

    def as_dict(self):
        out = asdict(self)
        out["image_training"].pop("history", None)
        return out


@dataclass
class LessonData:
    """What :func:`prepare` made: the image table (with ``split``), the stored images, the rule."""

    root: Path
    patch_dir: Path
    images: "object"
    pixels: np.ndarray
    bits: int
    mean: float
    sampling_report: "object"

    def subset(self, split):
        chosen = (self.images.split == split).to_numpy()
        return self.pixels[chosen], self.images.cancer.to_numpy()[chosen], self.images[chosen]


def prepare(workdir, settings=LessonSettings(), processes=1):
    """Write the phantoms and sample patches under ``workdir``; returns :class:`LessonData`."""
    workdir = Path(workdir)
    root, patch_dir = workdir / "phantom_cases", workdir / "patches"
    if not (root / "images.csv").is_file():
        write_phantom_cases(root, settings.n_patients, settings.seed, settings.shape, settings.lesion_contrast)
    images = image_table(root)
    split = patient_split(images.patient_id, images.cancer, settings.val_size, settings.test_size, settings.seed)
    images["split"] = images.patient_id.map(split)
    report = sample_patches(root, patch_dir, settings.sampling, split=split, processes=processes)
    pixels = load_images(root, list(images.full_png), settings.shape)
    bits = infer_bit_depth(pixels.max())
    mean = featurewise_mean(pixels[(images.split == "train").to_numpy()], bits)
    return LessonData(root, patch_dir, images, pixels, bits, mean, report)


def build_models(settings, n_classes=None, strategy=None):
    """(patch model, whole-image model) of the lesson's architecture, untrained.

    With a ``tf.distribute`` ``strategy`` (:func:`course_lib.distributed.keras_strategy`)
    both are built in its scope with synchronised batch norm; the trainers then compile
    and fit them data-parallel, the settings' batch sizes being the global batches.
    """
    from course_lib.end2end.model import patch_classifier, whole_image_classifier

    n_classes = n_classes or settings.sampling.n_classes
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        patch = patch_classifier(settings.backbone, settings.sampling.patch_size, n_classes)
        whole = whole_image_classifier(patch, settings.shape, top=settings.top, depths=settings.top_depths,
                                       dropout=settings.top_dropout)
        if strategy is not None:
            synchronise_keras_batchnorm(whole)  # the patch model's layers are inside the whole-image model
    return patch, whole


def train(data, settings=LessonSettings(), strategy=None):
    """Train both stages; returns (patch model, whole-image model, {"patch": [...], "image": [...]}).

    ``strategy``: train data-parallel under a ``tf.distribute`` strategy (see :func:`build_models`).
    """
    from course_lib.end2end.model import BACKBONES
    from course_lib.end2end.predict import model_input
    from course_lib.end2end.train import load_patch_split, train_patch_classifier, train_whole_image

    channels = BACKBONES[settings.backbone]
    patch, whole = build_models(settings, strategy=strategy)
    x, y = load_patch_split(data.patch_dir, "train")
    x_val, y_val = load_patch_split(data.patch_dir, "val")
    patch_history = train_patch_classifier(
        patch, settings.backbone, model_input(x, data.bits, data.mean, channels), y, settings.patch_training,
        model_input(x_val, data.bits, data.mean, channels), y_val)
    (train_pixels, train_labels, _), (val_pixels, val_labels, _) = data.subset("train"), data.subset("val")
    image_history = train_whole_image(
        whole, model_input(train_pixels, data.bits, data.mean, channels), train_labels,
        model_input(val_pixels, data.bits, data.mean, channels), val_labels, settings.image_training)
    return patch, whole, {"patch": patch_history, "image": image_history}


def evaluate(data, patch, whole, settings=LessonSettings(), split="test", n_boot=1000):
    """Held-out metrics: AUC (single, flips) with 95 % bootstrap intervals, pointing games."""
    from course_lib.end2end.evaluate import auc_with_ci, pointing_hit
    from course_lib.end2end.model import BACKBONES
    from course_lib.end2end.predict import dense_heatmap, grad_cam, heatmap_geometry, model_input, predict_cancer

    pixels, labels, table = data.subset(split)
    x = model_input(pixels, data.bits, data.mean, BACKBONES[settings.backbone])
    single, flipped = predict_cancer(whole, x, flips=False), predict_cancer(whole, x, flips=True)
    masks = lesion_masks_of(data.root, list(table.full_png), settings.shape)
    has_lesion = masks.reshape(len(masks), -1).any(axis=1)
    size = settings.sampling.patch_size
    stride, window = heatmap_geometry(patch, size)
    malignant = settings.sampling.n_classes - 1 if settings.sampling.n_classes == 3 else None
    heatmaps = dense_heatmap(patch, x[has_lesion], size)
    heat = heatmaps[..., malignant] if malignant is not None else heatmaps[..., [2, 4]].sum(-1)
    cams = grad_cam(whole, x[has_lesion], GRAD_CAM_LAYER[settings.top])
    lesion_masks = masks[has_lesion]
    return {
        "n_images": int(len(labels)), "n_cancer": int(labels.sum()),
        "auc": auc_with_ci(labels, single, n_boot), "auc_flips": auc_with_ci(labels, flipped, n_boot),
        "pointing_heatmap": float(np.mean([pointing_hit(h, m, stride, window) for h, m in zip(heat, lesion_masks)])),
        "pointing_gradcam": float(np.mean([pointing_hit(c, m) for c, m in zip(cams, lesion_masks)])),
        "n_pointing": int(has_lesion.sum()),
        "scores": flipped, "labels": labels,
    }


def save(path, patch, whole, data, settings, histories=None, metrics=None, command=None):
    """Write the kit's float16 weights and their model card (JSON beside them)."""
    from course_lib.end2end.model import top_of
    from course_lib.end2end.train import save_weights_float16

    card = {
        "model": "Shen et al. (Scientific Reports 9:12495, 2019) all-convolutional design, kit_small backbone",
        "settings": settings.as_dict(),
        "intensity": {"bits": data.bits, "featurewise_mean": round(data.mean, 4)},
        "data": (f"SYNTHETIC phantoms (course_lib.end2end.data.write_phantom_cases): {settings.n_patients} "
                 f"patients x 4 views, seed {settings.seed}, lesion contrast x{settings.lesion_contrast}; "
                 f"patient split val {settings.val_size}, test {settings.test_size}"),
        "command": command,
        "history": histories,
        "test_metrics": None if metrics is None else {
            k: (np.round(v, 4).tolist() if isinstance(v, tuple) else round(v, 4) if isinstance(v, float) else v)
            for k, v in metrics.items() if k not in ("scores", "labels")},
        "warning": WARNING,
    }
    return save_weights_float16({"patch": patch, "top": top_of(whole)}, path, card)


def load(path):
    """(patch model, whole-image model, model card) from :func:`save`'s files."""
    from course_lib.end2end.model import top_of
    from course_lib.end2end.train import load_weights

    path = Path(path)
    card = json.loads(path.with_suffix(".json").read_text())
    saved = card["settings"]
    settings = LessonSettings(
        shape=tuple(saved["shape"]), backbone=saved["backbone"], top=saved["top"],
        top_depths=tuple(saved["top_depths"]), top_dropout=saved["top_dropout"],
        sampling=SamplingSettings(**saved["sampling"]))
    patch, whole = build_models(settings)
    load_weights({"patch": patch, "top": top_of(whole)}, path)
    return patch, whole, card
