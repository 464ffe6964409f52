# %% [markdown]
# # 05 · GMIC: a high-resolution classifier that shows where it looks
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/breast-imaging-course/course-kit/blob/main/notebooks/05_gmic_saliency.ipynb)
#
# GMIC (Globally-Aware Multiple Instance Classifier) reads a whole 2944×1920 mammogram with a small network,
# turns its features into **saliency maps** (where benign and malignant findings seem to be), cuts the six most
# salient **regions of interest** at full resolution, reads them with a second network, weighs them with
# **attention**, and fuses everything into the prediction. The maps and patches come for free: they are how the
# model decides, not an explanation added afterwards.
#
# **What you will learn**
# - GMIC's architecture, module by module, in a PyTorch re-implementation that loads the official weights
#   unchanged (and reproduces the official implementation's numbers, see `tests/test_gmic_model.py`);
# - the greedy ROI search, step by step, checked against `course_lib`;
# - why most of a mammogram's compute can be skipped *exactly* (the zero padding);
# - the official `predictions.csv` and figure, from one command (`course-kit gmic predict`);
# - how to train GMIC (the paper's loss), and how to *measure* a saliency map against lesion masks: image AUC,
#   pointing game, Dice — and how Grad-CAM of the same network compares.
#
# **Cite**: Shen Y., Wu N., Phang J. et al., *An interpretable classifier for high-resolution breast cancer
# screening images utilizing weakly supervised localization*, Medical Image Analysis 68:101908 (2021);
# Ilse M., Tomczak J., Welling M., *Attention-based deep multiple instance learning*, ICML 2018;
# Selvaraju R. et al., *Grad-CAM*, ICCV 2017; Zhang J. et al., *Top-down neural attention by excitation
# backprop* (pointing game), ECCV 2016.
#
# | profile | hardware | run time |
# |---|---|---|
# | `default` | 2-core laptop CPU, kit's phantom-trained weights | under a minute |
# | `full` | GPU, official weights, training at full resolution | about 1 hour |
#
# *Not for clinical use. The kit's own weights were trained on SYNTHETIC phantoms only; their numbers on real
# mammograms mean nothing. Synthetic images are always labelled SYNTHETIC.*

# %%
# Setup. On Google Colab this clones the kit and installs it on top of Colab's own
# torch and tensorflow (the kit only sets lower bounds, so they are left alone).
# Anywhere else it does nothing: use `make course`, or the conda environment.yml.
import os
import subprocess
import sys

if "google.colab" in sys.modules and not os.path.isdir("course-kit"):
    subprocess.run(["git", "clone", "--depth", "1",
                    "https://github.com/breast-imaging-course/course-kit"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "course-kit[dicom]"], check=True)
    sys.path.insert(0, os.path.abspath("course-kit"))
    os.chdir("course-kit/notebooks")

# %% tags=["parameters"]
import os

PROFILE = os.environ.get("COURSE_PROFILE", "default")

# %%
import course_lib

PROFILE = course_lib.get_profile(PROFILE)
settings = course_lib.settings_for(
    PROFILE,
    smoke=dict(test_exams=2, demo_epochs=1, demo_exams=2, official_views=1),
    default=dict(test_exams=25, demo_epochs=1, demo_exams=4, official_views=4),
    full=dict(test_exams=25, demo_epochs=50, demo_exams=120, official_views=4),
)
print(PROFILE, settings)

# %%
print(course_lib.environment_report())

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib import data
from course_lib.env import pick_device

device = pick_device()
print(course_lib.seed_everything(0), device)

# %% [markdown]
# ## 1. The model, module by module
#
# | part | official key | what it does | output for 2944×1920 |
# |---|---|---|---|
# | global network | `ds_net` | ResNet-22, pre-activation, 16→256 channels, stride 64 | h_g: 256×46×30 |
# | saliency head | `left_postprocess_net` | 1×1 convolution + sigmoid, one map per class | A: 2×46×30 |
# | top-t% pooling | — | mean of the t% highest saliency cells | y_global |
# | ROI search | — | greedy choice of K=6 windows of 4×4 cells (256×256 px) | 6 crops |
# | local network | `dn_resnet` | torchvision ResNet-18 on each crop | h_k: 6×512 |
# | gated attention | `mil_attn_U/V/w` | α = softmax(w·(sigmoid(U h) ⊙ tanh(V h))) | z = Σ α_k h_k |
# | fusion | `fusion_dnn` | linear on [max over h_g ; z] + sigmoid | **y_fusion: the prediction** |

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.gmic.model import GMIC
from course_lib.gmic.config import PERCENT_T_BY_MODEL_INDEX, gmic_config

