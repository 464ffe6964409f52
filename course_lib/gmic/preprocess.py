"""GMIC-compatible preprocessing: crop, optimal centre and the model-input window.

GMIC [1]_ prepares each mammogram in three steps, reproduced here from the
clean-room description of the official scripts (nothing is copied from them):

1. :func:`crop_mammogram` (stage 1) finds the breast and crops it;
2. :func:`optimal_center` (stage 2) picks the centre of the 2944x1920 window;
3. :func:`gmic_input_window` cuts (or pads) that window and z-scores it.

:func:`preprocess_view` runs the three on one image; :func:`mask_in_model_frame`
carries a lesion mask of the uncropped image into the model frame. The sizes come
from one :class:`~course_lib.gmic.config.GMICGeometry` (official, or the kit's
quarter scale for phantoms).

Coordinate conventions
----------------------
The cropped image is saved *unflipped*. Every point (``rightmost_points``,
``bottommost_points``, ``best_center``) is expressed in the cropped image
*mirrored so that the breast faces right* (chest wall on the left). Which views
face left depends on the exam's ``horizontal_flip``: with ``"NO"`` the R views
face left, with ``"YES"`` the L views do.

References
----------
.. [1] Shen Y. et al., An interpretable classifier for high-resolution breast
       cancer screening images utilizing weakly supervised localization.
       Medical Image Analysis 68:101908, 2021.
"""

from pathlib import Path

import numpy as np
from scipy import ndimage

from course_lib.exam_list import VIEWS, check_horizontal_flip
from course_lib.gmic.config import GMICGeometry
from course_lib.io import read_png

__all__ = [
    "OFFICIAL",
    "load_png16",
    "faces_left",
    "crop_mammogram",
    "optimal_center",
    "place_in_window",
    "gmic_input_window",
    "preprocess_view",
    "mask_in_model_frame",
]

#: The official geometry, every function's default.
OFFICIAL = GMICGeometry.official()


def load_png16(path):
    """Read a GMIC image: a 16-bit greyscale PNG, returned as stored (uint16).

    An 8-bit PNG is read too, with a warning (see :func:`course_lib.io.read_png`).
    """
    return read_png(path, expect_bits=16)


def _check_view(view, horizontal_flip):
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")
    check_horizontal_flip(horizontal_flip)


def faces_left(view, horizontal_flip="NO"):
    """True if the breast in ``view`` faces left (chest wall on the right) as stored.

    With ``horizontal_flip="NO"`` the R views face left; with ``"YES"`` the L views do.
    """
    _check_view(view, horizontal_flip)
    return (view[0] == "R") == (horizontal_flip == "NO")


# --- stage 1: crop ------------------------------------------------------------------


def _largest_component(eroded):
    """Boolean mask of the largest 4-connected component (ties: first in raster order)."""
    labels, count = ndimage.label(eroded)  # default structure = cross = 4-connectivity
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0  # background
    return labels == np.argmax(sizes)  # argmax takes the lowest label on ties


def _largest_component_in_box(eroded):
    """Same component as :func:`_largest_component`, as (mask of its bounding box, y, x offset).

    Faster on big images: a single component needs no counting, and otherwise
    components are counted in their own bounding boxes, largest box first,
    stopping when no box left is big enough to hold a larger component.
    """
    labels, count = ndimage.label(eroded)
    if count == 1:
        return eroded, 0, 0
    boxes = ndimage.find_objects(labels)
    areas = [(rows.stop - rows.start) * (cols.stop - cols.start) for rows, cols in boxes]
    best, best_size = 0, -1
    for index in sorted(range(count), key=lambda i: (-areas[i], i)):
        if areas[index] < best_size:
            break
        size = np.count_nonzero(labels[boxes[index]] == index + 1)
        if size > best_size or (size == best_size and index < best):
            best, best_size = index, size
    rows, cols = boxes[best]
    return labels[rows, cols] == best + 1, rows.start, cols.start


