# %% [markdown]
# # 00 · Getting started: what a mammogram is made of, and how to tell a good phantom from a bad one
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/breast-imaging-course/course-kit/blob/main/notebooks/00_getting_started.ipynb)
#
# A mammogram is a 12-bit map of how much X-ray each column of breast tissue absorbed. Dense (fibroglandular)
# tissue absorbs more than fat, looks brighter, hides lesions, and raises cancer risk: radiologists grade it as
# BI-RADS density A–D. Its texture has a remarkably simple statistic, a power-law spectrum. This first lesson
# looks at a real mammogram, then at the kit's *synthetic phantoms*, and asks: how would you check that a phantom
# looks like the real thing?
#
# **What you will learn**
# - what a real mammogram file holds (12-bit values in a 16-bit PNG);
# - BI-RADS density, and why the kit's phantoms use the 4th edition's quartiles while real labels do not;
# - the power-law exponent β of breast texture, fitted by hand on a real image and on a phantom (log-log power
#   spectrum), then with the kit's function;
# - synthetic phantoms with exact ground truth, mammography and histology;
# - how every notebook is organised (profiles, a seed, an environment report) and how the kit gets real data
#   (appendix).
#
# **Cite** the sources of the data and methods you use here:
# Shen Y. et al., *An interpretable classifier for high-resolution breast cancer screening images utilizing weakly supervised localization*, Medical Image Analysis 68:101908 (2021) (GMIC sample exam);
# Burgess A.E., Jacobson F.L., Judy P.F., *Human observer detection experiments with mammograms and power-law noise*, Medical Physics 28(4):419–437 (2001) (β);
# Spanhol F.A. et al., *A Dataset for Breast Cancer Histopathological Image Classification*, IEEE TBME 63(7):1455–1462 (2016) (BreakHis);
# ACR BI-RADS Atlas, 4th (2003) and 5th (2013) editions.
#
# | profile | hardware | run time |
# |---|---|---|
# | `default` | 2-core CPU | 11 s measured on an idle 2-core VM (nbval in CI), 19 s on a busy one |
# | `full` | any (full-size phantoms; nothing here needs a GPU) | not measured in this session |
#
# *Not for clinical use. Synthetic images are always labelled synthetic.*

# %%
# Setup. On Google Colab this clones the kit at the release this notebook belongs to and installs
# this lesson's extra on top of Colab's own packages (the kit sets lower bounds only, so Colab's
# torch, tensorflow and ipywidgets stay). Running it again changes nothing.
# Anywhere else it does nothing: use `make course`, or the conda environment.yml (see README).
import os
import subprocess
import sys

KIT_RELEASE, KIT_EXTRA = "v0.2.0", "dicom"
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
    smoke=dict(phantom_shape=(368, 240), beta_phantoms=4),
    default=dict(phantom_shape=(736, 480), beta_phantoms=20),
    full=dict(phantom_shape=(2944, 1920), beta_phantoms=40),
)
print(PROFILE, settings)

# %%
import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np

from course_lib import data

report = dict(line.split(None, 1) for line in course_lib.environment_report(with_device=False).splitlines())
print(f"Python {report['python'].split()[0]}, numpy {report['numpy']}, course-kit {report['course-kit']}; seeded "
      f"{', '.join(course_lib.seed_everything(0))} with 0  (full report: print(course_lib.environment_report()))")

# %% [markdown]
# ## 1. A real mammogram
#
# GMIC's sample exam 0 is four real screening mammograms. `try_fetch` returns `None` (and says why) when a file
# cannot be had, so this section is skipped rather than broken on a machine with neither network nor mirror
# (the appendix explains the registry and the offline mirror).

# %%
# NBVAL_CHECK_OUTPUT
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