official = GMIC(gmic_config("1"))
parts = {"ds_net": 0, "left_postprocess_net": 0, "dn_resnet": 0, "mil_attn": 0, "classifier_linear": 0, "fusion_dnn": 0}
for name, parameter in official.named_parameters():
    parts[next(p for p in parts if name.startswith(p))] += parameter.numel()
for part, count in parts.items():
    print(f"{part:22} {count:>12,}")
print(f"{'total':22} {sum(parts.values()):>12,}  (paper's GMIC-ResNet-18: 14,110,322)")
print(f"state-dict entries: {len(official.state_dict())}; percent_t by model index: {PERCENT_T_BY_MODEL_INDEX}")

# %% [markdown]
# ## 2. A real exam: GMIC's sample exam 0
#
# Preprocessing (notebook 01) turns each view into a standardised 2944×1920 window; 62–82 % of it is zero
# padding, because the sample images are smaller than the window. Padding becomes one constant value after
# standardisation, so every activation of the global network far from the breast is the same number:
# `course_lib` computes such runs of identical rows and columns once (`CompactMap`), which is **exact**, not an
# approximation. The check below uses seeded random weights, so it runs without the official ones.

# %%
from course_lib.gmic.config import GMICGeometry
from course_lib.gmic.preprocess import preprocess_view
from course_lib.gmic.preprocess import VIEWS, load_png16

exam0 = {}
for view in VIEWS[:settings["official_views"]]:
    path = data.try_fetch(f"gmic/sample_data/images/0_{view}.png")
    if path is not None:
        exam0[view], _ = preprocess_view(load_png16(path), view)

if exam0:
    torch.manual_seed(0)
    random_gmic = GMIC(gmic_config("1")).eval()
    window = torch.from_numpy(exam0[next(iter(exam0))])[None, None]
    with torch.inference_mode():
        start = time.perf_counter()
        full = random_gmic(window, exact_full_forward=True)
        full_seconds = time.perf_counter() - start
        start = time.perf_counter()
        fast = random_gmic(window)
        fast_seconds = time.perf_counter() - start
    difference = (full.y_fusion - fast.y_fusion).abs().max().item()
    print(f"padding: {np.mean(exam0[next(iter(exam0))] == exam0[next(iter(exam0))].min()):.0%} of the window; "
          f"full forward {full_seconds:.2f} s, padding skipped {fast_seconds:.2f} s; "
          f"max |difference| of y_fusion {difference:.1e}")
    assert difference < 1e-6 and torch.equal(full.roi_small_locations, fast.roi_small_locations)

# %% [markdown]
# **With the official weights** (five models in NYU's repository, AGPL; about 55 MB each), the kit reproduces the
# published sample predictions. They are not bundled: with network or a mirror that has them, this cell fetches
# model 1 through the registry and checks exam 0 against the README's table to 4 decimals; otherwise it says which
# file is missing and how to get it.

# %%
PUBLISHED_EXAM0 = {"L-CC": (0.1356, 0.0081), "R-CC": (0.8929, 0.3259),  # README of nyukat/GMIC, model 1
                   "L-MLO": (0.2368, 0.0335), "R-MLO": (0.9509, 0.1812)}
weights = data.try_fetch("gmic/models/sample_model_1.p")
if weights is None:
    print("To reproduce the published table: `course-kit fetch gmic/models/sample_model_1.p` with network, "
          "or put the file in COURSE_DATA_MIRROR (see notebook 00).")
elif exam0:
    from course_lib.metrics import check_reproduced
    from course_lib.gmic.model import load_gmic_checkpoint

    gmic_1 = load_gmic_checkpoint(weights, "1", device=device)
    batch = torch.from_numpy(np.stack(list(exam0.values())))[:, None].to(device)
    with torch.inference_mode():
        y = gmic_1(batch).y_fusion.cpu().numpy()
    for (view, (benign, malignant)), (b, m) in zip(((v, PUBLISHED_EXAM0[v]) for v in exam0), y):
        check_reproduced(f"0_{view} benign", b, benign, tolerance=5e-5)
        check_reproduced(f"0_{view} malignant", m, malignant, tolerance=5e-5)

