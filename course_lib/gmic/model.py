"""GMIC, the globally-aware multiple instance classifier for screening mammograms, in PyTorch.

Shen et al., "An interpretable classifier for high-resolution breast cancer screening
images utilizing weakly supervised localization", Medical Image Analysis 2021.

Written from a description of the official implementation (no code was copied). Module
and parameter names match the official checkpoints, which load with ``strict=True``.

Pipeline for one (1, 2944, 1920) image:

1. a pre-activation ResNet-22 (``ds_net``) gives ``h_g`` (256x46x30);
2. a 1x1 convolution and a sigmoid give the benign/malignant saliency map;
3. greedy search picks K=6 regions of interest (:func:`retrieve_roi_cells`);
4. a ResNet-18 trunk (``dn_resnet``) encodes each 256x256 crop;
5. gated attention pools the crops into ``z``;
6. a linear layer on [max of h_g ; z] gives the prediction ``y_fusion``.

Speed: 62-82% of an input window is constant padding, whose activations stay
constant away from the breast and the image border. In eval mode the global network
therefore stores each run of identical rows or columns shortened and computes only
the rest (see :mod:`course_lib.gmic.compact_map`), and max-pools separably.
``h_g`` equals that of the plain forward to float rounding; ``exact_full_forward=True``
runs the plain forward.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from course_lib.gmic.compact_map import CompactMap, separable_max_pool
from course_lib.gmic.config import GLOBAL_NETWORK_STRIDE, GMICConfig, gmic_config

__all__ = [
    "GMIC",
    "GMICOutput",
    "GlobalNetwork",
    "LocalNetwork",
    "RoiSearch",
    "cells_to_pixels",
    "check_input",
    "CheckpointError",
    "check_finite",
    "check_state_dict",
    "read_state_dict",
    "crop_patches",
    "load_gmic_checkpoint",
    "retrieve_roi_cells",
    "top_t_pool",
]


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------


class PreActBlock(nn.Module):
    """Pre-activation basic block of the global network, acting on a :class:`CompactMap`.

    The projection shortcut (``downsample.0``, 1x1 conv, no BN) acts on the
    pre-activated input, and no ReLU follows the addition.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, project: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)) if project else None
        )

    def forward(self, x: CompactMap) -> CompactMap:
        # Lengthening before the branches split keeps their storage equal for the sum.
        activated = x.pointwise(lambda values: F.relu(self.bn1(values))).ready_for(self.conv1)
        main = activated.window_op(self.conv1).pointwise(lambda values: F.relu(self.bn2(values)))
        main = main.window_op(self.conv2)
        shortcut = x if self.downsample is None else activated.window_op(self.downsample[0])
        return main + shortcut


class GlobalNetwork(nn.Module):
    """ResNet-22 (pre-activation, "V2"): (N, 1, H, W) -> h_g (N, 256, H/64, W/64).

    Stem: 7x7/2 conv then 3x3/2 max-pool without padding (no BN or ReLU between).
    Five stages of two blocks, widths 16..256, strides 1,2,2,2,2; every stage's
    first block projects its shortcut. Ends with BN and ReLU.
    """

    widths = (16, 32, 64, 128, 256)
    strides = (1, 2, 2, 2, 2)

    def __init__(self):
        super().__init__()
        self.first_conv = nn.Conv2d(1, 16, 7, 2, padding=3, bias=False)
        self.first_pool = nn.MaxPool2d(3, 2, padding=0)
        in_channels = 16
        stages = []
        for width, stride in zip(self.widths, self.strides):
            stages.append(
                nn.Sequential(
                    PreActBlock(in_channels, width, stride, project=True), PreActBlock(width, width, 1, False)
                )
            )
            in_channels = width
        self.layer_list = nn.ModuleList(stages)
        self.final_bn = nn.BatchNorm2d(in_channels)

    def forward(self, images: torch.Tensor, collapse_constant_runs: bool = False) -> torch.Tensor:
        """h_g of a (N, 1, H, W) batch.

        ``collapse_constant_runs`` stores each image's runs of identical rows and
        columns (its constant padding) shortened, and max-pools with
        :func:`separable_max_pool`. The result equals the plain forward to float
        rounding, provided BN is in eval mode; gradients with respect to the images
        are not those of the plain forward.
        """
        if not collapse_constant_runs:
            return self.forward_map(CompactMap.dense(images)).to_dense()
        # Each image has its own padding layout.
        return torch.cat([self._forward_collapsed(image[None]) for image in images])

    def forward_map(self, x: CompactMap, first_pool=None) -> CompactMap:
        """The network on a compact map; ``first_pool`` may replace the stem's pooling op."""
        x = x.window_op(self.first_conv).window_op(self.first_pool, first_pool)
        for stage in self.layer_list:
            for block in stage:
                x = block(x)
        return x.pointwise(lambda values: F.relu(self.final_bn(values)))

    def _forward_collapsed(self, image: torch.Tensor) -> torch.Tensor:
        x = CompactMap.collapse(image, GLOBAL_NETWORK_STRIDE)
        return self.forward_map(x, self._separable_first_pool).to_dense()

    def _separable_first_pool(self, values: torch.Tensor) -> torch.Tensor:
        return separable_max_pool(values, self.first_pool.kernel_size, self.first_pool.stride)