def _bounding_box(mask):
    """(y0, y1, x0, x1) of the True pixels, half-open; (0, 0, 0, 0) if there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0, 0, 0, 0
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _row_extents(mask):
    """Per-row first and last True column; rows without any are (-1, -1)."""
    has = mask.any(axis=1)
    first = np.argmax(mask, axis=1)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return np.where(has, first, -1), np.where(has, last, -1)


def _dilated_extents_iterative(mask, iterations):
    """Stage 1 done literally: erode, largest component, dilate; row extents of the result.

    This is the straightforward (slow) version, kept as the reference that
    :func:`_dilated_extents_fast` is tested against.
    """
    eroded = ndimage.binary_erosion(mask, iterations=iterations)
    if not eroded.any():
        return None
    dilated = ndimage.binary_dilation(_largest_component(eroded), iterations=iterations)
    return _row_extents(dilated)


def _and_shifted(flat, other, shift, out):
    """``out[i] = flat[i] & other[i + shift]``, False where ``i + shift`` falls off either end."""
    n = flat.size
    s = min(abs(shift), n)
    if shift >= 0:
        np.logical_and(flat[: n - s], other[s:], out=out[: n - s])
        out[n - s :] = False
    else:
        np.logical_and(flat[s:], other[: n - s], out=out[s:])
        out[:s] = False
    return out


def _erode_diamond(mask, radius):
    """Binary erosion by the L1 ball ("diamond") of ``radius``, outside = background.

    Equal to ``ndimage.binary_erosion(mask, iterations=radius)``: ``radius``
    erosions by the 3x3 cross are one erosion by the cross added to itself
    ``radius`` times, the diamond. That diamond also is, with ``k = (radius-1)//2``,
    a diagonal segment of 2k+1 pixels + an anti-diagonal one + one cross (+ a
    second cross when ``radius`` is even), and eroding by a sum of shapes is
    eroding by each in turn. A segment of n pixels takes about log2(n) shifted
    ANDs (each doubles the length covered), so the whole erosion costs ~22
    whole-array operations instead of ``radius`` scans.

    Shifts are done on the flattened image with ``pad`` zero columns appended to
    every row (``pad`` >= the largest sideways shift), so a shift never wraps a
    row into its neighbour: it lands in the zeros, like scipy's ``border_value=0``.
    """
    height, width = mask.shape
    k = (radius - 1) // 2
    length = 2 * k + 1
    pad = 1
    while 2 * pad <= length:
        pad *= 2
    stride = width + pad
    canvas = np.zeros((height, stride), dtype=bool)
    canvas[:, :width] = mask
    flat, spare = canvas.ravel(), np.empty(canvas.size, dtype=bool)
    for step in (stride + 1, stride - 1):  # one row down and one column right / left
        covered = 1
        while 2 * covered <= length:
            flat, spare = _and_shifted(flat, flat, covered * step, spare), flat
            covered *= 2
        if covered < length:  # two overlapping runs of `covered` make `length`
            flat, spare = _and_shifted(flat, flat, (length - covered) * step, spare), flat
    for _ in range(radius - 2 * k):
        spare[:] = flat
        for step in (1, -1, stride, -stride):
            _and_shifted(spare, flat, step, spare)  # in place: reads `flat` only
        flat, spare = spare, flat
    # The segments were anchored at their first pixel; centring both moves the
    # result 2k rows down (a k-pixel diagonal step plus a k-pixel anti-diagonal one).
    eroded = np.zeros((height, width), dtype=bool)
    eroded[2 * k :] = flat.reshape(height, stride)[: max(height - 2 * k, 0), :width]
    return eroded


def _dilated_extents_fast(mask, iterations):
    """Same result as :func:`_dilated_extents_iterative`, without any scipy iteration.

    - The erosion (:func:`_erode_diamond`) runs on the bounding box of the mask
      only. That is exact: everything outside the box is background, and outside
      the image counts as background too.
    - Components are labelled within the bounding box of the eroded mask, and
      the largest is found without a full-image count (:func:`_largest_component_in_box`).
    - Dilating ``iterations`` times with the cross is dilation by the diamond of
      radius r = ``iterations``, and every output of stage 1 depends only on the
      first and last column of each row of the dilated mask. Row ``y`` of the
      dilation holds the component's row ``y+d`` widened by ``r-|d|`` on each
      side (``|d| <= r``), so its extents are a min/max over 2r+1 shifted copies
      of the component's own row extents: a few thousand numbers instead of a
      full-image dilation.
    """
    y0, y1, x0, x1 = _bounding_box(mask)
    if y0 == y1:
        return None
    eroded = _erode_diamond(mask[y0:y1, x0:x1], iterations)
    ey0, ey1, ex0, ex1 = _bounding_box(eroded)
    if ey0 == ey1:
        return None
    component, cy0, cx0 = _largest_component_in_box(eroded[ey0:ey1, ex0:ex1])
    first, last = _row_extents(component)
    present = first >= 0
    y0, x0 = y0 + ey0 + cy0, x0 + ex0 + cx0  # offset of the component's box in the image
    rows = component.shape[0]
    height, width = mask.shape
    r = iterations
    # The component's row extents in image rows, with r extra "empty" rows on
    # both ends; empty rows hold sentinels that lose every min / max.
    big = np.iinfo(np.int64).max // 4
    lo = np.full(height + 2 * r, big, dtype=np.int64)
    hi = np.full(height + 2 * r, -big, dtype=np.int64)
    lo[r + y0 : r + y0 + rows] = np.where(present, first + x0, big)
    hi[r + y0 : r + y0 + rows] = np.where(present, last + x0, -big)
    left = np.full(height, big, dtype=np.int64)
    right = np.full(height, -big, dtype=np.int64)
    for d in range(-r, r + 1):
        reach = r - abs(d)
        np.minimum(left, lo[r + d : r + d + height] - reach, out=left)
        np.maximum(right, hi[r + d : r + d + height] + reach, out=right)
    covered = right >= 0  # rows within r of the component (no sentinel survived)
    left = np.where(covered, np.clip(left, 0, width - 1), -1)
    right = np.where(covered, np.clip(right, 0, width - 1), -1)
    return left, right


def crop_mammogram(image, view, horizontal_flip="NO", *, buffer=OFFICIAL.crop_buffer,
                   iterations=OFFICIAL.crop_iterations,
                   method="fast", source=None):
    """Crop a mammogram to its breast, GMIC stage 1.

    Parameters
    ----------
    image : ndarray, 2-D
        The stored (unflipped) image; background must be 0.
    view : {"L-CC", "R-CC", "L-MLO", "R-MLO"}
    horizontal_flip : {"NO", "YES"}
        The exam's flag; decides which views face left (see :func:`faces_left`).
    buffer : int
        Margin kept above, below and on the nipple side of the breast.
    iterations : int
        Number of erosions and of dilations with scipy's 3x3 cross.
    method : {"fast", "iterative"}
        ``"iterative"`` runs the 2 x ``iterations`` scipy passes literally; ``"fast"``
        gives the identical result several times faster (see ``_dilated_extents_fast``).
    source : str or path, optional
        Name used in error messages (for example the file the image came from).

    Returns
    -------
    cropped : ndarray
        ``image[top:bottom, left:right]``, a view, not mirrored.
    info : dict
        Plain Python ints, with the keys of the exam list:

        - ``window_location``: (top, bottom, left, right) in ``image``;
        - ``rightmost_points``: ((y_first, y_last), x), the nipple-side extreme
          column of the mask and the first/last row where the mask reaches it,
          searched from row ``crop_height // 3`` down;
        - ``bottommost_points``: (y, (x_first, x_last)), the last mask row and its extent;
        - ``distance_from_starting_side``: empty columns between the image edge and
          the mask on the chest-wall side (non-zero hints at a wrong flip flag).

        Points are in the cropped frame, mirrored for left-facing breasts by
        ``x -> crop_width - x`` (not ``crop_width - 1 - x``: this off-by-one is
        what the official scripts output, e.g. 751 for 0_R-CC).

    Notes
    -----
    The mask is ``image > 0``. It is eroded ``iterations`` times (scipy's
    default cross, outside the image counts as background), its largest
    4-connected component is kept and dilated ``iterations`` times, and the
    bounding box ``[y0, y1) x [x0, x1)`` of the result is extended by ``buffer``
    rows above and below and by ``buffer`` columns on the side away from the
    chest wall only, clipped to the image.
    """
    facing_left = faces_left(view, horizontal_flip)
    where = f"in {source}" if source is not None else "in the image"
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale image {where}, got shape {image.shape}")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, not {iterations}")
    mask = image > 0
    if mask.all():
        raise ValueError(
            f"no breast found {where}: every pixel is non-zero, so there is no background "
            "to separate the breast from; stage 1 expects a mammogram with a 0 background"
        )
    if method == "fast":
        extents = _dilated_extents_fast(mask, iterations)
    elif method == "iterative":
        extents = _dilated_extents_iterative(mask, iterations)
    else:
        raise ValueError(f"method must be 'fast' or 'iterative', not {method!r}")
    if extents is None:
        raise ValueError(
            f"no breast found {where}: no non-zero region is wider than "
            f"{2 * iterations} pixels in every direction (the image is black or nearly so)"
        )
    left_ext, right_ext = extents
    height, width = mask.shape

    rows = np.flatnonzero(right_ext >= 0)
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(left_ext[rows].min()), int(right_ext[rows].max()) + 1
    top, bottom = max(y0 - buffer, 0), min(y1 + buffer, height)
    if facing_left:
        left, right = max(x0 - buffer, 0), x1
        distance = width - x1
    else:
        left, right = x0, min(x1 + buffer, width)
        distance = x0

    # Nipple side: the largest right extent (right-facing) or smallest left extent.
    search = np.arange(top + (bottom - top) // 3, bottom)
    search = search[right_ext[search] >= 0]
    if facing_left:
        x_extreme = int(left_ext[search].min())
        at = search[left_ext[search] == x_extreme]
        rightmost_x = right - x_extreme  # = crop_width - (x_extreme - left)
    else:
        x_extreme = int(right_ext[search].max())
        at = search[right_ext[search] == x_extreme]
        rightmost_x = x_extreme - left

    bottom_row = y1 - 1
    b_first, b_last = int(left_ext[bottom_row]), int(right_ext[bottom_row])
    if facing_left:
        bottom_span = (right - b_last, right - b_first)
    else:
        bottom_span = (b_first - left, b_last - left)

    info = {
        "window_location": (top, bottom, left, right),
        "rightmost_points": ((int(at[0]) - top, int(at[-1]) - top), rightmost_x),
        "bottommost_points": (bottom_row - top, bottom_span),
        "distance_from_starting_side": distance,
    }
    return image[top:bottom, left:right], info


# --- stage 2: optimal centre --------------------------------------------------------


def _facing_right(image, view, horizontal_flip):
    """``image`` mirrored if the view faces left, so that the chest wall is at column 0."""
    _check_view(view, horizontal_flip)
    image = np.asarray(image)
    return image[:, ::-1] if faces_left(view, horizontal_flip) else image


def _window_start(center, size):
    """First index of a window of ``size`` centred on ``center`` (``center - size//2``)."""
    return center - size // 2


def optimal_center(cropped_image, view, rightmost_points, bottommost_points,
                   horizontal_flip="NO", window=OFFICIAL.window):
    """Centre (y, x) of the model window, GMIC stage 2.

    Works in the facing-right frame (the image is mirrored first when
    :func:`faces_left`), like the points from :func:`crop_mammogram`.

    - x (all views) = ``rightmost_x - window_cols//2 - 1``.
    - CC: y is the centre whose window holds the most non-zero pixels; among
      ties the one closest to ``rows // 2`` wins (then the smaller y).
    - MLO: ``y = min(bottommost_y, last non-zero row of the rightmost
      window_cols columns of the image) - window_rows//2 - 1``.

    A window centred on ``c`` covers indices ``[c - size//2, c - size//2 + size)``,
    clipped to the image when counting. Values can be negative (window wider
    than the image); :func:`gmic_input_window` then pads.
    """
    image = _facing_right(cropped_image, view, horizontal_flip)
    win_rows, win_cols = window
    height, width = image.shape
    x = int(rightmost_points[1]) - win_cols // 2 - 1

    if view.endswith("MLO"):
        band = image[:, max(width - win_cols, 0) :]
        filled = np.flatnonzero((band > 0).any(axis=1))
        if filled.size == 0:
            raise ValueError(f"{view}: the rightmost {win_cols} columns are all zero")
        y = min(int(bottommost_points[0]), int(filled[-1])) - win_rows // 2 - 1
        return y, x

    # CC: count non-zero pixels per row inside the window's columns, then slide
    # the window over rows with a cumulative sum (one pass, any image size).
    c0 = min(max(_window_start(x, win_cols), 0), width)
    c1 = min(max(_window_start(x, win_cols) + win_cols, 0), width)
    per_row = np.count_nonzero(image[:, c0:c1], axis=1)
    cumulative = np.concatenate(([0], np.cumsum(per_row)))
    centers = np.arange(height)
    starts = np.clip(_window_start(centers, win_rows), 0, height)
    stops = np.clip(_window_start(centers, win_rows) + win_rows, 0, height)
    counts = cumulative[stops] - cumulative[starts]
    best = centers[counts == counts.max()]
    y = best[np.argmin(np.abs(best - height // 2))]  # argmin: first (smaller y) on ties
    return int(y), x


# --- model input --------------------------------------------------------------------


def _place(length, target, center, pad_before):
    """Source slice and destination offset along one axis.

    An image shorter than the window is padded (``pad_before`` zeros first);
    otherwise the window is centred on ``center`` and shifted to lie inside.
    """
    if length < target:
        return slice(0, length), pad_before
    start = min(max(_window_start(center, target), 0), length - target)
    return slice(start, start + target), 0


def place_in_window(cropped_image, view, best_center, horizontal_flip="NO", window=OFFICIAL.window):
    """The geometric part of :func:`gmic_input_window`: mirror left-facing views, then
    cut or zero-pad the window. Keeps the dtype, so it also carries masks (for example
    lesion segmentations) into the model frame."""
    image = _facing_right(cropped_image, view, horizontal_flip)
    win_rows, win_cols = window
    height, width = image.shape
    pad_top = (win_rows - height) // 2 if view.endswith("CC") else 0
    rows, top = _place(height, win_rows, int(best_center[0]), pad_top)
    cols, left = _place(width, win_cols, int(best_center[1]), 0)
    part = image[rows, cols]
    out = np.zeros(window, dtype=image.dtype)
    out[top : top + part.shape[0], left : left + part.shape[1]] = part
    return out


def gmic_input_window(cropped_image, view, best_center, horizontal_flip="NO",
                      window=OFFICIAL.window):
    """The standardised float32 model input (rows, cols) for one cropped image.

    1. Convert to float32 and mirror left-facing views (chest wall at column 0).
    2. Rows: an image shorter than the window is padded with zeros, CC views
       ``floor((H-h)/2)`` rows on top and the rest below, MLO views only below.
       Columns: a narrower image is padded on the right. Along an axis where the
       image is at least as large, the window is centred on ``best_center`` and
       shifted to lie inside the image (steps 1-2: :func:`place_in_window`).
    3. Standardise the whole window, padding included, in float32: subtract the
       float32 mean, then divide by the std of the *centred* array, floored at 1e-5.

    With GMIC's zero crop noise the window always has exactly the target size,
    so the official bicubic resize for mismatched sizes never applies and is not
    implemented. The result is bit-identical to the official input (exam 0).
    """
    out = place_in_window(np.asarray(cropped_image, dtype=np.float32), view, best_center,
                          horizontal_flip, window)
    out -= out.mean()
    out /= max(out.std(), np.float32(1e-5))
    return out


def preprocess_view(image, view, horizontal_flip="NO", geometry=OFFICIAL):
    """GMIC stages 1 and 2 plus the model input for one image.

    Returns ``(window, info)``: the standardised float32 window and a dict holding the
    crop box and points of stage 1 and ``best_center`` of stage 2.
    """
    cropped, info = crop_mammogram(image, view, horizontal_flip, buffer=geometry.crop_buffer,
                                   iterations=geometry.crop_iterations)
    best_center = optimal_center(cropped, view, info["rightmost_points"], info["bottommost_points"],
                                 horizontal_flip, window=geometry.window)
    info = dict(info, best_center=tuple(int(v) for v in best_center))
    window = gmic_input_window(cropped, view, best_center, horizontal_flip, window=geometry.window)
    return window, info


def mask_in_model_frame(mask, view, info, horizontal_flip="NO", geometry=OFFICIAL):
    """Carry a mask of the *uncropped* image into the model frame (crop, flip, window)."""
    top, bottom, left, right = info["window_location"]
    cropped = np.asarray(mask)[top:bottom, left:right]
    return place_in_window(cropped, view, info["best_center"], horizontal_flip, geometry.window) > 0


# --- a whole data set: GMIC's step of `course-kit preprocess` -----------------------

#: Per-view keys that stage 1 and 2 add to each exam of the exam list.
STAGE_KEYS = (
    "window_location",
    "rightmost_points",
    "bottommost_points",
    "distance_from_starting_side",
    "best_center",
)


def _read_pixels(source, view):
    """Grey levels as stored: a DICOM's stored values as uint16 (12-bit data keeps 0..4095,
    GMIC's convention), or the PNG's."""
    if str(source).lower().endswith(".png"):
        return load_png16(source)
    from course_lib.dicom import read_mammogram, to_png16

    pixels, info = read_mammogram(source, laterality=view[0])
    return to_png16(pixels, info.bits_stored)


def save_cropped(source, pixels, cropped, target):
    """Write the cropped image as a 16-bit PNG at ``target`` (atomically) and return it.

    When nothing was cut off and the source is a PNG, its bytes are copied: they
    already hold exactly these values, and PNG encoding would be most of the stage's time.
    """
    import shutil

    from course_lib.io import atomic_output, write_png

    if cropped.shape == pixels.shape and str(source).lower().endswith(".png"):
        with atomic_output(target) as tmp:
            shutil.copyfile(source, tmp)
        return target
    return write_png(target, cropped)


def _check_size(pixels, iterations, source):
    """An image too small to survive stage 1's erosions says so (rather than "no breast")."""
    if pixels.ndim == 2 and min(pixels.shape) <= 2 * iterations:
        raise ValueError(
            f"{source}: the image is {pixels.shape[0]}x{pixels.shape[1]} pixels, too small for "
            f"{iterations} erosions (it needs more than {2 * iterations} pixels each way); "
            "give a smaller --crop-iterations for small images"
        )


def _check_orientation(pixels, view, horizontal_flip, source):
    """Refuse an image whose chest wall is on the side its view and flag do not expect.

    A left breast tagged R would be cropped as a right one, losing the nipple-side margin,
    and every later step would silently use the wrong side. The chest wall is found on the
    pixels as by :func:`course_lib.preprocessing.breast.orient_chest_wall_left` (when the
    pixels cannot tell, the view decides and nothing is refused).
    """
    import warnings

    from course_lib.preprocessing.breast import orient_chest_wall_left

    expected_left = faces_left(view, horizontal_flip)
    # The helper's display convention (L faces right, R faces left) names the expectation.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, flipped = orient_chest_wall_left(pixels, "R" if expected_left else "L", source=source)
    if flipped != expected_left:
        seen = "right" if flipped else "left"
        expected = "right" if expected_left else "left"
        raise ValueError(
            f"{source}: {view} (horizontal_flip {horizontal_flip}) should have its chest wall on the "
            f"{expected}, but the pixels put it on the {seen}: the laterality tag (or the flip flag) "
            "is probably wrong. Check the image; if the tag is wrong, rerun with "
            f"--laterality {Path(str(source)).name}={'L' if view[0] == 'R' else 'R'} (DICOM input) "
            "or fix the exam list."
        )


def crop_and_center(item, output_dir, settings):
    """Batch step (:mod:`course_lib.batch`): stage 1 and 2 of one image.

    Saves the cropped image, unflipped and with its bit depth, as ``cropped/<name>.png``
    and returns the stage keys (:data:`STAGE_KEYS`).
    """
    view, horizontal_flip = item.options["view"], item.options["horizontal_flip"]
    pixels = _read_pixels(item.source, view)
    _check_size(pixels, settings["crop_iterations"], item.source)
    _check_orientation(pixels, view, horizontal_flip, item.source)
    cropped, info = crop_mammogram(pixels, view, horizontal_flip, buffer=settings["crop_buffer"],
                                   iterations=settings["crop_iterations"], source=item.source)
    center = optimal_center(cropped, view, info["rightmost_points"], info["bottommost_points"],
                            horizontal_flip, tuple(settings["window"]))
    relative = f"cropped/{item.name}.png"
    save_cropped(item.source, pixels, cropped, output_dir / relative)
    return {"outputs": [relative], **info, "best_center": [int(v) for v in center]}


def preprocess_target(geometry=OFFICIAL):
    """``course-kit preprocess --for gmic``: :func:`crop_and_center` at ``geometry``."""
    from course_lib.preprocessing.job import PreprocessTarget

    settings = {"window": list(geometry.window), "crop_buffer": geometry.crop_buffer,
                "crop_iterations": geometry.crop_iterations}
    return PreprocessTarget("gmic", crop_and_center, settings, STAGE_KEYS)
