# %% [markdown]
# # 02 · Breast density (BI-RADS A–D) with a ResNet, and Grad-CAM built by hand
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/breast-imaging-course/course-kit/blob/main/notebooks/02_density.ipynb)
#
# Breast density is how much of the breast is fibroglandular tissue rather than fat. Radiologists grade it in four
# BI-RADS classes: **A** almost entirely fatty, **B** scattered fibroglandular densities, **C** heterogeneously
# dense, **D** extremely dense. Density matters twice: dense tissue hides cancers, and it is itself a risk factor.
# The INFN use case trained one residual network per mammographic projection (CC and MLO, left and right) to
# grade density, then asked *where the network looks* with Grad-CAM.
#
# **What you will learn**
# - the INFN ResNet in Keras 3, counted layer by layer (41 convolutions, 2,262,660 parameters at 650×650);
# - the data pipeline as the original ran it (nearest resize, per-image centring, augmentation without flips);
# - **reproduction 1**: the published figures of merit from the published prediction files, plus what the
#   density literature reports (weighted Cohen's κ with bootstrap intervals, dense vs non-dense);
# - **reproduction 2**: NYU's histogram density model with its real weights, and why float32 moves its numbers;
# - training the four projections' models here, repeatably (one trace for four models), tested on held-out
#   SYNTHETIC phantoms, beside the kit's longer-trained models;
# - Grad-CAM by hand with `tf.GradientTape`, checked against `course_lib`, by finite differences and by
#   randomising the weights, and scored against the phantoms' dense-tissue masks.
#
# **Cite**: Scapicchio C., Lizzi F. et al., ML-INFN use case *CNN breast density classifier explainability* (2021),
# github.com/camillascapicchio/MLINFN-CNNBreastDensityClassifier-Explainability; He K. et al., *Deep residual
# learning for image recognition*, CVPR 2016; Selvaraju R. R. et al., *Grad-CAM*, ICCV 2017; Adebayo J. et al.,
# *Sanity checks for saliency maps*, NeurIPS 2018; Wu N., Geras K. J. et al., *Breast density classification with
# deep convolutional neural networks*, ICASSP 2018 (github.com/nyukat/breast_density_classifier, BSD-2);
# Lehman C. D. et al., *Mammographic breast density assessment using deep learning*, Radiology 290:52–58 (2019).
#
# | profile | hardware | run time |
# |---|---|---|
# | `smoke` | 2-core laptop CPU, no training | 36 s measured on an idle 2-core VM (papermill in CI), 63 s on a busy one (load average 6.6) |
# | `default` | 2-core laptop CPU; trains the four projections at 48×48 (6 epochs, one shared trace), then the kit's phantom-trained 64×64 models | 2 min 20 s measured on an idle 2-core VM (nbval in CI), 3 min 45 s – 4 min 50 s on a busy one (load average 6–7) |
# | `full` | GPU; your INFN-layout data set (or phantoms) at 650×650, the original recipe | hours (the original: about 24 h per projection on a K80) |
#
# *Not for clinical use. The kit's density models were trained on SYNTHETIC phantoms only; what they say about
# real mammograms means nothing. Synthetic images are always labelled SYNTHETIC.*

# %%
# Setup. On Google Colab this clones the kit at the release this notebook belongs to and installs
# this lesson's extra on top of Colab's own packages (the kit sets lower bounds only, so Colab's
# torch, tensorflow and ipywidgets stay). Running it again changes nothing.
# Anywhere else it does nothing: use `make course`, or the conda environment.yml (see README).
import os
import subprocess
import sys

KIT_RELEASE, KIT_EXTRA = "v0.2.0", "density"
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
    smoke=dict(input_size=64, train_size=48, train_patients=8, train_epochs=0, train_recipe="short", train_batch=8,
               test_patients=3, bootstrap=200, mask_phantoms=2),
    default=dict(input_size=64, train_size=48, train_patients=60, train_epochs=6, train_recipe="short",
                 train_batch=8, test_patients=20, bootstrap=2000, mask_phantoms=6),
    full=dict(input_size=650, train_size=650, train_patients=100, train_epochs=100, train_recipe="original",
              train_batch=4, test_patients=20, bootstrap=2000, mask_phantoms=6),
)
print(PROFILE, settings)

# %%
print(course_lib.environment_report(with_device=False))

# %%
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
import keras

tf.get_logger().setLevel("ERROR")

from course_lib import data
from course_lib.density.train import configure_determinism

print(configure_determinism(seed=0, threads=2))  # seeds, deterministic ops, fixed thread counts
print(course_lib.seed_everything(0), "tensorflow", tf.__version__, "keras", keras.__version__)
WORK = Path(tempfile.mkdtemp(prefix="course-02-"))  # phantoms and outputs of this run

# %% [markdown]
# ## 0. The question: four real mammograms, four density classes
#
# The INFN repository ships 16 real, preprocessed test images: one per class and projection. Here is the right
# CC projection of each class. The images are 8-bit, cropped to the breast, with the background set to 0 (and in
# MLO views the pectoral muscle replaced by the mean breast grey level). Can a network learn to tell them apart?

# %%
from course_lib.datasets.density import DENSITY_CLASSES, PROJECTIONS
from course_lib.density.data import load_grey8

real_paths = {}
for projection in PROJECTIONS:
    for label in DENSITY_CLASSES:
        key = next((k for k in data.load_registry() if k.startswith(f"infn-density/myproject/TestSet/{projection}/test/{label}/")), None)
        path = data.try_fetch(key) if key else None
        if path is not None:
            real_paths[projection, label] = path