class SaliencyHead(nn.Module):
    """1x1 convolution from h_g to one logit per class (``gn_conv_last``)."""

    def __init__(self, in_channels: int = 256, num_classes: int = 2):
        super().__init__()
        self.gn_conv_last = nn.Conv2d(in_channels, num_classes, 1, bias=False)

    def forward(self, h_g: torch.Tensor) -> torch.Tensor:
        return self.gn_conv_last(h_g)


class LocalNetwork(nn.Module):
    """torchvision ResNet-18 without average pooling and fc: (n, 3, h, w) -> (n, 512, h/32, w/32)."""

    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(crops))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# --------------------------------------------------------------------------------------
# Parameter-free steps
# --------------------------------------------------------------------------------------


def top_t_pool(saliency_map: torch.Tensor, count: int) -> torch.Tensor:
    """Per class, the mean of the ``count`` largest values: (N, C, h, w) -> (N, C)."""
    return saliency_map.flatten(2).topk(count, dim=-1).values.mean(dim=-1)


@dataclass(frozen=True)
class RoiSearch:
    """Result of :func:`retrieve_roi_cells` for N images and K regions."""

    cells: torch.Tensor  # (N, K, 2) int64 upper-left (row, col) on the saliency grid
    maps: torch.Tensor  # (N, K, h, w) the map scanned at each step
    pooled_maps: torch.Tensor  # (N, K, h - wh + 1, w - ww + 1) its window averages


def retrieve_roi_cells(saliency_map: torch.Tensor, window_cells=(4, 4), num_rois: int = 6) -> RoiSearch:
    """Greedy choice of ``num_rois`` regions of interest on a saliency map.

    1. Min-max normalise each class channel over its own map and sum the channels
       (values in [0, C]); this is done once.
    2. Repeat ``num_rois`` times: average the map over every window of
       ``window_cells`` (stride 1, no padding); the best window is the first
       arg-max in row-major order; record its upper-left cell and set the map to
       zero inside it. Later windows may overlap earlier ones.

    Parameters
    ----------
    saliency_map : (N, C, h, w) tensor
    window_cells : (wh, ww)
        Region size in saliency cells.
    num_rois : int

    Returns
    -------
    RoiSearch
        Cells in selection order, plus the scanned and pooled maps of every step.
    """
    low = saliency_map.amin(dim=(2, 3), keepdim=True)
    span = saliency_map.amax(dim=(2, 3), keepdim=True) - low
    # A flat channel carries no location information: it adds zeros instead of NaN.
    span = torch.where(span > 0, span, torch.ones_like(span))
    current = ((saliency_map - low) / span).sum(dim=1)

    window_h, window_w = window_cells
    row_ids = torch.arange(current.shape[1], device=current.device).view(1, -1, 1)
    col_ids = torch.arange(current.shape[2], device=current.device).view(1, 1, -1)
    maps, pooled_maps, cells = [], [], []
    for _ in range(num_rois):
        pooled = F.avg_pool2d(current[:, None], (window_h, window_w), stride=1)[:, 0]
        best = pooled.flatten(1).argmax(dim=1)  # first maximum on ties
        row, col = best // pooled.shape[2], best % pooled.shape[2]
        maps.append(current)
        pooled_maps.append(pooled)
        cells.append(torch.stack([row, col], dim=1))
        inside_rows = (row_ids >= row.view(-1, 1, 1)) & (row_ids < row.view(-1, 1, 1) + window_h)
        inside_cols = (col_ids >= col.view(-1, 1, 1)) & (col_ids < col.view(-1, 1, 1) + window_w)
        current = current.masked_fill(inside_rows & inside_cols, 0.0)
    return RoiSearch(torch.stack(cells, dim=1), torch.stack(maps, dim=1), torch.stack(pooled_maps, dim=1))


