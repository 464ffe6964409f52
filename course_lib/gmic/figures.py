"""GMIC's per-image figure, in the layout of the official implementation's visualisations."""

import numpy as np

from course_lib.viz import alpha_ramp_cmap, mask_overlay, upsample_bilinear

__all__ = ["gmic_view_figure"]


def gmic_view_figure(window, saliency_map, patch_locations, patches, patch_attentions,
                     crop_shape=(256, 256), benign_mask=None, malignant_mask=None, title=None, rows=1):
    """GMIC's per-image figure: one row of 4 + K panels (the official layout), or, with
    ``rows=2``, the four maps above the K crops, with colorbars, to read at notebook width.

    1. the input window with ground truth (benign green, malignant orange-red);
    2. the patch map: the K ROI windows (upper-left anchored) filled in blue;
    3. and 4. the benign and malignant saliency maps, bilinearly resized to the input;
    5. onwards: the K crops, titled with their attention weight.

    Arrays are numpy: window (H, W), saliency_map (2, h, w), patch_locations (K, 2)
    pixels, patches (K, h', w'), patch_attentions (K,). Returns the Figure.
    """
    import matplotlib.pyplot as plt

    num_rois = len(patches)
    if rows not in (1, 2):
        raise ValueError(f"rows must be 1 (the official layout) or 2, got {rows}")
    if rows == 1:
        fig, axes = plt.subplots(1, 4 + num_rois, figsize=(30, 3))
    else:
        columns = max(4, num_rois)
        fig, grid = plt.subplots(2, columns, figsize=(2.6 * columns, 7.5),
                                 gridspec_kw={"height_ratios": (1.6, 1)})
        axes = list(grid[0, :4]) + list(grid[1, :num_rois])
        for ax in list(grid[0, 4:]) + list(grid[1, num_rois:]):
            ax.set_axis_off()
    for ax in axes:
        ax.set_axis_off()

    def background(ax, name):
        ax.imshow(window, cmap="gray", aspect="equal")
        ax.set_title(name)

    background(axes[0], "input image")
    mask_overlay(axes[0], benign_mask, "Greens", 0.85)
    mask_overlay(axes[0], malignant_mask, "OrRd", 0.85)

    background(axes[1], "patch map")
    patch_map = np.zeros(np.shape(window), bool)
    for row, col in np.asarray(patch_locations, int):
        patch_map[max(row, 0):row + crop_shape[0], max(col, 0):col + crop_shape[1]] = True
    mask_overlay(axes[1], patch_map, "YlGnBu", 0.7)
    mask_overlay(axes[1], benign_mask, "Greens", 0.85)
    mask_overlay(axes[1], malignant_mask, "OrRd", 0.85)

    for ax, channel, name, cmap in ((axes[2], 0, "SM: benign", "Greens"), (axes[3], 1, "SM: malignant", "Reds")):
        background(ax, name)
        shown = ax.imshow(upsample_bilinear(saliency_map[channel], np.shape(window)),
                          cmap=alpha_ramp_cmap(cmap), vmin=0, vmax=1)
        if rows == 2:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label="saliency")

    for k in range(num_rois):
        crop = axes[4 + k].imshow(patches[k], cmap="gray", alpha=0.8, interpolation="nearest")
        axes[4 + k].set_title(f"{'attention ' if rows == 2 else ''}{float(patch_attentions[k]):.2f}")
        if rows == 2 and k == num_rois - 1:
            fig.colorbar(crop, ax=axes[4 + k], fraction=0.046, pad=0.02, label="input value (z-score)")
    if title:
        fig.suptitle(title, y=1.02 if rows == 1 else 0.99)
    return fig
