# %% [markdown]
# # 05 · GMIC: a high-resolution classifier that shows where it looks
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/breast-imaging-course/course-kit/blob/main/notebooks/05_gmic_saliency.ipynb)
#
# A screening mammogram is about 3000×2000 pixels, and the finding that matters can be a cluster of
# calcifications a few pixels wide. GMIC (Globally-Aware Multiple Instance Classifier) reads the whole image
# with a small network, turns its features into **saliency maps** (where benign and malignant findings seem to
# be), cuts the six most salient **regions of interest** at full resolution, reads them with a second network,
# weighs them with **attention**, and fuses everything into the prediction. Can such a model also tell us
# *where* it looked, and how would we measure that?
#
# **What you will learn**
# - why GMIC is built this way (memory, tiny findings), module by module, in a PyTorch re-implementation that
#   loads the official weights unchanged (`tests/test_gmic_model.py` checks it against the official outputs);
# - every step of the forward pass by hand, each checked against `course_lib`: top-t% pooling, the greedy ROI
#   search, gated attention, the fusion — and what the saliency map does and does not decide;
# - why most of a mammogram's compute can be skipped *exactly* (the zero padding);
# - how to *measure* a saliency map against lesion masks (image AUC, pointing game, Dice), how Grad-CAM of the
#   same network compares, and why a fair comparison must name the loss each model was trained with;
# - GMIC's loss, with the paper's L1 regulariser.
#
# **Cite**: Shen Y., Wu N., Phang J. et al., *An interpretable classifier for high-resolution breast cancer
# screening images utilizing weakly supervised localization*, Medical Image Analysis 68:101908 (2021);
# Ilse M., Tomczak J., Welling M., *Attention-based deep multiple instance learning*, ICML 2018;
# Selvaraju R. et al., *Grad-CAM*, ICCV 2017; Zhang J. et al., *Top-down neural attention by excitation
# backprop* (pointing game), ECCV 2016. Code: github.com/nyukat/GMIC (AGPL; no code copied).
#
# | profile | hardware | run time |
# |---|---|---|
# | `default` | 2-core CPU, both sets of the kit's phantom-trained weights | 61 s measured on a nearly idle 2-core machine (notebook build) |
# | `full` | GPU, official weights, training at full resolution | not measured (no GPU was available to the kit's developers) |
#
# *Not for clinical use. The kit's own weights were trained on SYNTHETIC phantoms only; their numbers on real
# mammograms mean nothing. Synthetic images are always labelled SYNTHETIC.*

# %%
# Setup. On Google Colab this clones the kit at the release this notebook belongs to and installs
# this lesson's extra on top of Colab's own packages (the kit sets lower bounds only, so Colab's
# torch, tensorflow and ipywidgets stay). Running it again changes nothing.
# Anywhere else it does nothing: use `make course`, or the conda environment.yml (see README).
import os
import subprocess
import sys

KIT_RELEASE, KIT_EXTRA = "v0.2.0", "gmic"
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
    smoke=dict(test_exams=2, demo_epochs=1, demo_exams=2, official_views=1, timing_repeats=1),
    default=dict(test_exams=25, demo_epochs=1, demo_exams=4, official_views=4, timing_repeats=3),
    full=dict(test_exams=25, demo_epochs=50, demo_exams=120, official_views=4, timing_repeats=5),
)
print(PROFILE, settings)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib import data
from course_lib.env import pick_device

device = pick_device()
report = dict(line.split(None, 1) for line in course_lib.environment_report().splitlines())
seeded = course_lib.seed_everything(0)
print(f"Python {report['python'].split()[0]}, torch {report['torch']}, {report['device']}; seeded "
      f"{', '.join(seeded)} with 0  (full report: print(course_lib.environment_report()))")

# %% [markdown]
# ## 1. The subject: a real screening exam
#
# GMIC's sample exam 0 is four real screening mammograms (NYU, shipped with the official code). Preprocessing
# (notebook 01) turns each view into a standardised 2944×1920 window facing right; we load them here.

# %%
from course_lib.gmic.preprocess import VIEWS, load_png16, preprocess_view

exam0_raw, exam0 = {}, {}
for view in VIEWS[:settings["official_views"]]:
    path = data.try_fetch(f"gmic/sample_data/images/0_{view}.png")
    if path is not None:
        exam0_raw[view] = load_png16(path)
        exam0[view], _ = preprocess_view(exam0_raw[view], view)
print({view: window.shape for view, window in exam0.items()})

