"""Where does the model look? A-MIL attention maps, and Grad-CAM of a CNN baseline.

- **Attention maps.** A-MIL has one attention branch (K = 1): the same weights
  pool the bag whichever class is predicted. A map therefore shows which
  patches the bag vector is made of, *not* evidence for one class; for a bag
  called benign it shows what the benign call rests on. Two drawings:
  :func:`dim_by_attention` (the study's: every patch multiplied by its weight
  divided by the largest weight) and :func:`attention_overlay` (a colormap).
- **Grad-CAM** (Selvaraju et al., ICCV 2017) of :class:`PatchCNN`, a small CNN
  trained on the same images, for the *malignant* logit (the study fixed the
  target to the malignant class too). :func:`gradcam_by_hand` writes the method
  out; :func:`gradcam_library` calls ``pytorch-grad-cam`` (Gildenblat et al.).
  Both resize the map bilinearly to the input and rescale it to [0, 1], so
  they agree to float precision.
- :func:`patch_means` averages a pixel map over each bag patch, so that
  Grad-CAM and attention can be scored on the same 400 patches.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from course_lib.amil.data import CROP_SHAPE, PATCH_SIZE, grid_shape

__all__ = ["attention_grid", "dim_by_attention", "attention_overlay", "PatchCNN", "gradcam_by_hand",
           "gradcam_library", "patch_means", "explanation_figure"]


def attention_grid(weights, grid=None):
    """A bag's (n,) attention weights on their (rows, cols) patch grid (row-major)."""
    rows, cols = grid or grid_shape()
    return np.asarray(weights, np.float32).reshape(rows, cols)


def dim_by_attention(crop, weights, patch=PATCH_SIZE):
    """The study's drawing: each patch of the (H, W, 3) crop times its weight / the largest weight.

    The most attended patch keeps its colours; a patch with a tenth of that
    weight is drawn at a tenth of the brightness. Unlike the original, the
    result has the crop's own size (no black band) and is not rescaled.
    """
    crop = np.asarray(crop, np.float32)
    grid = attention_grid(weights, (crop.shape[0] // patch, crop.shape[1] // patch))
    relative = grid / max(float(grid.max()), 1e-12)
    return crop * np.kron(relative, np.ones((patch, patch), np.float32))[..., None]


def attention_overlay(ax, crop, weights, patch=PATCH_SIZE, cmap="inferno", alpha=0.55):
    """Draw a crop with its attention weights / max as a colormap on top (one cell per patch)."""
    grid = attention_grid(weights, (crop.shape[0] // patch, crop.shape[1] // patch))
    ax.imshow(crop)
    shown = ax.imshow(grid / max(float(grid.max()), 1e-12), cmap=cmap, alpha=alpha, vmin=0, vmax=1,
                      interpolation="nearest", extent=(-0.5, crop.shape[1] - 0.5, crop.shape[0] - 0.5, -0.5))
    ax.set_axis_off()
    return shown


class PatchCNN(nn.Module):
    """CNN baseline on the whole 448 x 700 crop: one malignant logit per image.

    Input halved by 2 x 2 averaging, then four 3 x 3 convolutions (16, 32, 64,
    64 channels, ReLU; max-pool after the first three), global average pooling
    and a linear layer. ``target_layer`` (the last ReLU, a 28 x 43 map) is
    where Grad-CAM is taken. 60,577 parameters. ``centre_inputs`` as in
    :class:`~course_lib.amil.model.AttentionMIL`.
    """

    def __init__(self, centre_inputs=False):
        super().__init__()
        self.centre_inputs = centre_inputs
        self.body = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(64, 1)

    @property
    def target_layer(self):
        return self.body[-1]

    def forward(self, images):
        """(B, 3, H, W) images in [0, 1] -> (B, 1) malignant logits."""
        if self.centre_inputs:
            images = 2.0 * images - 1.0
        return self.head(self.body(images).mean(dim=(2, 3)))


def _resize_and_rescale(cam, size):
    """Bilinear resize of each (h, w) map to ``size`` (rows, cols), then min-max to [0, 1].

    (pytorch-grad-cam min-maxes before and after resizing; resizing commutes
    with an affine rescaling, so once after is the same map.)
    """
    cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    return cam / (1e-7 + cam.amax(dim=(1, 2), keepdim=True))


def gradcam_by_hand(model, images, target_layer=None, sign=1.0):
    """Grad-CAM, step by step: (B, 3, H, W) -> (B, H, W) maps in [0, 1].

    1. forward, keeping the target layer's activations A (B, K, h, w);
    2. backward from ``sign`` * logit (1: malignant, -1: benign);
    3. channel weights alpha_k = spatial mean of dlogit/dA_k;
    4. map = ReLU(sum_k alpha_k A_k), bilinear resize to the input, min-max to [0, 1].
    """
    target_layer = target_layer or model.target_layer
    kept = {}
    handle = target_layer.register_forward_hook(lambda module, inputs, output: kept.update(a=output))
    try:
        images = images.clone().requires_grad_(True)
        logits = model(images)[:, 0]
        activations = kept["a"]
        gradients, = torch.autograd.grad((sign * logits).sum(), activations)
    finally:
        handle.remove()
    alpha = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((alpha * activations).sum(dim=1)).detach()
    return _resize_and_rescale(cam, images.shape[-2:]).numpy()


def gradcam_library(model, images, target_layer=None, sign=1.0):
    """Grad-CAM through ``pytorch-grad-cam`` (same target: ``sign`` * the logit)."""
    from pytorch_grad_cam import GradCAM

    target_layer = target_layer or model.target_layer
    targets = [lambda output: sign * output[..., 0]] * len(images)
    with GradCAM(model=model, target_layers=[target_layer]) as cam:
        return cam(input_tensor=images, targets=targets)


def patch_means(pixel_map, patch=PATCH_SIZE):
    """Mean of an (H, W) map over each patch, in bag order: (H/p * W/p,)."""
    rows, cols = pixel_map.shape[0] // patch, pixel_map.shape[1] // patch
    return np.asarray(pixel_map, np.float32)[:rows * patch, :cols * patch].reshape(
        rows, patch, cols, patch).mean(axis=(1, 3)).reshape(-1)


def explanation_figure(crop, weights, cam, mask=None, title=None, crop_shape=CROP_SHAPE):
    """Side by side: the crop (tumour outlined), attention dimming, attention colormap, Grad-CAM."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(16, 3.3))
    axes[0].imshow(crop)
    if mask is not None and np.any(mask):
        axes[0].contour(mask, levels=[0.5], colors="lime", linewidths=1)
    axes[0].set_title("input (tumour outlined)" if mask is not None else "input")
    axes[1].imshow(np.clip(dim_by_attention(crop, weights), 0, 1))
    axes[1].set_title("A-MIL: patches x attention / max")
    attention_overlay(axes[2], crop, weights)
    axes[2].set_title("A-MIL attention (one branch, K = 1)")
    axes[3].imshow(crop)
    axes[3].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[3].set_title("Grad-CAM of the CNN, malignant logit")
    for ax in axes:
        ax.set_axis_off()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