# %% [markdown]
# ## 3. SYNTHETIC phantoms and the kit's phantom-trained weights
#
# Without GPU time or a private screening data set, the kit trains GMIC on SYNTHETIC phantoms at a quarter of the
# resolution: 768×512 windows and 128×128 crops, the proportions of 2944×1920 windows with 256×256 crops. The
# phantoms are *teaching* phantoms: fatty breasts (dense fraction 5–30 %) with lesions three times as bright as in
# the default phantoms, so that a model trained from scratch on a CPU in minutes finds them. The weights, their
# model card and the command that made them are in `pretrained/`. The test exams below were never seen in training
# (a different seed).

# %%
# NBVAL_CHECK_OUTPUT
import json

from course_lib.gmic.data import gmic_phantom_views
from course_lib.gmic.config import PHANTOM_DENSE_RANGE, PHANTOM_LESION_CONTRAST
from course_lib.gmic.evaluate import predict_views
from course_lib.gmic.weights import load_phantom_gmic
from course_lib.paths import PRETRAINED

card = json.loads((PRETRAINED / "gmic_phantom_quarter.json").read_text())
print(card["warning"])
print(f"trained with: {card['command']}\n  {card['data']}")
model = load_phantom_gmic(PRETRAINED / "gmic_phantom_quarter.pt", device=device)
test = gmic_phantom_views(settings["test_exams"], seed=3, dense_range=PHANTOM_DENSE_RANGE,
                          lesion_contrast=PHANTOM_LESION_CONTRAST)
y_fusion, saliency, locations = predict_views(model, test["windows"], device=device)
print(f"SYNTHETIC test views: {len(test['names'])}, with a benign lesion {int(test['labels'][:, 0].sum())}, "
      f"with a malignant one {int(test['labels'][:, 1].sum())}")

# %% [markdown]
# ## 4. The ROI search, step by step
#
# GMIC does not crop where the *malignant* map is high, or where the *benign* map is: it min-max normalises each
# class's map, **adds them**, and then, six times: averages the map over every 2×2-cell window (4×4 at full
# scale), takes the best window (first one in row-major order on ties), and sets that window to zero, so that
# the next choice lands elsewhere. Let's do it by hand on one phantom view and compare with `course_lib`.

# %%
# NBVAL_CHECK_OUTPUT
import torch.nn.functional as F

from course_lib.gmic.model import retrieve_roi_cells

index = int(np.flatnonzero(test["labels"][:, 1])[0]) if test["labels"][:, 1].any() else 0
maps = torch.from_numpy(saliency[index:index + 1])                       # (1, 2, h, w)
low = maps.amin(dim=(2, 3), keepdim=True)
high = maps.amax(dim=(2, 3), keepdim=True)
current = ((maps - low) / (high - low).clamp_min(1e-12)).sum(dim=1, keepdim=True)  # one map, values in [0, 2]
window = model.config.roi_window_cells
by_hand = []
for step in range(model.config.num_rois):
    pooled = F.avg_pool2d(current, window, stride=1)
    best = int(torch.argmax(pooled.flatten()))
    row, col = divmod(best, pooled.shape[-1])
    by_hand.append((row, col))
    current[..., row:row + window[0], col:col + window[1]] = 0
library = [tuple(cell) for cell in retrieve_roi_cells(maps, window, model.config.num_rois).cells[0].tolist()]
print(f"SYNTHETIC view {test['names'][index]}: ROI cells by hand {by_hand}")
print(f"course_lib: {library} -> {'identical' if by_hand == library else 'DIFFERENT'}")
assert by_hand == library

# %% [markdown]
# Each cell (r, c) of the saliency grid is the top-left corner of a crop at pixel (64r, 64c) of the input. The
# local network reads the six crops; gated attention weighs them (the numbers above each crop below).
#
# ## 5. The official figure
#
# Left to right: the input with the ground truth (benign green, malignant red), the patch map (the six crops in
# blue), the benign and the malignant saliency maps, and the six crops titled with their attention weight.
# `course-kit gmic predict --visualize` writes one such figure per image, with `predictions.csv`.

# %%
from course_lib.gmic.figures import gmic_view_figure
from course_lib.viz import image_browser

outputs = {}
with torch.inference_mode():
    for k, name in enumerate(test["names"]):
        if test["labels"][k].any() and len(outputs) < 6:
            outputs[name] = (k, model(torch.from_numpy(test["windows"][k:k + 1])[:, None].to(device)))


