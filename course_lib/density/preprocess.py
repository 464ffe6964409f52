"""``course-kit preprocess --for density``: INFN-style 8-bit images from DICOM files or PNGs.

The INFN density images (Scapicchio, Lizzi et al., 2021) are 8-bit grey
PNGs, cropped to the breast, with the background set to 0 and, in MLO
views, the pectoral muscle replaced by the mean grey level of the breast.
:func:`infn_style` does this to one image with the kit's breast and muscle
detectors (:mod:`course_lib.preprocessing.breast`); :func:`infn_style_step`
is its batch step (:mod:`course_lib.batch`): ``density/<name>.png`` per image.
Orientation is kept as stored (the INFN images show left breasts with the
chest wall on the left, right breasts mirrored).
"""

import numpy as np

__all__ = ["infn_style", "infn_style_step", "preprocess_target"]


def infn_style(image, view, bits_stored=None, name="image"):
    """8-bit INFN-style copy of a mammogram: background 0, MLO muscle filled, cropped to the breast.

    ``image`` is 2-D grey (bright = dense); values above 255 are mapped with
    :func:`course_lib.dicom.to_png8` over ``0 .. 2**bits_stored - 1``
    (``bits_stored`` defaults to the bits the image's maximum needs).
    ``view`` is "CC" or "MLO" (or "L-CC" etc.).
    """
    from course_lib.dicom import to_png8
    from course_lib.preprocessing.breast import breast_mask, remove_background, remove_pectoral

    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D grey image, got shape {image.shape}")
    if image.dtype != np.uint8:
        bits = bits_stored or max(int(np.ceil(np.log2(float(image.max()) + 1))), 8)
        image = to_png8(image, bits)
    breast = breast_mask(image, name=name)
    out = remove_background(image, breast)
    if view.upper().endswith("MLO"):
        out = remove_pectoral(out, fill="mean", breast=breast)
    rows = np.flatnonzero(breast.any(axis=1))
    cols = np.flatnonzero(breast.any(axis=0))
    return out[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]


def _read(source, view):
    if str(source).lower().endswith(".png"):
        from course_lib.density.data import load_grey8

        from PIL import Image

        with Image.open(source) as image:
            if image.mode in ("I;16", "I;16B", "I"):
                return np.asarray(image).astype(np.uint16), None
        return load_grey8(source), 8
    from course_lib.dicom import read_mammogram

    pixels, info = read_mammogram(source, laterality=view[0] if view and view[0] in "LR" else None)
    return pixels, info.bits_stored


def infn_style_step(item, output_dir, settings):
    """Batch step: :func:`infn_style` of ``item.source``, written to ``density/<name>.png``."""
    from course_lib.io import write_png

    view = item.options.get("view") or ""
    try:
        pixels, bits = _read(item.source, view)
        result = infn_style(pixels, view, bits, name=str(item.source))
    except ValueError as error:
        raise ValueError(f"{item.source}: {error}") from error
    relative = f"density/{item.name}.png"
    write_png(output_dir / relative, result)
    return {"outputs": [relative], "shape": [int(s) for s in result.shape],
            "pectoral_filled": bool(view.upper().endswith("MLO"))}


def preprocess_target():
    """``course-kit preprocess --for density``: :func:`infn_style_step`."""
    from course_lib.preprocessing.job import PreprocessTarget

    return PreprocessTarget("density", infn_style_step, {"format": "infn-8bit"}, ())
