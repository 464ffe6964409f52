"""Grad-CAM of GMIC's global network, through pytorch-grad-cam (torch).

GMIC's own saliency map is a by-product of its classifier; Grad-CAM explains the same
global network after the fact. Comparing both on phantoms, whose lesions are known,
shows which one points at the lesion.
"""

import numpy as np
import torch
from torch import nn


class GlobalScores(nn.Module):
    """GMIC seen as a plain classifier that returns ``y_global`` (N, 2), the output of its
    global network; pytorch-grad-cam needs a module that returns a tensor."""

    def __init__(self, gmic):
        super().__init__()
        self.gmic = gmic

    def forward(self, images):
        # The dense forward: the padding-skipping one runs the layers image by image,
        # and Grad-CAM's hooks would see only the last image of the batch.
        return self.gmic(images, exact_full_forward=True).y_global


LAYERS = ("final_bn", "h_g")


def gmic_gradcam(model, windows, class_index, batch_size=8, layer="final_bn"):
    """Grad-CAM maps (N, H, W) in [0, 1] for class ``class_index`` (0 benign, 1 malignant),
    explaining ``y_global`` of that class.

    ``layer``:

    - ``"final_bn"``: the global network's final BatchNorm, i.e. h_g *before* its ReLU
      (through pytorch-grad-cam, bilinearly resized to the input);
    - ``"h_g"``: h_g itself, after the ReLU: the very map GMIC's saliency head reads, so
      that Grad-CAM and the saliency map see the same features. Computed here in a few
      lines (pytorch-grad-cam needs a module, and the ReLU is not one); each cell's value
      fills its 64x64 block, so ``block_mean(maps, 64)`` gives the cell map back.
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    model.eval()
    if layer == "h_g":
        return np.concatenate([_gradcam_h_g(model, windows[start:start + batch_size], class_index)
                               for start in range(0, len(windows), batch_size)])
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    maps = []
    with GradCAM(model=GlobalScores(model), target_layers=[model.ds_net.final_bn]) as cam:
        for start in range(0, len(windows), batch_size):
            batch = torch.as_tensor(np.asarray(windows[start:start + batch_size], np.float32))[:, None]
            targets = [ClassifierOutputTarget(class_index)] * len(batch)
            maps.append(cam(input_tensor=batch, targets=targets))
    return np.concatenate(maps)


def _gradcam_h_g(model, windows, class_index):
    """Grad-CAM on post-ReLU h_g: ReLU(sum_k w_k h_g^k), w_k the spatial mean of d y_global / d h_g^k,
    min-max normalised per image (as pytorch-grad-cam does), each cell repeated over its block."""
    batch = torch.as_tensor(np.asarray(windows, np.float32))[:, None]
    with torch.enable_grad():
        h_g = model.ds_net(batch).detach().requires_grad_(True)
        score = model.global_branch(h_g)["y_global"][:, class_index].sum()
        (gradient,) = torch.autograd.grad(score, h_g)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * h_g.detach()).sum(dim=1)).numpy()
    low = cam.min(axis=(1, 2), keepdims=True)
    cam = (cam - low) / np.maximum(cam.max(axis=(1, 2), keepdims=True) - low, 1e-7)
    stride = batch.shape[-1] // cam.shape[-1]
    return np.repeat(np.repeat(cam, stride, axis=1), stride, axis=2).astype(np.float32)


def block_mean(maps, block):
    """Average (N, H, W) maps over ``block`` x ``block`` tiles: back to the saliency grid."""
    n, h, w = maps.shape
    return maps.reshape(n, h // block, block, w // block, block).mean(axis=(2, 4))
