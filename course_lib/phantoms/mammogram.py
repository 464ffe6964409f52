"""Synthetic mammogram phantoms with pixel-exact ground truth.

Every image made here is SYNTHETIC: a procedural drawing of a breast, not a
patient. It exists so the course can show and test preprocessing, density
estimation and lesion localisation on data with known answers and no privacy
constraints.

Orientation follows what a detector writes for a "for presentation" image:
a left breast has its chest wall on the left image edge and points right; a
right breast is the mirror image. Bright means attenuating (MONOCHROME2).

Lengths are specified in millimetres and converted with :data:`PIXELS_PER_MM`
scaled to the requested image height, so a phantom looks the same at any
size: the default 736 x 480 is a quarter of the 2944 x 1920 full-field size
(about 0.1 mm pixels at full size, 0.4 mm at the default).
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, special
from skimage.morphology import convex_hull_image

from course_lib.phantoms.texture import power_law_noise

__all__ = [
    "MammogramPhantom",
    "LesionMask",
    "make_mammogram",
    "density_from_fraction",
    "LESION_KINDS",
    "DENSITY_THRESHOLDS",
    "DEFAULT_SHAPE",
    "FULL_SHAPE",
]

#: Full-field detector matrix (rows, cols) and the default quarter scale.
FULL_SHAPE = (2944, 1920)
DEFAULT_SHAPE = (736, 480)

#: Pixels per millimetre at full size: 2944 rows of 0.1 mm.
PIXELS_PER_MM = 10.0

#: Lesion kinds and whether each is malignant.
LESION_KINDS = {
    "benign_mass": False,  # circumscribed oval mass
    "malignant_mass": True,  # irregular spiculated mass
    "calcifications": True,  # cluster of fine bright specks
}

#: Upper bounds of the dense-area fraction for BI-RADS density A, B and C;
#: D is everything from 0.75 up. These are the quartiles of the BI-RADS 4th
#: edition (ACR BI-RADS Atlas, 4th ed., 2003: <25 %, 25-50 %, 51-75 %,
#: >75 % glandular). The 5th edition (2013) dropped the percentages in
#: favour of a visual judgement; a phantom needs a rule, so we keep these.
DENSITY_THRESHOLDS = (0.25, 0.50, 0.75)

# Intensities as fractions of full scale, chosen to match the grey levels of
# the GMIC sample exam (fat about 0.18, dense tissue about 0.6 of 4095).
_FAT_LEVEL = 0.18
_GLAND_GAIN = 0.42
_FAT_TEXTURE_GAIN = 0.08
_MUSCLE_LEVEL = 0.55
_SKIN_LEVEL = 0.22
_NOISE_SD = 0.004
_AIR_NOISE_SD = 0.0015

# Anatomy in millimetres.
_SKIN_MM = 1.5  # skin thickness
_FALLOFF_MM = 25.0  # rounded edge of a compressed breast, about half its thickness
_SUBCUTANEOUS_MM = 12.0  # fatty layer kept clear of glandular tissue
_GLAND_SOFTNESS = 0.5  # sigmoid width of the fat/gland transition, in texture SDs
_TEXTURE_ASPECT = 1.6  # elongation of parenchymal structures


@dataclass
class LesionMask:
    """One lesion: its kind, malignancy and pixel mask."""

    kind: str
    malignant: bool
    mask: np.ndarray


@dataclass
class MammogramPhantom:
    """A synthetic mammogram and its ground truth.

    ``image`` is uint16 with values ``0 .. 2**bits - 1``. ``labels`` has the
    GMIC breast-level form; only keys of the imaged side can be 1.
    """

    image: np.ndarray
    breast_mask: np.ndarray
    dense_mask: np.ndarray
    pectoral_mask: np.ndarray
    lesion_masks: list[LesionMask]
    benign_mask: np.ndarray
    malignant_mask: np.ndarray
    density: str
    measured_dense_fraction: float
    labels: dict
    view: str
    side: str
    seed: int
    beta: float
    synthetic: bool = field(default=True, init=False)


def density_from_fraction(fraction):
    """BI-RADS density letter (A-D) of a dense-area fraction in [0, 1].

    A: < 0.25, B: < 0.50, C: < 0.75, D: >= 0.75 (see
    :data:`DENSITY_THRESHOLDS`).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"dense fraction must lie in [0, 1], got {fraction}")
    return "ABCD"[int(np.searchsorted(DENSITY_THRESHOLDS, fraction, side="right"))]