print(f"{len(real_paths)} of 16 real INFN TestSet images available")

if real_paths:
    fig, axes = plt.subplots(1, 4, figsize=(10, 3.6))
    for ax, label in zip(axes, DENSITY_CLASSES):
        if ("CC_R", label) in real_paths:
            ax.imshow(load_grey8(real_paths["CC_R", label]), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"BI-RADS {label} (real, INFN TestSet)", fontsize=8)
        ax.set_axis_off()
    plt.show()

# %% [markdown]
# ## 1. The model, counted
#
# A stem (3×3 convolution with stride 2, batch norm, LeakyReLU, 3×3 max pool) feeds four stages of three
# *bottleneck* residual modules: 1×1 convolution down to the module's width, 3×3 convolution (strided in the
# first module of stages 2–4), 1×1 back up, batch norm after each, and a shortcut added at the end (a strided 1×1
# convolution when the shape changes). Then dropout 0.2, global average pooling and a 4-way softmax.
# Two details of the original that are easy to get wrong: its LeakyReLU keeps Keras' default negative slope
# **0.3** (PyTorch's default is 0.01), and stages 3 and 4 do *not* double the width (128/256 throughout).
# Every layer has a name that says what it is, so Grad-CAM can name its target: the original's is
# `stage4_block3_add`, the 12th and last addition.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.density.model import GRADCAM_LAYER, build_density_resnet, layer_summary

original_size = build_density_resnet(650)
for key, value in layer_summary(original_size).items():
    print(f"{key:22} {value:>10,}")
for name in ("stem_pool", "stage1_block3_out", "stage2_block3_out", "stage3_block3_out", GRADCAM_LAYER):
    print(f"{name:22} {str(original_size.get_layer(name).output.shape[1:]):>16}")
print("the INFN README says: 41 convolutional layers, about 2 million parameters")

# %% [markdown]
# The convolutions do not depend on the image size, so a 64×64 model has exactly the same parameters: the CPU
# lessons below train at 48×48 and use the kit's 64×64 models (the feature map of `stage4_block3_add` is then
# 2×2 instead of 21×21).

# %%
del original_size
model_size = settings["input_size"]
print(f"input {model_size}x{model_size}: {build_density_resnet(model_size).count_params():,} parameters")

# %% [markdown]
# ## 2. Images in, model inputs out
#
# The original read its PNGs with Keras' directory iterator: grey repeated into 3 channels, resized to 650×650
# **ignoring the aspect ratio with nearest-neighbour** interpolation, divided by 255, and centred on each image's
# own mean (no division by the standard deviation). Training added random rotations (±10°), shifts (±20 %) and
# zooms (0.8–1.2, separately in x and y), and no flips: a flipped left breast would look like a right one, and
# each projection has its own model. We build the deterministic part by hand and check it against `course_lib`.

# %%
from PIL import Image

from course_lib.density.data import centre_images, load_images

example = real_paths.get(("CC_R", "C"))
if example is not None:
    grey = load_grey8(example)
    resized = np.asarray(Image.fromarray(grey).resize((model_size, model_size), Image.Resampling.NEAREST))
    by_hand = resized.astype(np.float32) / 255.0
    by_hand = np.repeat((by_hand - by_hand.mean())[..., None], 3, axis=-1)
    kit = centre_images(load_images([example], model_size))[0]
    print(f"stored {grey.shape} uint8 -> {by_hand.shape}; max |by hand - course_lib| = {np.abs(by_hand - kit).max():.1e}")

# %% [markdown]
# Keras 3's random preprocessing layers fill the pixels that a rotation or shift uncovers with `"reflect"` by
# default; the original's `ImageDataGenerator` (removed from Keras 3) filled with `"nearest"`, repeating the edge
# pixel. `course_lib.density.data.augmentation_layers` sets `fill_mode="nearest"` (and bilinear interpolation, the
# generator's) explicitly. Look at the image edges: reflected breasts would appear as mirrored ghosts.

# %%
from course_lib.density.data import AUGMENTATION, augmentation_layers