# %%
if exam0:
    fig, axes = plt.subplots(1, len(exam0), figsize=(3 * len(exam0), 4.5))
    for ax, (view, window) in zip(np.atleast_1d(axes), exam0.items()):
        ax.imshow(window, cmap="gray")
        ax.set_title(f"real 0_{view}: model input", fontsize=9)
        ax.set_axis_off()
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## 2. Why GMIC is built this way
#
# - **Findings are tiny.** At about 0.1 mm per pixel, a microcalcification is 1–10 pixels wide. Shrinking a
#   mammogram to the 224×224 of ImageNet models (a factor of about 10) erases it.
# - **Full resolution is expensive.** A ResNet on 2944×1920 pixels keeps large feature maps in memory for the
#   backward pass. GMIC reads the whole image only with a *small* global network (ResNet-22, 16→256 channels,
#   stride 64) and spends a *large* network (ResNet-18) only on six 256×256 crops, 1.2 % of the window each.
# - **The crops come from the model itself**: the global network's saliency maps say where to look, which is
#   also what makes the model interpretable.
#
# The paper reports, against a ResNet-34 on the same images, 28.8 % fewer parameters, 78.43 % less GPU memory
# and 4.1× faster inference (Shen et al. 2021). The diagram below is drawn from the kit's own modules: each box
# is an attribute of `course_lib.gmic.model.GMIC`, with its parameter count.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.gmic.config import PERCENT_T_BY_MODEL_INDEX, gmic_config
from course_lib.gmic.model import GMIC

official = GMIC(gmic_config("1"))
parts = {"ds_net": 0, "left_postprocess_net": 0, "dn_resnet": 0, "mil_attn": 0, "classifier_linear": 0, "fusion_dnn": 0}
for name, parameter in official.named_parameters():
    parts[next(p for p in parts if name.startswith(p))] += parameter.numel()
for part, count in parts.items():
    print(f"{part:22} {count:>12,}")
print(f"{'total':22} {sum(parts.values()):>12,}  (paper's GMIC-ResNet-18: 14,110,322)")
print(f"state-dict entries: {len(official.state_dict())}; percent_t by model index: {PERCENT_T_BY_MODEL_INDEX}")

# %%
boxes = [  # (module, what it computes, output for one 2944x1920 view), in the order of the forward pass
    ("ds_net", "global network\nResNet-22", "h_g 256×46×30"),
    ("left_postprocess_net", "saliency head\n1×1 conv + sigmoid", "A 2×46×30"),
    ("top_t_pool", "top-t% pooling", "y_global"),
    ("retrieve_roi_cells", "greedy ROI search", "6 crops 256×256"),
    ("dn_resnet", "local network\nResNet-18", "h_k 6×512"),
    ("mil_attn", "gated attention", "z 512"),
    ("fusion_dnn", "fusion\n[max h_g ; z]", "y_fusion"),
]
fig, ax = plt.subplots(figsize=(13, 2.6))
for k, (module, what, shape) in enumerate(boxes):
    count = parts.get(module, 0)
    ax.add_patch(plt.Rectangle((k * 1.9, 0), 1.6, 1, fc="#dbe9f6" if count else "#f2f2f2", ec="k"))
    ax.text(k * 1.9 + 0.8, 0.62, what, ha="center", va="center", fontsize=8)
    ax.text(k * 1.9 + 0.8, 0.2, f"{module}\n{count:,} params" if count else f"{module}\n(no parameters)",
            ha="center", va="center", fontsize=6.5, family="monospace")
    ax.text(k * 1.9 + 0.8, -0.25, shape, ha="center", fontsize=7.5)
    if k:
        ax.annotate("", (k * 1.9, 0.5), ((k - 1) * 1.9 + 1.6, 0.5), arrowprops=dict(arrowstyle="->"))
ax.annotate("", (6 * 1.9 + 0.5, 1.0), (0.8, 1.0), arrowprops=dict(arrowstyle="->", connectionstyle="arc3,rad=-0.12",
                                                               ls="--", color="gray"))
ax.text(6.5, 1.45, "max-pooled h_g goes straight to the fusion", ha="center", fontsize=8, color="gray")
ax.set_xlim(-0.2, 13.4)
ax.set_ylim(-0.5, 1.8)
ax.set_axis_off()
plt.show()

# %% [markdown]
# ## 3. Most of the window is padding, and skipping it is exact
#
# The sample images are smaller than the window: 53–71 % of each window is zero padding (notebook 01 measures it).
# Padding becomes one constant value after standardisation, so every activation of the global network far
# from the breast is the same number: `course_lib` computes such runs of identical rows and columns once
# (`CompactMap`), which is **exact**, not an approximation. The check uses seeded random weights, so it runs
# without the official ones; the times are a median after one warm-up run. On the kit's shared 2-core CPU
# both took about 2.5 s for one view: here the skip buys exactness of the shortcut, not speed; the gain depends
# on your hardware and thread count.

