"""Patch sampling from full mammograms and lesion (ROI) masks, as Shen et al. describe it.

Shen et al. (Scientific Reports 9:12495, 2019; repository lishen/end2end-all-conv)
train the patch classifier on small windows cut from CBIS-DDSM mammograms:
windows on a lesion get the lesion's class, windows elsewhere are "background".
For one view (one mammogram and the masks of its lesions) :func:`sample_view`

1. segments the breast (grey levels scaled to 8 bits by the image maximum,
   threshold at 5 % of that maximum, largest connected region, holes filled),
   zeroes everything outside it and crops image and masks to its bounding box;
2. pads both with a zero margin of half a patch;
3. for each lesion, draws patch centres uniformly inside the bounding box of the
   mask's largest region and accepts one when its *overlap* with the lesion
   exceeds ``roi_cutoff`` (0.75); after ``patience`` (1000) rejections in a row
   the cutoff drops by 0.05 (an error when it reaches 0);
4. once per view, takes *hard negatives*: centres of bright blobs (a
   multi-threshold blob detector, :func:`blob_centres`) whose overlap with
   every lesion is at most ``background_cutoff`` (0.35), in a seeded random order;
5. fills up with random *background* centres anywhere in the padded image (so
   some show air or padding), with the same overlap limit.

The overlap of a window with a lesion is ``inter / lesion area`` or ``inter /
window area``, whichever is larger, where the window is clipped to the image and
``inter`` counts lesion pixels inside it: a small lesion is "in" a window that
holds most of it, a large one when it fills most of the window.

Differences from the original, on purpose: background and hard negatives keep
clear of *every* lesion of the view (the original checks the first lesion
only); the random stream is seeded per view from the view's name, so the
patches do not depend on the order or the number of processes; a test split
is made besides train and validation (patient-level, stratified on cancer).

Classes: ``n_classes=3`` gives background, benign, malignant; ``n_classes=5``
gives background and calcification/mass x benign/malignant (:data:`CLASS_NAMES`).
:func:`sample_patches` runs this over a whole CBIS-DDSM-style folder and writes
16-bit PNG patches plus ``index.csv``.
"""

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from course_lib.io import atomic_output

__all__ = [
    "CLASS_NAMES",
    "SamplingSettings",
    "Lesion",
    "Patch",
    "lesion_class",
    "segment_breast",
    "overlap",
    "roi_centres",
    "blob_centres",
    "sample_view",
    "patient_split",
    "sample_patches",
    "INDEX_COLUMNS",
]

#: Class names, in label order, of each mode.
CLASS_NAMES = {
    3: ("background", "benign", "malignant"),
    5: ("background", "calc_ben", "calc_mal", "mass_ben", "mass_mal"),
}
#: Columns of ``index.csv``, one row per patch.
INDEX_COLUMNS = [
    "file", "split", "class_name", "label", "kind", "patient_id", "side", "view",
    "abn_num", "centre_row", "centre_col", "overlap",
]  # fmt: skip

_BREAST_THRESHOLD = 0.05  # of the 8-bit maximum
_BLOB_THRESHOLDS = np.arange(0.5 * 255, 0.95 * 255 + 1e-9, 10.0)
_BLOB_MIN_AREA = 3
_BLOB_MIN_DISTANCE = 10.0  # pixels between blob centres of one group
_BLOB_MIN_REPEAT = 2  # thresholds a blob must appear at


@dataclass(frozen=True)
class SamplingSettings:
    """How many patches of which size; the paper's values are in brackets.

    ``patch_size`` [224 at 1152x896; 256 at 4096 rows], ``n_roi`` per lesion and
    ``n_background`` per view, hard negatives included [10 for the paper's "S10"
    set, 30 for "S30"], ``n_hard`` hard negatives per view at most [15], ``roi_cutoff`` [0.75],
    ``background_cutoff`` [0.35], ``patience`` [1000], ``n_classes`` 3 or 5,
    ``seed`` [12345].
    """

    patch_size: int = 48
    n_roi: int = 10
    n_background: int = 10
    n_hard: int = 5
    roi_cutoff: float = 0.75
    background_cutoff: float = 0.35
    patience: int = 1000
    n_classes: int = 3
    segment: bool = True
    seed: int = 12345

    def __post_init__(self):
        if self.n_classes not in CLASS_NAMES:
            raise ValueError(f"n_classes must be 3 or 5, got {self.n_classes}")
        if self.patch_size < 4:
            raise ValueError(f"patch_size must be at least 4, got {self.patch_size}")


