"""Write synthetic mammograms as DICOM files, byte-for-byte reproducibly.

The files are Digital Mammography X-Ray Image - For Presentation objects
(Modality MG) whose identifiers all say SYNTHETIC. They exist so the course
can teach DICOM reading (rescale, MONOCHROME1, VOI windows and LUTs, RLE
compression) without patient data. Nothing depends on the clock: dates and
times are fixed and UIDs are derived from the content, so writing the same
image twice gives the same bytes.

UIDs are made with :func:`pydicom.uid.generate_uid` under pydicom's root
``1.2.826.0.1.3680043.8.498.`` with fixed entropy sources (patient ID, view,
side and a hash of the pixel data), never from random numbers.

Orientation. *Patient Orientation* (0020,0020) names the patient direction
of the rows (first pixel to last pixel of a row, left to right) and of the
columns (top to bottom), PS3.3 C.7.6.1.1.1. The phantoms follow detector
orientation: a left breast has its chest wall on the left, so along a row
we move from the chest wall to the nipple, anterior (A); a right breast is
mirrored, so rows run from the nipple to the chest wall, posterior (P).
Down the columns a CC image (seen from above, lateral side up) runs from
lateral to medial, which is towards the patient's right (R) for a left
breast and towards the left (L) for a right breast. An MLO image runs from
the axilla down and medially: foot (F) plus the medial direction. Hence
L CC ``A\\R``, R CC ``P\\L``, L MLO ``A\\FR``, R MLO ``P\\FL``.
"""

import hashlib
import os

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from course_lib.io import atomic_output
from course_lib.phantoms.mammogram import FULL_SHAPE, PIXELS_PER_MM

__all__ = ["write_phantom_dicom", "patient_orientation"]

_TRANSFER_SYNTAXES = {"explicit_little": ExplicitVRLittleEndian, "rle": RLELossless}
_FIXED_DATE = "20000101"
_FIXED_TIME = "000000"
_UID_NAMESPACE = "course-kit synthetic mammogram phantom"
_ORIENTATION = {
    ("CC", "L"): ["A", "R"],
    ("CC", "R"): ["P", "L"],
    ("MLO", "L"): ["A", "FR"],
    ("MLO", "R"): ["P", "FL"],
}
# SNOMED CT codes of DICOM CID 4014 (view for mammography) and of the breast.
_VIEW_CODES = {
    "CC": ("399162004", "cranio-caudal"),
    "MLO": ("399368009", "medio-lateral oblique"),
}
_BREAST_CODE = ("76752008", "Breast")


def patient_orientation(view, side):
    """Patient Orientation (0020,0020) of a phantom view, e.g. ``["A", "R"]``."""
    try:
        return list(_ORIENTATION[(view, side)])
    except KeyError:
        raise ValueError(f"unknown view/side {view!r}/{side!r}") from None


def _code_item(value, meaning):
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "SCT"
    item.CodeMeaning = meaning
    return item


def _stored_values(image, bits_stored, photometric, rescale):
    """Stored pixel values whose modality LUT (and inversion) give ``image``.

    With a rescale, stored = (value - intercept) / slope. MONOCHROME1 stores
    the reflection ``2**bits_stored - 1 - stored``, so a reader that inverts
    over the stored (or modality-output) range gets ``image`` back.
    """
    values = np.asarray(image, np.float64)
    slope, intercept = rescale if rescale is not None else (1.0, 0.0)
    stored = np.rint((values - intercept) / slope)
    if not np.allclose(stored * slope + intercept, values):
        raise ValueError(f"image values are not representable with rescale {rescale}")
    max_stored = 2**bits_stored - 1
    if stored.min() < 0 or stored.max() > max_stored:
        raise ValueError(
            f"stored values {stored.min():.0f}..{stored.max():.0f} do not fit "
            f"in {bits_stored} bits"
        )
    if photometric == "MONOCHROME1":
        stored = max_stored - stored
    return stored.astype(np.uint16)


def _modality_range(bits_stored, rescale):
    """(lowest, highest) value the modality LUT can output."""
    slope, intercept = rescale if rescale is not None else (1.0, 0.0)
    ends = sorted((intercept, slope * (2**bits_stored - 1) + intercept))
    return ends[0], ends[1]


def _breast_window(image, full_scale):
    """Window (centre, width) spanning the 1st-99.5th percentile of the breast.

    Pixels below 2 % of full scale are taken to be air.
    """
    values = np.asarray(image, np.float64)
    tissue = values[values > 0.02 * full_scale]
    low, high = np.percentile(tissue, [1.0, 99.5])
    return (low + high) / 2.0, max(high - low, 1.0)


def _voi_lut_item(centre, width, low, high, bits_stored):
    """VOI LUT Sequence item: a sigmoid over modality values ``low..high``.

    A sigmoid rather than a straight window, so that readers which ignore
    the sequence and fall back to the window give visibly different output.
    """
    inputs = np.arange(int(low), int(high) + 1)
    out_max = 2**bits_stored - 1
    curve = out_max / (1.0 + np.exp(-4.0 * (inputs - centre) / width))
    item = Dataset()
    # A first value of 0 means 65536 entries; the descriptor is signed when
    # the first mapped input is negative (PS3.3 C.11.2.1.1).
    item.add_new(
        "LUTDescriptor",
        "SS" if low < 0 else "US",
        [inputs.size % 65536, int(low), bits_stored],
    )
    # OW rather than US: 65536 16-bit entries overflow a US element's length.
    item.add_new("LUTData", "OW", np.rint(curve).astype("<u2").tobytes())
    item.LUTExplanation = "SYNTHETIC SIGMOID"
    return item