# %%
if exam0:
    torch.manual_seed(0)
    random_gmic = GMIC(gmic_config("1")).eval()
    window = torch.from_numpy(exam0[next(iter(exam0))])[None, None]

    def median_seconds(run, repeats=settings["timing_repeats"]):
        if repeats > 1:
            run()  # warm-up: first-call allocations and kernel choices
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - start)
        return result, float(np.median(times))

    with torch.inference_mode():
        full, full_seconds = median_seconds(lambda: random_gmic(window, exact_full_forward=True))
        fast, fast_seconds = median_seconds(lambda: random_gmic(window))
    difference = (full.y_fusion - fast.y_fusion).abs().max().item()
    print(f"full forward {full_seconds:.2f} s, padding skipped {fast_seconds:.2f} s "
          f"(median of {settings['timing_repeats']} runs after a warm-up); max |difference| of y_fusion {difference:.1e}")
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
    from course_lib.gmic.model import load_gmic_checkpoint
    from course_lib.metrics import check_reproduced

    gmic_1 = load_gmic_checkpoint(weights, "1", device=device)
    batch = torch.from_numpy(np.stack(list(exam0.values())))[:, None].to(device)
    with torch.inference_mode():
        y = gmic_1(batch).y_fusion.cpu().numpy()
    for (view, (benign, malignant)), (b, m) in zip(((v, PUBLISHED_EXAM0[v]) for v in exam0), y):
        check_reproduced(f"0_{view} benign", b, benign, tolerance=5e-5)
        check_reproduced(f"0_{view} malignant", m, malignant, tolerance=5e-5)

# %% [markdown]
# ## 4. The kit's quarter-scale model, and what it can and cannot show
#
# Without GPU time or a private screening data set, the kit trains GMIC on SYNTHETIC phantoms at a quarter of the
# resolution: 768×512 windows and 128×128 crops. That is **not** the official geometry scaled down: the crops are
# relatively four times larger, the grid is coarser and top-t% pooling keeps a handful of cells. The numbers:

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.gmic.config import GMICGeometry

for name, geometry in (("official", GMICGeometry.official()), ("quarter", GMICGeometry.quarter())):
    config = gmic_config("1", geometry=geometry)
    (rows, cols), (crop_rows, crop_cols) = config.input_shape, config.crop_shape
    print(f"{name:8}: window {rows}x{cols}, crop {crop_rows}x{crop_cols} = "
          f"{crop_rows * crop_cols / (rows * cols):.1%} of the window, grid {config.cam_size[0]}x{config.cam_size[1]}, "
          f"ROI {config.roi_window_cells[0]}x{config.roi_window_cells[1]} cells, top-t% pools "
          f"{config.top_t_count} of {config.cam_size[0] * config.cam_size[1]} cells")

# %% [markdown]
# What the quarter model **can** show: every mechanism of GMIC (the maps, top-t% pooling, the ROI search,
# attention, fusion) and how to measure localisation against known lesions. What it **cannot** show: how GMIC
# behaves at its own scale. With 2 cells pooled, y_global is nearly the map's maximum; six crops of 4.2 % each
# cover a quarter of the window, so a crop lands near a lesion almost by chance; a 64-pixel cell is 1/8 of
# the window's width. Its numbers are no estimate of the paper's.
#
# ## 5. SYNTHETIC test phantoms and the two sets of weights
#
# The phantoms are *teaching* phantoms: fatty breasts (dense fraction 5–30 %) with lesions three times as bright as
# in the default phantoms, so that a model trained from scratch on a CPU finds them. The test exams below were never
# seen in training (another seed). Each set of weights in `pretrained/` has a model card; its **loss** matters:
#
# - `gmic_phantom_quarter` (the shipped weights) were trained with GMIC's image-label loss **plus a lesion-mask
#   term** (`--mask-weight 1`: a BCE between the saliency map and the cells that touch a lesion). That is *not*
#   the paper's weakly supervised setting: the maps were told where the lesions are.
# - `gmic_phantom_quarter_weak` was trained with **the paper's loss only** (image labels, β times the L1 norm of
#   the maps, `--mask-weight 0`): the weakly supervised setting the paper's claims are about. It had less
#   compute (6 epochs on 100 exams, against 8 on 200: 48 minutes on a shared CPU), and its best epoch was chosen
#   on validation phantoms whose masks are known (masks chose among 6 epochs; they never entered the loss).

# %%
# NBVAL_CHECK_OUTPUT
import json

