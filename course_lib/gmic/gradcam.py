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


def gmic_gradcam(model, windows, class_index, batch_size=8):
    """Grad-CAM maps (N, H, W) in [0, 1] for class ``class_index`` (0 benign, 1 malignant).

    Target layer: the global network's final BatchNorm, i.e. h_g before its ReLU, the
    feature map GMIC's own saliency head reads.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    maps = []
    with GradCAM(model=GlobalScores(model), target_layers=[model.ds_net.final_bn]) as cam:
        for start in range(0, len(windows), batch_size):
            batch = torch.as_tensor(np.asarray(windows[start:start + batch_size], np.float32))[:, None]
            targets = [ClassifierOutputTarget(class_index)] * len(batch)
            maps.append(cam(input_tensor=batch, targets=targets))
    return np.concatenate(maps)


def block_mean(maps, block):
    """Average (N, H, W) maps over ``block`` x ``block`` tiles: back to the saliency grid."""
    n, h, w = maps.shape
    return maps.reshape(n, h // block, block, w // block, block).mean(axis=(2, 4))
