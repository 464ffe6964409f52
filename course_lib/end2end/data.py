"""SYNTHETIC CBIS-DDSM-style folders for the end2end lesson, and loading whole images.

:func:`write_phantom_cases` writes teaching phantoms
(:func:`course_lib.phantoms.mammogram.make_mammogram`) in the layout that
:func:`course_lib.datasets.cbis_ddsm.convert_cbis_ddsm` makes from a CBIS-DDSM
download: ``full/<patient>_<SIDE>_<VIEW>.png`` (16-bit PNG holding 12-bit data),
``roi/<Mass|Calc>-Training_<patient>_<SIDE>_<VIEW>_<abn>.png`` (8-bit 0/255
masks) and ``metadata.csv`` (one row per lesion), so the same patch sampler runs
on both. Unlike CBIS-DDSM it also holds lesion-free views, listed with every other
view in ``images.csv`` (one row per image, ``cancer`` = a malignant lesion is
present), which the whole-image stage needs.

Every image is SYNTHETIC. The default ``lesion_contrast`` of 3 makes the lesions
three times as conspicuous as the phantom generator's realistic default: that is
what lets a small network learn them on a CPU in minutes (say so when showing
results). At contrast 2 the lesson's recipe reaches a held-out AUC of only about 0.7.
"""

from pathlib import Path

import numpy as np

from course_lib.io import atomic_output
from course_lib.phantoms.mammogram import make_mammogram

__all__ = ["PHANTOM_SHAPE", "PHANTOM_BITS", "write_phantom_cases", "image_table", "load_images",
           "lesion_masks_of"]

#: (rows, cols) of the lesson's phantoms: an eighth of the full field, 0.8 mm pixels.
PHANTOM_SHAPE = (368, 240)
#: Bits stored by the phantoms (12-bit data in a 16-bit PNG, like CBIS-DDSM scans).
PHANTOM_BITS = 12

# Lesions of one breast and their probabilities: a third of the breasts are normal.
_BREAST_MENU = (
    ((), 0.34),
    (("benign_mass",), 0.22),
    (("malignant_mass",), 0.22),
    (("calcifications",), 0.16),
    (("benign_mass", "calcifications"), 0.06),
)
_PATHOLOGY = {"benign_mass": "BENIGN", "malignant_mass": "MALIGNANT", "calcifications": "MALIGNANT"}
_TYPE = {"benign_mass": "mass", "malignant_mass": "mass", "calcifications": "calc"}