def _breast_outline(shape, view, rng):
    """Breast mask of a left breast (chest wall at column 0).

    The outline is given row by row as the distance from the chest wall to
    the skin: a half-ellipse for CC; for MLO an axillary tail that leaves
    the top edge and widens smoothly into a half-ellipse around the nipple.
    """
    rows, cols = shape
    y = np.arange(rows, dtype=np.float64)
    depth = cols * rng.uniform(0.62, 0.80)
    if view == "CC":
        nipple_row = rows * rng.uniform(0.46, 0.54)
        upper = rows * rng.uniform(0.38, 0.45)
        lower = rows * rng.uniform(0.38, 0.45)
        s = np.where(y < nipple_row, (nipple_row - y) / upper, (y - nipple_row) / lower)
        edge = depth * np.sqrt(np.clip(1.0 - s**2, 0.0, None))
    else:
        nipple_row = rows * rng.uniform(0.52, 0.62)
        fold_row = rows * rng.uniform(0.90, 0.97)  # inframammary fold
        top_width = cols * rng.uniform(0.42, 0.58)
        s_up = np.clip(y / nipple_row, 0.0, 1.0)
        s_down = np.clip((y - nipple_row) / (fold_row - nipple_row), 0.0, 1.0)
        # Leaves the top edge on a diagonal, meets the nipple region flat.
        upper_edge = top_width + (depth - top_width) * (
            1.0 - (1.0 - s_up) ** rng.uniform(1.6, 2.2)
        )
        lower_edge = depth * np.sqrt(1.0 - s_down**2)
        edge = np.where(y < nipple_row, upper_edge, lower_edge)
    # A few low harmonics along the rows make each outline slightly irregular.
    harmonics = np.arange(1, 5)
    amplitudes = rng.uniform(0.0, 0.04, harmonics.size) / harmonics
    phases = rng.uniform(0, 2 * np.pi, harmonics.size)
    wobble = 1.0 + np.sum(
        amplitudes[:, None]
        * np.cos(2 * np.pi * harmonics[:, None] * y / rows + phases[:, None]),
        axis=0,
    )
    return np.arange(cols)[None, :] < (edge * wobble)[:, None]


def _pectoral_muscle(shape, breast, mm, rng):
    """Pectoral muscle in the upper-left corner: soft membership and depth.

    The muscle edge is a convex curve from the top edge to the chest wall.
    Membership is 0..1 with a border about a millimetre wide; depth is 0 at
    the border and grows towards the corner, where the muscle is thickest.
    """
    rows, cols = shape
    top_width = np.flatnonzero(breast[0]).max() + 1
    width = top_width * rng.uniform(0.55, 0.85)
    height = rows * rng.uniform(0.32, 0.50)
    bulge = rng.uniform(1.1, 1.5)
    y, x = np.ogrid[:rows, :cols]
    level = (x / width) ** bulge + (y / height) ** bulge
    # Near the border the implicit function changes by about bulge/size per
    # pixel; scale it so the soft border spans about one millimetre.
    edge_scale = min(width, height) / (bulge * mm)
    membership = special.expit((1.0 - level) * edge_scale)
    return membership * breast, np.clip(1.0 - level, 0.0, 1.0)


def _skin_distance(breast):
    """Euclidean distance (pixels) from each breast pixel to the skin.

    The image border is the chest wall (or, in MLO, the axilla continuing off
    the image), not skin; edt ignores array borders, as wanted. Only the
    breast's bounding box plus one row or column of air is transformed, for
    speed: any air beyond that band is farther than the band itself.
    """
    rows = np.flatnonzero(breast.any(axis=1))
    cols = np.flatnonzero(breast.any(axis=0))
    box = (
        slice(max(rows[0] - 1, 0), rows[-1] + 2),
        slice(max(cols[0] - 1, 0), cols[-1] + 2),
    )
    distance = np.zeros(breast.shape, np.float32)
    distance[box] = ndimage.distance_transform_edt(breast[box])
    return distance


def _thickness_profile(distance, mm):
    """Relative compressed thickness (0 at the skin, 1 inside).

    The edge of a compressed breast is roughly a half-cylinder of radius
    ``_FALLOFF_MM``, so thickness rises as a quarter circle.
    """
    s = np.minimum(distance / (_FALLOFF_MM * mm), 1.0)
    return np.sqrt(1.0 - (1.0 - s) ** 2)


