"""Tests of the synthetic DICOM writer: read back with plain pydicom."""

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    RLELossless,
)

from course_lib.phantoms.dicom_writer import patient_orientation, write_phantom_dicom
from course_lib.phantoms.mammogram import make_mammogram


@pytest.fixture(scope="module")
def phantom():
    return make_mammogram(0, "MLO", "R", shape=(184, 120), lesions=("calcifications",))


def _write_and_read(tmp_path, phantom, **kwargs):
    path = write_phantom_dicom(
        tmp_path / "phantom.dcm", phantom.image, phantom.view, phantom.side, **kwargs
    )
    return pydicom.dcmread(path)


def _intended_values(ds):
    """Modality LUT, then MONOCHROME1 reflected over its output range."""
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        ends = apply_modality_lut(np.array([0, 2**ds.BitsStored - 1]), ds)
        values = ends.min() + ends.max() - values
    return values


VARIANTS = [
    {},
    {"transfer_syntax": "rle"},
    {"photometric": "MONOCHROME1"},
    {"photometric": "MONOCHROME1", "transfer_syntax": "rle"},
    {"bits_stored": 14},
    {"bits_stored": 16, "transfer_syntax": "rle"},
    {"rescale": (0.5, -10.0), "bits_stored": 14},
    {"rescale": (1.0, -1024.0), "bits_stored": 14, "photometric": "MONOCHROME1"},
    {"rescale": (2.0, 0.0), "voi": "window"},
    {"voi": "window"},
    {"voi": "sequence"},
    {"voi": "sequence", "photometric": "MONOCHROME1", "transfer_syntax": "rle"},
    {"voi": "sequence", "rescale": (1.0, -1024.0), "bits_stored": 16},
]


