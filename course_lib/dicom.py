"""Mammogram DICOM reading and PNG conversion.

:func:`read_mammogram` turns a DICOM file into a greyscale array in which bright
means dense, plus the metadata a pipeline needs (view, laterality, bit depth).
:func:`to_png16` and :func:`to_png8` convert such arrays to the grey levels that
GMIC (16-bit) and the density model (8-bit) read; :mod:`course_lib.io` writes the PNGs.
"""

import re
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_windowing, get_decoder

__all__ = [
    "DicomError",
    "UnknownLateralityError",
    "MissingDecoderError",
    "MammogramTags",
    "MammogramInfo",
    "read_mammogram_tags",
    "read_mammogram",
    "to_png16",
    "to_png8",
]

DECODER_PACKAGES = (
    "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg "
    "(or: pip install python-gdcm)"
)


class DicomError(ValueError):
    """A file that cannot be read as a greyscale mammogram."""


class UnknownLateralityError(DicomError):
    """No tag of the file says which breast (L or R) the image shows."""


class MissingDecoderError(RuntimeError):
    """Compressed pixel data for which no decoder package is installed."""


@dataclass(frozen=True)
class MammogramTags:
    """What a mammogram's header says: patient, study, breast and view (see :func:`read_mammogram_tags`)."""

    path: str
    patient_id: str
    study_instance_uid: str
    laterality: str  #: "L" or "R"
    laterality_source: str  #: the tag it came from, or "argument"
    view: str | None  #: "CC", "MLO", "ML", ...; None when no tag names it
    view_source: str | None


@dataclass(frozen=True)
class MammogramInfo:
    """What :func:`read_mammogram` learnt about the image besides its pixels."""

    path: str
    laterality: str  #: "L" or "R"
    laterality_source: str  #: the tag it came from, or "argument"
    view: str | None  #: "CC", "MLO", "ML", ...; None when no tag names it
    view_source: str | None
    bits_stored: int
    photometric_interpretation: str  #: as stored (MONOCHROME1 is returned inverted)
    transfer_syntax: str
    patient_id: str
    value_range: tuple  #: (low, high) the returned values can take
    voi_applied: bool


# --- metadata -----------------------------------------------------------------------

# CodeMeaning of View Code Sequence items -> ViewPosition abbreviation.
_VIEW_MEANINGS = {
    "cranio-caudal": "CC",
    "medio-lateral oblique": "MLO",
    "medio-lateral": "ML",
    "latero-medial": "LM",
    "latero-medial oblique": "LMO",
    "cranio-caudal exaggerated laterally": "XCCL",
    "cranio-caudal exaggerated medially": "XCCM",
    "caudo-cranial (from below)": "FB",
    "superolateral to inferomedial oblique": "SIO",
}
# The two most common code values (SNOMED-RT and SNOMED CT), for items without a meaning.
_VIEW_CODES = {"R-10242": "CC", "399162004": "CC", "R-10226": "MLO", "399368009": "MLO"}
_VIEW_WORD = r"(XCCL|XCCM|MLO|LMO|CC|ML|LM|FB|SIO)"


def _single(found):
    """The one distinct value in ``found``, or None if there are none or several."""
    return found.pop() if len(found) == 1 else None


def _side_from_orientation(orientation):
    """Laterality from Patient Orientation (0020,0020), or None.

    The two values are the directions of increasing column (row direction) and of
    increasing row (column direction). In the standard mammogram orientation
    (DICOM PS3.3, mammography image module) the nipple points along the rows
    ("A" when the breast faces right, "P" when it faces left) and the bottom of
    the image points medially, towards the other breast: "A\\R", "A\\FR" for a
    left breast and "P\\L", "P\\FL" for a right one. Only these consistent pairs
    are trusted; "A\\F" or a mirrored "P\\R" gives None (no guess).
    """
    if not isinstance(orientation, MultiValue) or len(orientation) != 2:
        return None
    row_direction, column_direction = (str(v).upper() for v in orientation)
    if row_direction == "A" and "R" in column_direction and "L" not in column_direction:
        return "L"
    if row_direction == "P" and "L" in column_direction and "R" not in column_direction:
        return "R"
    return None


def _side_from_text(text):
    """Laterality named in free text such as "L CC", "RMLO" or "LEFT", or None."""
    text = str(text or "").upper()
    words = re.findall(r"\b(LEFT|RIGHT)\b", text)
    codes = re.findall(r"\b([LR])[\s_-]?" + _VIEW_WORD + r"\b", text)
    return _single({word[0] for word in words} | {side for side, _ in codes})


def _view_from_text(text):
    """View named in free text such as "L CC", "R-MLO" or "CC", or None."""
    text = str(text or "").upper()
    return _single(set(re.findall(r"\b(?:[LR][\s_-]?)?" + _VIEW_WORD + r"\b", text)))