print(AUGMENTATION)
if example is not None:
    batch = np.repeat(load_images([example], 128)[..., None].astype(np.float32), 4, axis=0)
    fig, axes = plt.subplots(1, 5, figsize=(11, 2.6))
    axes[0].imshow(batch[0, ..., 0], cmap="gray"), axes[0].set_title("input", fontsize=8)
    reflect = keras.layers.RandomTranslation(0.3, 0.3, seed=3)  # Keras 3 default fill: reflect
    axes[1].imshow(np.asarray(reflect(batch[:1], training=True))[0, ..., 0], cmap="gray")
    axes[1].set_title("Keras default fill (reflect)", fontsize=8)
    augmented = np.asarray(augmentation_layers(seed=3)(batch[1:], training=True))
    for ax, image in zip(axes[2:], augmented):
        ax.imshow(image[..., 0], cmap="gray"), ax.set_title("original's (nearest fill)", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    plt.show()

# %% [markdown]
# ## 3. Reproduction 1: the published figures of merit
#
# The INFN repository publishes its test predictions: per projection, 128 rows (one per test subject) of four
# softmax probabilities, in `%.18e` text, with no image names. The labels are not stored: rows are in the test
# iterator's order, class folder A, B, C, D, then file names sorted as strings, so the labels are 14×A, 51×B, 50×C,
# 13×D (the original CAM notebook confirms the order: its CC_R class-A patients are listed as 1203, 1215, 1218, …).
# Subjects are combined by averaging probability vectors: right = CC_R + MLO_R, left = CC_L + MLO_L, total = all four.

# %%
# NBVAL_CHECK_OUTPUT
import pandas as pd

from course_lib.datasets.density import infn_test_labels
from course_lib.density.evaluate import (PROJECTION_FILES, combine_projections, dense_vs_nondense,
                                         figures_of_merit, kappa_with_ci, read_prediction_file)

y_infn = infn_test_labels()
published = {}
for projection, name in PROJECTION_FILES.items():
    path = data.try_fetch(f"infn-density/myproject/Predictions/{name}")
    if path is not None:
        published[projection] = read_prediction_file(path, n_rows=len(y_infn))
published_sets = {**published, **combine_projections(published)}
rows = {name: figures_of_merit(y_infn, p) for name, p in published_sets.items()}
table = pd.DataFrame({name: {"accuracy": f["accuracy"], "recall (macro)": f["recall_macro"],
                             "precision (macro)": f["precision_macro"], "linear κ": f["kappa_linear"],
                             "quadratic κ": f["kappa_quadratic"]} for name, f in rows.items()}).T
print(table.round(4).to_string())
print("published (INFN README, total): accuracy 0.81, recall 0.81, precision 0.80")

# %% [markdown]
# The total row reproduces the published numbers (accuracy 0.8125, macro recall 0.8127, macro precision 0.8026).
# Averaging helps: every combined set beats its single projections. Its confusion matrix:

# %%
import seaborn as sns

if "total" in rows:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, name in zip(axes, ("CC_R", "MLO_R", "total")):
        sns.heatmap(rows[name]["confusion"], annot=True, fmt="d", cmap="Greens", cbar=name == "total", ax=ax,
                    xticklabels=DENSITY_CLASSES, yticklabels=DENSITY_CLASSES)
        ax.set(title=f"{name} (published predictions)", xlabel="Predicted label", ylabel="True label")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Density classes are **ordered**: reading a B as C is a smaller error than reading an A as D. Accuracy treats
# both the same; Cohen's κ corrects agreement for chance and, weighted, charges each error by its distance:
# linear weights |i − j|, quadratic weights (i − j)². Quadratic κ always reads higher than linear κ when most
# errors are one class off, as here (a one-class error costs 1/9 of the worst one instead of 1/3); that is why
# radiology papers usually quote **linear** κ (Lehman et al., Radiology 2019: 0.67 against the original
# radiologists, 0.78 against a consensus). On 128 subjects the bootstrap intervals are wide: about ±0.08.

# %%
# NBVAL_CHECK_OUTPUT
if "total" in published_sets:
    total_pred = published_sets["total"].argmax(axis=1)
    for weights in ("linear", "quadratic"):
        kappa, low, high = kappa_with_ci(y_infn, total_pred, weights, n_resamples=settings["bootstrap"])
        print(f"total, {weights:9} κ = {kappa:.3f}  (bootstrap 95 % CI {low:.3f} – {high:.3f})")
    binary = dense_vs_nondense(y_infn, published_sets["total"])
    print(f"dense (C+D) vs non-dense: κ = {binary['kappa']:.3f}, AUC of P(C)+P(D) = {binary['auc']:.3f} "
          f"({binary['n_dense']} dense of {binary['n_total']})")
    print("per-class recall (total):", np.round(rows["total"]["recall_per_class"], 3).tolist())

# %% [markdown]
# The published CC_R training history is also in the repository (four text files, one value per epoch). The best
# validation accuracy, 0.7961 at epoch 46, is the `weights-improvement-46-0.80.h5` file name.

# %%
# NBVAL_CHECK_OUTPUT
curves = {}
for name in ("acc_train", "acc_val", "loss_train", "loss_val"):
    path = data.try_fetch(f"infn-density/myproject/CC_R_model/{name}.txt")
    if path is not None:
        curves[name] = np.loadtxt(path)
if len(curves) == 4:
    best = int(np.argmax(curves["acc_val"]))
    print(f"epochs {len(curves['acc_val'])}; best val accuracy {curves['acc_val'][best]:.4f} at epoch {best + 1}; "
          f"lowest val loss {curves['loss_val'].min():.3f} at epoch {int(np.argmin(curves['loss_val'])) + 1}")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, metric in zip(axes, ("acc", "loss")):
        ax.plot(curves[f"{metric}_train"], label="train"), ax.plot(curves[f"{metric}_val"], label="validation")
        ax.set(title=f"INFN CC_R, published {metric}", xlabel="epoch"), ax.legend()
    plt.show()

# %% [markdown]
# The model itself, `weights-improvement-46-0.80.h5`, is public too but not mirrored (9.4 MB), so only the `full`
# profile fetches it. It is a Keras 2 file, and Keras 3 cannot read it into this architecture by itself: its layer
# names (`conv2d_17` ...) are Keras 2's automatic ones, which depend on what the training session had built
# before. `course_lib.density.keras2_weights` matches each weighted layer to the kit's ResNet by its place in the
# graph, its kind and its weight shapes, and says what differs if the file is not this architecture. With the
# INFN's own CC_R weights, the kit's Keras 3 ResNet becomes the published model; it then classifies the real
# CC_R TestSet images.

# %%
from course_lib.density.keras2_weights import load_published_infn_model
from course_lib.density.predict import predict_images

infn = load_published_infn_model() if PROFILE == "full" else None  # None, with the reason printed, when unavailable
if infn is not None:
    infn_model, infn_report = infn
    print(infn_report.summary())
    present = [label for label in DENSITY_CLASSES if ("CC_R", label) in real_paths]
    if present:
        images = load_images([real_paths["CC_R", label] for label in present], infn_model.input_shape[1])
        said = predict_images(infn_model, images).argmax(axis=1)
        print("real CC_R TestSet, true / INFN model:",
              ", ".join(f"{label}/{DENSITY_CLASSES[k]}" for label, k in zip(present, said)))

# %% [markdown]
# ## 4. Reproduction 2: NYU's histogram model, with its real weights
#
# NYU's density repository (BSD-2) ships, beside its CNN, a baseline small enough to write in five lines: each
# of the four views is standardised on its own, a 50-bin histogram of the standardised values (over their own
# min..max) is normalised to sum 1, the four histograms are concatenated (L-CC, R-CC, L-MLO, R-MLO) and a
# two-layer perceptron (200 → 100 → 4) reads them. We build one histogram by hand, then run the model on NYU's
# sample exam and compare with the probabilities the README publishes.

# %%
from course_lib.density.histogram_model import (CHECKPOINT_KEYS, PUBLISHED_SAMPLE_PROBABILITIES, VIEW_ORDER,
                                                histogram_model_predict, load_histogram_weights, view_histogram)

checkpoint = [data.try_fetch(key) for key in CHECKPOINT_KEYS]
nyu_paths = {view: data.try_fetch(f"nyu-density/images/{view}.png") for view in VIEW_ORDER}
nyu_available = all(p is not None for p in checkpoint) and all(p is not None for p in nyu_paths.values())
if nyu_available:
    nyu_views = {view: load_grey8(path) for view, path in nyu_paths.items()}
    x = nyu_views["L-CC"].astype(np.float64)
    z = (x - x.mean()) / x.std()
    counts, edges = np.histogram(z, bins=50)
    by_hand = counts / counts.sum()
    print(f"L-CC {x.shape}: {len(edges) - 1} bins from {edges[0]:.3f} to {edges[-1]:.3f}; "
          f"max |by hand - course_lib| = {np.abs(by_hand - view_histogram(nyu_views['L-CC'])).max():.1e}")

# %%
# NBVAL_CHECK_OUTPUT
if nyu_available:
    nyu_weights = load_histogram_weights(str(checkpoint[0])[: -len(".index")])
    print("published      ", np.round(PUBLISHED_SAMPLE_PROBABILITIES, 4))
    for dtype in (np.float64, np.float32):
        p = histogram_model_predict(nyu_views, nyu_weights, dtype)
        gap = np.abs(p - PUBLISHED_SAMPLE_PROBABILITIES).max()
        print(f"{dtype.__name__:8} ours  ", np.round(p, 4), f"max |Δ| {gap:.4f}, class {'ABCD'[p.argmax()]}")
    f64 = np.concatenate([view_histogram(nyu_views[v], np.float64) for v in VIEW_ORDER])
    f32 = np.concatenate([view_histogram(nyu_views[v], np.float32) for v in VIEW_ORDER])
    moved = np.abs(f64 - f32) * np.concatenate([nyu_views[v].size * np.ones(50) for v in VIEW_ORDER])
    print(f"float32 vs float64: {int(np.sum(moved > 0.5))} of 200 histogram bins hold a different number of pixels")
else:
    print("skipped: NYU's sample exam or weights unavailable (course-kit fetch --list)")

# %% [markdown]
# In float64 the model gives the published probabilities to better than 1e-3 and the same class (B). In float32
# the standardised values are rounded differently, and a pixel whose value sits exactly on a bin edge falls into
# the neighbouring bin: with only 256 grey levels, a whole grey level (thousands of pixels) can move at once. The
# probabilities move by about 2e-3. Exact reproduction needs the same arithmetic, not only the same weights.
#
# ## 5. Training, repeatably: four projections, in this notebook
#
# The original trained each projection's model with the string `"sgd"` (plain SGD, learning rate 0.01, no
# momentum: the RMSprop and Nesterov optimisers its script also builds are never used), batch 4, 100 epochs,
# ReduceLROnPlateau on the validation loss and the best model by validation accuracy: `RECIPES["original"]`,
# the `full` profile. On a laptop CPU we train the four projections' models here, on SYNTHETIC phantoms, with a
# short recipe that is **not** the original's, and we say what helped (section 5.2). Seeds,
# `enable_op_determinism()` and fixed thread counts make the numbers identical on every run.
#
# The training set has new phantom patients (seed 2), split by patient into training and validation; the test
# set is another draw (seed 1): patients no model has seen, the same for every model below.

# %%
from course_lib.density.predict import predict_images
from course_lib.density.train import PHANTOM_SHAPE, RECIPES, phantom_split_arrays, train_projections
from course_lib.phantoms.density_set import build_density_phantom_dataset

print("original:", RECIPES["original"])
print("short:   ", RECIPES["short"])
train_set = build_density_phantom_dataset(WORK / "train", settings["train_patients"], shape=PHANTOM_SHAPE, seed=2,
                                          splits={"train": 0.8, "validation": 0.2})
test_set = build_density_phantom_dataset(WORK / "heldout", settings["test_patients"], shape=PHANTOM_SHAPE,
                                         seed=1, splits={"test": 1.0})
print("SYNTHETIC training set, images per projection:",
      (train_set.groupby("split").size() // len(PROJECTIONS)).to_dict())
print("SYNTHETIC held-out test set:", len(test_set) // len(PROJECTIONS), "patients, each in the 4 projections")

# %% [markdown]
# ### 5.1 One trace for four models
#
# The first time Keras runs a training step it *traces* it into a TensorFlow graph: forward pass, gradients and
# Adam's update of each of the 166 trainable weight tensors (two moment buffers each). For this network that takes
# about 30 s on a 2-core CPU (15 s with plain SGD, whose update is simpler; `jit_compile=True` does not shorten it),
# longer than a projection's whole training here, and Keras traces again for every new model. So `train_projections`
# builds and compiles **one** model and, before each projection, puts back its initial weights and the optimizer's
# initial state; afterwards it copies the trained weights into a model of the projection's own. Each model is
# exactly the one four separate runs would give (a test checks it), three traces sooner.

# %%
# NBVAL_CHECK_OUTPUT
train_size = settings["train_size"]
trained = {}
if settings["train_epochs"]:  # the smoke profile skips training (tracing the step alone takes ~30 s)
    trained = train_projections(train_set, PROJECTIONS, train_size, settings["train_recipe"],
                                epochs=settings["train_epochs"], batch_size=settings["train_batch"])
    print(f"{train_size}x{train_size} inputs, recipe {settings['train_recipe']!r}, batch {settings['train_batch']}, "
          f"{settings['train_epochs']} epochs")
    for projection, (model, history) in trained.items():
        print(f"{projection:5} train loss per epoch {np.round(history['loss'], 3).tolist()}")
else:
    print("training skipped in this profile")

# %%
if trained:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for projection, (model, history) in trained.items():
        epochs = np.arange(1, len(history["loss"]) + 1)
        axes[0].plot(epochs, history["loss"], "o-", label=projection)
        axes[1].plot(epochs, history["accuracy"], "o-", label=projection)
        axes[2].plot(epochs, history["val_accuracy"], "o-", label=projection)
    for ax, title in zip(axes, ("training loss", "training accuracy (batch statistics)",
                                "validation accuracy (moving statistics)")):
        ax.set_title(title, fontsize=9), ax.set_xlabel("epoch"), ax.legend(fontsize=7)
    axes[2].axhline(0.25, color="grey", lw=0.8, ls=":")
    fig.suptitle("Short recipe on SYNTHETIC phantoms, one model per projection", fontsize=10)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# The training loss falls in every projection, but the validation accuracy sits at chance (0.25) for the first two
# epochs and then jumps about. The model is not failing: at inference batch normalisation uses its *moving* averages
# of the batch statistics, and after a few dozen steps these still mostly remember their initial values (mean 0,
# variance 1). The short recipe therefore recomputes them exactly on the training images at the end (one forward
# pass, `recalibrate_batch_norm`). Now the test: each projection on the held-out patients, then the probabilities
# averaged as the original did (right = CC_R + MLO_R, left = CC_L + MLO_L, total = all four).

# %%
def print_figures(probabilities, labels):
    """Accuracy, quadratic and linear κ of each projection and of their left/right/total averages."""
    for name, p in {**probabilities, **combine_projections(probabilities)}.items():
        f = figures_of_merit(labels, p)
        print(f"{name:6} accuracy {f['accuracy']:.3f}  QWK {f['kappa_quadratic']:.3f}  "
              f"linear κ {f['kappa_linear']:.3f}")
    print("chance: accuracy 0.25, κ 0")


# %%
# NBVAL_CHECK_OUTPUT
if trained:
    our_probabilities = {}
    for projection, (model, history) in trained.items():
        images, y_test, _ = phantom_split_arrays(test_set, projection, train_size)["test"]
        our_probabilities[projection] = predict_images(model, images)
    print(f"trained in this notebook, tested on {len(y_test)} held-out SYNTHETIC patients:")
    print_figures(our_probabilities, y_test)

# %% [markdown]
# ### 5.2 What helped (and what did not)
#
# Measured on this CPU with the held-out patients above; none of it is the original's recipe:
#
# - **Adam** (lr 1e-3) instead of plain SGD, **batch-norm momentum 0.9** instead of 0.99, and the batch-norm
#   statistics **recomputed** after training: without them a short run predicts one class.
# - **Batch 8** instead of the kit weights' 16: twice the updates for the same images, at about 1.4× the time
#   per epoch. With batch 16 (everything else equal) total accuracy was 0.713, QWK 0.871; with 8, the numbers above.
# - **48×48 inputs** instead of 64×64: about half the compute per image, so more images and steps in the same
#   time (64×64 with 50 patients per class and batch 16 gave total accuracy 0.662, QWK 0.872).
# - **Averaging the four projections**: every single projection is weaker than their average, as in the
#   published predictions (section 3).
# - **Easier phantoms than real breasts**: a phantom's dense fraction is drawn from the middle 60 % of its class
#   band (`course_lib.phantoms.density_set`), so no phantom sits on a class boundary, where real readers disagree.
# - **One trace** instead of four (section 5.1): it changes no number, only the time.
# - Not helping: `jit_compile=True` (no shorter trace, no faster steps on this CPU); more data and epochs at
#   batch 16 (7 epochs on 256 images per projection gave the same total accuracy, 0.713, as 6 on 192).
#
# ### 5.3 Longer training: the kit's models
#
# The kit's own models, in `pretrained/`, come from the same code with more phantoms and steps
# (`course-kit density train --phantoms 100 --epochs 6 OUT`: 64×64, batch 16, 280 training images per projection;
# the model card gives the details). The sections after this one use them. Here they are on the same held-out
# patients:

# %%
from course_lib.density.model import weight_file_name
from course_lib.density.predict import write_predictions
from course_lib.density.train import PHANTOM_INPUT_SIZE, load_weights_float16

kit_models = {}
for projection in PROJECTIONS:
    path = data.try_fetch(f"course-kit/pretrained/{weight_file_name(projection)}")
    if path is not None:
        kit_models[projection] = load_weights_float16(build_density_resnet(PHANTOM_INPUT_SIZE), path)
print(f"kit phantom models loaded: {sorted(kit_models)}")

# %%
# NBVAL_CHECK_OUTPUT
kit_probabilities, kit_rows = {}, {}
for projection, model in kit_models.items():
    images, labels, kit_rows[projection] = phantom_split_arrays(test_set, projection, PHANTOM_INPUT_SIZE)["test"]
    kit_probabilities[projection] = predict_images(model, images)
    write_predictions(WORK / "predictions", projection, kit_probabilities[projection], kit_rows[projection]["path"])
if kit_probabilities:
    y_test = labels
    print(f"kit models, tested on {len(y_test)} held-out SYNTHETIC patients:")
    print_figures(kit_probabilities, y_test)

# %% [markdown]
# The prediction files are written in the original's format (and read back with the same checks as the published
# ones), with the image names beside them so that nothing depends on the folder order:

# %%
if kit_probabilities:
    written = sorted(p.name for p in (WORK / "predictions").iterdir())
    again = read_prediction_file(WORK / "predictions" / PROJECTION_FILES["CC_L"], n_rows=len(y_test))
    print(written, "round trip exact:", bool(np.array_equal(again, kit_probabilities["CC_L"])))

# %% [markdown]
# ## 6. Grad-CAM, by hand
#
# Grad-CAM asks: which feature maps of a layer raise the score of class c, and where are they active? With the
# layer's activations A (h×w×C) and the class score y_c:
#
# 1. gradients ∂y_c/∂A, by automatic differentiation (`tf.GradientTape`);
# 2. channel weights α_k = the spatial mean of the gradient of channel k;
# 3. map = ReLU(Σ_k α_k A_k): keep what speaks *for* the class;
# 4. upsample to the image and normalise to [0, 1].
#
# The score is the **pre-softmax** one (the logit), as the original's keras-vis did by swapping the softmax for a
# linear activation: the softmax's gradient for one class depends on all the others and vanishes when the model is
# confident. Our model has a separate `logits` layer, so nothing needs rebuilding. At 64×64 the original's layer
# `stage4_block3_add` is only 2×2, so we also look at `stage2_block3_add` (8×8).

# %%
from course_lib.explain.keras_gradcam import feature_layers, gradcam

cam_model = kit_models["CC_L"] if "CC_L" in kit_models else build_density_resnet(PHANTOM_INPUT_SIZE)
cam_images = centre_images(phantom_split_arrays(test_set, "CC_L", PHANTOM_INPUT_SIZE)["test"][0])
layer_name = "stage2_block3_add"

probe = keras.Model(cam_model.inputs, [cam_model.get_layer(layer_name).output, cam_model.get_layer("logits").output])
x = tf.convert_to_tensor(cam_images)
with tf.GradientTape() as tape:
    activations, logits = probe(x, training=False)
    target_class = tf.argmax(logits, axis=1, output_type=tf.int32)  # the predicted class
    score = tf.gather(logits, target_class, axis=1, batch_dims=1)
gradients = tape.gradient(score, activations)                        # step 1
alpha = tf.reduce_mean(gradients, axis=(1, 2))                       # step 2
raw = tf.nn.relu(tf.einsum("nhwc,nc->nhw", activations, alpha))      # step 3
up = tf.image.resize(raw[..., None], x.shape[1:3], method="bilinear")[..., 0].numpy()
low, high = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
by_hand_maps = np.where(high > low, (up - low) / np.where(high > low, high - low, 1), 0)  # step 4
print(f"{layer_name}: activations {tuple(activations.shape)}, α {tuple(alpha.shape)}, maps {by_hand_maps.shape}")

# %%
# NBVAL_CHECK_OUTPUT
kit_cam = gradcam(cam_model, cam_images, layer=layer_name)
print(f"max |by hand - course_lib| = {np.abs(by_hand_maps - kit_cam.maps).max():.1e} (must be <= 1e-5):",
      np.abs(by_hand_maps - kit_cam.maps).max() <= 1e-5)
print("same classes:", bool(np.array_equal(kit_cam.class_index, target_class.numpy())))
print("automatic layer (last 4-D output):", gradcam(cam_model, cam_images[:1]).layer)
try:
    gradcam(cam_model, cam_images[:1], layer="logits")
except ValueError as error:
    print("unknown layer ->", str(error)[:96], "...")

# %% [markdown]
# **Cross-check by finite differences.** `tf-keras-vis` (keras-vis' maintained successor) targets `tf.keras` 2,
# not Keras 3, so the kit does not depend on it. Instead we check the channel weights without autodiff: adding ε
# to every cell of channel k moves the logit by about ε·h·w·α_k.

# %%
# NBVAL_CHECK_OUTPUT
head = keras.Model(cam_model.get_layer(layer_name).output, cam_model.get_layer("logits").output)
a0 = activations[:1].numpy()
c0 = int(target_class[0])
eps = 1e-2
channels = np.argsort(-np.abs(alpha[0].numpy()))[:5]  # the five most important channels
numeric = []
for k in channels:
    plus, minus = a0.copy(), a0.copy()
    plus[..., k] += eps
    minus[..., k] -= eps
    delta = head(plus, training=False).numpy()[0, c0] - head(minus, training=False).numpy()[0, c0]
    numeric.append(delta / (2 * eps * a0.shape[1] * a0.shape[2]))
relative = np.abs(np.array(numeric) - alpha[0].numpy()[channels]) / np.abs(alpha[0].numpy()[channels])
print(f"5 largest channel weights: finite differences agree with autodiff within 2 %: {bool(relative.max() < 0.02)}")

# %% [markdown]
# **Sanity check (Adebayo et al., 2018).** A saliency method that draws the same picture for a trained and a
# random network explains the image, not the model. We replace the trained weights by random ones and compare
# the maps by rank correlation: near 1 would be a failure.

# %%
# NBVAL_CHECK_OUTPUT
from scipy.stats import spearmanr

keras.utils.set_random_seed(7)
random_model = build_density_resnet(PHANTOM_INPUT_SIZE)
random_cam = gradcam(random_model, cam_images, layer=layer_name, class_index=kit_cam.class_index)
pairs = [(a, b) for a, b in zip(kit_cam.maps, random_cam.maps) if a.std() > 0 and b.std() > 0]  # skip empty maps
rho = [spearmanr(a.ravel(), b.ravel())[0] for a, b in pairs]
print(f"rank correlation trained vs random weights: mean {np.mean(rho):.2f} over {len(rho)} pairs of non-empty maps")

# %% [markdown]
# ## 7. Does the map look at dense tissue? Phantoms know the answer
#
# A phantom comes with its dense-tissue mask. For each held-out phantom we measure the share of the map's mass
# (inside the breast) that falls on dense tissue, and compare it with the share of the breast that is dense: a map
# blind to density scores the second number on average, one that looks at dense tissue scores more. We ask for
# two targets: the predicted class (for a fatty breast, the evidence for "A" may well be the fat) and class D,
# "extremely dense", whose evidence should be dense tissue if the model has learnt what density is.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.density.explain import dense_mass_fraction, gradcam_figure, phantom_with_masks, resize_mask
from course_lib.phantoms.mammogram import DENSITY_THRESHOLDS

edges = (0.0, *DENSITY_THRESHOLDS, 1.0)
scores = {}  # (layer, target) -> [(share of map mass on dense tissue, dense share of the breast)]
mask_examples = []
for projection, model in kit_models.items():
    images, denses, breasts, labels = [], [], [], []
    for index in range(settings["mask_phantoms"]):
        k = index % 4
        fraction = edges[k] + (0.3 + 0.4 * (index // 4 % 2)) * (edges[k + 1] - edges[k])
        phantom = phantom_with_masks(10_000 + 97 * index + PROJECTIONS.index(projection), projection, fraction,
                                     PHANTOM_SHAPE)
        images.append(np.asarray(Image.fromarray(phantom.image).resize((PHANTOM_INPUT_SIZE,) * 2,
                                                                      Image.Resampling.NEAREST)))
        denses.append(resize_mask(phantom.dense_mask, PHANTOM_INPUT_SIZE))
        breasts.append(resize_mask(phantom.breast_mask, PHANTOM_INPUT_SIZE))
        labels.append(phantom.label)
    inputs = centre_images(np.stack(images))
    for name in (GRADCAM_LAYER, layer_name):
        for target, class_index in (("predicted class", None), ("class D", 3)):
            maps = gradcam(model, inputs, layer=name, class_index=class_index).maps
            scores.setdefault((name, target), []).extend(
                dense_mass_fraction(m, d, b) for m, d, b in zip(maps, denses, breasts))
            if name == layer_name and class_index is None and projection == "CC_L":
                mask_examples = list(zip(images, maps, denses, labels))
for (name, target), values in scores.items():
    values = np.array(values)
    kept = values[~np.isnan(values[:, 0])]  # an all-zero map (ReLU removed everything) has no mass to place
    if len(kept):
        print(f"{name:18} {target:16} map mass on dense tissue {kept[:, 0].mean():.3f}  vs  dense share of the "
              f"breast {kept[:, 1].mean():.3f}  ({len(kept)} SYNTHETIC phantoms, {len(values) - len(kept)} empty maps)")
    else:
        print(f"{name:18} {target:16} every map is empty ({len(values)} SYNTHETIC phantoms)")

# %%
if mask_examples:
    fig, axes = plt.subplots(2, len(mask_examples), figsize=(2.2 * len(mask_examples), 4.6), squeeze=False)
    for column, (image, cam, dense, label) in enumerate(mask_examples):
        gradcam_figure(image, cam, f"SYNTHETIC, class {label}", ax=axes[0, column])
        axes[1, column].imshow(dense, cmap="gray"), axes[1, column].set_axis_off()
        axes[1, column].set_title("dense-tissue mask", fontsize=8)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## 8. The maps on the 16 real INFN images: a demonstration of the mechanics only
#
# The kit's models have **never seen a real mammogram**: their predictions and maps on the real INFN TestSet
# images below demonstrate the mechanics (reading, preprocessing, Grad-CAM, drawing), nothing about the images.
# The first row is drawn in the original's style (matplotlib's `seismic` map added to the image with saturation,
# contours of the coloured map's red channel at 250, i.e. of the band of normalised values 0.50–0.76), the
# others in a cleaner style (translucent map, one contour at 0.5).

# %%
if real_paths and kit_models:
    fig, axes = plt.subplots(4, 4, figsize=(10, 11))
    for row, projection in enumerate(PROJECTIONS):
        present = [label for label in DENSITY_CLASSES if (projection, label) in real_paths]
        if projection not in kit_models or not present:
            continue
        images = load_images([real_paths[projection, label] for label in present], PHANTOM_INPUT_SIZE)
        cam = gradcam(kit_models[projection], centre_images(images), layer=layer_name)
        for image, saliency, label, predicted in zip(images, cam.maps, present, cam.class_index):
            gradcam_figure(image, saliency, f"{projection} true {label}, model says {DENSITY_CLASSES[predicted]}",
                           style="original" if row == 0 else "clean", ax=axes[row, DENSITY_CLASSES.index(label)])
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle("DEMONSTRATION ONLY: models trained on SYNTHETIC phantoms, applied to real INFN images", fontsize=10)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# In Jupyter, pick a projection, a class and a layer to redraw one map (nothing is drawn in a headless run).

# %%
import ipywidgets as widgets

from course_lib.viz import redraw_on_change


def draw_real_map(projection, label, layer):
    if (projection, label) not in real_paths or projection not in kit_models:
        print("image or model unavailable")
        return
    image = load_images([real_paths[projection, label]], PHANTOM_INPUT_SIZE)
    cam = gradcam(kit_models[projection], centre_images(image), layer=layer)
    gradcam_figure(image[0], cam.maps[0], f"{projection} {label}, {layer} (demonstration)")


redraw_on_change([widgets.Dropdown(options=list(PROJECTIONS), description="projection"),
                  widgets.Dropdown(options=list(DENSITY_CLASSES), description="class"),
                  widgets.Dropdown(options=[n for n in feature_layers(cam_model) if n.endswith("_add")],
                                   value=layer_name, description="layer")], draw_real_map)

# %% [markdown]
# ## Scaling out (briefly)
#
# Data parallelism copies the model to N devices, gives each 1/N of every batch and averages their gradients, so all copies take the step one device would take on the whole (global) batch; a larger global batch allows a larger learning rate (the linear rule, Goyal et al. 2017), and BatchNorm statistics must be averaged over the devices too. The Keras trainers scale out with `tf.distribute`: `course_lib.distributed.keras_strategy()` picks `MirroredStrategy` (all local GPUs) or `MultiWorkerMirroredStrategy` (machines listed in `TF_CONFIG`). Notebook 05 measures what it would buy.

# %% [markdown]
# ## Summary
#
# - The INFN ResNet is rebuilt in Keras 3 with the original's counts (41 convolutions, 2,262,660 parameters,
#   LeakyReLU slope 0.3) and named layers; the pipeline states what Keras 3 changed (`fill_mode`, no
#   `ImageDataGenerator`, no keras-vis).
# - **Reproduction 1**: the published prediction files give the published figures of merit exactly (total accuracy
#   0.8125, macro recall 0.8127, macro precision 0.8026), and the literature's view of them: linear κ 0.78 with a
#   bootstrap interval about ±0.08 wide on 128 subjects, quadratic κ higher because most errors are one class off.
# - **Reproduction 2**: NYU's histogram model reproduces its published probabilities within 1e-3 in float64 and
#   moves by about 2e-3 in float32, because pixels on bin edges change bins.
# - Training is repeatable to the printed digit. The four projections' models trained here (48×48, 6 epochs,
#   one shared trace) grade 80 held-out SYNTHETIC patients well above chance: total accuracy 0.800, QWK 0.923,
#   linear κ 0.843 (chance: 0.25 and 0), each projection alone 0.53–0.64; the kit's longer-trained models reach
#   0.812. What helped is said: Adam, batch-norm momentum 0.9 and recomputed statistics, batch 8, small inputs,
#   averaging the projections, phantoms that avoid the class boundaries. They mean nothing on real images.
# - Grad-CAM built by hand equals `course_lib`'s, its channel weights agree with finite differences, its maps
#   change when the weights are randomised. Phantoms let us *measure* whether the maps fall on dense tissue, and
#   for these small phantom-trained models they do **not** (no more mass on dense tissue than a uniform map):
#   a model can grade density well above chance while its Grad-CAM says little about why. A map is a hypothesis
#   to test, not an explanation to trust.
#
# ## Exercises

# %%
from course_lib.density.evaluate import weighted_kappa
from course_lib.density.exercises import EXERCISES

# %% [markdown]
# **02.1 (warm-up).** How many trainable parameters does one 3×3 convolution of a stage-2 module (128 channels in,
# 128 out, with bias) have?

# %%
# BEGIN SOLUTION
answer = 3 * 3 * 128 * 128 + 128
# END SOLUTION
EXERCISES.check("02.1", answer)

# %% [markdown]
# **02.2.** What is the side of the `stage4_block3_add` feature map for a 512×512 input? (650 gives 21.) Check with
# `build_density_resnet(512).get_layer(...)` if you like.

# %%
# BEGIN SOLUTION
answer = 16
# END SOLUTION
EXERCISES.check("02.2", answer)

# %% [markdown]
# **02.3.** A reader who always calls the next denser class (A→B, B→C, C→D, D stays D) on the 128 INFN test
# subjects: what is their quadratic-weighted κ? (`weighted_kappa` and `y_infn` are defined above.) Compare with
# their linear κ.

# %%
# BEGIN SOLUTION
answer = weighted_kappa(y_infn, np.minimum(y_infn + 1, 3), "quadratic")
# END SOLUTION
EXERCISES.check("02.3", answer)

# %% [markdown]
# **02.4 (harder).** The bootstrap interval of the total linear κ is about 0.17 wide on 128 subjects. About how
# many subjects would a study need to halve that width?

# %%
# BEGIN SOLUTION
answer = 128 * 4
# END SOLUTION
EXERCISES.check("02.4", answer)
