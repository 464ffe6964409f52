"""Where GMIC's weights come from: the five official models (registry, hash-checked) and the
kit's own weights trained on SYNTHETIC phantoms at quarter scale (``pretrained/``)."""

import torch

from course_lib.data import fetch
from course_lib.gmic.config import PERCENT_T_BY_MODEL_INDEX, GMICGeometry, gmic_config
from course_lib.gmic.model import GMIC, load_gmic_checkpoint, read_state_dict

__all__ = [
    "MODEL_INDICES",
    "PHANTOM_WEIGHTS_KEY",
    "official_model_indices",
    "load_official_model",
    "phantom_model",
    "load_phantom_gmic",
]

MODEL_INDICES = tuple(PERCENT_T_BY_MODEL_INDEX) + ("ensemble",)
#: Registry key of the weights that ``course-kit gmic train`` wrote.
PHANTOM_WEIGHTS_KEY = "course-kit/pretrained/gmic_phantom_quarter.pt"


def official_model_indices(model_index):
    """The official model indices to run for ``--model-index`` ("1".."5" or "ensemble").

    >>> official_model_indices("ensemble")
    ['1', '2', '3', '4', '5']
    """
    key = str(model_index)
    if key not in MODEL_INDICES:
        raise ValueError(f"unknown model index {model_index!r}; use one of {', '.join(MODEL_INDICES)}")
    return list(PERCENT_T_BY_MODEL_INDEX) if key == "ensemble" else [key]


def load_official_model(model_index, device="cpu", weights=None):
    """Official GMIC model ``model_index`` from ``weights`` or the registry (hash-checked).

    A bad ``weights`` file raises :class:`~course_lib.gmic.model.CheckpointError` naming it.
    """
    path = weights or fetch(f"gmic/models/sample_model_{model_index}.p")
    return load_gmic_checkpoint(path, model_index, device=device)


def phantom_model(seed=0):
    """An untrained GMIC (model index 1 settings) at the kit's quarter scale
    (:meth:`GMICGeometry.quarter`: 768x512 windows, 128x128 crops)."""
    torch.manual_seed(seed)
    return GMIC(gmic_config("1", geometry=GMICGeometry.quarter()))


def load_phantom_gmic(path=None, device="cpu"):
    """The kit's GMIC trained on SYNTHETIC phantoms (float16 on disk, float32 in memory).

    Not for clinical use: it has never seen a real mammogram.
    """
    path = path or fetch(PHANTOM_WEIGHTS_KEY)
    state = read_state_dict(path)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    quarter = GMICGeometry.quarter()
    return load_gmic_checkpoint(state, "1", device=device, input_shape=quarter.window,
                                crop_shape=quarter.roi_shape)