def _write_png(path, array):
    from PIL import Image

    with atomic_output(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def write_phantom_cases(out_dir, n_patients=40, seed=0, shape=PHANTOM_SHAPE, lesion_contrast=3.0,
                        prefix="P_T"):
    """Write ``n_patients`` SYNTHETIC patients (4 views each) in the converted CBIS-DDSM layout.

    Returns the image table (also written to ``images.csv``); ``metadata.csv``
    holds the lesion rows. Patients are ``<prefix>0001`` ...; both views of a
    breast show the same lesion kinds (drawn independently).
    """
    import pandas as pd

    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    menus, probabilities = zip(*_BREAST_MENU)
    lesion_rows, image_rows = [], []
    for number in range(1, n_patients + 1):
        patient = f"{prefix}{number:04d}"
        dense_fraction = float(rng.uniform(0.1, 0.6))
        for side_index, side in enumerate(("L", "R")):
            kinds = menus[rng.choice(len(menus), p=probabilities)]
            for view_index, view in enumerate(("CC", "MLO")):
                phantom_seed = int(np.random.SeedSequence([seed, number, side_index, view_index]).generate_state(1)[0])
                phantom = make_mammogram(phantom_seed, view, side, shape, dense_fraction=dense_fraction,
                                         lesions=kinds, lesion_contrast=lesion_contrast)
                side_word = "LEFT" if side == "L" else "RIGHT"
                full = f"full/{patient}_{side_word}_{view}.png"
                _write_png(out_dir / full, phantom.image)
                for abn_num, lesion in enumerate(phantom.lesion_masks, start=1):
                    word = "Mass" if _TYPE[lesion.kind] == "mass" else "Calc"
                    roi = f"roi/{word}-Training_{patient}_{side_word}_{view}_{abn_num}.png"
                    _write_png(out_dir / roi, lesion.mask.astype(np.uint8) * 255)
                    lesion_rows.append({
                        "patient_id": patient, "side": side_word, "view": view, "abn_num": abn_num,
                        "abnormality_type": _TYPE[lesion.kind], "pathology": _PATHOLOGY[lesion.kind],
                        "kind": lesion.kind, "full_png": full, "roi_png": roi,
                    })  # fmt: skip
                image_rows.append({
                    "full_png": full, "patient_id": patient, "side": side_word, "view": view,
                    "cancer": int(phantom.malignant_mask.any()), "lesion_kinds": ";".join(kinds),
                    "bits_stored": PHANTOM_BITS, "synthetic": True,
                })  # fmt: skip
    lesions = pd.DataFrame(lesion_rows)
    images = pd.DataFrame(image_rows)
    with atomic_output(out_dir / "metadata.csv") as tmp:
        lesions.to_csv(tmp, index=False)
    with atomic_output(out_dir / "images.csv") as tmp:
        images.to_csv(tmp, index=False)
    return images


def image_table(root):
    """One row per full image with its ``cancer`` label.

    Read from ``images.csv`` when the folder has one (phantom folders), else derived
    from ``metadata.csv`` (a converted CBIS-DDSM download: every image there has a
    lesion; cancer = one of them is malignant).
    """
    import pandas as pd

    root = Path(root)
    if (root / "images.csv").is_file():
        return pd.read_csv(root / "images.csv", dtype={"patient_id": str})
    lesions = pd.read_csv(root / "metadata.csv", dtype={"patient_id": str}).dropna(subset=["full_png"])
    lesions["cancer"] = lesions.pathology.str.upper().str.startswith("MALIGNANT").astype(int)
    return (lesions.groupby("full_png", as_index=False)
            .agg(patient_id=("patient_id", "first"), side=("side", "first"), view=("view", "first"),
                 cancer=("cancer", "max")))


def _resize(image, shape):
    """Bicubic resize to (rows, cols) in float32 (Pillow's filter widens when shrinking), clipped to
    the source's range."""
    from PIL import Image

    if image.shape == tuple(shape):
        return image.astype(np.float32)
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize(
        (shape[1], shape[0]), Image.Resampling.BICUBIC)
    # Bicubic interpolation overshoots at edges: keep the values inside the source's range.
    return np.clip(np.asarray(resized), 0, float(image.max()))


def load_images(root, files, shape):
    """The images ``files`` (relative to ``root``), resized to ``shape``, as one float32 array (N, H, W).

    Grey levels stay as stored (rescaling is the model's first step). A file that
    cannot be read is an error naming it.
    """
    from PIL import Image

    root = Path(root)
    out = np.empty((len(files), *shape), np.float32)
    for i, file in enumerate(files):
        try:
            with Image.open(root / file) as img:
                array = np.asarray(img)
        except OSError as error:
            raise ValueError(f"cannot read mammogram {root / file}: {error}") from error
        out[i] = _resize(array, shape)
    return out


def lesion_masks_of(root, files, shape, malignant_only=True):
    """Union of the (malignant) lesion masks of each image in ``files``, resized to ``shape`` (bool)."""
    import pandas as pd

    root = Path(root)
    lesions = pd.read_csv(root / "metadata.csv", dtype={"patient_id": str})
    if malignant_only:
        lesions = lesions[lesions.pathology.str.upper().str.startswith("MALIGNANT")]
    masks = np.zeros((len(files), *shape), bool)
    by_image = lesions.groupby("full_png").roi_png.apply(list).to_dict()
    for i, file in enumerate(files):
        for roi in by_image.get(file, []):
            with __import__("PIL.Image").Image.open(root / roi) as img:
                masks[i] |= _resize(np.asarray(img), shape) > 127
    return masks
