"""Breast and pectoral-muscle masks, background and muscle removal.

These steps reproduce, from their description, the upstream preprocessing of
the INFN density TestSet [1]_: the background outside the breast is 0 and, in
MLO views, the pectoral muscle is replaced by a flat fill at the mean grey
level of the breast.

The pectoral muscle is found in the spirit of Kwok et al. [2]_: a straight
line estimate of the muscle edge, then a curved refinement of it. Here the
line is the best of all lines from the top edge to the chest wall, scored by
the edge contrast along it (an exhaustive, Hough-like search; Ferrari et al.
[3]_ use the Hough transform itself), and the refinement is the smooth path
of strongest contrast along rays from the chest-wall corner (dynamic
programming in polar coordinates).

References
----------
.. [1] Scapicchio C., Lizzi F., ML-INFN use case: CNN breast density
       classifier explainability (2021).
.. [2] Kwok S. M. et al., Automatic pectoral muscle segmentation on
       mediolateral oblique view mammograms. IEEE Trans. Med. Imaging 23(9),
       1129-1140, 2004.
.. [3] Ferrari R. J. et al., Automatic identification of the pectoral muscle
       in mammograms. IEEE Trans. Med. Imaging 23(2), 232-245, 2004.
"""

import warnings

import numpy as np
from scipy import ndimage
from skimage.measure import block_reduce

__all__ = [
    "breast_mask",
    "remove_background",
    "OrientationWarning",
    "chest_wall_side",
    "orient_chest_wall_left",
    "pectoral_mask",
    "remove_pectoral",
]

#: The pectoral muscle is searched on a copy about this many rows high.
WORKING_ROWS = 320

# Gaussian scale of the edge detector, in working pixels: wide enough to
# average out parenchymal texture, narrow enough to keep the muscle edge.
_EDGE_SIGMA = 2.0
# Weakest credible muscle edge: mean contrast across the edge (grey-level
# change per working pixel) as a fraction of the breast's grey-level range.
_MIN_EDGE_CONTRAST = 0.01
# Smallest credible muscle: the breast's top edge spans at least this
# fraction of its width, and the muscle covers at least this fraction of it.
_MIN_TOP_WIDTH = 0.25
_MIN_AREA = 0.02
# Rays and radial samples of the curved refinement, and the range of radii
# searched around the straight-line estimate.
_RAYS = 90
_RADII = 64
_RADIUS_RANGE = (0.7, 1.3)


def _check_image(image):
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale image, got shape {image.shape}")
    return image


def _no_breast(name, why):
    where = f" in {name}" if name is not None else ""
    return ValueError(f"no breast found{where}: {why}")


def breast_mask(image, threshold=None, name=None):
    """Boolean mask of the breast: the largest bright region, grown to the skin edge, holes filled.

    1. A 5x5 median filter removes isolated noise without moving edges (a Gaussian
       blur would spread the outline and shift it).
    2. Hysteresis: the breast is the connected region above a *low* threshold that holds
       the most pixels above the *high* ``threshold``. The high threshold alone cuts
       notches where thin tissue at the skin edge is dark; the low one alone would let
       noise in.
    3. Dark tissue that reaches the chest-wall edge (fat, or a dark fold) would leave a
       notch that is not a hole; the chest wall is therefore taken as closing the outline
       before holes are filled.

    Parameters
    ----------
    image : ndarray, 2-D
        Greyscale mammogram, bright = dense.
    threshold : float, optional
        The high threshold, in grey levels of the filtered image. By default 10 % of the
        way from the background level (0.5th percentile) to the bright tissue (99.5th
        percentile); the low threshold is a fifth of the way from the background to it.
    name : str, optional
        Named in the error message (for example the file name).

    Raises
    ------
    ValueError
        If the image is constant (all black, all white) or nothing is above
        the threshold.
    """
    image = _check_image(image)
    low, high = image.min(), image.max()
    if low == high:
        raise _no_breast(name, f"the image is constant ({low})")
    smooth = ndimage.median_filter(image, size=5).astype(np.float32)
    background, tissue = np.percentile(smooth, [0.5, 99.5])
    if threshold is None:
        threshold = background + 0.1 * (tissue - background)
    grow = background + 0.2 * (threshold - background)
    bright = smooth > threshold
    labels, count = ndimage.label(smooth > grow)
    sizes = np.bincount(labels.ravel(), weights=bright.ravel())
    sizes[0] = 0
    if count == 0 or not sizes.any():
        raise _no_breast(name, f"nothing is above the threshold {threshold:g}")
    return _fill_to_chest_wall(labels == np.argmax(sizes))


