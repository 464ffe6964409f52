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


def mask_overlay(ax, mask, cmap, alpha):
    """Draw only the pixels of ``mask`` (others fully transparent)."""
    if mask is not None and np.any(mask):
        ax.imshow(np.ma.masked_where(~np.asarray(mask, bool), np.ones(np.shape(mask))),
                  cmap=cmap, alpha=alpha, vmin=0, vmax=1, interpolation="nearest")


def upsample_bilinear(array, shape):
    """Resize a 2-D map to ``shape`` with bilinear interpolation (scipy, align-corners off)."""
    from scipy import ndimage

    zoom = (shape[0] / array.shape[0], shape[1] / array.shape[1])
    return ndimage.zoom(np.asarray(array, np.float32), zoom, order=1, grid_mode=True, mode="nearest")


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


def redraw_on_change(controls, draw):
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
    return redraw_on_change(
        [widgets.FloatSlider(value=center, min=low, max=high, step=step, description="level"),
         widgets.FloatSlider(value=width, min=step, max=2 * (high - low), step=step, description="window")],
        show,
    )


def image_browser(names, figure_for, description="view"):
    """A dropdown over ``names`` that draws ``figure_for(name)``; pick one to draw."""
    import ipywidgets as widgets

    return redraw_on_change([widgets.Dropdown(options=list(names), value=None, description=description)],
                            figure_for)