from course_lib.gmic.config import PHANTOM_DENSE_RANGE, PHANTOM_LESION_CONTRAST
from course_lib.gmic.data import gmic_phantom_views
from course_lib.gmic.weights import load_phantom_gmic
from course_lib.paths import PRETRAINED

WEIGHTS = {"mask-supervised": "gmic_phantom_quarter", "image labels only": "gmic_phantom_quarter_weak"}
models, cards = {}, {}
for label, stem in WEIGHTS.items():
    if (PRETRAINED / f"{stem}.pt").is_file():
        cards[label] = json.loads((PRETRAINED / f"{stem}.json").read_text())
        models[label] = load_phantom_gmic(PRETRAINED / f"{stem}.pt", device=device)
        print(f"{label} ({stem}): loss = {cards[label]['loss']}")
    else:
        print(f"{label} ({stem}): not shipped (see the model cards and the note in section 8)")
print(cards["mask-supervised"]["warning"])
model = models["mask-supervised"]

# %%
# NBVAL_CHECK_OUTPUT
test = gmic_phantom_views(settings["test_exams"], seed=3, dense_range=PHANTOM_DENSE_RANGE,
                          lesion_contrast=PHANTOM_LESION_CONTRAST)
print(f"SYNTHETIC test views: {len(test['names'])}, with a benign lesion {int(test['labels'][:, 0].sum())}, "
      f"with a malignant one {int(test['labels'][:, 1].sum())}")

# %% [markdown]
# ## 6. The forward pass by hand, step by step
#
# We take one SYNTHETIC test view with a malignant lesion, run the shipped model once, keep every intermediate
# (`GMICOutput`), and rebuild each step from the one before.

# %%
index = int(np.flatnonzero(test["labels"][:, 1])[0]) if test["labels"][:, 1].any() else 0
with torch.inference_mode():
    out = model(torch.from_numpy(test["windows"][index:index + 1])[:, None].to(device))
print(f"SYNTHETIC view {test['names'][index]}: h_g {tuple(out.h_g.shape)}, saliency {tuple(out.saliency_map.shape)}")

# %% [markdown]
# **Top-t% pooling.** y_global, the global network's prediction, is the mean of the t % highest cells of each
# class's map (t = 2 % for model 1). Sort, keep the top k, average:

# %%
# NBVAL_CHECK_OUTPUT
cells = out.saliency_map.flatten(2)                                 # (1, 2, h*w)
k = model.config.top_t_count
y_global_by_hand = cells.sort(dim=-1, descending=True).values[..., :k].mean(dim=-1)
print(f"top {k} of {cells.shape[-1]} cells; y_global by hand {y_global_by_hand[0].cpu().numpy().round(4)}, "
      f"course_lib {out.y_global[0].cpu().numpy().round(4)}")
assert torch.allclose(y_global_by_hand, out.y_global)

# %% [markdown]
# **The ROI search.** GMIC does not crop where the *malignant* map is high, or where the *benign* map is: it
# min-max normalises each class's map, **adds them**, and then, six times: averages the map over every 2×2-cell
# window (4×4 at full scale), takes the best window (first one in row-major order on ties), and sets that window
# to zero, so that the next choice lands elsewhere.

# %%
# NBVAL_CHECK_OUTPUT
import torch.nn.functional as F

from course_lib.gmic.model import retrieve_roi_cells

maps = out.saliency_map.cpu()
low = maps.amin(dim=(2, 3), keepdim=True)
high = maps.amax(dim=(2, 3), keepdim=True)
current = ((maps - low) / (high - low).clamp_min(1e-12)).sum(dim=1, keepdim=True)  # one map, values in [0, 2]
window_cells = model.config.roi_window_cells
by_hand = []
for step in range(model.config.num_rois):
    pooled = F.avg_pool2d(current, window_cells, stride=1)
    best = int(torch.argmax(pooled.flatten()))
    row, col = divmod(best, pooled.shape[-1])
    by_hand.append((row, col))
    current[..., row:row + window_cells[0], col:col + window_cells[1]] = 0
library = [tuple(cell) for cell in retrieve_roi_cells(maps, window_cells, model.config.num_rois).cells[0].tolist()]
print(f"ROI cells by hand {by_hand}")
print(f"course_lib         {library} -> {'identical' if by_hand == library else 'DIFFERENT'}")
assert by_hand == library and library == [tuple(c) for c in out.roi_small_locations[0].tolist()]

