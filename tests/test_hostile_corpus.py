"""The hostile-DICOM corpus: odd files built at test time, and the odd real files of ``pydicom-data``.

Built here (nothing large is committed): truncated, empty and non-DICOM files, odd Bits
Stored, RGB, multi-frame, no preamble, MONOCHROME1. Each replaces one view of a good
synthetic exam and goes through ``course-kit preprocess``; the case asserts the exit code,
that the report names the file, that no input changed and that nothing was written outside
the output folder. Then the odd-file DICOMs of the MIT-licensed ``pydicom-data`` package
(MONOCHROME1 CR, modality and VOI LUTs, JPEG 2000, JPEG lossless, RLE, palette and colour
images) are read with the kit's reader and checked against pydicom's own decoding.
"""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from hostile_sandbox import run_case

from course_lib.dicom import DicomError, MissingDecoderError, read_mammogram
from course_lib.exam_list import VIEWS
from course_lib.phantoms.dicom_writer import write_phantom_dicom
from course_lib.phantoms.mammogram import make_mammogram

SHAPE = (368, 240)
SMALL_ARGS = ["--window", "384", "256", "--crop-buffer", "6", "--crop-iterations", "12", "--processes", "1"]


def good_exam(folder):
    """Four synthetic views as DICOM files ``folder/<n>.dcm``; {view: path}."""
    paths = {}
    folder.mkdir(parents=True, exist_ok=True)
    for number, view in enumerate(VIEWS):
        side, position = view.split("-")
        image = make_mammogram(70 + number, position, side, SHAPE).image
        paths[view] = Path(write_phantom_dicom(folder / f"{number}.dcm", image, position, side))
    return paths


# --- odd files built at test time: name -> (how to spoil R-MLO, exit code, reason) -------


def truncated(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path):
    path.write_bytes(b"")


def not_dicom(path):
    path.write_bytes(b"%PDF-1.4 a report, not an image\n" * 10)


def bits_stored_8_of_12(path):
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = 8, 7
    ds.save_as(path)


def bits_stored_14(path):  # wider than needed: harmless
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = 14, 13
    ds.save_as(path)


def rgb(path):
    ds = pydicom.dcmread(path)
    grey = ds.pixel_array.astype(np.uint8)
    ds.PixelData = np.repeat(grey[..., None], 3, axis=2).tobytes()
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.save_as(path)


def multi_frame(path):
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData * 2
    ds.NumberOfFrames = 2
    ds.save_as(path)


def no_preamble(path):
    path.write_bytes(path.read_bytes()[132:])  # the 128-byte preamble and "DICM" dropped


def monochrome1(path):
    ds = pydicom.dcmread(path)
    ds.PixelData = (4095 - ds.pixel_array).astype(np.uint16).tobytes()  # same image, inverted storage
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(path)


def no_pixel_data(path):
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)


BUILT = {
    "truncated": (truncated, 1, "could not decode"),
    "empty": (empty, 1, "DicomError"),
    "not-dicom": (not_dicom, 1, "not a DICOM file"),
    "bits-stored-8-of-12": (bits_stored_8_of_12, 1, "Bits Stored is 8"),
    "bits-stored-14": (bits_stored_14, 0, None),
    "rgb": (rgb, 1, "photometric interpretation 'RGB'"),
    "multi-frame": (multi_frame, 1, "2 frames"),
    "no-preamble": (no_preamble, 0, None),
    "monochrome1": (monochrome1, 0, None),
    "no-pixel-data": (no_pixel_data, 1, "without pixel data"),
}


@pytest.mark.parametrize("case", sorted(BUILT))
def test_built_corpus_through_preprocess(tmp_path, capsys, case):
    spoil, code, reason = BUILT[case]
    paths = good_exam(tmp_path / "dicoms" / "SYNTH-0001")
    spoil(paths["R-MLO"])
    out = tmp_path / "out"
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "dicoms", out, *SMALL_ARGS], code=code,
             names=["ok"], output=out)
    row = pd.read_csv(out / "report.csv").set_index("input").loc[str(paths["R-MLO"])]
    if reason is None:
        assert row["status"] == "ok"
    else:
        assert row["status"] == "failed" and reason in row["reason"] and str(paths["R-MLO"]) in row["reason"]