def cells_to_pixels(cells: torch.Tensor, cam_size, input_shape) -> torch.Tensor:
    """Upper-left input pixel of saliency cells: round(cell / cam * input), half to even."""
    cam = torch.tensor(cam_size, dtype=torch.float64, device=cells.device)
    size = torch.tensor(input_shape, dtype=torch.float64, device=cells.device)
    # Divide, then multiply, in float64, and round half to even like numpy.round.
    return (cells.double() / cam * size).round().long()


def crop_patches(images: torch.Tensor, locations: torch.Tensor, crop_shape) -> torch.Tensor:
    """Cut the (h, w) patches whose upper-left pixels are ``locations``.

    images: (N, 1, H, W); locations: (N, K, 2) int. Returns (N, K, h, w).
    A window sticking out of the image is clipped; its patch is filled with the
    image's minimum and the part inside the image goes to the patch's bottom-right
    corner (the official rule; official settings never need it).
    """
    crop_h, crop_w = crop_shape
    height, width = images.shape[-2:]
    num_images, num_rois = locations.shape[:2]
    fill = images.amin(dim=(1, 2, 3)).view(-1, 1, 1, 1)
    patches = fill.expand(num_images, num_rois, crop_h, crop_w).clone()
    for i, image_locations in enumerate(locations.tolist()):
        for k, (top, left) in enumerate(image_locations):
            inside = images[i, 0, max(top, 0) : min(top + crop_h, height), max(left, 0) : min(left + crop_w, width)]
            patches[i, k, crop_h - inside.shape[0] :, crop_w - inside.shape[1] :] = inside
    return patches


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GMICOutput:
    """Every intermediate of a GMIC forward pass, for N images and K regions.

    Names follow the official fixture. Shapes (official settings: h, w = 46, 30):
    h_g (N,256,h,w), global_vec (N,256), saliency_logits / saliency_map (N,2,h,w),
    y_global (N,2), roi_maps (N,K,h,w), roi_pool_maps (N,K,h-3,w-3),
    roi_small_locations (N,K,2) int64 cells, patch_locations (N,K,2) int64 pixels,
    patches (N,K,256,256), local_feature_maps (N,K,512,8,8), h_crops (N,K,512),
    attn_U_out / attn_V_out (N,K,128), attn_scores / patch_attns (N,K), z (N,512),
    y_local_logits / y_local (N,2), concat_vec (N,768), fusion_logits / y_fusion (N,2).
    ``y_fusion`` is the prediction (benign, malignant).
    """

    h_g: torch.Tensor
    global_vec: torch.Tensor
    saliency_logits: torch.Tensor
    saliency_map: torch.Tensor
    y_global: torch.Tensor
    roi_maps: torch.Tensor
    roi_pool_maps: torch.Tensor
    roi_small_locations: torch.Tensor
    patch_locations: torch.Tensor
    patches: torch.Tensor
    local_feature_maps: torch.Tensor
    h_crops: torch.Tensor
    attn_U_out: torch.Tensor
    attn_V_out: torch.Tensor
    attn_scores: torch.Tensor
    patch_attns: torch.Tensor
    z: torch.Tensor
    y_local_logits: torch.Tensor
    y_local: torch.Tensor
    concat_vec: torch.Tensor
    fusion_logits: torch.Tensor
    y_fusion: torch.Tensor


def check_input(images, config: GMICConfig | None = None) -> None:
    """Raise ValueError unless ``images`` is a float32 (N, 1, H, W) batch of the configured
    size (default: the official 2944x1920)."""
    config = config if config is not None else GMICConfig()
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"GMIC expects a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.float32:
        raise ValueError(
            f"GMIC expects float32 images, got {images.dtype}; normalise the window and convert it with images.float()"
        )
    if images.ndim != 4 or images.shape[0] < 1 or images.shape[1] != 1:
        raise ValueError(
            f"GMIC expects a batch of grey images shaped (N, 1, H, W), got {tuple(images.shape)}; "
            "add the batch and channel axes with image[None, None]"
        )
    if tuple(images.shape[-2:]) != tuple(config.input_shape):
        height, width = config.input_shape
        raise ValueError(
            f"GMIC expects {height}x{width} images, got {images.shape[-2]}x{images.shape[-1]}; "
            "use course_lib.gmic.preprocess to window the image first, or configure the model "
            "with GMICConfig(input_shape=...) for a reduced-resolution model"
        )


