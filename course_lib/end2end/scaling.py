"""The intensity rule: grey levels -> the 0-255 units the end2end models expect.

Shen et al. (Scientific Reports 9:12495, 2019) multiply every 16-bit PNG by one
fixed *rescale factor*, ``255 / 65535 = 0.003891``, so that values run 0-255, and
then subtract one *featurewise mean* (52.18 on their CBIS-DDSM images). That
factor is right only when the PNG really uses all 16 bits. CBIS-DDSM's scans
and most digital mammograms hold 12-bit data (0..4095) inside a 16-bit
container: multiplied by 255/65535 they end up in 0..16 instead of 0..255, a
silent 16x error that leaves a patch network looking at almost black images
(one of the reasons reproductions disagree, see notebook 03).

The kit's rule, stated here once: **the rescale factor is 255 / (2**bits - 1),
where ``bits`` is the data's real bit depth** (the DICOM's BitsStored, or, for
PNGs, the smallest usual depth that holds the data's maximum; see
:func:`infer_bit_depth`). :func:`rescale_factor` says so when the factor differs
from the paper's.
"""

import math

import numpy as np

__all__ = [
    "PAPER_RESCALE_FACTOR",
    "PAPER_FEATUREWISE_MEAN",
    "COMMON_BIT_DEPTHS",
    "infer_bit_depth",
    "rescale_factor",
    "scaling_note",
    "to_model_units",
    "featurewise_mean",
]

#: The paper's factor for 16-bit PNGs: 255 / 65535, printed as 0.003891.
PAPER_RESCALE_FACTOR = 255.0 / 65535.0
#: The paper's featurewise means in 0-255 units (CBIS-DDSM at 1152x896; INbreast).
PAPER_FEATUREWISE_MEAN = {"cbis-ddsm": 52.18, "inbreast": 44.33}
#: Bit depths detectors and converters write; an inferred depth is rounded up to one.
COMMON_BIT_DEPTHS = (8, 10, 12, 14, 16)


def infer_bit_depth(max_value):
    """The smallest common bit depth (8, 10, 12, 14, 16) whose range holds ``max_value``.

    Use the maximum over a whole data set (or the DICOM's BitsStored when there is
    one): a single dark image could otherwise look like 10-bit data.

    >>> infer_bit_depth(4095), infer_bit_depth(4096), infer_bit_depth(255), infer_bit_depth(65535)
    (12, 14, 8, 16)
    """
    max_value = float(max_value)
    if max_value < 0 or not math.isfinite(max_value):
        raise ValueError(f"grey levels must be finite and non-negative, got maximum {max_value}")
    for bits in COMMON_BIT_DEPTHS:
        if max_value <= 2**bits - 1:
            return bits
    raise ValueError(f"maximum {max_value:g} does not fit in 16 bits")


def rescale_factor(bits):
    """255 / (2**bits - 1): the factor that maps ``bits``-bit data onto 0..255.

    >>> round(rescale_factor(16), 6), round(rescale_factor(12), 6)
    (0.003891, 0.062271)
    """
    bits = int(bits)
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must lie in 1..16, got {bits}")
    return 255.0 / (2**bits - 1)


def scaling_note(bits):
    """One line saying which factor is used and how it compares with the paper's.

    >>> print(scaling_note(12))
    12-bit data: rescale factor 255/4095 = 0.062271, 16.0x the paper's 255/65535 = 0.003891 (which assumes 16-bit data)
    >>> print(scaling_note(16))
    16-bit data: rescale factor 255/65535 = 0.003891, the paper's
    """
    factor = rescale_factor(bits)
    head = f"{bits}-bit data: rescale factor 255/{2**bits - 1} = {factor:.6f}"
    if bits == 16:
        return head + ", the paper's"
    ratio = factor / PAPER_RESCALE_FACTOR
    return (f"{head}, {ratio:.1f}x the paper's 255/65535 = {PAPER_RESCALE_FACTOR:.6f} "
            "(which assumes 16-bit data)")


def to_model_units(image, bits, mean=0.0):
    """``image * rescale_factor(bits) - mean`` as float32 (0..255 minus the featurewise mean).

    >>> to_model_units(np.array([0, 4095]), bits=12, mean=50.0).tolist()
    [-50.0, 205.0]
    """
    image = np.asarray(image)
    high = image.max(initial=0)
    if high > 2**int(bits) - 1:
        raise ValueError(
            f"values up to {high} do not fit in {bits} bits: infer the depth from the data "
            "(infer_bit_depth) instead of assuming it"
        )
    return (image.astype(np.float32) * np.float32(rescale_factor(bits)) - np.float32(mean))


def featurewise_mean(images, bits):
    """Mean grey level of ``images`` in 0-255 units: the paper's featurewise mean, from your training set."""
    total, count = 0.0, 0
    for image in images:
        scaled = to_model_units(image, bits)
        total += float(scaled.sum(dtype=np.float64))
        count += scaled.size
    if not count:
        raise ValueError("no images to compute the featurewise mean from")
    return total / count