# %% [markdown]
# Each cell (r, c) is the top-left corner of a crop at pixel (64r, 64c). The local network turns each crop into
# a vector h_k (512 numbers). **Gated attention** (Ilse et al. 2018) scores each crop with two branches, a
# sigmoid "gate" and a tanh "content", and a softmax over the six crops makes the weights α_k, which sum to 1:
#
# $$\alpha_k = \mathrm{softmax}_k\big(w^\top(\sigma(U h_k) \odot \tanh(V h_k))\big), \qquad z = \sum_k \alpha_k h_k$$

# %%
# NBVAL_CHECK_OUTPUT
h = out.h_crops[0]                                                  # (6, 512)
with torch.no_grad():  # no training here: no gradient bookkeeping
    scores = model.mil_attn_w(torch.sigmoid(model.mil_attn_U(h)) * torch.tanh(model.mil_attn_V(h)))[:, 0]
    alpha = torch.softmax(scores, dim=0)
    z = (alpha[:, None] * h).sum(dim=0)
print(f"attention by hand {alpha.cpu().numpy().round(3)} (sum {float(alpha.sum()):.3f})")
print(f"course_lib        {out.patch_attns[0].cpu().numpy().round(3)}")
assert torch.allclose(alpha, out.patch_attns[0], atol=1e-6) and torch.allclose(z, out.z[0], atol=1e-5)

# %% [markdown]
# **The fusion** is one linear layer on the concatenation [max over the grid of h_g ; z], then a sigmoid. Split
# its logit into the part from the global features and the part from the crops:

# %%
# NBVAL_CHECK_OUTPUT
global_vec = out.h_g[0].amax(dim=(1, 2))                            # (256,)
weight, bias = model.fusion_dnn.weight.detach(), model.fusion_dnn.bias.detach()  # (2, 768), (2,)
with torch.no_grad():
    from_global, from_crops = weight[:, :256] @ global_vec, weight[:, 256:] @ z
    y_fusion_by_hand = torch.sigmoid(from_global + from_crops + bias)
for c, name in enumerate(("benign", "malignant")):
    print(f"{name:9} logit = {float(from_global[c]):+.2f} (max-pooled h_g) {float(from_crops[c]):+.2f} (crops) "
          f"{float(bias[c]):+.2f} (bias) -> y_fusion {float(y_fusion_by_hand[c]):.3f}")
assert torch.allclose(y_fusion_by_hand, out.y_fusion[0], atol=1e-5)

# %% [markdown]
# So the saliency maps are **not** "how the model decides" y_fusion: the fusion reads max-pooled h_g (the maps'
# input, not the maps) and the crops' vector z. The maps act on y_fusion only through *which* crops are cut.
# They decide y_global (top-t% pooling), which the loss trains but the prediction does not use.
#
# ## 7. The figure, on phantoms and on the real exam
#
# Top row: the input with the ground truth (benign green, malignant red), the patch map (the six crops in blue),
# the benign and malignant saliency maps (colour bar: the map's value, 0..1). Bottom row: the six crops, titled
# with their attention weight. `course-kit gmic predict --visualize` writes the official one-row version of it.

# %%
from course_lib.gmic.figures import gmic_view_figure
from course_lib.viz import image_browser

outputs = {}
with torch.inference_mode():
    for k_view, name in enumerate(test["names"]):
        if test["labels"][k_view].any() and len(outputs) < 6:
            outputs[name] = (k_view, model(torch.from_numpy(test["windows"][k_view:k_view + 1])[:, None].to(device)))


def figure_for(name):
    k_view, output = outputs[name]
    return gmic_view_figure(test["windows"][k_view], output.saliency_map[0].cpu().numpy(),
                            output.patch_locations[0].cpu().numpy(), output.patches[0].cpu().numpy(),
                            output.patch_attns[0].cpu().numpy(), model.config.crop_shape,
                            test["benign_masks"][k_view], test["malignant_masks"][k_view], rows=2,
                            title=f"SYNTHETIC {name}, mask-supervised weights: y_fusion benign "
                                  f"{output.y_fusion[0, 0]:.2f}, malignant {output.y_fusion[0, 1]:.2f}")


figure_for(next(iter(outputs)))
plt.show()
image_browser(outputs, figure_for)  # pick a lesion view to draw its figure (in Jupyter)

# %% [markdown]
# **The real exam 0, through the kit's phantom weights.** The quarter model needs 768×512 windows, so each real
# view is shrunk 4× and preprocessed with the quarter geometry. This model has never seen a real mammogram: the
# figure shows the *mechanics*, not a diagnosis.

# %%
# NBVAL_CHECK_OUTPUT
quarter_real = {view: preprocess_view(image[::4, ::4], view, geometry=GMICGeometry.quarter())[0]
                for view, image in exam0_raw.items()}