# %%
if path is not None:
    fig, axes = plt.subplots(1, 2, figsize=(8, 5))
    axes[0].imshow(mammogram, cmap="gray")
    axes[0].set_title("0_R-CC (real, GMIC sample exam)")
    axes[0].set_axis_off()
    axes[1].hist(mammogram[mammogram > 0].ravel(), bins=128, color="gray")
    axes[1].set_xlabel("stored value (12-bit)")
    axes[1].set_title("histogram of breast pixels")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# The image is a *right* breast, and it faces left: the chest wall is on the right edge. That is a display
# convention (mammograms are hung as if facing the patient), not physics. GMIC flips right-breast images so that
# every breast faces right before the model sees it (notebook 01 does this step by step).
#
# ## 2. Synthetic phantoms, with ground truth
#
# A handful of real images cannot train or measure anything. Where no real data can be had, the kit draws
# **synthetic phantoms** whose ground truth is known exactly: breast outline, dense tissue, pectoral muscle,
# lesions. They are always labelled synthetic, and no number measured on them is a clinical result.
#
# **BI-RADS density.** The phantom's letter follows from its *measured* dense fraction with the quartiles of the
# BI-RADS **4th edition** (2003): A < 25 % ≤ B < 50 % ≤ C < 75 % ≤ D. The **5th edition** (2013) dropped these
# percentages: the categories are now the radiologist's visual judgement (and C means "heterogeneously dense,
# which may obscure small masses"). Real labels, such as the INFN data set's of notebook 02, are radiologists'
# visual categories, so a phantom's letter and a real image's letter are not measured the same way.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.phantoms.mammogram import make_mammogram

examples = [make_mammogram(seed, view=view, side=side, shape=settings["phantom_shape"],
                           dense_fraction=fraction, lesions=lesions)
            for seed, (view, side, fraction, lesions) in enumerate([
                ("CC", "L", 0.15, ("benign_mass",)), ("CC", "R", 0.40, ("malignant_mass",)),
                ("MLO", "L", 0.60, ("calcifications",)), ("MLO", "R", 0.85, ())])]
for p in examples:
    print(f"SYNTHETIC {p.view}-{p.side}: dense fraction {p.measured_dense_fraction:.3f} -> BI-RADS {p.density}; "
          f"pectoral {p.pectoral_mask.mean():.3f} of the image; labels {p.labels}")

# %% [markdown]
# One intensity scale for all four (so that brighter *is* denser from panel to panel), and the ground truth
# outlined:

# %%
from matplotlib.lines import Line2D

low, high = np.percentile(np.concatenate([p.image[p.breast_mask] for p in examples]), [0.5, 99.5])
fig, axes = plt.subplots(1, 4, figsize=(14, 5))
for ax, p in zip(axes, examples):
    shown = ax.imshow(p.image, cmap="gray", vmin=low, vmax=high)
    for mask, colour in ((p.benign_mask, "lime"), (p.malignant_mask, "red"), (p.pectoral_mask, "cyan")):
        if mask.any():
            ax.contour(mask, levels=[0.5], colors=colour, linewidths=0.8)
    ax.set_title(f"SYNTHETIC {p.view}-{p.side}, BI-RADS {p.density}", fontsize=9)
    ax.set_axis_off()
fig.colorbar(shown, ax=axes, fraction=0.02, pad=0.01, label="stored value (same scale in every panel)")
fig.legend([Line2D([], [], color=c) for c in ("lime", "red", "cyan")],
           ["benign lesion", "malignant lesion", "pectoral muscle"], loc="lower center", ncol=3)
plt.show()

# %% [markdown]
# ## 3. Is the texture realistic? The power-law exponent β, by hand
#
# Burgess et al. (2001) showed that the power spectrum of mammographic texture falls as a power law,
# $P(f) \propto f^{-\beta}$, with β around 2.5–3 (later studies report means of 2.5 to 2.9). On a log-log plot that
# is a straight line of slope −β. The recipe, on one real image and one phantom:
#
# 1. take a square region well inside the breast (an odd side, centred on the point farthest from the skin);
# 2. remove its mean and multiply by a 2-D Hann window (so that the square's edges do not add spurious power);
# 3. |FFT|², averaged over rings of equal frequency |f| (the texture is isotropic);
# 4. fit a line to log P against log f between 0.02 and 0.15 cycles/pixel; β is minus its slope.

