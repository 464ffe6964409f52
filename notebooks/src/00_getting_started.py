# %% [markdown]
# # 00 · Getting started with the breast-imaging course kit
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/breast-imaging-course/course-kit/blob/main/notebooks/00_getting_started.ipynb)
#
# **What you will learn**
# - how every notebook of the kit is organised: a setup cell, *profiles* (`smoke`, `default`, `full`), an environment report, one seed;
# - how the kit gets real data: a *registry* of pinned, hash-checked files, served from your cache, an offline mirror, or the network;
# - what a real mammogram file looks like (12-bit values in a 16-bit PNG) next to the kit's *synthetic phantoms*,
#   and how to check that a phantom's texture is realistic (the power-law exponent β);
# - what the later notebooks cover.
#
# **Cite** the sources of the data you use here:
# Shen Y. et al., *An interpretable classifier for high-resolution breast cancer screening images utilizing weakly supervised localization*, Medical Image Analysis 68:101908 (2021) (GMIC sample exam);
# Spanhol F.A. et al., *A Dataset for Breast Cancer Histopathological Image Classification*, IEEE TBME 63(7):1455–1462 (2016) (BreakHis).
#
# | profile | hardware | run time |
# |---|---|---|
# | `default` | 2-core laptop CPU | about 20 s |
# | `full` | GPU | about 20 s (nothing here needs a GPU) |
#
# *Not for clinical use. Synthetic images are always labelled synthetic.*

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

# %% [markdown]
# ## Profiles
#
# Every notebook runs in one of three *profiles*, read from the `COURSE_PROFILE` environment variable
# in the cell tagged `parameters` below (papermill overrides it; `pytest --nbval` reads the variable):
#
# | profile | meant for | size |
# |---|---|---|
# | `smoke` | the CI run that proves every cell still executes | seconds |
# | `default` | you, on a laptop CPU; the stored outputs come from this profile | a few minutes |
# | `full` | real datasets at full size, on a GPU | hours |
#
# Values that depend on the profile are derived in the cell *after* the parameters cell, because papermill
# injects its parameters between the two.

# %% tags=["parameters"]
import os

PROFILE = os.environ.get("COURSE_PROFILE", "default")

# %%
import course_lib

PROFILE = course_lib.get_profile(PROFILE)
settings = course_lib.settings_for(
    PROFILE,
    smoke=dict(phantom_shape=(368, 240), beta_phantoms=4),
    default=dict(phantom_shape=(736, 480), beta_phantoms=20),
    full=dict(phantom_shape=(2944, 1920), beta_phantoms=40),
)
print(PROFILE, settings)

# %% [markdown]
# ## Your environment
#
# Paste this report into any question you ask about the kit: most "it does not work" reports are
# version or device problems. The device is chosen once, with a CPU fallback, by `course_lib.env.pick_device`.

# %%
print(course_lib.environment_report())

# %% [markdown]
# One seed makes a run repeatable. `seed_everything` seeds Python and NumPy, and torch and keras when they
# are already imported, so call it after your imports; it says what it seeded.

# %%
print(course_lib.seed_everything(0))

# %% [markdown]
# ## The data registry
#
# Real mammograms, model weights and published results are never copied into the kit. The registry lists
# each file with a URL pinned to a commit, a hash, its licence and citation. `fetch(key)` looks for the file in
#
# 1. your cache (`COURSE_DATA_DIR`, by default your OS cache folder),
# 2. an offline mirror (`COURSE_DATA_MIRROR`: a folder laid out as `OWNER/REPO/COMMIT/PATH`),
# 3. the network,
#
# and checks the hash before handing it over. A corrupt file is moved aside, never used.

# %%
# NBVAL_CHECK_OUTPUT
import pandas as pd

from course_lib import data

registry = pd.DataFrame([vars(e) for e in data.load_registry().values()])
registry["project"] = registry["key"].str.split("/").str[0]
print(f"{len(registry)} registered files")
print(registry.groupby(["project", "licence"]).size().to_string())

# %% [markdown]
# From a terminal, `course-kit fetch --list` prints the same list, with where each file is available right
# now (`cache`, `mirror` or `remote`). Here are a few keys:

# %%
for key in ["gmic/sample_data/images/0_R-CC.png", "gmic/models/sample_model_1.p",
            "infn-density/myproject/TestSet/CC_R/test/A/1251_1_A_CC_R.png"]:
    entry = data.get_entry(key)
    print(f"{key}\n    {entry.description}\n    available from: {data.locate(key) or 'network only'}")

# %% [markdown]
# ## A real mammogram
#
# GMIC's sample exam 0 is four real screening mammograms. `try_fetch` returns `None` (and says why) when a file
# cannot be had, so this section is skipped rather than broken on a machine with neither network nor mirror.

# %%
import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np

path = data.try_fetch("gmic/sample_data/images/0_R-CC.png")
if path is not None:
    mammogram = iio.imread(path)
    print(f"file       {path.name} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"shape      {mammogram.shape} (rows x columns)")
    print(f"dtype      {mammogram.dtype}")
    print(f"values     {mammogram.min()} .. {mammogram.max()}  -> {int(mammogram.max()).bit_length()} bits used")
    print(f"air (=0)   {np.mean(mammogram == 0):.1%} of the pixels")
    # The facts the kit relies on (docs/original_pipelines.md, GMIC sample files): 12-bit data in a 16-bit container.
    assert mammogram.dtype == np.uint16 and mammogram.max() == 4095

    fig, axes = plt.subplots(1, 2, figsize=(8, 5))
    axes[0].imshow(mammogram, cmap="gray")
    axes[0].set_title("0_R-CC (real, GMIC sample exam)")
    axes[1].hist(mammogram[mammogram > 0].ravel(), bins=128, color="gray")
    axes[1].set_xlabel("stored value (12-bit)")
    axes[1].set_title("histogram of breast pixels")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# The image is *right* breast, and it faces left, as the detector wrote it: the chest wall is on the right
# edge. GMIC flips right-breast images so that every breast faces right before the model sees it
# (notebook 01 does this step by step).
#
# ## Running a workshop on flaky wifi: the offline mirror
#
# The cache uses the mirror's layout, so a filled cache *is* a mirror. Before the workshop, on a machine with
# internet:
#
# ```bash
# COURSE_DATA_DIR=/media/usb/course-mirror course-kit fetch --all
# ```
#
# On each student machine (or in the JupyterHub's environment settings):
#
# ```bash
# export COURSE_DATA_MIRROR=/media/usb/course-mirror
# ```
#
# Every file is still hash-checked when it is copied from the mirror into the student's cache. The cell below
# shows where your cache and mirror are.

# %%
print("cache :", "set by COURSE_DATA_DIR" if os.environ.get(data.CACHE_ENV_VAR) else "OS default")
print("mirror:", "set by COURSE_DATA_MIRROR" if data.mirror_dir() else "none (files come from the network)")

# %% [markdown]
# ## Synthetic phantoms, with ground truth
#
# A handful of real images cannot train or measure anything. Where no real data can be had, the kit draws
# **synthetic phantoms** whose ground truth is known exactly: breast outline, dense tissue, pectoral muscle,
# lesions. They are always labelled synthetic, and no number measured on them is a clinical result.
#
# `make_mammogram` draws one view. Fibroglandular tissue is *power-law* noise: its power spectrum falls as
# $P(f) \propto f^{-\beta}$, the statistics reported for real mammograms (β between about 2.5 and 3).
# The BI-RADS density letter follows from the *measured* dense fraction (A < 25 % ≤ B < 50 % ≤ C < 75 % ≤ D).

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.exam_list import VIEWS
from course_lib.phantoms.mammogram import make_mammogram

examples = [make_mammogram(seed, view=view, side=side, shape=settings["phantom_shape"],
                           dense_fraction=fraction, lesions=lesions)
            for seed, (view, side, fraction, lesions) in enumerate([
                ("CC", "L", 0.15, ("benign_mass",)), ("CC", "R", 0.40, ("malignant_mass",)),
                ("MLO", "L", 0.60, ("calcifications",)), ("MLO", "R", 0.85, ())])]
for p in examples:
    print(f"SYNTHETIC {p.view}-{p.side}: dense fraction {p.measured_dense_fraction:.3f} -> BI-RADS {p.density}; "
          f"pectoral {p.pectoral_mask.mean():.3f} of the image; labels {p.labels}")

# %%
fig, axes = plt.subplots(1, 5, figsize=(16, 5))
if path is not None:
    axes[0].imshow(mammogram, cmap="gray")
    axes[0].set_title("real: GMIC 0_R-CC")
for ax, p in zip(axes[1:], examples):
    ax.imshow(p.image, cmap="gray")
    ax.contour(p.benign_mask, colors="lime", linewidths=0.8)
    ax.contour(p.malignant_mask, colors="red", linewidths=0.8)
    ax.contour(p.pectoral_mask, colors="cyan", linewidths=0.8)
    ax.set_title(f"SYNTHETIC {p.view}-{p.side}, BI-RADS {p.density}")
for ax in axes:
    ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# **Is the texture realistic?** Fit β the same way on the real GMIC mammograms and on phantoms: a Hann-windowed
# square inside the breast, its radially averaged power spectrum, a straight line in log-log over
# 0.02–0.15 cycles/pixel. The kit's target: real and synthetic agree within ±0.5.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.phantoms.texture import fit_power_law_exponent

phantom_betas = np.array([
    fit_power_law_exponent(p.image, p.breast_mask & ~p.pectoral_mask)
    for p in (make_mammogram(100 + i, view=("CC", "MLO")[i % 2], side="LR"[i // 2 % 2],
                             shape=settings["phantom_shape"]) for i in range(settings["beta_phantoms"]))])
print(f"SYNTHETIC phantoms: beta = {phantom_betas.mean():.2f} +/- {phantom_betas.std():.2f} "
      f"(n = {len(phantom_betas)})")

# %%
real_betas = {}
for view in VIEWS:
    real_path = data.try_fetch(f"gmic/sample_data/images/0_{view}.png")
    if real_path is not None:
        real = iio.imread(real_path)
        real_betas[view] = fit_power_law_exponent(real, real > 0)
for view, beta in real_betas.items():
    print(f"real GMIC 0_{view}: beta = {beta:.2f}, phantom mean - real = {phantom_betas.mean() - beta:+.2f}")
    assert abs(phantom_betas.mean() - beta) <= 0.5, "phantom texture no longer matches real mammograms"

# %% [markdown]
# Histology gets the same treatment: `make_histology` draws a BreakHis-like H&E image (700×460 RGB) with a
# tumour mask for malignant images, nuclei sized by magnification, and a file name in BreakHis's convention.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.datasets.breakhis import parse_breakhis_filename
from course_lib.phantoms.histology import make_histology

histology = make_histology(0, "malignant", "DC", magnification=100)
print(f"SYNTHETIC {histology.filename}: {histology.image.shape}, tumour covers {histology.tumour_mask.mean():.3f}")
print(parse_breakhis_filename(histology.filename))

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
real_histology = data.try_fetch("breakhis/SOB_M_DC-14-2523-40-010.png")
if real_histology is not None:
    axes[0].imshow(iio.imread(real_histology))
    axes[0].set_title("real: BreakHis SOB_M_DC-14-2523-40-010 (40X)")
axes[1].imshow(histology.image)
axes[1].contour(histology.tumour_mask, colors="yellow", linewidths=0.8)
axes[1].set_title(f"SYNTHETIC {histology.filename} (tumour outlined)")
for ax in axes:
    ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What the later notebooks cover
#
# | notebook | pipeline | data in the default profile |
# |---|---|---|
# | `01_dicom_and_preprocessing` | DICOM → 16-bit/8-bit PNG; cropping, GMIC's optimal windows, background and pectoral-muscle removal | 8 real CBIS-DDSM DICOMs, GMIC exam 0, phantom DICOMs |
# | `02_density` | BI-RADS density with the INFN Keras ResNet, one model per projection, Grad-CAM | INFN TestSet (real), phantoms |
# | `03_patch_to_whole_image` | Shen et al.'s patch classifier turned into a whole-image classifier | CBIS-DDSM-style phantoms |
# | `04_amil_breakhis` | attention-based multiple-instance learning on histology, attention heatmaps | BreakHis originals (real), histology phantoms |
# | `05_gmic_saliency` | GMIC inference with saliency maps and ROI patches, official weights | GMIC exam 0 (real), phantoms |
#
# Notebooks appear in this table as the kit grows; `course-kit run` runs all that exist.