with torch.inference_mode():
    real_outputs = {view: model(torch.from_numpy(w)[None, None].to(device)) for view, w in quarter_real.items()}
for view, output in real_outputs.items():
    patches = output.patches[0].cpu().numpy()
    empty = [bool(np.mean(p == quarter_real[view].min()) > 0.9) for p in patches]
    attention = output.patch_attns[0].cpu().numpy()
    print(f"real 0_{view} (phantom weights): {sum(empty)} of 6 crops are >90 % padding, holding "
          f"{attention[empty].sum():.2f} of the attention; saliency max benign "
          f"{float(output.saliency_map[0, 0].max()):.3f}, malignant {float(output.saliency_map[0, 1].max()):.3f}")

# %%
if real_outputs:
    view, output = next(iter(real_outputs.items()))
    gmic_view_figure(quarter_real[view], output.saliency_map[0].cpu().numpy(), output.patch_locations[0].cpu().numpy(),
                     output.patches[0].cpu().numpy(), output.patch_attns[0].cpu().numpy(), model.config.crop_shape,
                     rows=2, title=f"real 0_{view}, quarter scale, SYNTHETIC-trained weights (not a diagnosis)")
    plt.show()

# %% [markdown]
# Why do some crops show only background, yet get attention? The ROI search min-max normalises each class's
# map before adding them: on a map that is nearly flat (no lesion anywhere), tiny differences are stretched to
# the full 0..1 range, so the "best" windows can be anywhere, padding included. And the attention weights are a
# softmax: they always sum to 1, whatever the crops hold. An empty crop with weight 0.2 means "less bad than
# the others", not "found something".
#
# ## 8. Does the saliency map point at the lesion? Numbers, on held-out phantoms, per loss
#
# - **image AUC** per class, from y_fusion;
# - **pointing game**: on each view with a lesion of a class, does that class's saliency maximum fall in a grid
#   cell that touches the lesion? (Tolerance: one 64-pixel cell, the map's own resolution.)
# - **Dice** of the saliency map thresholded at 0.5 (each cell covering its 64×64 block) against the lesion mask.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.gmic.evaluate import evaluate_localisation, predict_views

predictions = {}
for label, candidate in models.items():
    y_fusion, saliency, _ = predict_views(candidate, test["windows"], device=device)
    predictions[label] = saliency
    scores = evaluate_localisation(y_fusion, saliency, test["labels"], test["benign_masks"], test["malignant_masks"])
    print(f"SYNTHETIC held-out test, {label} weights: AUC benign {scores['auc_benign']:.3f}, "
          f"AUC malignant {scores['auc_malignant']:.3f}, pointing game {scores['pointing_game']:.3f} "
          f"on {scores['pointing_game_n']} lesion views, saliency Dice {scores['saliency_dice']:.3f}")

# %% [markdown]
# **The fair comparison, and the gap.** Both rows come from the same architecture, phantoms and test exams; only
# the loss (and the compute) differ. With image labels only, the model learns to *classify* malignant views
# (AUC well above 0.5) but its saliency maps do not point at the lesions: its pointing game is at the level of
# an untrained model (about 1 in 20), far below the target of 0.70 and below the mask-supervised 0.85. So the
# localisation the mask-supervised weights show is bought with the lesion-mask term; the paper's weakly
# supervised localisation is **not reproduced** here. What would be needed is what the paper had: far more
# images (its training set holds about a million) and far longer training. A likely reason on this budget: at
# quarter scale top-t% pooling averages 2 of the map's 96 cells per class, so each step tells the map about two
# cells only. Run `course-kit gmic train --mask-weight 0` longer (the `full` profile, on a GPU) and compare with
# the rows above.
#
# **Grad-CAM of the same global network**, on two layers, target = y_global of the lesion's class, each map
# averaged over its 64×64 blocks and scored the same way:
#
# - `final_bn`: the global network's last BatchNorm, h_g *before* its ReLU (through `pytorch-grad-cam`);
# - `h_g`: after the ReLU, the map the saliency head reads.
#
# Why should Grad-CAM on h_g point where the saliency does? The saliency logit of class c is a 1×1 convolution
# without bias, $w_c^\top h_g$. The gradient of y_global reaches h_g only at the top-t cells, and there it is
# $w_c$ times a positive factor, so Grad-CAM's channel weights are a positive multiple of $w_c$, and the map is
# $\mathrm{ReLU}(w_c^\top h_g)$, the positive part of the saliency logit, up to scale. On h_g the comparison
# therefore measures (almost) nothing: same argmax wherever the logit is positive (on a view where every logit
# is negative the Grad-CAM map is all zero and its "maximum" is the first cell: that is the gap between the two
# rows below). On `final_bn` it measures what
# the ReLU changes. Neither is an independent explanation of the model.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.gmic.gradcam import block_mean, gmic_gradcam
from course_lib.metrics import pointing_game_hit