def _base_dataset(image, view, side, patient_id, pixel_spacing_mm):
    """Patient, study, series and equipment attributes, all synthetic."""
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    study_uid = generate_uid(entropy_srcs=[_UID_NAMESPACE, patient_id, "study"])
    series_uid = generate_uid(
        entropy_srcs=[_UID_NAMESPACE, patient_id, view, side, "series"]
    )
    sop_uid = generate_uid(
        entropy_srcs=[_UID_NAMESPACE, patient_id, view, side, digest]
    )

    ds = Dataset()
    ds.SOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = "SYNTHETIC^PHANTOM"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = _FIXED_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = _FIXED_TIME
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "SYNTHETIC PHANTOM MAMMOGRAM"
    ds.SeriesDescription = f"SYNTHETIC {side} {view}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.Manufacturer = "course-kit (synthetic)"
    ds.InstitutionName = "Synthetic phantom (course kit)"
    ds.ImageComments = "SYNTHETIC PHANTOM - NOT A PATIENT IMAGE"
    ds.BurnedInAnnotation = "NO"
    ds.BodyPartExamined = "BREAST"
    ds.ImageLaterality = side
    ds.ViewPosition = view
    ds.PatientOrientation = patient_orientation(view, side)
    ds.ViewCodeSequence = Sequence([_code_item(*_VIEW_CODES[view])])
    ds.AnatomicRegionSequence = Sequence([_code_item(*_BREAST_CODE)])
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"
    ds.ImagerPixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    ds.PixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    return ds


def write_phantom_dicom(
    path,
    image,
    view,
    side,
    bits_stored=12,
    photometric="MONOCHROME2",
    voi=None,
    rescale=None,
    transfer_syntax="explicit_little",
    patient_id="SYNTH-0001",
    window=None,
    pixel_spacing_mm=None,
):
    """Write a synthetic mammogram as a DICOM file (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; written to a temporary file first, then renamed.
    image : 2-D array of int
        Intended pixel values, bright = dense (e.g. ``MammogramPhantom.image``).
        The modality LUT of the file (and, for MONOCHROME1, inversion over
        its output range) gives these values back.
    view, side : str
        "CC" or "MLO"; "L" or "R". Set ViewPosition, ImageLaterality and
        Patient Orientation (see module docstring).
    bits_stored : {12, 14, 16}
        BitsStored; BitsAllocated is always 16 and HighBit ``bits_stored - 1``.
    photometric : {"MONOCHROME2", "MONOCHROME1"}
        MONOCHROME1 stores inverted values (minimum displayed white).
    voi : {None, "window", "sequence"}
        Add WindowCenter/WindowWidth, or a VOI LUT Sequence holding a sigmoid
        over the same window. Both are in modality-LUT output units.
    rescale : (slope, intercept), optional
        Store ``(value - intercept) / slope`` with RescaleSlope/Intercept so
        the modality LUT restores ``image``. Real MG for-presentation images
        use the identity; this exists to exercise readers.
    transfer_syntax : {"explicit_little", "rle"}
        Explicit VR Little Endian or RLE Lossless.
    patient_id : str
        Must start with "SYNTH-" so a synthetic file is never mistaken for a
        patient's.
    window : (centre, width), optional
        VOI window in units of ``image``; default spans the breast's 1st to
        99.5th percentile.
    pixel_spacing_mm : float, optional
        Defaults to the phantoms' nominal scale, 0.1 mm at 2944 rows.

    Returns
    -------
    path : str
        The path written.
    """
    if not patient_id.startswith("SYNTH-"):
        raise ValueError(f"patient_id must start with 'SYNTH-', got {patient_id!r}")
    if bits_stored not in (12, 14, 16):
        raise ValueError(f"bits_stored must be 12, 14 or 16, got {bits_stored}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"unsupported photometric interpretation {photometric!r}")
    if voi not in (None, "window", "sequence"):
        raise ValueError(f"voi must be None, 'window' or 'sequence', got {voi!r}")
    if transfer_syntax not in _TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {list(_TRANSFER_SYNTAXES)}")
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError("image must be 2-D")
    if pixel_spacing_mm is None:
        pixel_spacing_mm = FULL_SHAPE[0] / (PIXELS_PER_MM * image.shape[0])

    ds = _base_dataset(image, view, side, patient_id, round(pixel_spacing_mm, 6))
    stored = _stored_values(image, bits_stored, photometric, rescale)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    # DX presentation: IDENTITY for MONOCHROME2, INVERSE for MONOCHROME1.
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.Rows, ds.Columns = image.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = (float(v) for v in rescale)
        ds.RescaleType = "US"  # unspecified units

    if voi is not None:
        low, high = _modality_range(bits_stored, rescale)
        centre, width = window or _breast_window(image, 2**bits_stored - 1)
        if photometric == "MONOCHROME1":
            # The modality output is reflected, and the window with it.
            centre = low + high - centre
        if voi == "window":
            ds.WindowCenter = round(float(centre), 2)
            ds.WindowWidth = round(float(width), 2)
            ds.VOILUTFunction = "LINEAR"
            ds.WindowCenterWidthExplanation = "SYNTHETIC BREAST WINDOW"
        else:
            if rescale is not None and not all(float(v).is_integer() for v in rescale):
                raise ValueError("a VOI LUT Sequence needs integer rescale values")
            ds.VOILUTSequence = Sequence(
                [_voi_lut_item(centre, width, low, high, bits_stored)]
            )

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = generate_uid(
        entropy_srcs=[_UID_NAMESPACE, "implementation"]
    )
    ds.file_meta.ImplementationVersionName = "COURSE_KIT"
    ds.PixelData = stored.tobytes()
    if transfer_syntax == "rle":
        ds.compress(
            RLELossless, stored, encoding_plugin="pydicom", generate_instance_uid=False
        )

    with atomic_output(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return os.fspath(path)