@dataclass
class Lesion:
    """One lesion of a view: its mask (same size as the image) and labels."""

    mask: np.ndarray
    pathology: str  # MALIGNANT, BENIGN, BENIGN_WITHOUT_CALLBACK
    abnormality_type: str  # "calc" or "mass"
    abn_num: int = 1


@dataclass
class Patch:
    """One sampled patch: pixels (the image's own grey levels) and where it came from."""

    pixels: np.ndarray
    class_name: str
    kind: str  # "roi", "hard_negative" or "background"
    abn_num: int
    centre: tuple  # (row, col) in the original, uncropped image
    overlap: float


def lesion_class(pathology, abnormality_type, n_classes=3):
    """Class name of a lesion: malignant means the pathology *starts with* "MALIGNANT".

    >>> lesion_class("MALIGNANT", "mass"), lesion_class("BENIGN_WITHOUT_CALLBACK", "calc", 5)
    ('malignant', 'calc_ben')
    """
    malignant = str(pathology).upper().startswith("MALIGNANT")
    if n_classes == 3:
        return "malignant" if malignant else "benign"
    kind = "calc" if str(abnormality_type).lower() == "calc" else "mass"
    return f"{kind}_{'mal' if malignant else 'ben'}"


def _largest_region(mask):
    """The largest 8-connected region of ``mask`` (empty if there is none)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes)))


def segment_breast(image):
    """Breast mask and its bounding box (row and column slices).

    Grey levels are scaled to 8 bits by the image's maximum and thresholded at
    5 % of it; the largest region, holes filled, is the breast.
    """
    image = np.asarray(image)
    high = float(image.max())
    if high <= 0:
        raise ValueError("the image is black: no breast to segment")
    scaled = np.floor(image.astype(np.float64) * (255.0 / high))
    mask = ndimage.binary_fill_holes(_largest_region(scaled > _BREAST_THRESHOLD * 255))
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask, (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))


class _Overlap:
    """Overlap of patch windows with one mask, in O(1) per window (summed-area table)."""

    def __init__(self, mask, patch_size, image_box):
        self.patch_size = patch_size
        self.half = patch_size // 2
        self.area = int(mask.sum())
        self.table = np.pad(np.cumsum(np.cumsum(mask, 0, dtype=np.int64), 1), ((1, 0), (1, 0)))
        self.image_box = image_box  # (r0, r1, c0, c1): the unpadded image inside the padded one

    def __call__(self, row, col):
        r0, r1, c0, c1 = self.image_box
        top, left = max(row - self.half, r0), max(col - self.half, c0)
        bottom = min(row - self.half + self.patch_size, r1)
        right = min(col - self.half + self.patch_size, c1)
        if bottom <= top or right <= left or self.area == 0:
            return 0.0
        t = self.table
        inter = t[bottom, right] - t[top, right] - t[bottom, left] + t[top, left]
        window = (bottom - top) * (right - left)
        return float(max(inter / self.area, inter / window))


def overlap(centre, mask, patch_size):
    """Overlap of the ``patch_size`` window centred at ``centre`` (row, col) with ``mask``.

    ``max(inter / mask area, inter / clipped window area)``; see the module docstring.

    >>> mask = np.zeros((20, 20), bool); mask[8:12, 8:12] = True
    >>> overlap((10, 10), mask, 8), overlap((2, 2), mask, 8)
    (1.0, 0.0)
    """
    mask = np.asarray(mask, bool)
    return _Overlap(mask, int(patch_size), (0, mask.shape[0], 0, mask.shape[1]))(*map(int, centre))


def _valid_centres(shape, patch_size):
    """(low, high) inclusive row and column ranges of centres whose window fits in ``shape``."""
    half = patch_size // 2
    return (half, shape[0] - patch_size + half), (half, shape[1] - patch_size + half)


def roi_centres(lesion_overlap, box, n, rng, cutoff=0.75, patience=1000, step=0.05):
    """``n`` centres drawn uniformly in ``box`` (r0, r1, c0, c1) with overlap > cutoff.

    After ``patience`` rejections in a row the cutoff drops by ``step``; returns
    the centres, their overlaps and the cutoff finally used.
    """
    centres, overlaps, rejected = [], [], 0
    while len(centres) < n:
        row = int(rng.integers(box[0], box[1]))
        col = int(rng.integers(box[2], box[3]))
        value = lesion_overlap(row, col)
        if value > cutoff:
            centres.append((row, col))
            overlaps.append(value)
            rejected = 0
            continue
        rejected += 1
        if rejected >= patience:
            cutoff, rejected = round(cutoff - step, 10), 0
            if cutoff <= 0:
                raise ValueError("no patch overlaps the lesion: the cutoff fell to 0")
    return centres, overlaps, cutoff


def blob_centres(image8, max_area, min_area=_BLOB_MIN_AREA):
    """Centres (row, col) of bright blobs, found as a multi-threshold blob detector does.

    At thresholds 0.5*255 to 0.95*255 in steps of 10 the image is binarised; each
    connected region of ``min_area`` to ``max_area`` pixels is a candidate; a blob
    is a group of candidates from different thresholds lying within 10 pixels of
    each other, kept when seen at 2 thresholds or more. Sorted by (row, col).
    """
    groups = []  # [sum_row, sum_col, count]
    for threshold in _BLOB_THRESHOLDS:
        labels, n = ndimage.label(image8 >= threshold)
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        areas = ndimage.sum_labels(np.ones(labels.shape), labels, index)
        keep = index[(areas >= min_area) & (areas <= max_area)]
        if keep.size == 0:
            continue
        for row, col in ndimage.center_of_mass(np.ones(labels.shape), labels, keep):
            for group in groups:
                if np.hypot(group[0] / group[2] - row, group[1] / group[2] - col) < _BLOB_MIN_DISTANCE:
                    group[0] += row
                    group[1] += col
                    group[2] += 1
                    break
            else:
                groups.append([row, col, 1])
    centres = [(round(g[0] / g[2]), round(g[1] / g[2])) for g in groups if g[2] >= _BLOB_MIN_REPEAT]
    return sorted(centres)


def _view_rng(seed, name):
    """The random stream of one view: fixed by the seed and the view's name only."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def sample_view(image, lesions, settings=SamplingSettings(), name="view"):
    """Sample the patches of one view (see the module docstring for the steps).

    Parameters
    ----------
    image : 2-D integer array (the mammogram's grey levels, not rescaled)
    lesions : list of :class:`Lesion` (masks of ``image``'s size, not empty)
    settings : :class:`SamplingSettings`
    name : str
        Names the view in error messages and seeds its random stream.

    Returns
    -------
    list of :class:`Patch`: per lesion its ROI patches, then the view's hard
    negatives and background patches (numbered after the first lesion).
    """
    image = np.asarray(image)
    size = settings.patch_size
    if image.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D greyscale image, got shape {image.shape}")
    if size > min(image.shape):
        raise ValueError(
            f"{name}: patch size {size} is larger than the image ({image.shape[0]}x{image.shape[1]}); "
            "choose a smaller patch size or a larger image size"
        )
    if not lesions:
        raise ValueError(f"{name}: no lesion to sample patches from")
    for lesion in lesions:
        if lesion.mask.shape != image.shape:
            raise ValueError(f"{name}: lesion {lesion.abn_num} mask is {lesion.mask.shape}, image {image.shape}")
    rng = _view_rng(settings.seed, name)
    if settings.segment:
        breast, (rows, cols) = segment_breast(image)
        image = np.where(breast, image, 0)[rows, cols]
        masks = [np.asarray(lesion.mask, bool)[rows, cols] for lesion in lesions]
        offset = (rows.start, cols.start)
    else:
        masks = [np.asarray(lesion.mask, bool) for lesion in lesions]
        offset = (0, 0)
    half = size // 2
    padded = np.pad(image, half)
    masks = [np.pad(mask, half) for mask in masks]
    image_box = (half, half + image.shape[0], half, half + image.shape[1])
    (row_low, row_high), (col_low, col_high) = _valid_centres(padded.shape, size)

    def cut(row, col):
        return padded[row - half:row - half + size, col - half:col - half + size]

    def original(row, col):
        return (row - half + offset[0], col - half + offset[1])

    patches = []
    for lesion, mask in zip(lesions, masks):
        region = _largest_region(mask)
        if not region.any():
            raise ValueError(f"{name}: lesion {lesion.abn_num} lies outside the segmented breast")
        r, c = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
        box = (max(r[0], row_low), min(r[-1], row_high) + 1, max(c[0], col_low), min(c[-1], col_high) + 1)
        lesion_overlap = _Overlap(mask, size, image_box)
        centres, overlaps, _ = roi_centres(
            lesion_overlap, box, settings.n_roi, rng, settings.roi_cutoff, settings.patience
        )
        class_name = lesion_class(lesion.pathology, lesion.abnormality_type, settings.n_classes)
        patches += [
            Patch(cut(*c), class_name, "roi", lesion.abn_num, original(*c), v)
            for c, v in zip(centres, overlaps)
        ]

    union = _Overlap(np.logical_or.reduce(masks), size, image_box)
    high = float(padded.max())
    image8 = np.floor(padded * (255.0 / high)) if high > 0 else np.zeros(padded.shape)
    blobs = [
        (r, c) for r, c in blob_centres(image8, max_area=size * size)
        if row_low <= r <= row_high and col_low <= c <= col_high
    ]
    chosen = []
    for index in rng.permutation(len(blobs)):
        if len(chosen) == min(settings.n_hard, settings.n_background):
            break
        value = union(*blobs[index])
        if value <= settings.background_cutoff:
            chosen.append((blobs[index], value, "hard_negative"))
    # Random windows fill up to n_background: the fewer blobs, the more random windows.
    attempts, n_wanted = 0, settings.n_background
    while len(chosen) < n_wanted:
        attempts += 1
        if attempts > settings.patience * max(n_wanted, 1):
            raise ValueError(f"{name}: found no background window clear of the lesions")
        row, col = int(rng.integers(row_low, row_high + 1)), int(rng.integers(col_low, col_high + 1))
        value = union(row, col)
        if value <= settings.background_cutoff:
            chosen.append(((row, col), value, "background"))
    first = lesions[0].abn_num
    patches += [Patch(cut(*c), "background", kind, first, original(*c), v) for c, v, kind in chosen]
    return patches