cams = {}
for label, candidate in models.items():
    hits = {"GMIC saliency": [], "Grad-CAM final_bn": [], "Grad-CAM h_g": []}
    for channel, masks in ((0, test["benign_masks"]), (1, test["malignant_masks"])):
        lesion_views = np.flatnonzero(test["labels"][:, channel])
        if not len(lesion_views):
            continue
        for layer in ("final_bn", "h_g"):
            maps_layer = block_mean(gmic_gradcam(candidate.cpu(), test["windows"][lesion_views], channel, layer=layer), 64)
            cams[label, layer, channel] = dict(zip(lesion_views, maps_layer))
            hits[f"Grad-CAM {layer}"] += [pointing_game_hit(m, masks[k_view]) for k_view, m in zip(lesion_views, maps_layer)]
        hits["GMIC saliency"] += [pointing_game_hit(predictions[label][k_view, channel], masks[k_view])
                                  for k_view in lesion_views]
    candidate.to(device)
    for method, found in hits.items():
        print(f"SYNTHETIC pointing game, {label} weights, {method:17}: {np.mean(found):.3f} ({sum(found)}/{len(found)})")

# %%
# NBVAL_CHECK_OUTPUT
with torch.inference_mode():
    logits = model(torch.from_numpy(test["windows"][index:index + 1])[:, None].to(device)).saliency_logits[0, 1]
positive = torch.relu(logits).cpu().numpy()
positive = (positive - positive.min()) / max(positive.max() - positive.min(), 1e-7)
if index in cams.get(("mask-supervised", "h_g", 1), {}):
    print(f"SYNTHETIC view {test['names'][index]}: Grad-CAM on h_g equals the normalised ReLU of the malignant "
          f"saliency logit: {np.allclose(cams['mask-supervised', 'h_g', 1][index], positive, atol=1e-4)}")

