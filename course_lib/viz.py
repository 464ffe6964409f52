"""Figures shared by the notebooks and the command line (matplotlib, numpy arrays in)."""

import numpy as np


def alpha_ramp_cmap(name, max_alpha=0.95):
    """Colormap ``name`` whose opacity rises linearly from 0 to ``max_alpha``, so that a
    map drawn over an image hides nothing where it is low."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    colours = colormaps[name](np.linspace(0, 1, 256))
    colours[:, 3] = np.linspace(0, max_alpha, 256)
    return ListedColormap(colours, name=f"{name}_ramp")


def _mask_overlay(ax, mask, cmap, alpha):
    """Draw only the pixels of ``mask`` (others fully transparent)."""
    if mask is not None and np.any(mask):
        ax.imshow(np.ma.masked_where(~np.asarray(mask, bool), np.ones(np.shape(mask))),
                  cmap=cmap, alpha=alpha, vmin=0, vmax=1, interpolation="nearest")


def upsample_bilinear(array, shape):
    """Resize a 2-D map to ``shape`` with bilinear interpolation (scipy, align-corners off)."""
    from scipy import ndimage

    zoom = (shape[0] / array.shape[0], shape[1] / array.shape[1])
    return ndimage.zoom(np.asarray(array, np.float32), zoom, order=1, grid_mode=True, mode="nearest")


def gmic_view_figure(window, saliency_map, patch_locations, patches, patch_attentions,
                     crop_shape=(256, 256), benign_mask=None, malignant_mask=None, title=None):
    """GMIC's per-image figure: one row of 4 + K panels (the official layout).

    1. the input window with ground truth (benign green, malignant orange-red);
    2. the patch map: the K ROI windows (upper-left anchored) filled in blue;
    3. and 4. the benign and malignant saliency maps, bilinearly resized to the input;
    5. onwards: the K crops, titled with their attention weight.

    Arrays are numpy: window (H, W), saliency_map (2, h, w), patch_locations (K, 2)
    pixels, patches (K, h', w'), patch_attentions (K,). Returns the Figure.
    """
    import matplotlib.pyplot as plt

    num_rois = len(patches)
    fig, axes = plt.subplots(1, 4 + num_rois, figsize=(30, 3))
    for ax in axes:
        ax.set_axis_off()

    def background(ax, name):
        ax.imshow(window, cmap="gray", aspect="equal")
        ax.set_title(name)

    background(axes[0], "input image")
    _mask_overlay(axes[0], benign_mask, "Greens", 0.85)
    _mask_overlay(axes[0], malignant_mask, "OrRd", 0.85)

    background(axes[1], "patch map")
    patch_map = np.zeros(np.shape(window), bool)
    for row, col in np.asarray(patch_locations, int):
        patch_map[max(row, 0):row + crop_shape[0], max(col, 0):col + crop_shape[1]] = True
    _mask_overlay(axes[1], patch_map, "YlGnBu", 0.7)
    _mask_overlay(axes[1], benign_mask, "Greens", 0.85)
    _mask_overlay(axes[1], malignant_mask, "OrRd", 0.85)

    for ax, channel, name, cmap in ((axes[2], 0, "SM: benign", "Greens"), (axes[3], 1, "SM: malignant", "Reds")):
        background(ax, name)
        ax.imshow(upsample_bilinear(saliency_map[channel], np.shape(window)),
                  cmap=alpha_ramp_cmap(cmap), vmin=0, vmax=1)

    for k in range(num_rois):
        axes[4 + k].imshow(patches[k], cmap="gray", alpha=0.8, interpolation="nearest")
        axes[4 + k].set_title(f"{float(patch_attentions[k]):.2f}")
    if title:
        fig.suptitle(title, y=1.02)
    return fig


def apply_window(image, center, width):
    """Display window/level: map [center - width/2, center + width/2] linearly to [0, 1]."""
    low = center - width / 2.0
    return np.clip((np.asarray(image, np.float32) - low) / max(width, 1e-6), 0.0, 1.0)


def window_level_figure(image, windows, titles=None):
    """One panel per (center, width) window of ``image``, side by side (static; for any frontend)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(windows), figsize=(4 * len(windows), 5), squeeze=False)
    for k, (ax, (center, width)) in enumerate(zip(axes[0], windows)):
        ax.imshow(apply_window(image, center, width), cmap="gray", vmin=0, vmax=1)
        ax.set_title(titles[k] if titles else f"center {center:g}, width {width:g}")
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def _redraw_on_change(controls, draw):
    """Controls above an output area that ``draw(*values)`` fills whenever a control changes.

    Nothing is drawn when the widget is created: a headless run (papermill, nbval, the
    HTML export) then exchanges no widget output at all, and the notebooks show the
    initial state as a static figure just above.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    output = widgets.Output()

    def redraw(_change):
        with output:
            output.clear_output(wait=True)
            draw(*[control.value for control in controls])
            plt.show()

    for control in controls:
        control.observe(redraw, names="value")
    return widgets.VBox([*controls, output])


def window_level_viewer(image, center=None, width=None, downsample=4):
    """Window/level sliders (ipywidgets) over a downsampled ``image``; move one to draw."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    small = np.asarray(image)[::downsample, ::downsample]
    low, high = float(small.min()), float(small.max())
    center = (low + high) / 2 if center is None else center
    width = (high - low) if width is None else width

    def show(center, width):
        plt.figure(figsize=(5, 6))
        plt.imshow(apply_window(small, center, width), cmap="gray", vmin=0, vmax=1)
        plt.axis("off")

    step = max((high - low) / 200, 1)
    return _redraw_on_change(
        [widgets.FloatSlider(value=center, min=low, max=high, step=step, description="level"),
         widgets.FloatSlider(value=width, min=step, max=2 * (high - low), step=step, description="window")],
        show,
    )


def gmic_browser(views, figure_for):
    """A dropdown over ``views`` (names) that draws ``figure_for(name)``; pick one to draw."""
    import ipywidgets as widgets

    return _redraw_on_change([widgets.Dropdown(options=list(views), value=None, description="view")],
                             figure_for)