class GMIC(nn.Module):
    """GMIC with the official module names (``ds_net``, ``left_postprocess_net``,
    ``dn_resnet``, ``mil_attn_*``, ``classifier_linear``, ``fusion_dnn``).

    Parameters
    ----------
    config : GMICConfig, optional
        Defaults to official model "1".
    """

    def __init__(self, config: GMICConfig | None = None):
        super().__init__()
        self.config = config if config is not None else gmic_config("1")
        self.ds_net = GlobalNetwork()
        self.left_postprocess_net = SaliencyHead(256, 2)
        self.dn_resnet = LocalNetwork()
        self.mil_attn_V = nn.Linear(512, 128, bias=False)
        self.mil_attn_U = nn.Linear(512, 128, bias=False)
        self.mil_attn_w = nn.Linear(128, 1, bias=False)
        self.classifier_linear = nn.Linear(512, 2, bias=False)
        self.fusion_dnn = nn.Linear(256 + 512, 2)

    def forward(self, images: torch.Tensor, exact_full_forward: bool = False) -> GMICOutput:
        """Run GMIC on a (N, 1, H, W) float32 batch of normalised windows.

        In eval mode the global network skips the recomputation of constant padding
        (same result to float rounding) unless ``exact_full_forward`` is set, or the
        gradient with respect to ``images`` is needed (the shortcut assumes the
        padding stays constant).
        """
        check_input(images, self.config)
        input_gradient = torch.is_grad_enabled() and images.requires_grad
        collapse = not (exact_full_forward or self.training or input_gradient)
        h_g = self.ds_net(images, collapse_constant_runs=collapse)
        global_part = self.global_branch(h_g)
        roi = retrieve_roi_cells(global_part["saliency_map"], self.config.roi_window_cells, self.config.num_rois)
        patch_locations = cells_to_pixels(roi.cells, self.config.cam_size, self.config.input_shape)
        patches = crop_patches(images, patch_locations, self.config.crop_shape)
        local_part = self.local_branch(patches)
        concat_vec = torch.cat([global_part["global_vec"], local_part["z"]], dim=1)
        fusion_logits = self.fusion_dnn(concat_vec)
        return GMICOutput(
            h_g=h_g,
            **global_part,
            roi_maps=roi.maps,
            roi_pool_maps=roi.pooled_maps,
            roi_small_locations=roi.cells,
            patch_locations=patch_locations,
            patches=patches,
            **local_part,
            concat_vec=concat_vec,
            fusion_logits=fusion_logits,
            y_fusion=torch.sigmoid(fusion_logits),
        )

    def global_branch(self, h_g: torch.Tensor) -> dict:
        """Saliency map, top-t% pooled y_global and the fusion's global vector from h_g."""
        saliency_logits = self.left_postprocess_net(h_g)
        saliency_map = torch.sigmoid(saliency_logits)
        return {
            "global_vec": h_g.amax(dim=(2, 3)),
            "saliency_logits": saliency_logits,
            "saliency_map": saliency_map,
            "y_global": top_t_pool(saliency_map, self.config.top_t_count),
        }

    def local_branch(self, patches: torch.Tensor) -> dict:
        """Encode (N, K, h, w) grey patches and pool them with gated attention."""
        num_images, num_rois = patches.shape[:2]
        grey = patches.flatten(0, 1)[:, None]
        feature_maps = self.dn_resnet(grey.expand(-1, 3, -1, -1).contiguous())
        h_crops = feature_maps.mean(dim=2).mean(dim=2).view(num_images, num_rois, -1)
        attn_U_out = self.mil_attn_U(h_crops)
        attn_V_out = self.mil_attn_V(h_crops)
        attn_scores = self.mil_attn_w(torch.sigmoid(attn_U_out) * torch.tanh(attn_V_out))[..., 0]
        patch_attns = torch.softmax(attn_scores, dim=1)
        z = (patch_attns[..., None] * h_crops).sum(dim=1)
        y_local_logits = self.classifier_linear(z)
        return {
            "local_feature_maps": feature_maps.view(num_images, num_rois, *feature_maps.shape[1:]),
            "h_crops": h_crops,
            "attn_U_out": attn_U_out,
            "attn_V_out": attn_V_out,
            "attn_scores": attn_scores,
            "patch_attns": patch_attns,
            "z": z,
            "y_local_logits": y_local_logits,
            "y_local": torch.sigmoid(y_local_logits),
        }


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def check_state_dict(model: nn.Module, state_dict: Mapping) -> None:
    """Raise ValueError listing every missing key, unexpected key and shape mismatch."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)}, model {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): " + ", ".join(missing))
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): " + "; ".join(mismatched))
    if problems:
        raise ValueError("checkpoint does not match the GMIC architecture:\n  " + "\n  ".join(problems))


class CheckpointError(ValueError):
    """A weights file that cannot be used: not a checkpoint, refused for safety, or not GMIC's."""


