"""Grad-CAM for the density models: figures, and a score against dense-tissue masks.

The map itself is :func:`course_lib.explain.keras_gradcam.gradcam`; here are
what notebook 02 needs around it:

- :func:`phantom_with_masks`: a SYNTHETIC INFN-style image with its dense
  tissue and breast masks in the same (cropped) frame;
- :func:`dense_mass_fraction`: the share of the map's mass (inside the breast)
  that falls on dense tissue, beside the share of the breast that is dense:
  a map that ignores density scores about the second number, one that looks
  at dense tissue scores higher;
- :func:`original_style_overlay` / :func:`gradcam_figure`: the original's
  look (matplotlib's ``seismic`` colormap added to the image with
  saturation, iso-contours of the coloured map's red channel at 250, which
  outline the band of normalised values 0.50-0.76) and a cleaner default.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["PhantomWithMasks", "phantom_with_masks", "resize_mask", "dense_mass_fraction",
           "original_style_overlay", "gradcam_figure"]


@dataclass
class PhantomWithMasks:
    """A SYNTHETIC INFN-style image and its masks, all cropped to the breast's bounding box."""

    image: np.ndarray
    dense_mask: np.ndarray
    breast_mask: np.ndarray
    label: str
    dense_fraction: float
    synthetic: bool = True


def phantom_with_masks(seed, projection, dense_fraction, shape=None):
    """Draw a mammogram phantom of ``projection`` (e.g. "MLO_L") and return it INFN-style with masks."""
    from course_lib.phantoms.density_set import to_infn_style
    from course_lib.phantoms.mammogram import make_mammogram

    view, side = projection.split("_")
    phantom = make_mammogram(seed, view=view, side=side, shape=shape, dense_fraction=dense_fraction, lesions=())
    image = to_infn_style(phantom)
    breast = phantom.breast_mask
    rows = np.flatnonzero(breast.any(axis=1))
    cols = np.flatnonzero(breast.any(axis=0))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    tissue = breast & ~phantom.pectoral_mask
    return PhantomWithMasks(image=image, dense_mask=phantom.dense_mask[crop], breast_mask=tissue[crop],
                            label=phantom.density, dense_fraction=phantom.measured_dense_fraction)


def resize_mask(mask, size):
    """Nearest-neighbour resize of a boolean mask to ``size`` x ``size`` (as the images are)."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.asarray(mask, np.uint8) * 255).resize(
        (size, size), Image.Resampling.NEAREST)) > 127


def dense_mass_fraction(saliency, dense_mask, breast_mask):
    """(share of the map's breast mass on dense tissue, share of the breast that is dense).

    >>> dense = np.zeros((4, 4), bool); dense[:2] = True
    >>> breast = np.ones((4, 4), bool)
    >>> dense_mass_fraction(dense.astype(float), dense, breast)
    (1.0, 0.5)
    """
    saliency = np.asarray(saliency, np.float64)
    inside = saliency[breast_mask].sum()
    on_dense = saliency[dense_mask & breast_mask].sum()
    base = float((dense_mask & breast_mask).sum() / max(breast_mask.sum(), 1))
    return (float(on_dense / inside) if inside > 0 else float("nan")), base


def original_style_overlay(image, saliency):
    """The original's overlay: ``seismic`` map (RGBA) added to the grey image, saturating at 255.

    Returns ``(overlay uint8 HxWx4, red channel of the coloured map uint8)``.
    """
    from matplotlib import colormaps

    coloured = (colormaps["seismic"](np.clip(saliency, 0, 1)) * 255).astype(np.uint8)
    grey = np.asarray(image, np.float64)
    grey = (grey - grey.min()) / max(grey.max() - grey.min(), 1e-12) * 255
    base = np.dstack([grey] * 3 + [np.full(grey.shape, 255.0)])
    overlay = np.clip(base + coloured, 0, 255).astype(np.uint8)
    return overlay, coloured[..., 0]


def gradcam_figure(image, saliency, title="", style="clean", ax=None):
    """Draw one map over its image: ``"clean"`` (translucent inferno + contour at 0.5) or ``"original"``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    if style == "original":
        overlay, red = original_style_overlay(image, saliency)
        ax.imshow(overlay)
        ax.contour(red, levels=[250], colors="k", linewidths=1)
    elif style == "clean":
        ax.imshow(image, cmap="gray")
        ax.imshow(saliency, cmap="inferno", alpha=0.45, vmin=0, vmax=1)
        ax.contour(saliency, levels=[0.5], colors="cyan", linewidths=1)
    else:
        raise ValueError(f"style must be 'clean' or 'original', not {style!r}")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return ax