def patient_split(patients, cancer, val_size=0.1, test_size=0.2, seed=12345):
    """{patient: "train" | "val" | "test"}, stratified on ``cancer`` (patient has a malignant lesion).

    Within each stratum the patients are shuffled with ``seed``; ``round(n * test_size)``
    go to test and ``round(n * val_size)`` to validation, the rest to train, so all
    views of a patient share a split. The original makes no test split.

    >>> split = patient_split(list("abcdefghij"), [True] * 5 + [False] * 5, 0.2, 0.2, seed=0)
    >>> sorted(split.values()).count("test"), sorted(split.values()).count("val")
    (2, 2)
    """
    if not 0 <= val_size < 1 or not 0 <= test_size < 1 or val_size + test_size >= 1:
        raise ValueError(f"val_size {val_size} and test_size {test_size} must leave patients for training")
    flags = {}
    for patient, flag in zip(patients, cancer):
        flags[patient] = flags.get(patient, False) or bool(flag)
    rng = np.random.default_rng(seed)
    split = {}
    for stratum in (False, True):
        group = sorted(p for p, f in flags.items() if f == stratum)
        order = [group[i] for i in rng.permutation(len(group))]
        n_test, n_val = round(len(group) * test_size), round(len(group) * val_size)
        for i, patient in enumerate(order):
            split[patient] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return split