class NotAStateDictError(CheckpointError, TypeError):
    """A checkpoint that holds something other than a dict of tensors."""


def read_state_dict(path):
    """The state dict saved at ``path`` with ``torch.save``, read with ``weights_only=True``.

    A ``{"state_dict": ...}`` (or ``"model"``) wrapper, as training scripts often save, is
    unwrapped. Every failure is a :class:`CheckpointError` naming the file and what to do;
    a pickle that asks for anything but tensors and plain containers is refused for safety
    and never loaded.
    """
    import pickle

    path = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file; check the path given to --weights") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({error.strerror or error})") from None
    if not head:
        raise CheckpointError(f"{path}: the checkpoint is empty or truncated; download it again")
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or a legacy pickle
        kind = "JSON" if head.lstrip()[:1] in (b"{", b"[") else "text or another format"
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (it starts with {head!r}: {kind}); "
                              "give the file torch.save wrote")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            raise CheckpointError(
                f"{path}: refused for safety: this checkpoint asks to load Python objects other than "
                "tensors (arbitrary code could run). Use a checkpoint saved as a plain state dict "
                "(torch.save(model.state_dict(), path)) from a source you trust."
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({error}); is it the right file "
                              "(a JSON or text file renamed .pkl/.p)?") from None
    except EOFError:
        raise CheckpointError(f"{path}: the checkpoint is empty or truncated; download it again") from None
    except Exception as error:  # torch raises many kinds for a damaged file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); download it again") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and set(loaded) >= {wrapper} and isinstance(loaded[wrapper], Mapping) \
                and not isinstance(loaded[wrapper], torch.Tensor):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        kind = type(loaded).__name__ if not isinstance(loaded, Mapping) else "dict with non-tensor values"
        raise NotAStateDictError(f"{path} holds a {kind}, not a state dict (a dict of tensors)")
    return loaded


def check_finite(state_dict, source="checkpoint"):
    """Raise :class:`CheckpointError` listing the tensors that hold NaN or infinite values."""
    bad = [key for key, value in state_dict.items()
           if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        raise CheckpointError(f"{source}: NaN or infinite weights in {len(bad)} tensor(s): "
                              f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}; the file is damaged "
                              "or came from a diverged training run")


def load_gmic_checkpoint(path_or_state_dict, model_index, device="cpu", **config_overrides) -> GMIC:
    """Build official model ``model_index`` ("1".."5") and load its weights, in eval mode.

    ``path_or_state_dict`` is a state dict or the path of one saved with ``torch.save``
    (the official ``sample_model_<i>.p`` files are), read by :func:`read_state_dict`
    (``weights_only=True``, so a stranger's pickle cannot run code). Keys and shapes must
    match exactly and every weight must be finite. ``config_overrides`` go to
    :func:`gmic_config`, e.g. ``input_shape``.
    """
    if isinstance(path_or_state_dict, Mapping):
        state_dict, source = path_or_state_dict, "state dict"
    else:
        state_dict, source = read_state_dict(path_or_state_dict), str(path_or_state_dict)
    check_finite(state_dict, source)
    model = GMIC(gmic_config(model_index, **config_overrides))
    try:
        check_state_dict(model, state_dict)
    except ValueError as error:
        raise CheckpointError(f"{source}: {error}") from None
    model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval()