def _laterality(ds):
    """(laterality, source tag), trying tags from the most to the least specific."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword) or "").strip().upper()
        if value in ("L", "R"):
            return value, keyword
    side = _side_from_orientation(ds.get("PatientOrientation"))
    if side is not None:
        return side, "PatientOrientation"
    side = _side_from_text(ds.get("SeriesDescription"))
    if side is not None:
        return side, "SeriesDescription"
    return None, None


def _view(ds):
    """(view, source tag) or (None, None).

    Order: ViewPosition, View Code Sequence, SeriesDescription text and last
    Patient Orientation holding a view name instead of two directions (CBIS-DDSM
    files store "CC" or "MLO" there and nowhere else).
    """
    value = str(ds.get("ViewPosition") or "").strip().upper()
    if value:
        return value, "ViewPosition"
    for item in ds.get("ViewCodeSequence") or ():
        meaning = str(item.get("CodeMeaning") or "").strip().lower()
        code = str(item.get("CodeValue") or "").strip()
        view = _VIEW_MEANINGS.get(meaning) or _VIEW_CODES.get(code)
        if view:
            return view, "ViewCodeSequence"
    view = _view_from_text(ds.get("SeriesDescription"))
    if view is not None:
        return view, "SeriesDescription"
    orientation = ds.get("PatientOrientation")
    if orientation is not None and not isinstance(orientation, MultiValue):
        view = str(orientation).strip().upper()
        if re.fullmatch(_VIEW_WORD, view):
            return view, "PatientOrientation"
    return None, None


# --- pixels -------------------------------------------------------------------------


def _stored_range(ds):
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _fitting_dtype(low, high):
    return np.result_type(np.min_scalar_type(low), np.min_scalar_type(high))


def _apply_modality_lut(pixels, ds):
    """Modality LUT (or Rescale Slope/Intercept); returns (values, (low, high)).

    Integer slopes and intercepts keep an integer array (identity: untouched);
    other ones give float64.
    """
    low, high = _stored_range(ds)
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return apply_modality_lut(pixels, ds), (0, 2**bits - 1)
    if "RescaleSlope" not in ds or "RescaleIntercept" not in ds:
        return pixels, (low, high)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    low, high = sorted((low * slope + intercept, high * slope + intercept))
    if not (slope.is_integer() and intercept.is_integer()):
        return pixels * slope + intercept, (low, high)
    low, high = int(low), int(high)
    if (slope, intercept) == (1, 0):
        return pixels, (low, high)
    values = pixels.astype(np.int64) * int(slope) + int(intercept)
    return values.astype(_fitting_dtype(low, high)), (low, high)


def _lut_lookup(values, item, little_endian):
    """Map ``values`` through one LUT item (LUT Descriptor + LUT Data).

    Values below the first mapped value take the first entry, values past the
    end the last one (PS3.3 C.11.2.1.1). Done here rather than with pydicom,
    whose lookup overflows for 8-bit LUTs with more than 256 entries.
    """
    entries, first_mapped, _ = (int(v) for v in item.LUTDescriptor)
    data = item["LUTData"]
    if data.VR == "OW":
        table = np.frombuffer(data.value, dtype="<u2" if little_endian else ">u2")
    else:
        table = np.asarray(data.value)
    table = table[: entries or 65536]
    index = np.clip(np.asarray(values, dtype=np.int64) - first_mapped, 0, table.size - 1)
    return table.astype(np.uint16)[index]


def _apply_voi_lut(values, ds, value_range):
    """VOI LUT Sequence if present, else the first window; returns (values, range, applied)."""
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        little_endian = ds.file_meta.TransferSyntaxUID.is_little_endian
        return _lut_lookup(values, item, little_endian), (0, 2**bits - 1), True
    if "WindowCenter" in ds and "WindowWidth" in ds:
        # pydicom windows into the modality output range, the one we already have.
        return apply_windowing(values, ds), value_range, True
    return values, value_range, False


def _invert(values, value_range):
    """MONOCHROME1 -> MONOCHROME2: mirror the values inside ``value_range``."""
    low, high = value_range
    if np.issubdtype(values.dtype, np.integer):
        return (low + high - values.astype(np.int64)).astype(_fitting_dtype(low, high))
    return (low + high) - values


def _decode(ds, path):
    """Pixel data as stored, with a clear message when no decoder is installed."""
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise MissingDecoderError(
                f"{path}: pydicom has no decoder for the transfer syntax {syntax.name!r} "
                f"({syntax}); convert the file with dcmtk or gdcm to an uncompressed syntax"
            ) from None
        if not decoder.is_available:
            raise MissingDecoderError(
                f"{path}: the pixel data is compressed ({syntax.name}) and no decoder "
                f"for it is installed. Install one: {DECODER_PACKAGES}, "
                'or pip install "course-kit[dicom]"'
            )
    try:
        pixels = ds.pixel_array
    except Exception as error:
        raise DicomError(
            f"could not decode the pixel data of {path} ({syntax.name}): {error}"
        ) from error
    _check_bits_stored(ds, path, pixels)
    return pixels


def _overlay_in_pixel_data(ds):
    """True if an overlay plane is declared inside the pixel data's unused high bits
    (old ACR-NEMA style, Overlay Bit Position >= Bits Stored)."""
    for group in range(0x6000, 0x6020, 2):
        position = ds.get((group, 0x0102))
        if position is not None and int(position.value) >= int(ds.BitsStored):
            return True
    return False


def _check_bits_stored(ds, path, pixels):
    """Refuse pixel values that need more bits than Bits Stored declares.

    Decoders mask the bits above Bits Stored away, so a 12-bit image declared as 8-bit
    would come back as garbage 0..255; the undecoded values of uncompressed data, and the
    decoded values of compressed data, are checked instead. Signed data and files with an
    overlay in the high bits are left alone (their high bits legitimately hold other things).
    """
    bits_stored, bits_allocated = int(ds.BitsStored), int(ds.get("BitsAllocated", ds.BitsStored))
    if int(ds.get("PixelRepresentation", 0)) != 0 or bits_stored >= bits_allocated or _overlay_in_pixel_data(ds):
        return
    syntax = ds.file_meta.TransferSyntaxUID
    values = np.asarray(pixels)
    if not syntax.is_compressed and bits_allocated in (16, 32):
        dtype = np.dtype(f"{'<' if syntax.is_little_endian else '>'}u{bits_allocated // 8}")
        data = ds.PixelData
        values = np.frombuffer(data, dtype, count=len(data) // dtype.itemsize)
    high = int(values.max()) if values.size else 0
    if high > 2**bits_stored - 1:
        needed = high.bit_length()
        raise DicomError(
            f"{path}: Bits Stored is {bits_stored} (values 0..{2**bits_stored - 1}) but the pixel data "
            f"holds values up to {high} ({needed} bits); decoding would mask the high bits away and "
            f"give a garbage image. The header is wrong: fix Bits Stored/High Bit on a copy (e.g. "
            f"dcmodify -m BitsStored={needed} -m HighBit={needed - 1}) or ask for a corrected export."
        )


def _read_dataset(path, **options):
    """The dataset of ``path``; a file without the 128-byte preamble and 'DICM' marker (old
    ACR-NEMA style exports) is read too when what follows is a DICOM image header."""
    try:
        return pydicom.dcmread(path, **options)
    except InvalidDicomError:
        pass
    except (OSError, EOFError):
        raise
    except Exception as error:  # a damaged header: pydicom raises many kinds
        raise DicomError(f"{path}: damaged DICOM header ({type(error).__name__}: {error})") from None
    try:
        ds = pydicom.dcmread(path, force=True, **options)
        image = "PixelData" in ds and "Rows" in ds and "BitsStored" in ds
    except Exception:
        image = False
    if not image:
        raise DicomError(
            f"not a DICOM file: {path} (no 'DICM' marker after the 128-byte preamble, and no "
            "image header at the start either). Check the path: only DICOM images can be read here."
        ) from None
    if "TransferSyntaxUID" not in ds.file_meta:  # no file meta: the default syntax of DICOM
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    return ds


def _tags(ds, path, laterality=None):
    """:class:`MammogramTags` of a dataset, or DicomError if it is not a 2-D greyscale image."""
    if "PixelData" not in ds:
        raise DicomError(
            f"DICOM without pixel data: {path} (a structured report, presentation "
            "state or other non-image object); pick the image file of the series"
        )
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomError(
            f"unsupported photometric interpretation {photometric!r} in {path}: "
            "mammograms are greyscale (MONOCHROME1 or MONOCHROME2); this file holds a "
            "colour or secondary image, not a mammogram to analyse"
        )
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomError(
            f"{path} has {ds.NumberOfFrames} frames (tomosynthesis?); read_mammogram "
            "reads single-frame 2-D mammograms, use pydicom directly for the frames"
        )
    if laterality is None:
        laterality, laterality_source = _laterality(ds)
        if laterality is None:
            raise UnknownLateralityError(
                f"unknown laterality in {path}: none of ImageLaterality, Laterality, "
                "PatientOrientation or SeriesDescription says which breast this is. "
                "If you know it, pass laterality='L' or 'R' to read_mammogram."
            )
    elif laterality in ("L", "R"):
        laterality_source = "argument"
    else:
        raise ValueError(f"laterality must be 'L' or 'R', not {laterality!r}")
    view, view_source = _view(ds)
    return MammogramTags(
        path=str(path), patient_id=str(ds.get("PatientID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        laterality=laterality, laterality_source=laterality_source, view=view, view_source=view_source,
    )  # fmt: skip


def read_mammogram_tags(path, *, laterality=None):
    """Who, which breast and which view a mammogram DICOM holds, from its header alone.

    The pixels are not read (nor decoded), so surveying a folder of DICOMs costs a
    fraction of reading it. Raises the same :class:`DicomError` as :func:`read_mammogram`
    for files that are not single-frame greyscale images.
    """
    path = str(path)
    # defer_size: large values (the pixel data) are left on disk, only their presence is known.
    return _tags(_read_dataset(path, defer_size=1024), path, laterality)


def read_mammogram(path, apply_voi_lut=False, *, laterality=None):
    """Read a mammogram DICOM into a greyscale array where bright means dense.

    Parameters
    ----------
    path : str or path
    apply_voi_lut : bool
        Apply the file's VOI LUT (VOI LUT Sequence, else the first window
        centre/width). Off for model input (keeps every stored grey level), on
        for display.
    laterality : {"L", "R"}, optional
        Use this instead of the tags, for files whose tags do not say.

    Returns
    -------
    image : ndarray, 2-D
        Integer when the LUTs keep integers (no rescale, or an integer one),
        float64 after a non-integer rescale or a window.
    info : MammogramInfo

    Notes
    -----
    Order of operations, as in the DICOM greyscale pipeline:

    1. decode the stored values;
    2. modality LUT (Modality LUT Sequence, or Rescale Slope/Intercept);
    3. VOI LUT, only if ``apply_voi_lut``;
    4. MONOCHROME1 inversion, done last and inside the output range of the
       previous step (``low + high - value``), so that bright means dense for
       both photometric interpretations, windowed or not.

    Laterality comes from ImageLaterality, then Laterality, then
    PatientOrientation (see ``_side_from_orientation``), then SeriesDescription
    text; if none says, :class:`UnknownLateralityError` is raised. View comes
    from ViewPosition, then ViewCodeSequence, then SeriesDescription, then a
    view name stored in PatientOrientation (CBIS-DDSM); it may be None.
    """
    path = str(path)
    ds = _read_dataset(path)
    tags = _tags(ds, path, laterality)

    values, value_range = _apply_modality_lut(_decode(ds, path), ds)
    voi_applied = False
    if apply_voi_lut:
        values, value_range, voi_applied = _apply_voi_lut(values, ds, value_range)
    photometric = str(ds.PhotometricInterpretation)
    if photometric == "MONOCHROME1":
        values = _invert(values, value_range)

    info = MammogramInfo(
        path=path,
        laterality=tags.laterality,
        laterality_source=tags.laterality_source,
        view=tags.view,
        view_source=tags.view_source,
        bits_stored=int(ds.BitsStored),
        photometric_interpretation=photometric,
        transfer_syntax=ds.file_meta.TransferSyntaxUID.name,
        patient_id=tags.patient_id,
        value_range=value_range,
        voi_applied=voi_applied,
    )
    return values, info


# --- PNG grey levels ----------------------------------------------------------------------------


def to_png16(image, bits_stored):
    """uint16 array holding the stored values unchanged, ready for a 16-bit PNG.

    No rescaling: 12-bit data stays 0..4095 inside the 16-bit container. This is
    GMIC's convention (its sample PNGs hold 0..4095); GMIC z-scores every image,
    so the scale does not matter to it, while keeping the values keeps them
    comparable with the DICOM. Float input (after a rescale or window) is rounded.
    """
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.integer):
        image = np.rint(image)
    high = 2 ** int(bits_stored) - 1
    low_seen, high_seen = image.min(), image.max()
    if low_seen < 0 or high_seen > high or high > 65535:
        raise ValueError(
            f"values {low_seen}..{high_seen} do not fit in 0..{high} ({bits_stored} bits "
            "stored, 16 at most); signed or rescaled data needs to_png8 or an explicit shift"
        )
    return image.astype(np.uint16)


def to_png8(image, bits_stored=None, *, value_range=None):
    """uint8 array for an 8-bit PNG (input of the density model).

    Rule: the whole stored range ``0 .. 2**bits_stored - 1`` (or ``value_range``,
    e.g. ``info.value_range``) maps linearly onto 0..255, rounding half up, values
    outside clipped. A fixed range, not each image's min/max, keeps grey levels
    comparable between images; 12-bit data uses all 256 levels, data that never
    reaches the top of its range uses fewer (the density model's own PNGs peak
    at 172-234).
    """
    if (bits_stored is None) == (value_range is None):
        raise TypeError("give exactly one of bits_stored or value_range")
    low, high = (0, 2 ** int(bits_stored) - 1) if value_range is None else value_range
    if high <= low:
        raise ValueError(f"value_range must be increasing, got {value_range}")
    scaled = (np.asarray(image, dtype=np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)