def test_monochrome1_and_no_preamble_read_as_the_original(tmp_path):
    paths = good_exam(tmp_path / "dicoms")
    original, _ = read_mammogram(paths["L-CC"])
    for spoil in (monochrome1, no_preamble):
        copy = tmp_path / f"{spoil.__name__}.dcm"
        shutil.copyfile(paths["L-CC"], copy)
        spoil(copy)
        pixels, info = read_mammogram(copy)
        assert np.array_equal(pixels, original), spoil.__name__
        assert info.laterality == "L"


# --- pydicom-data: real odd files, against pydicom's own decoding ------------------------

data_store = pytest.importorskip("data_store", reason="pydicom-data is not installed (pip install pydicom-data)")
PYDICOM_DATA = Path(data_store.__file__).parent / "data"

#: Greyscale single-frame files the kit reads: name -> apply_voi_lut.
READABLE = {
    "RG1_UNCR.dcm": False,  # CR, MONOCHROME1, 15 bits
    "RG1_J2KR.dcm": False,  # the same, JPEG 2000 lossless
    "RG3_UNCR.dcm": False,  # CR, MONOCHROME1, 10 bits, Laterality R
    "RG3_J2KR.dcm": False,
    "MR2_J2KR.dcm": False,  # JPEG 2000 lossless with a rescale
    "JPEG-LL.dcm": False,  # JPEG lossless, process 14
    "mlut_18.dcm": False,  # Modality LUT Sequence
    "vlut_04.dcm": True,  # VOI LUT Sequence
}
#: Files the kit refuses, with the reason.
REFUSED = {
    "emri_small_RLE.dcm": "10 frames",
    "OBXXXX1A_rle.dcm": "'PALETTE COLOR'",
    "SC_rgb.dcm": "'RGB'",
    "US1_J2KR.dcm": "'YBR_RCT'",
    "OT-PAL-8-face.dcm": "'PALETTE COLOR'",  # no preamble either
    "liver.dcm": "3 frames",
}


def pydicom_values(path, voi):
    """pydicom's decoding: stored values through the modality LUT (and the VOI LUT)."""
    ds = pydicom.dcmread(path)
    values = apply_modality_lut(ds.pixel_array, ds)
    return apply_voi_lut(values, ds) if voi else values


@pytest.mark.parametrize("name", sorted(READABLE))
def test_pydicom_data_files_match_pydicoms_decoding(name):
    path = PYDICOM_DATA / name
    try:
        pixels, info = read_mammogram(path, apply_voi_lut=READABLE[name], laterality="L")
    except MissingDecoderError as error:
        pytest.skip(str(error))
    expected = pydicom_values(path, READABLE[name])
    if info.photometric_interpretation == "MONOCHROME1":  # the kit returns bright = dense
        low, high = info.value_range
        expected = low + high - expected.astype(np.int64)
    assert pixels.shape == expected.shape
    np.testing.assert_array_equal(np.asarray(pixels, np.float64), np.asarray(expected, np.float64))


def test_jpeg2000_and_uncompressed_copies_agree():
    for stem in ("RG1", "RG3", "MR2"):
        uncompressed, _ = read_mammogram(PYDICOM_DATA / f"{stem}_UNCR.dcm", laterality="L")
        compressed, _ = read_mammogram(PYDICOM_DATA / f"{stem}_J2KR.dcm", laterality="L")
        np.testing.assert_array_equal(compressed, uncompressed)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_pydicom_data_files_that_are_not_mammograms_are_refused(name):
    with pytest.raises(DicomError, match=REFUSED[name]) as error:
        read_mammogram(PYDICOM_DATA / name, laterality="L")
    assert name in str(error.value)


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "emri_small_RLE.dcm", "SC_rgb.dcm", "OT-PAL-8-face.dcm"])
def test_pydicom_data_files_among_a_good_exam(tmp_path, capsys, name):
    good_exam(tmp_path / "dicoms" / "SYNTH-0001")
    odd = tmp_path / "dicoms" / "odd" / name
    odd.parent.mkdir()
    shutil.copyfile(PYDICOM_DATA / name, odd)
    out = tmp_path / "out"
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "dicoms", out, *SMALL_ARGS], code=1,
             names=["4 ok", "1 failed"], output=out)
    row = pd.read_csv(out / "report.csv").set_index("input").loc[str(odd)]
    assert row["status"] == "failed" and name in row["reason"]