# --- a whole folder -----------------------------------------------------------------------


def _read_grey(path, what):
    """A greyscale PNG as stored; a clear error naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            array = np.asarray(img)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {what} {path}: {error}") from error
    if array.ndim != 2:
        raise ValueError(f"{what} {path} is not a greyscale image (shape {array.shape})")
    return array.astype(np.uint16) if array.dtype == np.int32 else array


def _write_png16(path, array):
    from PIL import Image

    with atomic_output(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array, dtype=np.uint16)).save(tmp, format="PNG")


def _view_name(row):
    return f"{row['patient_id']}_{row['side']}_{row['view']}"


def load_view(root, rows):
    """Image and lesions of one view from ``rows`` of a lesion table (paths relative to ``root``).

    A mask whose size differs from its image's is an error naming both files and
    sizes; an empty mask is skipped and reported. Returns (image, lesions, problems).
    """
    root = Path(root)
    image_path = root / rows[0]["full_png"]
    image = _read_grey(image_path, "mammogram")
    lesions, problems = [], []
    for row in rows:
        mask_path = root / row["roi_png"]
        mask = _read_grey(mask_path, "ROI mask") > 0
        if mask.shape != image.shape:
            raise ValueError(
                f"ROI mask {mask_path} is {mask.shape[0]}x{mask.shape[1]} but its mammogram "
                f"{image_path} is {image.shape[0]}x{image.shape[1]}: they must have the same size"
            )
        if not mask.any():
            problems.append(f"{mask_path}: empty ROI mask, lesion {row['abn_num']} skipped")
            continue
        lesions.append(Lesion(mask, row["pathology"], row["abnormality_type"], int(row["abn_num"])))
    return image, lesions, problems


def _sample_view_step(item, output_dir, settings):
    """Batch-engine step (:mod:`course_lib.batch`): sample one view, write its PNGs, return its index rows."""
    rows, split = item.options["rows"], item.options["split"]
    sampling = SamplingSettings(**settings["sampling"])
    image, lesions, problems = load_view(settings["root"], rows)
    if not lesions:
        return {"outputs": [], "index": [], "problems": problems}
    patches = sample_view(image, lesions, sampling, item.name)
    labels = {c: i for i, c in enumerate(CLASS_NAMES[sampling.n_classes])}
    index, counters = [], {}
    for patch in patches:
        number = counters.get(patch.abn_num, 0)
        counters[patch.abn_num] = number + 1
        file = f"{split}/{patch.class_name}/{item.name}_{patch.abn_num}_{number:04d}.png"
        _write_png16(Path(output_dir) / file, patch.pixels)
        index.append({
            "file": file, "split": split, "class_name": patch.class_name,
            "label": labels[patch.class_name], "kind": patch.kind,
            "patient_id": rows[0]["patient_id"], "side": rows[0]["side"], "view": rows[0]["view"],
            "abn_num": patch.abn_num, "centre_row": int(patch.centre[0]),
            "centre_col": int(patch.centre[1]), "overlap": round(patch.overlap, 4),
        })  # fmt: skip
    return {"outputs": [row["file"] for row in index], "index": index, "problems": problems}


def read_lesion_table(root, table="metadata.csv"):
    """The lesion rows of a converted CBIS-DDSM folder whose files exist, and the problems.

    ``table`` is what :func:`course_lib.datasets.cbis_ddsm.convert_cbis_ddsm` writes
    (columns patient_id, side, view, abn_num, abnormality_type, pathology, full_png,
    roi_png). Rows whose PNGs are missing are listed in the problems; the rest goes on.
    """
    import pandas as pd

    root = Path(root)
    path = root / table
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: convert the CBIS-DDSM download first "
            "(course_lib.datasets.cbis_ddsm.convert_cbis_ddsm or course-kit preprocess)"
        )
    lesions = pd.read_csv(path, dtype={"patient_id": str})
    missing = [c for c in ("patient_id", "side", "view", "abn_num", "abnormality_type",
                           "pathology", "full_png", "roi_png") if c not in lesions.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}")
    problems, keep = [], []
    for row in lesions.itertuples():
        absent = [str(getattr(row, c)) for c in ("full_png", "roi_png")
                  if not isinstance(getattr(row, c), str) or not (root / getattr(row, c)).is_file()]
        if absent:
            problems.append(f"{path} row {row.Index}: missing file(s) {', '.join(absent)}; lesion skipped")
        keep.append(not absent)
    return lesions[keep].reset_index(drop=True), problems


@dataclass
class SamplingReport:
    """What :func:`sample_patches` did: the index, the split and every problem met."""

    index: "object"  # pandas DataFrame with INDEX_COLUMNS
    split: dict
    problems: list

    def counts(self):
        """Patches per split and class, as a DataFrame."""
        return self.index.groupby(["split", "class_name"]).size().unstack(fill_value=0)


def sample_patches(root, out_dir, settings=SamplingSettings(), val_size=0.1, test_size=0.2,
                   processes=1, table="metadata.csv", split=None):
    """Sample patches from every view of a converted CBIS-DDSM folder (real or phantom).

    Writes ``out_dir/<split>/<class>/<patient>_<SIDE>_<VIEW>_<abn>_<NNNN>.png``
    (16-bit, the image's own grey levels), ``out_dir/index.csv``
    (:data:`INDEX_COLUMNS`), ``out_dir/<split>/pat_lst.txt`` (one patient per line,
    no header) and ``out_dir/problems.txt``. The split is by patient, stratified on
    cancer (:func:`patient_split`), unless ``split`` ({patient: split}) gives it,
    e.g. one made over every image of the data set for the whole-image stage.

    Each view is one item of the kit's batch engine (:func:`course_lib.batch.run_batch`):
    ``processes`` workers, atomic outputs, and a rerun skips the views whose mammogram,
    lesion rows, split and settings are unchanged and whose PNGs are intact, so an
    interrupted run resumes. A view that fails is reported and the rest goes on.
    Inputs are only read.
    """
    import pandas as pd

    root, out_dir = Path(root), Path(out_dir)
    lesions, problems = read_lesion_table(root, table)
    if lesions.empty:
        raise ValueError(f"no usable lesion in {root / table}: " + "; ".join(problems[:5]))
    malignant = lesions.pathology.str.upper().str.startswith("MALIGNANT")
    if split is None:
        split = patient_split(list(lesions.patient_id), list(malignant), val_size, test_size, settings.seed)
    unknown = sorted(set(lesions.patient_id) - set(split))
    if unknown:
        raise ValueError(f"split does not place the patients {unknown[:5]}")
    from course_lib.batch import BatchItem, run_batch

    records = json.loads(lesions.to_json(orient="records"))  # plain JSON values for the batch records
    views = {}
    for record in records:
        views.setdefault(_view_name(record), []).append(record)
    items = [BatchItem(name, str(root / rows[0]["full_png"]),
                       {"rows": rows, "split": split[rows[0]["patient_id"]]})
             for name, rows in sorted(views.items())]
    batch = run_batch(items, _sample_view_step, out_dir, {"root": str(root), "sampling": asdict(settings)},
                      processes=processes, description="sampling patches")
    results = [batch.records[item.name] for item in items if item.name in batch.records]
    rows = [row for result in results for row in result["index"]]
    problems += [p for result in results for p in result["problems"]]
    problems += [f"{row['source']}: {row['reason']}" for row in batch.failed]
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    with atomic_output(out_dir / "index.csv") as tmp:
        index.to_csv(tmp, index=False)
    for name in ("train", "val", "test"):
        patients = sorted(p for p, s in split.items() if s == name)
        with atomic_output(out_dir / name / "pat_lst.txt") as tmp:
            tmp.write_text("".join(f"{p}\n" for p in patients))
    with atomic_output(out_dir / "problems.txt") as tmp:
        tmp.write_text("".join(f"{p}\n" for p in problems))
    return SamplingReport(index, split, problems)
