"""Metrics, and the check every notebook uses for the figures it reproduces."""

import math

import numpy as np


class ReproductionError(AssertionError):
    """A reproduced figure that is outside the tolerance of the published one."""


def check_reproduced(name, measured, published, tolerance, decimals=4):
    """Print ``name: measured (published …)`` rounded, and raise if they disagree.

    The printed line is what nbval compares; the exception makes a notebook fail loudly
    when an upgrade silently changes a number.
    """
    measured = float(measured)
    agrees = math.isclose(measured, published, rel_tol=0.0, abs_tol=tolerance)
    print(f"{name}: {measured:.{decimals}f} (published {published:.{decimals}f}, "
          f"tolerance {tolerance:g}) {'ok' if agrees else 'DIFFERS'}")
    if not agrees:
        raise ReproductionError(
            f"{name}: reproduced {measured!r} but published {published!r} (tolerance {tolerance})"
        )
    return measured


def dice(a, b):
    """Dice coefficient of two boolean masks (1.0 when both are empty)."""

    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def _cell_stride(map_shape, mask_shape):
    strides = [m // s for m, s in zip(mask_shape, map_shape)]
    if any(m % s for m, s in zip(mask_shape, map_shape)):
        raise ValueError(f"mask {mask_shape} is not a whole multiple of the map {map_shape}")
    return strides


def pointing_game_hit(saliency_map, lesion_mask):
    """Does the saliency map's maximum point at the lesion? (Zhang et al., ECCV 2016)

    ``saliency_map`` is one class's (h, w) map on the model's coarse grid and
    ``lesion_mask`` the (H, W) mask in the input frame, with H/h = W/w an integer
    (64 for GMIC). A hit: the lesion covers at least one pixel of the grid cell
    holding the maximum, i.e. the tolerance is the map's own resolution.
    """

    saliency_map = np.asarray(saliency_map)
    sy, sx = _cell_stride(saliency_map.shape, lesion_mask.shape)
    r, c = np.unravel_index(np.argmax(saliency_map), saliency_map.shape)
    return bool(np.asarray(lesion_mask)[r * sy:(r + 1) * sy, c * sx:(c + 1) * sx].any())


def saliency_dice(saliency_map, lesion_mask, threshold=0.5):
    """Dice between the lesion mask and the saliency map thresholded at ``threshold``,
    each cell of the coarse map covering its block of input pixels."""

    saliency_map = np.asarray(saliency_map)
    sy, sx = _cell_stride(saliency_map.shape, lesion_mask.shape)
    upsampled = np.kron(saliency_map >= threshold, np.ones((sy, sx), bool))
    return dice(upsampled, lesion_mask)