def figure_for(name):
    k, output = outputs[name]
    return gmic_view_figure(test["windows"][k], output.saliency_map[0].cpu().numpy(),
                            output.patch_locations[0].cpu().numpy(), output.patches[0].cpu().numpy(),
                            output.patch_attns[0].cpu().numpy(), model.config.crop_shape,
                            test["benign_masks"][k], test["malignant_masks"][k],
                            title=f"SYNTHETIC {name}: y_fusion benign {output.y_fusion[0, 0]:.2f}, "
                                  f"malignant {output.y_fusion[0, 1]:.2f}")


figure_for(next(iter(outputs)))
plt.show()
image_browser(outputs, figure_for)  # pick a lesion view to draw its figure (in Jupyter)

# %% [markdown]
# ## 6. Does the saliency map point at the lesion? Numbers, on held-out phantoms
#
# - **image AUC** per class, from y_fusion;
# - **pointing game**: on each view with a lesion of a class, does that class's saliency maximum fall in a grid
#   cell that touches the lesion? (Tolerance: one 64-pixel cell, the map's own resolution.)
# - **Dice** of the saliency map thresholded at 0.5 (each cell covering its 64×64 block) against the lesion mask.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.gmic.evaluate import evaluate_localisation

scores = evaluate_localisation(y_fusion, saliency, test["labels"], test["benign_masks"], test["malignant_masks"])
print(f"SYNTHETIC held-out test, GMIC saliency: AUC benign {scores['auc_benign']:.3f}, "
      f"AUC malignant {scores['auc_malignant']:.3f}, pointing game {scores['pointing_game']:.3f} "
      f"on {scores['pointing_game_n']} lesion views, saliency Dice {scores['saliency_dice']:.3f}")

# %% [markdown]
# **Grad-CAM of the same global network** (through `pytorch-grad-cam`, target layer = the global network's final
# BatchNorm, target = y_global of the lesion's class), scored the same way after averaging each 64×64 block:

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.gmic.gradcam import block_mean, gmic_gradcam
from course_lib.metrics import pointing_game_hit

hits = {"GMIC saliency": [], "Grad-CAM": []}
for channel, masks in ((0, test["benign_masks"]), (1, test["malignant_masks"])):
    lesion_views = np.flatnonzero(test["labels"][:, channel])
    if len(lesion_views):
        cams = block_mean(gmic_gradcam(model.cpu(), test["windows"][lesion_views], channel), 64)
        for k, cam in zip(lesion_views, cams):
            hits["GMIC saliency"].append(pointing_game_hit(saliency[k, channel], masks[k]))
            hits["Grad-CAM"].append(pointing_game_hit(cam, masks[k]))
model.to(device)
for method, found in hits.items():
    print(f"SYNTHETIC pointing game, {method:13}: {np.mean(found):.3f} ({sum(found)}/{len(found)})")

# %% [markdown]
# ## 7. Training GMIC
#
# The official repository ships no training code. The paper's loss, for image labels y (benign, malignant):
#
# $$L = \mathrm{BCE}(y, \hat y_\text{global}) + \mathrm{BCE}(y, \hat y_\text{local}) + \mathrm{BCE}(y, \hat y_\text{fusion}) + \beta\,\overline{A}$$
#
# The last term, the mean of the saliency maps, keeps them sparse: without it a map can light up the whole
# breast and still classify well. The ROI search is not differentiable; the local network learns from whatever
# crops the current maps select. One short epoch on a few phantom exams shows the loss and its parts; the
# `full` profile trains at full resolution (on a GPU), and `course-kit gmic train` made the
# kit's weights (its model card lists the command, the data, the epochs and the test metrics).

# %%
from course_lib.gmic.train import TrainingSettings, train_gmic
from course_lib.gmic.weights import phantom_model

if PROFILE == "full":
    train = gmic_phantom_views(settings["demo_exams"], seed=1, shape=(2944, 1920), geometry=GMICGeometry.official(),
                               dense_range=PHANTOM_DENSE_RANGE, lesion_contrast=PHANTOM_LESION_CONTRAST)
    student = GMIC(gmic_config("1"))
else:
    train = gmic_phantom_views(settings["demo_exams"], seed=1, dense_range=PHANTOM_DENSE_RANGE,
                               lesion_contrast=PHANTOM_LESION_CONTRAST)
    student = phantom_model(seed=0)
history = train_gmic(student, train["windows"], train["labels"],
                     TrainingSettings(epochs=settings["demo_epochs"], batch_size=4, learning_rate=3e-4), device=device)
print("kit weights, per-epoch training loss:", card["training_loss"])
print("kit weights, held-out test metrics:", card["test_metrics"])
