"""Settings of the GMIC model, without torch, so that callers can validate them cheaply.

The official inference script selects a model by its index "1".."5"; the index fixes
the top-t% pooling fraction. Everything else is shared by the five models.
"""

from dataclasses import dataclass

__all__ = [
    "GLOBAL_NETWORK_STRIDE",
    "OFFICIAL_INPUT_SHAPE",
    "PERCENT_T_BY_MODEL_INDEX",
    "GMICConfig",
    "gmic_config",
]

PERCENT_T_BY_MODEL_INDEX = {"1": 0.02, "2": 0.03, "3": 0.03, "4": 0.05, "5": 0.10}
OFFICIAL_INPUT_SHAPE = (2944, 1920)
# One cell of the saliency grid covers this many input pixels along each axis.
GLOBAL_NETWORK_STRIDE = 64


@dataclass(frozen=True)
class GMICConfig:
    """Hyper-parameters of one GMIC model.

    Parameters
    ----------
    percent_t : float
        Fraction of saliency cells averaged by top-t% pooling (``y_global``).
    input_shape : tuple of int
        (H, W) of the input window. The official models use 2944x1920; the kit
        trains smaller models on phantoms. Both must be multiples of 64.
    num_rois : int
        Number K of regions of interest given to the local network.
    crop_shape : tuple of int
        (h, w) of each region of interest, in input pixels.
    """

    percent_t: float = 0.02
    input_shape: tuple[int, int] = OFFICIAL_INPUT_SHAPE
    num_rois: int = 6
    crop_shape: tuple[int, int] = (256, 256)

    def __post_init__(self):
        height, width = self.input_shape
        if height <= 0 or width <= 0 or height % GLOBAL_NETWORK_STRIDE or width % GLOBAL_NETWORK_STRIDE:
            raise ValueError(
                f"input_shape must be positive multiples of {GLOBAL_NETWORK_STRIDE}, got {self.input_shape}"
            )
        if not 0 < self.percent_t <= 1:
            raise ValueError(f"percent_t must lie in (0, 1], got {self.percent_t}")
        if self.num_rois < 1:
            raise ValueError(f"num_rois must be at least 1, got {self.num_rois}")
        crop_fits = all(0 < crop <= side for crop, side in zip(self.crop_shape, self.input_shape))
        if not crop_fits or min(self.roi_window_cells) < 1:
            raise ValueError(
                f"crop_shape {self.crop_shape} must be at least one saliency cell "
                f"({GLOBAL_NETWORK_STRIDE} px) and fit in input_shape {self.input_shape}"
            )
        if self.top_t_count < 1:
            raise ValueError(f"percent_t={self.percent_t} keeps no saliency cell of a {self.cam_size} map")

    @property
    def cam_size(self) -> tuple[int, int]:
        """(h, w) of the saliency map: the input size divided by the global network's stride."""
        return tuple(side // GLOBAL_NETWORK_STRIDE for side in self.input_shape)

    @property
    def roi_window_cells(self) -> tuple[int, int]:
        """A region of interest expressed in saliency cells (4x4 for the official models)."""
        return tuple(
            round(crop * cells / side) for crop, cells, side in zip(self.crop_shape, self.cam_size, self.input_shape)
        )

    @property
    def top_t_count(self) -> int:
        """Number k of saliency cells averaged per class by top-t% pooling (Python rounding)."""
        height, width = self.cam_size
        return round(height * width * self.percent_t)


def gmic_config(model_index, **overrides) -> GMICConfig:
    """Configuration of official model ``model_index`` ("1".."5", int or str).

    Keyword arguments override other fields, e.g. ``input_shape=(1472, 960)``.
    The "ensemble" averages models 1-5 and is handled by the caller.
    """
    key = str(model_index).strip()
    if key not in PERCENT_T_BY_MODEL_INDEX:
        valid = ", ".join(repr(index) for index in PERCENT_T_BY_MODEL_INDEX)
        raise ValueError(
            f"unknown GMIC model index {model_index!r}; valid indices are {valid} "
            "('ensemble' runs all five and is handled by the caller)"
        )
    return GMICConfig(percent_t=PERCENT_T_BY_MODEL_INDEX[key], **overrides)