# %%
from scipy import fft, ndimage

from course_lib.phantoms.texture import FIT_BAND, fit_power_law_exponent


def central_square(mask):
    """A boolean mask of an odd-sided square deep inside ``mask`` (the image border counts as an edge)."""
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(np.argmax(distance), distance.shape)
    half = int(distance.max() / 1.5)
    square = np.zeros_like(mask, dtype=bool)
    square[row - half:row + half + 1, col - half:col + half + 1] = True
    return square


def power_spectrum_by_hand(patch):
    n = patch.shape[0]
    windowed = (patch - patch.mean()) * np.outer(np.hanning(n), np.hanning(n))
    power = np.abs(fft.rfft2(windowed)) ** 2  # a real image's spectrum is symmetric: half of it is enough
    ring = np.rint(np.hypot(fft.fftfreq(n)[:, None] * n, fft.rfftfreq(n)[None, :] * n)).astype(int)
    k = np.arange(1, n // 2 + 1)
    return k / n, np.bincount(ring.ravel(), power.ravel())[k] / np.bincount(ring.ravel())[k]


texture_phantom = make_mammogram(100, view="CC", side="L", shape=settings["phantom_shape"])
regions = {"SYNTHETIC phantom": (texture_phantom.image, texture_phantom.breast_mask & ~texture_phantom.pectoral_mask)}
if path is not None:
    regions["real 0_R-CC"] = (mammogram, mammogram > 0)
spectra = {}
for name, (picture, mask) in regions.items():
    square = central_square(mask)
    side = int(np.sqrt(square.sum()))
    patch = picture[square].reshape(side, side).astype(np.float64)
    spectra[name] = (square, *power_spectrum_by_hand(patch))

# %%
# NBVAL_CHECK_OUTPUT
for name, (square, f, power) in spectra.items():
    band = (f >= FIT_BAND[0]) & (f <= FIT_BAND[1])
    slope, _ = np.polyfit(np.log(f[band]), np.log(power[band]), 1)
    picture = regions[name][0]
    library = fit_power_law_exponent(picture, square, skin_margin=1e-9)  # exactly this square
    print(f"{name:18}: square of {int(np.sqrt(square.sum()))} px, beta by hand {-slope:.3f}, "
          f"fit_power_law_exponent on the same square {library:.3f}")
    assert abs(-slope - library) < 1e-6

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for name, (square, f, power) in spectra.items():
    ax.loglog(f, power / power[0], label=name)
ax.axvspan(*FIT_BAND, color="0.9", label="fitted band")
ax.set_xlabel("spatial frequency f (cycles/pixel)")
ax.set_ylabel("P(f) / P(first ring)")
ax.legend()
plt.show()

# %% [markdown]
# **What the band means in cycles per mm.** The band is in cycles *per pixel*; in cycles per mm it depends on
# the pixel size. The default phantoms are drawn at a quarter of full size, 0.4 mm per pixel: 0.02–0.15
# cycles/pixel is 0.05–0.375 cycles/mm (structures 2.7 to 20 mm across). The GMIC PNGs carry no pixel spacing;
# at the ~0.1 mm of a full-field detector (an assumption) the same band is 0.2–1.5 cycles/mm (0.7 to 5 mm). So
# the two βs describe *different physical scales*; they agree only because a power law has the same slope at
# every scale, which is exactly the claim being tested.
#
# Now the library call on many phantoms (its own region choice: the largest square kept clear of the skin), and
# on the four real views:

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.exam_list import VIEWS

phantom_betas = np.array([
    fit_power_law_exponent(p.image, p.breast_mask & ~p.pectoral_mask)
    for p in (make_mammogram(100 + i, view=("CC", "MLO")[i % 2], side="LR"[i // 2 % 2],
                             shape=settings["phantom_shape"]) for i in range(settings["beta_phantoms"]))])
print(f"SYNTHETIC phantoms: beta = {phantom_betas.mean():.2f} +/- {phantom_betas.std():.2f} "
      f"(n = {len(phantom_betas)})")

# %%
# NBVAL_CHECK_OUTPUT
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
# tumour mask for malignant images, nuclei sized by magnification, and a file name in BreakHis's convention;
# drawn here at 40X, the magnification of the real image beside it, so that like is compared with like.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.datasets.breakhis import parse_breakhis_filename
from course_lib.phantoms.histology import make_histology

histology = make_histology(0, "malignant", "DC", magnification=40)  # as the real one
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

# %% [markdown]
# ## Summary
#
# - Real mammograms here are 12-bit values in 16-bit PNGs; right breasts face left by display convention.
# - The phantoms' BI-RADS letter uses the 4th edition's quartiles of the *measured* dense fraction; real labels
#   are radiologists' visual categories (5th edition).
# - Breast texture follows a power law (Burgess et al. 2001): β fitted by hand from a Hann-windowed log-log power
#   spectrum equals the kit's `fit_power_law_exponent`, and phantoms agree with the real exam within ±0.5.
# - Every number printed from a phantom is labelled SYNTHETIC and is not a clinical result.
#
# ## Exercises
#
# Each cell checks your answer with `EXERCISES.check` (the set `EXERCISES_00` of `course_lib.lesson_exercises`):
# it says "right!" or gives a hint, never the solution.
#
# **00.1** (warm-up). Give the BI-RADS 4th-edition letters of dense fractions 0.10, 0.25, 0.60 and 0.80, as a
# list of four letters.

# %%
from course_lib.lesson_exercises import EXERCISES_00 as EXERCISES

# BEGIN SOLUTION
answer = ["A", "B", "C", "D"]
# END SOLUTION
EXERCISES.check("00.1", answer)

# %% [markdown]
# **00.2**. How many bits of the 16-bit container does the real mammogram of section 1 use? (An integer.)

# %%
# BEGIN SOLUTION
answer = int(4095).bit_length()
# END SOLUTION
EXERCISES.check("00.2", answer)

# %% [markdown]
# **00.3** (harder). Write the fit of step 4 yourself: `fit_beta(f, power)` takes frequencies and a power spectrum
# (already restricted to the band) and returns β. Then predict: would adding white detector noise make the
# fitted β larger or smaller?

# %%
# BEGIN SOLUTION
def fit_beta(f, power):
    slope, _ = np.polyfit(np.log(f), np.log(power), 1)
    return -slope
# END SOLUTION
EXERCISES.check("00.3", fit_beta)

# %% [markdown]
# ## Appendix A. Profiles
#
# Every notebook runs in one of three *profiles*, read from the `COURSE_PROFILE` environment variable in the cell
# tagged `parameters` (papermill overrides it; `pytest --nbval` reads the variable):
#
# | profile | meant for | size |
# |---|---|---|
# | `smoke` | the CI run that proves every cell still executes | seconds |
# | `default` | you, on a laptop CPU; the stored outputs come from this profile | a few minutes |
# | `full` | real datasets at full size, on a GPU | hours |
#
# Values that depend on the profile are derived in the cell *after* the parameters cell, because papermill
# injects its parameters between the two. One seed makes a run repeatable: `seed_everything` seeds Python and
# NumPy, and torch and keras when they are already imported, so call it after your imports. Paste the full
# environment report into any question you ask about the kit:

# %%
print(course_lib.environment_report())

# %% [markdown]
# ## Appendix B. The data registry and licences
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
# ## Appendix C. Running a workshop on flaky wifi: the offline mirror
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