def _soft_knee(signal, knee=0.75):
    """Compress values above ``knee`` smoothly into [knee, 1), clip below 0.

    Lesions on dense tissue would otherwise saturate at full scale and vanish.
    """
    headroom = 1.0 - knee
    above = signal > knee
    out = np.maximum(signal, 0.0)
    out[above] = knee + headroom * np.tanh((signal[above] - knee) / headroom)
    return out


def _local_grid(centre, half, shape):
    """Slices of a window around ``centre`` and its offsets (dy, dx)."""
    r0 = max(int(centre[0]) - half, 0)
    r1 = min(int(centre[0]) + half + 1, shape[0])
    c0 = max(int(centre[1]) - half, 0)
    c1 = min(int(centre[1]) + half + 1, shape[1])
    dy = np.arange(r0, r1)[:, None] - centre[0]
    dx = np.arange(c0, c1)[None, :] - centre[1]
    return (slice(r0, r1), slice(c0, c1)), dy, dx


def _benign_mass(radius, rng):
    """Circumscribed oval mass.

    Like the other lesion makers, returns the lesion's extent in pixels and
    ``draw(dy, dx) -> (mask, added signal)`` on offsets from its centre.
    """
    a = radius * rng.uniform(0.8, 1.0)
    b = radius * rng.uniform(0.55, 0.85)
    angle = rng.uniform(0, np.pi)
    contrast = _GLAND_GAIN * rng.uniform(0.35, 0.55)

    def draw(dy, dx):
        along = dx * np.cos(angle) + dy * np.sin(angle)
        across = -dx * np.sin(angle) + dy * np.cos(angle)
        q = (along / a) ** 2 + (across / b) ** 2
        # Projected thickness of an ellipsoid: sqrt(1 - q).
        return q < 1.0, contrast * np.sqrt(np.clip(1.0 - q, 0.0, None))

    return radius * 1.2, draw


def _malignant_mass(radius, rng, mm):
    """Irregular mass with radiating spicules (see :func:`_benign_mass`)."""
    harmonics = np.arange(3, 9)
    amplitudes = rng.uniform(0.0, 0.25, harmonics.size) / np.sqrt(harmonics)
    phases = rng.uniform(0, 2 * np.pi, harmonics.size)
    n_spicules = rng.integers(8, 16)
    directions = rng.uniform(0, 2 * np.pi, n_spicules)
    lengths = radius * rng.uniform(1.3, 2.6, n_spicules)
    half_width = max(0.6 * mm, 1.0)
    contrast = _GLAND_GAIN * rng.uniform(0.4, 0.6)

    def draw(dy, dx):
        theta = np.arctan2(dy, dx)
        edge = radius * (
            1.0
            + np.sum(
                amplitudes[:, None, None]
                * np.cos(harmonics[:, None, None] * theta + phases[:, None, None]),
                axis=0,
            )
        )
        r = np.hypot(dy, dx)
        core = r < edge
        profile = contrast * np.sqrt(np.clip(1.0 - (r / edge) ** 2, 0.0, None))
        for direction, length in zip(directions, lengths):
            along = dx * np.cos(direction) + dy * np.sin(direction)
            across = np.abs(-dx * np.sin(direction) + dy * np.cos(direction))
            # Spicules are thin strands tapering from the core to a point.
            taper = np.clip(1.0 - along / length, 0.0, 1.0) * (along > 0)
            core |= across < half_width * taper
            strand = np.sqrt(taper) * np.exp(-((across / half_width) ** 2))
            profile = np.maximum(profile, 0.6 * contrast * strand)
        return core, profile

    return radius + lengths.max(), draw


def _calcifications(radius, rng, mm):
    """Cluster of fine bright specks (see :func:`_benign_mass`).

    The mask is the cluster's convex hull, the region a reader would outline.
    """
    n_specks = rng.integers(6, 20)
    offsets = rng.normal(0.0, radius / 2.0, (n_specks, 2))
    # At least 0.75 px so every speck covers a pixel centre.
    speck_radii = np.maximum(rng.uniform(0.2, 0.5, n_specks) * mm, 0.75)
    contrast = rng.uniform(0.3, 0.5)

    def draw(dy, dx):
        profile = np.zeros(np.broadcast_shapes(dy.shape, dx.shape))
        specks = np.zeros(profile.shape, bool)
        for (oy, ox), sr in zip(offsets, speck_radii):
            d2 = (dy - oy) ** 2 + (dx - ox) ** 2
            speck = d2 < sr**2
            specks |= speck
            profile = np.maximum(profile, contrast * np.exp(-d2 / (2 * sr**2)))
        return convex_hull_image(specks), profile

    return radius * 2.5 + speck_radii.max() + 2, draw