def _fill_to_chest_wall(mask):
    """Fill holes, counting the chest-wall edge between the breast's first and
    last pixel on it as part of the outline."""
    left = chest_wall_side(mask) == "left"
    edge = mask[:, 0] if left else mask[:, -1]
    touching = np.flatnonzero(edge)
    wall = np.zeros((mask.shape[0], 1), dtype=bool)
    if touching.size:
        wall[touching[0] : touching[-1] + 1] = True
    padded = np.hstack([wall, mask] if left else [mask, wall])
    filled = ndimage.binary_fill_holes(padded)
    return filled[:, 1:] if left else filled[:, :-1]


def remove_background(image, mask=None):
    """Copy of ``image`` with everything outside the breast set to 0.

    ``mask`` defaults to :func:`breast_mask` of the image.
    """
    image = _check_image(image)
    if mask is None:
        mask = breast_mask(image)
    return np.where(mask, image, 0).astype(image.dtype)


class OrientationWarning(UserWarning):
    """The pixels and the laterality tag disagree about where the chest wall is."""


def _chest_wall_counts(mask):
    """Breast pixels in the outer tenth of columns on the left and on the right."""
    band = max(1, mask.shape[1] // 10)
    return np.count_nonzero(mask[:, :band]), np.count_nonzero(mask[:, -band:])


def chest_wall_side(image_or_mask):
    """Image edge the breast is attached to: ``"left"`` or ``"right"``.

    The chest wall is the side whose outer tenth of columns holds more breast
    pixels: the breast is cut there by the image edge and tapers to the nipple on
    the other side. A boolean array is taken as the breast mask; anything else as
    an image whose mask :func:`breast_mask` computes.

    >>> mask = np.zeros((8, 10), bool); mask[:, :6] = True  # attached to the left edge
    >>> chest_wall_side(mask)
    'left'
    """
    array = _check_image(image_or_mask)
    mask = array if array.dtype == bool else breast_mask(array)
    left, right = _chest_wall_counts(mask)
    return "left" if left >= right else "right"


def orient_chest_wall_left(image, laterality, *, source=None, tolerance=0.1):
    """Mirror ``image`` if needed so that the chest wall is on the left (breast faces right).

    The chest wall is found as by :func:`chest_wall_side`, on the breast mask of
    every 8th pixel (enough to tell the sides apart, 64 times less work). When the
    two edge bands differ by less than ``tolerance`` of their total, the pixels
    cannot tell, and the tag decides using the display convention (L faces right,
    R faces left).

    A disagreement between the pixels and that convention (e.g. an R image stored
    with its chest wall on the left) is reported with an :class:`OrientationWarning`;
    the pixels win.

    Returns
    -------
    oriented : ndarray
        ``image`` or its mirror (a view).
    flipped : bool
    """
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', not {laterality!r}")
    left, right = _chest_wall_counts(breast_mask(np.asarray(image)[::8, ::8]))
    tag_says_left = laterality == "L"
    if abs(left - right) <= tolerance * (left + right):
        chest_wall_left = tag_says_left
    else:
        chest_wall_left = left > right
        if chest_wall_left != tag_says_left:
            name = source if source is not None else "image"
            sides = {True: "left", False: "right"}
            warnings.warn(
                f"{name}: laterality {laterality} usually has its chest wall on the "
                f"{sides[tag_says_left]}, but the pixels put it on the "
                f"{sides[chest_wall_left]}; oriented by the pixels. Check the laterality "
                "tag, or whether the image was stored mirrored.",
                OrientationWarning,
                stacklevel=2,
            )
    if chest_wall_left:
        return image, False
    return image[:, ::-1], True


def _working_copy(image, breast):
    """Block-mean downsampled copies of image and mask, and the block size."""
    factor = max(1, round(image.shape[0] / WORKING_ROWS))
    small = block_reduce(image.astype(np.float32), factor, np.mean)
    small_breast = block_reduce(breast.astype(np.float32), factor, np.mean) > 0.5
    return small, small_breast, factor


def _edge_strength(small, breast):
    """Gaussian gradient (d/drow, d/dcol) in units of the breast's grey range."""
    low, high = np.percentile(small[breast], [1, 99])
    normalised = (small - low) / max(high - low, 1e-9)
    return (ndimage.gaussian_filter(normalised, _EDGE_SIGMA, order=(1, 0)),
            ndimage.gaussian_filter(normalised, _EDGE_SIGMA, order=(0, 1)))


def _sample(field, rows, cols):
    return ndimage.map_coordinates(field, [rows, cols], order=1, mode="nearest")


def _best_line(grad_row, grad_col, inside):
    """Straight muscle edge from (row 0, column a) to (row b, column 0).

    ``a`` runs over 20-100 % of the breast's extent along the top edge and
    ``b`` over 20-100 % of its extent along the chest wall; each line is
    scored by the mean contrast across it (bright corner side minus dark
    side, per pixel, inside the breast). Returns ``(a, b, contrast)`` of the
    best line, or None when the view does not reach the top edge like an MLO.
    """
    top = np.flatnonzero(inside[0])
    wall = np.flatnonzero(inside[:, 0])
    # An MLO view leaves the top of the image across the whole axilla; a CC
    # view touches it at most over a short arc.
    if top.size == 0 or wall.size == 0 or top.max() < _MIN_TOP_WIDTH * inside.shape[1]:
        return None
    a_values = np.linspace(0.2, 1.0, 40) * (top.max() + 1)
    b_values = np.linspace(0.2, 1.0, 60) * (wall.max() + 1)
    a, b = (v.ravel() for v in np.meshgrid(a_values, b_values))
    # Points along each line, ends left out: there the line meets the
    # image border, where the gradient is not that of the muscle edge.
    t = np.linspace(0.05, 0.95, 64)
    line_rows = b[:, None] * t[None, :]
    line_cols = a[:, None] * (1.0 - t[None, :])
    normal = np.stack([a, b]) / np.hypot(a, b)  # (row, col), away from the corner
    across = -(normal[0][:, None] * _sample(grad_row, line_rows, line_cols)
               + normal[1][:, None] * _sample(grad_col, line_rows, line_cols))
    valid = _sample(inside.astype(np.float32), line_rows, line_cols) > 0.5
    contrast = np.where(valid, across, 0.0).sum(axis=1) / t.size
    best = np.argmax(contrast)
    return a[best], b[best], contrast[best]


def _refine_edge(grad_row, grad_col, inside, a, b):
    """Curved muscle edge: radius of the edge on each ray from the corner.

    Along each ray the edge radius is searched within ``_RADIUS_RANGE`` times
    that of the straight line; dynamic programming picks the path of largest
    total contrast whose radius changes by at most one sample between rays.
    Returns ray angles, edge radii and the path's mean contrast.
    """
    angles = np.linspace(0.0, np.pi / 2, _RAYS)
    line_radius = 1.0 / (np.cos(angles) / a + np.sin(angles) / b)
    factors = np.linspace(*_RADIUS_RANGE, _RADII)
    radii = line_radius[:, None] * factors[None, :]
    ray_rows = radii * np.sin(angles)[:, None]
    ray_cols = radii * np.cos(angles)[:, None]
    radial = -(np.sin(angles)[:, None] * _sample(grad_row, ray_rows, ray_cols)
               + np.cos(angles)[:, None] * _sample(grad_col, ray_rows, ray_cols))
    valid = _sample(inside.astype(np.float32), ray_rows, ray_cols) > 0.5
    gain = np.where(valid, radial, 0.0)

    total = gain[0].copy()
    came_from = np.zeros((_RAYS, _RADII), dtype=np.intp)
    steps = np.arange(_RADII)
    for ray in range(1, _RAYS):
        # Best predecessor among radius samples -1, 0, +1.
        shifted = np.stack([np.r_[-np.inf, total[:-1]], total, np.r_[total[1:], -np.inf]])
        choice = np.argmax(shifted, axis=0)
        came_from[ray] = steps + choice - 1
        total = shifted[choice, steps] + gain[ray]
    path = np.empty(_RAYS, dtype=np.intp)
    path[-1] = np.argmax(total)
    for ray in range(_RAYS - 1, 0, -1):
        path[ray - 1] = came_from[ray, path[ray]]
    return angles, radii[np.arange(_RAYS), path], total.max() / _RAYS


def _corner_region(shape, angles, radii, factor):
    """Full-resolution mask of points closer to the corner than the edge.

    ``angles`` and ``radii`` are in working pixels of ``factor`` full-resolution
    pixels each; working pixel 0 is centred on full-resolution (factor - 1) / 2.
    """
    extent = min(max(shape), int(np.ceil((radii.max() + 1) * factor)))
    r_end, c_end = min(shape[0], extent), min(shape[1], extent)
    y, x = (np.mgrid[:r_end, :c_end] + 0.5) / factor - 0.5
    edge = np.interp(np.arctan2(y, x), angles, radii)
    region = np.zeros(shape, dtype=bool)
    region[:r_end, :c_end] = np.hypot(y, x) < edge
    return region


def _flat_fill_region(image, breast):
    """Muscle already replaced by a flat fill (INFN convention), else None.

    Such a fill is an exactly constant region in the corner (row 0, column 0)
    at a typical breast grey level: its value lies within the interquartile
    range of the rest of the breast. Raw images never hold such a region;
    a saturated one would sit at the top of the range.
    """
    flat = (image == image[0, 0]) & breast
    if flat.sum() < _MIN_AREA * breast.sum():
        return None
    # The opening cuts thin bridges into tissue that happens to share the value.
    flat = ndimage.binary_opening(flat, structure=np.ones((5, 5), dtype=bool))
    labels, _ = ndimage.label(flat)
    if labels[0, 0] == 0:
        return None
    region = labels == labels[0, 0]
    rest = image[breast & ~region]
    low, high = np.percentile(rest, [25, 75])
    if region.sum() < _MIN_AREA * breast.sum() or not low <= image[0, 0] <= high:
        return None
    return region


def _muscle_from_edges(image, breast):
    """Muscle of a left-facing, box-cropped view from its edge, else None.

    A credible muscle has a straight-line edge estimate and a refined edge of
    at least ``_MIN_EDGE_CONTRAST``, covers at least ``_MIN_AREA`` of the
    breast and is brighter on average than the median of the rest of it.
    """
    small, small_breast, factor = _working_copy(image, breast)
    grad_row, grad_col = _edge_strength(small, small_breast)
    # Away from the skin: the breast outline is a stronger edge than the muscle.
    inside = ndimage.binary_erosion(small_breast, iterations=3, border_value=1)
    line = _best_line(grad_row, grad_col, inside)
    if line is None or line[2] < _MIN_EDGE_CONTRAST:
        return None
    angles, radii, contrast = _refine_edge(grad_row, grad_col, inside, *line[:2])
    if contrast < _MIN_EDGE_CONTRAST:
        return None
    muscle = _corner_region(image.shape, angles, radii, factor) & breast
    if muscle.sum() < _MIN_AREA * breast.sum():
        return None
    if image[muscle].mean() <= np.median(image[breast & ~muscle]):
        return None
    return muscle


def pectoral_mask(image, breast=None, chest_wall=None):
    """Boolean mask of the pectoral muscle of an MLO view.

    The muscle is the bright, roughly triangular region in the upper
    chest-wall corner. Its edge is first estimated as a straight line, then
    refined into a smooth curve (see the module notes), on a copy about
    :data:`WORKING_ROWS` high; the mask is drawn at full resolution. A muscle
    that was already replaced by a flat fill (INFN TestSet convention, see
    :func:`remove_pectoral`) is returned as that flat region.

    Parameters
    ----------
    image : ndarray, 2-D
        Greyscale mammogram.
    breast : ndarray of bool, optional
        Breast mask; defaults to :func:`breast_mask` of the image.
    chest_wall : {"left", "right"}, optional
        Defaults to :func:`chest_wall_side` of the breast mask.

    Returns
    -------
    ndarray of bool
        Empty when no credible muscle is found (a CC view, for example).
    """
    image = _check_image(image)
    if breast is None:
        breast = breast_mask(image)
    if chest_wall is None:
        chest_wall = chest_wall_side(breast)
    if chest_wall not in ("left", "right"):
        raise ValueError(f"chest_wall must be 'left' or 'right', not {chest_wall!r}")
    flip = chest_wall == "right"
    if flip:
        image, breast = image[:, ::-1], breast[:, ::-1]
    # The corner is that of the breast's bounding box: a few empty rows or
    # columns at the image border must not move it.
    rows = np.flatnonzero(breast.any(axis=1))
    cols = np.flatnonzero(breast.any(axis=0))
    if rows.size == 0:
        raise ValueError("the breast mask is empty")
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    muscle = np.zeros(image.shape, dtype=bool)
    found = _flat_fill_region(image[box], breast[box])
    if found is None:
        found = _muscle_from_edges(image[box], breast[box])
    if found is not None:
        muscle[box] = found
    return muscle[:, ::-1] if flip else muscle


def remove_pectoral(image, muscle=None, fill="mean", breast=None):
    """Copy of ``image`` with the pectoral muscle replaced by a flat fill.

    This is the INFN TestSet convention: the fill is the mean (or median)
    grey level of the breast outside the muscle, so the muscle no longer
    stands out as dense tissue.

    Parameters
    ----------
    image : ndarray, 2-D
    muscle : ndarray of bool, optional
        Defaults to :func:`pectoral_mask` of the image.
    fill : {"mean", "median"}
    breast : ndarray of bool, optional
        Defaults to :func:`breast_mask` of the image.
    """
    image = _check_image(image)
    if fill not in ("mean", "median"):
        raise ValueError(f"fill must be 'mean' or 'median', not {fill!r}")
    if breast is None:
        breast = breast_mask(image)
    if muscle is None:
        muscle = pectoral_mask(image, breast=breast)
    tissue = image[breast & ~muscle]
    if tissue.size == 0:
        raise ValueError("no breast tissue outside the muscle to take the fill level from")
    level = tissue.mean() if fill == "mean" else np.median(tissue)
    if np.issubdtype(image.dtype, np.integer):
        level = np.rint(level)
    out = image.copy()
    out[muscle] = level
    return out
