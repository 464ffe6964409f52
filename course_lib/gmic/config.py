"""GMIC's numbers, written once and without torch, so that callers can validate them cheaply.

- :class:`GMICGeometry`: the image geometry that preprocessing and the model share (model
  window, crop margin and erosions, ROI size), at the official scale or the kit's
  quarter scale for phantoms.
- :class:`GMICConfig`: the hyper-parameters of one model. The official inference script
  selects a model by its index "1".."5"; the index fixes the top-t% pooling fraction.
  Everything else is shared by the five models.
"""

from dataclasses import dataclass

__all__ = [
    "GLOBAL_NETWORK_STRIDE",
    "PERCENT_T_BY_MODEL_INDEX",
    "GMICGeometry",
    "GMICConfig",
    "gmic_config",
    "PhantomRecipe",
]

PERCENT_T_BY_MODEL_INDEX = {"1": 0.02, "2": 0.03, "3": 0.03, "4": 0.05, "5": 0.10}
# One cell of the saliency grid covers this many input pixels along each axis.
GLOBAL_NETWORK_STRIDE = 64


@dataclass(frozen=True)
class GMICGeometry:
    """The image geometry of GMIC's preprocessing and model at one scale.

    Parameters
    ----------
    window : (int, int)
        (rows, cols) of the model input that stage 2 centres and the model reads.
    crop_buffer : int
        Stage 1 margin, in pixels, around the breast's bounding box.
    crop_iterations : int
        Stage 1 erosions (and dilations) that cut labels and markers off the breast.
    roi_shape : (int, int)
        (h, w) of each region of interest the local network reads.

    >>> GMICGeometry.official().window, GMICGeometry.quarter().window
    ((2944, 1920), (768, 512))
    """

    window: tuple = (2944, 1920)
    crop_buffer: int = 50
    crop_iterations: int = 100
    roi_shape: tuple = (256, 256)

    def __post_init__(self):
        if len(self.window) != 2 or min(self.window) <= 0:
            raise ValueError(f"window must be two positive sizes (rows, cols), got {self.window}")
        if self.crop_buffer < 0:
            raise ValueError(f"crop_buffer must be 0 or more, got {self.crop_buffer}")
        if self.crop_iterations < 1:
            raise ValueError(f"crop_iterations must be at least 1, got {self.crop_iterations}")

    @classmethod
    def official(cls):
        """The official scale: 2944x1920 windows, 50-pixel margin, 100 erosions, 256x256 ROIs."""
        return cls()

    @classmethod
    def quarter(cls):
        """The kit's CPU-friendly scale for phantoms: 736x480 images in a 768x512 window
        (the model needs multiples of 64), margin and erosions scaled by 1/4, 128x128 ROIs.

        Not the official proportions: a 128x128 ROI covers 4.2 % of a 768x512 window,
        a 256x256 ROI 1.2 % of a 2944x1920 one."""
        return cls(window=(768, 512), crop_buffer=12, crop_iterations=25, roi_shape=(128, 128))

    @classmethod
    def eighth(cls):
        """Preprocessing of the 368x240 phantoms in ``data_samples/`` (an eighth of full size):
        384x256 windows, margin and erosions scaled by 1/8. Too small for the model."""
        return cls(window=(384, 256), crop_buffer=6, crop_iterations=12, roi_shape=(64, 64))


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
    input_shape: tuple[int, int] = GMICGeometry.official().window
    num_rois: int = 6
    crop_shape: tuple[int, int] = GMICGeometry.official().roi_shape

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


def gmic_config(model_index, geometry=None, **overrides) -> GMICConfig:
    """Configuration of official model ``model_index`` ("1".."5", int or str).

    Keyword arguments override other fields, e.g. ``input_shape=(1472, 960)``; ``geometry``
    sets ``input_shape`` and ``crop_shape`` from a :class:`GMICGeometry`.
    The "ensemble" averages models 1-5 and is handled by the caller.
    """
    key = str(model_index).strip()
    if key not in PERCENT_T_BY_MODEL_INDEX:
        valid = ", ".join(repr(index) for index in PERCENT_T_BY_MODEL_INDEX)
        raise ValueError(
            f"unknown GMIC model index {model_index!r}; valid indices are {valid} "
            "('ensemble' runs all five and is handled by the caller)"
        )
    if geometry is not None:
        overrides = dict(input_shape=geometry.window, crop_shape=geometry.roi_shape, **overrides)
    return GMICConfig(percent_t=PERCENT_T_BY_MODEL_INDEX[key], **overrides)


#: Dense fractions of the training phantoms: fatty breasts, where lesions show.
PHANTOM_DENSE_RANGE = (0.05, 0.3)
#: Lesion contrast of the training phantoms: "teaching" phantoms, lesions 3x as bright.
PHANTOM_LESION_CONTRAST = 3.0


@dataclass(frozen=True)
class PhantomRecipe:
    """How the kit's phantom weights are trained (``course-kit gmic train``, :func:`~course_lib.gmic.train.train_phantom_weights`)."""

    train_exams: int = 160
    validation_exams: int = 20
    test_exams: int = 25
    epochs: int = 15
    batch_size: int = 8
    learning_rate: float = 3e-4
    dense_range: tuple = PHANTOM_DENSE_RANGE
    beta: float = 1e-4
    lesion_contrast: float = PHANTOM_LESION_CONTRAST
    mask_weight: float = 1.0