def _lesion_drawer(kind, rng, mm):
    """Extent (pixels) and drawing function of a lesion of ``kind``."""
    if kind == "benign_mass":
        return _benign_mass(rng.uniform(4.0, 10.0) * mm, rng)
    if kind == "malignant_mass":
        return _malignant_mass(rng.uniform(4.0, 9.0) * mm, rng, mm)
    if kind == "calcifications":
        return _calcifications(rng.uniform(2.0, 5.0) * mm, rng, mm)
    raise ValueError(f"unknown lesion kind {kind!r}; choose from {list(LESION_KINDS)}")


def _lesion_kinds(lesions, lesion_probability, rng):
    """Resolve ``lesions`` ("random" or a sequence of kinds) to a list of kinds."""
    if isinstance(lesions, str):
        if lesions != "random":
            raise ValueError('lesions must be "random" or a sequence of kinds')
        if rng.random() >= lesion_probability:
            return []
        return [str(rng.choice(list(LESION_KINDS)))]
    return list(lesions)


def _place_lesions(kinds, tissue, distance, mm, rng):
    """Draw one lesion of each kind inside ``tissue``: masks and added signal."""
    shape = tissue.shape
    signal = np.zeros(shape, np.float32)
    lesion_masks = []
    for kind in kinds:
        extent, draw = _lesion_drawer(kind, rng, mm)
        # Centres keep the lesion core clear of the skin and of the muscle.
        core_clearance = min(extent, 12.0 * mm) + 3.0 * mm
        allowed = tissue & (distance > core_clearance)
        if not allowed.any():
            raise ValueError(f"breast too small to place a {kind}")
        centre = np.unravel_index(rng.choice(np.flatnonzero(allowed)), shape)
        window, dy, dx = _local_grid(centre, int(np.ceil(extent)) + 1, shape)
        local_mask, local_signal = draw(dy, dx)
        mask = np.zeros(shape, bool)
        mask[window] = local_mask
        mask &= tissue
        signal[window] += local_signal
        lesion_masks.append(LesionMask(kind, LESION_KINDS[kind], mask))
    return lesion_masks, signal


def _gmic_labels(side, has_benign, has_malignant):
    """GMIC breast-level labels; the side not imaged is always 0."""
    present = {"benign": int(has_benign), "malignant": int(has_malignant)}
    imaged = "left" if side == "L" else "right"
    return {
        f"{s}_{k}": present[k] if s == imaged else 0
        for k in ("benign", "malignant")
        for s in ("left", "right")
    }