@pytest.mark.parametrize("kwargs", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_every_variant_reads_back_to_the_phantom(tmp_path, phantom, kwargs):
    image = phantom.image
    if kwargs.get("rescale", (1, 0))[0] == 2.0:
        image = image - image % 2  # slope 2 represents even values only
    path = write_phantom_dicom(tmp_path / "p.dcm", image, "MLO", "R", **kwargs)
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(_intended_values(ds), image)


def test_monochrome1_stores_inverted_values(tmp_path, phantom):
    ds = _write_and_read(tmp_path, phantom, photometric="MONOCHROME1")
    np.testing.assert_array_equal(4095 - ds.pixel_array.astype(int), phantom.image)
    assert ds.PresentationLUTShape == "INVERSE"


def test_unrepresentable_values_are_rejected(tmp_path, phantom):
    with pytest.raises(ValueError, match="representable"):
        _write_and_read(tmp_path, phantom, rescale=(2.0, 0.0))
    with pytest.raises(ValueError, match="fit"):
        _write_and_read(tmp_path, phantom, rescale=(1.0, -1024.0))


def test_without_voi_the_voi_lut_is_identity(tmp_path, phantom):
    ds = _write_and_read(tmp_path, phantom)
    assert "WindowCenter" not in ds and "VOILUTSequence" not in ds
    np.testing.assert_array_equal(apply_voi_lut(ds.pixel_array, ds), phantom.image)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_window_is_applied(tmp_path, phantom, photometric):
    ds = _write_and_read(
        tmp_path, phantom, voi="window", window=(1500, 1001), photometric=photometric
    )
    centre = 1500 if photometric == "MONOCHROME2" else 4095 - 1500
    assert float(ds.WindowCenter) == centre and float(ds.WindowWidth) == 1001
    assert ds.VOILUTFunction == "LINEAR"
    values = apply_modality_lut(ds.pixel_array, ds)
    shown = apply_voi_lut(values, ds)
    values = values.astype(np.float64)
    # PS3.3 C.11.2.1.2.1, linear function onto the stored range 0..4095.
    expected = np.clip(((values - (centre - 0.5)) / 1000 + 0.5) * 4095, 0, 4095)
    np.testing.assert_allclose(shown, expected, atol=1e-6)


def test_default_window_covers_breast(tmp_path, phantom):
    ds = _write_and_read(tmp_path, phantom, voi="window")
    tissue = phantom.image[phantom.breast_mask]
    low = float(ds.WindowCenter) - float(ds.WindowWidth) / 2
    high = float(ds.WindowCenter) + float(ds.WindowWidth) / 2
    inside = (tissue >= low) & (tissue <= high)
    assert inside.mean() > 0.9


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_voi_lut_sequence_is_applied(tmp_path, phantom, photometric):
    ds = _write_and_read(
        tmp_path, phantom, voi="sequence", window=(1500, 1000), photometric=photometric
    )
    assert "WindowCenter" not in ds
    item = ds.VOILUTSequence[0]
    assert list(item.LUTDescriptor) == [4096, 0, 12]
    values = apply_modality_lut(ds.pixel_array, ds)
    shown = apply_voi_lut(values, ds)
    centre = 1500 if photometric == "MONOCHROME2" else 4095 - 1500
    offset = values.astype(np.float64) - centre
    expected = np.rint(4095 / (1 + np.exp(-4.0 * offset / 1000)))
    np.testing.assert_array_equal(shown, expected)


@pytest.mark.parametrize("kwargs", [{}, {"transfer_syntax": "rle", "voi": "sequence"}])
def test_files_are_byte_for_byte_reproducible(tmp_path, phantom, kwargs):
    image = phantom.image
    first = write_phantom_dicom(tmp_path / "a.dcm", image, "MLO", "R", **kwargs)
    second = write_phantom_dicom(tmp_path / "b.dcm", image, "MLO", "R", **kwargs)
    with open(first, "rb") as a, open(second, "rb") as b:
        assert a.read() == b.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcm", "b.dcm"]


def test_different_images_get_different_instance_uids(tmp_path, phantom):
    other = make_mammogram(1, "MLO", "R", shape=(184, 120))
    a = _write_and_read(tmp_path, phantom)
    b = _write_and_read(tmp_path, other)
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.StudyInstanceUID == b.StudyInstanceUID


@pytest.mark.parametrize(
    "transfer_syntax, uid",
    [("explicit_little", ExplicitVRLittleEndian), ("rle", RLELossless)],
)
def test_tags(tmp_path, phantom, transfer_syntax, uid):
    ds = _write_and_read(tmp_path, phantom, transfer_syntax=transfer_syntax)
    assert ds.file_meta.TransferSyntaxUID == uid
    assert ds.SOPClassUID == DigitalMammographyXRayImageStorageForPresentation
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPInstanceUID.startswith("1.2.826.0.1.3680043.8.498.")
    assert ds.Modality == "MG"
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    assert ds.ViewPosition == "MLO" and ds.ImageLaterality == "R"
    assert list(ds.PatientOrientation) == ["P", "FL"]
    assert ds.ViewCodeSequence[0].CodeMeaning == "medio-lateral oblique"
    assert (ds.Rows, ds.Columns) == phantom.image.shape
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
    assert ds.PixelRepresentation == 0 and ds.SamplesPerPixel == 1
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert "RescaleSlope" not in ds
    assert ds.PatientName == "SYNTHETIC^PHANTOM"
    assert ds.PatientID == "SYNTH-0001"
    assert ds.InstitutionName == "Synthetic phantom (course kit)"
    assert "SYNTHETIC" in ds.ImageComments
    assert ds.StudyDate == "20000101" and ds.StudyTime == "000000"
    assert float(ds.ImagerPixelSpacing[0]) == pytest.approx(0.1 * 2944 / 184)


def test_rescale_and_bits_tags(tmp_path, phantom):
    ds = _write_and_read(tmp_path, phantom, rescale=(0.5, -10.0), bits_stored=14)
    assert float(ds.RescaleSlope) == 0.5 and float(ds.RescaleIntercept) == -10.0
    assert (ds.BitsStored, ds.HighBit) == (14, 13)


@pytest.mark.parametrize(
    "view, side, expected",
    [
        ("CC", "L", ["A", "R"]),
        ("CC", "R", ["P", "L"]),
        ("MLO", "L", ["A", "FR"]),
        ("MLO", "R", ["P", "FL"]),
    ],
)
def test_patient_orientation(view, side, expected):
    assert patient_orientation(view, side) == expected


def test_non_synthetic_patient_id_is_rejected(tmp_path, phantom):
    with pytest.raises(ValueError, match="SYNTH-"):
        _write_and_read(tmp_path, phantom, patient_id="12345")