# %%
if index in cams.get(("mask-supervised", "h_g", 1), {}):
    lesion = test["malignant_masks"][index]
    panels = [(test["windows"][index], "SYNTHETIC input", "gray"),
              (predictions["mask-supervised"][index, 1], "GMIC saliency (malignant)", "magma"),
              (cams["mask-supervised", "final_bn", 1][index], "Grad-CAM, final_bn (pre-ReLU)", "magma"),
              (cams["mask-supervised", "h_g", 1][index], "Grad-CAM, h_g (post-ReLU)", "magma")]
    fig, axes = plt.subplots(1, 4, figsize=(13, 4.5))
    for ax, (picture, title, cmap) in zip(axes, panels):
        shown = ax.imshow(picture, cmap=cmap)
        outline = lesion if picture.shape == lesion.shape else block_mean(lesion[None].astype(float), 64)[0] > 0
        ax.contour(outline, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(f"{title}\n(mask-supervised weights)", fontsize=9)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## 9. Training GMIC: the paper's loss
#
# The official repository ships no training code. The paper's loss, for image labels y (benign, malignant), has
# three binary cross-entropies and an **L1 norm** of the saliency maps A, a *sum* over both classes and every cell:
#
# $$L = \mathrm{BCE}(y, \hat y_\text{global}) + \mathrm{BCE}(y, \hat y_\text{local}) + \mathrm{BCE}(y, \hat y_\text{fusion})
#       + \beta \sum_{c}\sum_{i,j} |A^c_{ij}|$$
#
# with β from the paper's hyper-parameter search (about $10^{-5.5}$ to $10^{-3.5}$; the kit uses $10^{-4}$). The
# L1 term keeps the maps sparse: without it a map can light up the whole breast and still classify well. A
# *mean* instead of the sum (what the mask-supervised weights used) divides the term by the number of cells:

# %%
# NBVAL_CHECK_OUTPUT
for name, geometry in (("official", GMICGeometry.official()), ("quarter", GMICGeometry.quarter())):
    h_cells, w_cells = gmic_config("1", geometry=geometry).cam_size
    print(f"{name:8}: 2 x {h_cells} x {w_cells} = {2 * h_cells * w_cells:,} cells: a mean makes the L1 term "
          f"{2 * h_cells * w_cells:,} times smaller")

# %% [markdown]
# The ROI search is not differentiable: the local network learns from whatever crops the current maps select.
# One short epoch on a few phantom exams shows the loss and its parts (`saliency` is the L1 norm before β); the
# `full` profile trains at full resolution on a GPU, and `course-kit gmic train` made the kit's weights (each
# model card lists the loss, the command, the data, the epochs and the test metrics).

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

# %%
# NBVAL_CHECK_OUTPUT
for label, card in cards.items():
    print(f"{label} weights: `{card['command']}`\n  per-epoch training loss {card['training_loss']}\n"
          f"  held-out test metrics {card['test_metrics']}")

# %% [markdown]
# ## When one machine is not enough: data parallelism
#
# Copy the model to N devices and give each a different 1/N of every batch. Each copy computes the gradients
# of its part; they are averaged over the copies, so every copy takes the same step, the step one device would
# take on the whole batch. That **global batch** is what the optimiser sees: keep it fixed and only the speed
# changes. Grow it N-fold to keep every device busy and the averaged gradient gets less noisy, so larger steps
# become possible: the linear rule scales the learning rate by N, with a warm-up (Goyal et al., 2017).
# BatchNorm must then average its statistics over all devices too, or each copy normalises with its own,
# smaller batch; and GMIC's BatchNorm re-estimation after training must see the whole training set once, not
# one shard.
#
# The kit's trainers run unchanged under `torchrun --nproc_per_node N` (PyTorch DistributedDataParallel,
# `course_lib.distributed`), and `course-kit preprocess ... --shard K/N` then `--merge` splits preprocessing over
# an array job; the README shows a SLURM script. On this 2-core CPU GMIC trains at about 0.7 images/s at quarter
# scale, so one epoch of 640 phantom views takes about 15 minutes; N GPUs would divide that by nearly N. That is
# an estimate from the step time: no GPU was available to measure it (`benchmarks/bench_distributed.py`).

# %% [markdown]
# ## Summary
#
# - GMIC reads the whole window with a small network and only six crops with a large one: that is what makes
#   full resolution affordable, and the saliency maps that choose the crops are its built-in explanation.
# - Every step rebuilt by hand agrees with `course_lib`: top-t% pooling, the ROI search, gated attention, fusion.
#   The prediction y_fusion reads max-pooled h_g and the crops; the maps steer it only through the crops.
# - Most of the window is padding, and skipping it is exact.
# - Localisation numbers mean something only with the loss named: with a lesion-mask term the phantom weights
#   point at the lesion (pointing game 0.85); with the paper's loss, image labels only, on an hour of CPU they
#   classify but do not localise (0.03). Grad-CAM on post-ReLU h_g is the saliency logit again, by construction.
# - The paper's regulariser is an L1 *sum*; a mean makes it thousands of times weaker.
# - The quarter-scale model shows the mechanics, not GMIC's performance.
#
# ## Exercises
#
# Each cell checks your answer with `EXERCISES.check`: it says "right!" or gives a hint, never the solution.
#
# **05.1** (warm-up). How many saliency cells does top-t% pooling average, per class, for the kit's quarter-scale
# phantom model (768×512 window, t = 2 %)? Answer with an integer.

# %%
from course_lib.gmic.exercises import EXERCISES

# BEGIN SOLUTION
answer = round((768 // 64) * (512 // 64) * 0.02)
# END SOLUTION
EXERCISES.check("05.1", answer)

# %% [markdown]
# **05.2**. What fraction of the quarter-scale window does one crop cover? (A fraction, e.g. 0.5, not 50.)

# %%
# BEGIN SOLUTION
answer = 128 * 128 / (768 * 512)
# END SOLUTION
EXERCISES.check("05.2", answer)

# %% [markdown]
# **05.3**. Write top-t% pooling yourself: `top_t(maps, t)` takes (N, C, h, w) saliency maps and a fraction t
# and returns the (N, C) means of the `round(h * w * t)` largest cells. The check tries t = 3 % among others.

# %%
# BEGIN SOLUTION
def top_t(maps, t):
    count = round(maps.shape[2] * maps.shape[3] * t)
    return maps.flatten(2).topk(count, dim=-1).values.mean(dim=-1)
# END SOLUTION
EXERCISES.check("05.3", top_t)

# %% [markdown]
# **05.4** (harder). Write gated attention: `attention(h, model)` takes the (K, 512) crop vectors and a GMIC model
# and returns the K attention weights, using `model.mil_attn_U`, `model.mil_attn_V` and `model.mil_attn_w`.
# Then think: why can an empty background crop still receive a weight of 0.2?

# %%
# BEGIN SOLUTION
def attention(h, model):
    scores = model.mil_attn_w(torch.sigmoid(model.mil_attn_U(h)) * torch.tanh(model.mil_attn_V(h)))[:, 0]
    return torch.softmax(scores, dim=0)
# END SOLUTION
EXERCISES.check("05.4", attention)