def make_mammogram(
    seed,
    view="CC",
    side="L",
    shape=None,
    dense_fraction=0.3,
    lesions=(),
    lesion_probability=0.5,
    beta=2.8,
    bits=12,
    lesion_contrast=1.0,
):
    """Draw a synthetic mammogram with masks and GMIC-style labels.

    Parameters
    ----------
    seed : int
        Seeds everything; the same arguments give identical arrays. Anatomy,
        lesions and noise use separate streams, so adding a lesion leaves the
        breast itself unchanged.
    view : {"CC", "MLO"}
        MLO views carry a pectoral muscle in the upper chest-wall corner.
    side : {"L", "R"}
        Left breasts point right (chest wall on the left edge), right
        breasts point left.
    shape : (int, int), optional
        (rows, cols); defaults to :data:`DEFAULT_SHAPE`.
    dense_fraction : float
        Requested fraction of the breast (muscle excluded) that is dense.
    lesions : sequence of str or "random"
        Kinds from :data:`LESION_KINDS`, one lesion each; "random" draws one
        lesion of a random kind with probability ``lesion_probability``.
    lesion_probability : float
        Used only with ``lesions="random"``.
    beta : float
        Power-law exponent of the parenchymal texture. The default sits in
        the range reported for mammograms and near what
        :func:`~course_lib.phantoms.texture.fit_power_law_exponent` measures
        on the GMIC sample exam (2.5-2.8).
    bits : int
        Bits stored; the image spans ``0 .. 2**bits - 1``.
    lesion_contrast : float
        Multiplies the lesions' signal; above 1 makes "teaching" phantoms whose
        lesions a small model can learn to find in minutes.

    Returns
    -------
    MammogramPhantom
    """
    if view not in ("CC", "MLO"):
        raise ValueError(f"view must be 'CC' or 'MLO', got {view!r}")
    if side not in ("L", "R"):
        raise ValueError(f"side must be 'L' or 'R', got {side!r}")
    if not 0.0 < dense_fraction < 1.0:
        raise ValueError(f"dense_fraction must lie in (0, 1), got {dense_fraction}")
    if not 8 <= bits <= 16:
        raise ValueError(f"bits must lie in 8..16 for a uint16 image, got {bits}")
    shape = tuple(DEFAULT_SHAPE if shape is None else shape)
    mm = PIXELS_PER_MM * shape[0] / FULL_SHAPE[0]
    anatomy_rng, lesion_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )

    breast = _breast_outline(shape, view, anatomy_rng)
    distance = _skin_distance(breast)
    if view == "MLO":
        muscle_soft, muscle_depth = _pectoral_muscle(shape, breast, mm, anatomy_rng)
        muscle = muscle_soft > 0.5
    else:
        muscle_soft = muscle_depth = None
        muscle = np.zeros(shape, bool)
    tissue = breast & ~muscle

    # Ducts and ligaments run towards the nipple: roughly horizontal in CC,
    # down from the axilla in MLO.
    texture = power_law_noise(
        shape,
        beta,
        anatomy_rng,
        aspect=_TEXTURE_ASPECT,
        angle=np.deg2rad(0.0 if view == "CC" else 20.0),
    )
    # Glandular tissue sits inside a subcutaneous layer of fat: push the
    # texture down near the skin before thresholding.
    near_skin = np.clip(1.0 - distance / (_SUBCUTANEOUS_MM * mm), 0.0, 1.0)
    gland_field = texture - 2.5 * near_skin**2
    threshold = np.quantile(gland_field[tissue], 1.0 - dense_fraction)
    dense = tissue & (gland_field > threshold)
    glandular = special.expit((gland_field - threshold) / _GLAND_SOFTNESS)

    kinds = _lesion_kinds(lesions, lesion_probability, lesion_rng)
    lesion_masks, lesion_signal = _place_lesions(
        kinds, tissue, distance, mm, lesion_rng
    )

    body = _FAT_LEVEL + _GLAND_GAIN * glandular + _FAT_TEXTURE_GAIN * texture
    body += lesion_contrast * lesion_signal
    if muscle_soft is not None:
        muscle_signal = _MUSCLE_LEVEL * (0.8 + 0.4 * np.sqrt(muscle_depth))
        muscle_signal += _FAT_TEXTURE_GAIN * texture
        body += muscle_soft * (muscle_signal - body)
    # Thinner tissue at the edge attenuates less; for-presentation processing
    # equalises the periphery, so the edge keeps part of its brightness.
    body *= 0.35 + 0.65 * _thickness_profile(distance, mm)
    body += _SKIN_LEVEL * np.exp(-distance / (_SKIN_MM * mm))
    noise = noise_rng.standard_normal(shape, dtype=np.float32)
    signal = np.where(
        breast, body + _NOISE_SD * noise, _AIR_NOISE_SD * np.abs(noise)
    )
    image = np.rint(_soft_knee(signal) * (2**bits - 1)).astype(np.uint16)

    benign = np.zeros(shape, bool)
    malignant = np.zeros(shape, bool)
    for lesion in lesion_masks:
        (malignant if lesion.malignant else benign)[...] |= lesion.mask
    measured = float(dense.sum() / tissue.sum())
    labels = _gmic_labels(side, benign.any(), malignant.any())

    if side == "R":
        image, breast, dense, muscle, benign, malignant = (
            np.ascontiguousarray(a[:, ::-1])
            for a in (image, breast, dense, muscle, benign, malignant)
        )
        for lesion in lesion_masks:
            lesion.mask = np.ascontiguousarray(lesion.mask[:, ::-1])

    return MammogramPhantom(
        image=image,
        breast_mask=breast,
        dense_mask=dense,
        pectoral_mask=muscle,
        lesion_masks=lesion_masks,
        benign_mask=benign,
        malignant_mask=malignant,
        density=density_from_fraction(measured),
        measured_dense_fraction=measured,
        labels=labels,
        view=view,
        side=side,
        seed=seed,
        beta=beta,
    )
