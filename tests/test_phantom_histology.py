"""Synthetic BreakHis-style H&E phantoms and BreakHis file names."""


import numpy as np
import pytest
from skimage import filters, measure

from course_lib.datasets.breakhis import (
    BENIGN_SUBTYPES,
    MAGNIFICATIONS,
    MALIGNANT_SUBTYPES,
    breakhis_filename,
    parse_breakhis_filename,
)
from course_lib.phantoms.histology import NUCLEUS_DIAMETER_UM, make_histology, microns_per_pixel

# The 13 original BreakHis files in the offline mirror (12 from the Anki0909
# repository, 1 used by A-MIL's Grad-CAM comparison).
REAL_NAMES = [
    "SOB_B_A-14-22549AB-40-001.png",
    "SOB_B_A-14-22549G-40-001.png",
    "SOB_B_F-14-25197-100-001.png",
    "SOB_B_F-14-25197-200-032.png",
    "SOB_B_F-14-25197-40-023.png",
    "SOB_B_F-14-25197-400-033.png",
    "SOB_B_F-14-9133-40-001.png",
    "SOB_B_PT-14-21998AB-40-001.png",
    "SOB_B_TA-14-3411F-40-001.png",
    "SOB_M_DC-14-2523-40-010.png",
    "SOB_M_LC-14-12204-40-001.png",
    "SOB_M_MC-14-10147-40-001.png",
    "SOB_M_PC-14-9146-40-001.png",
]


def dark_blobs(image):
    """Nuclei seen the simple way: connected pixels darker (in red) than Otsu's threshold."""
    red = image[..., 0].astype(float)
    labels = measure.label(red < filters.threshold_otsu(red))
    return [blob for blob in measure.regionprops(labels) if blob.area >= 3]


def test_same_seed_same_image_and_other_seed_other_image():
    a = make_histology(7, "malignant", "DC", 100)
    b = make_histology(7, "malignant", "DC", 100)
    c = make_histology(8, "malignant", "DC", 100)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.tumour_mask, b.tumour_mask)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("magnification", MAGNIFICATIONS)
@pytest.mark.parametrize("label", ["benign", "malignant"])
def test_shapes_dtypes_and_fields(label, magnification):
    phantom = make_histology(3, label, magnification=magnification)
    assert phantom.image.shape == (460, 700, 3) and phantom.image.dtype == np.uint8
    assert phantom.tumour_mask.shape == (460, 700) and phantom.tumour_mask.dtype == bool
    assert phantom.label == label and phantom.magnification == magnification
    assert phantom.subtype in (BENIGN_SUBTYPES if label == "benign" else MALIGNANT_SUBTYPES)
    assert phantom.synthetic is True
    fields = parse_breakhis_filename(phantom.filename)
    assert (fields["label"], fields["subtype"], fields["magnification"]) == (
        label, phantom.subtype, magnification)
    assert fields["patient_id"] == phantom.patient_id == "SYN00003"


def test_other_shape_is_honoured():
    assert make_histology(0, "benign", "A", 200, shape=(100, 150)).image.shape == (100, 150, 3)


@pytest.mark.parametrize("subtype", sorted(MALIGNANT_SUBTYPES))
def test_malignant_mask_is_a_substantial_region(subtype):
    for seed in range(3):
        mask = make_histology(seed, "malignant", subtype, 100).tumour_mask
        assert 0.2 < mask.mean() < 0.95


@pytest.mark.parametrize("subtype", sorted(BENIGN_SUBTYPES))
def test_benign_mask_is_empty(subtype):
    assert not make_histology(1, "benign", subtype, 40).tumour_mask.any()


def test_h_and_e_colours():
    """Nuclei are blue-purple (blue > red > green); eosin makes the bulk pink-magenta (green lowest)."""
    for seed, label in [(0, "benign"), (1, "malignant")]:
        pixels = make_histology(seed, label, magnification=200).image.reshape(-1, 3).astype(float)
        brightness = pixels.sum(axis=1)
        r, g, b = pixels[brightness < np.percentile(brightness, 5)].mean(axis=0)
        assert b > r > g
        r, g, b = np.median(pixels, axis=0)
        assert g < min(r, b) - 20


def test_nucleus_size_follows_magnification():
    """Median nucleus diameter measured from the image: about 7 um, i.e. 0.07 px per X of magnification."""
    medians = []
    for magnification in MAGNIFICATIONS:
        diameters = [blob.equivalent_diameter_area
                     for seed in range(2)
                     for blob in dark_blobs(make_histology(seed, "benign", "F", magnification).image)]
        medians.append(np.median(diameters))
    assert np.all(np.diff(medians) > 0)
    expected = [NUCLEUS_DIAMETER_UM / microns_per_pixel(m) for m in MAGNIFICATIONS]
    # From 100X up the measurement holds to within a third (spindle stromal
    # nuclei pull the median down). At 40X a nucleus is ~3 px and optical blur
    # merges neighbours, so only require it to be well below 100X.
    assert np.allclose(medians[1:], expected[1:], rtol=0.35), (medians, expected)
    assert medians[0] < 0.75 * medians[1]


def test_tumour_nuclei_are_enlarged():
    for seed in range(3):
        phantom = make_histology(seed, "malignant", "DC", 200)
        inside, outside = [], []
        for blob in dark_blobs(phantom.image):
            centre = tuple(np.round(blob.centroid).astype(int))
            (inside if phantom.tumour_mask[centre] else outside).append(blob.equivalent_diameter_area)
        assert np.median(inside) > 1.3 * np.median(outside)


def test_unknown_label_or_subtype_is_refused():
    with pytest.raises(ValueError, match="label"):
        make_histology(0, "cancer")
    with pytest.raises(ValueError, match="subtype"):
        make_histology(0, "benign", "DC")
    with pytest.raises(ValueError, match="magnification"):
        make_histology(0, "benign", "A", magnification=50)


def test_filename_example():
    assert breakhis_filename("malignant", "DC", "12345", 100, 1) == "SOB_M_DC-14-12345-100-001.png"


@pytest.mark.parametrize("label,subtype", [("benign", s) for s in BENIGN_SUBTYPES]
                         + [("malignant", s) for s in MALIGNANT_SUBTYPES])
@pytest.mark.parametrize("magnification", MAGNIFICATIONS)
def test_filename_round_trip(label, subtype, magnification):
    name = breakhis_filename(label, subtype, "22549AB", magnification, 32)
    fields = parse_breakhis_filename(name)
    assert fields == {
        "procedure": "SOB", "label": label, "label_index": int(label == "malignant"),
        "subtype": subtype, "subtype_name": {**BENIGN_SUBTYPES, **MALIGNANT_SUBTYPES}[subtype],
        "year": 14, "patient_id": "22549AB", "magnification": magnification, "seq": 32,
    }
    assert breakhis_filename(fields["label"], fields["subtype"], fields["patient_id"],
                             fields["magnification"], fields["seq"], fields["year"]) == name


@pytest.mark.parametrize("name", REAL_NAMES)
def test_real_names_parse_and_regenerate(name):
    fields = parse_breakhis_filename("some/folder/" + name)
    assert breakhis_filename(fields["label"], fields["subtype"], fields["patient_id"],
                             fields["magnification"], fields["seq"], fields["year"]) == name


def test_real_name_fields():
    assert parse_breakhis_filename("SOB_B_A-14-22549AB-40-001.png") == {
        "procedure": "SOB", "label": "benign", "label_index": 0, "subtype": "A",
        "subtype_name": "adenosis", "year": 14, "patient_id": "22549AB", "magnification": 40,
        "seq": 1,
    }
    fields = parse_breakhis_filename("SOB_B_F-14-25197-200-032.png")
    assert (fields["subtype_name"], fields["patient_id"], fields["magnification"], fields["seq"]) == (
        "fibroadenoma", "25197", 200, 32)
    fields = parse_breakhis_filename("SOB_M_DC-14-2523-40-010.png")
    assert (fields["label"], fields["label_index"], fields["subtype_name"], fields["seq"]) == (
        "malignant", 1, "ductal_carcinoma", 10)
    assert parse_breakhis_filename("SOB_B_TA-14-3411F-40-001.png")["patient_id"] == "3411F"


@pytest.mark.parametrize("name", [
    "SOB_B_A_14-22549AB-40-001.png",  # patient-folder style separator
    "SOB_X_A-14-22549AB-40-001.png",  # no such class
    "SOB_B_DC-14-22549AB-40-001.png",  # malignant subtype in a benign name
    "SOB_B_A-14-22549AB-40-001.jpg",
    "124_1_A_CC_L.png",
])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError):
        parse_breakhis_filename(name)


@pytest.mark.mirror
def test_real_image_matches_the_phantom_format(registry_file):
    path = registry_file("breakhis/SOB_M_DC-14-2523-40-010.png")
    from PIL import Image

    with Image.open(path) as image:
        real = np.asarray(image.convert("RGB"))
    phantom = make_histology(0, **{k: parse_breakhis_filename(path.name)[k]
                                   for k in ("label", "subtype", "magnification")})
    assert real.shape == phantom.image.shape and real.dtype == phantom.image.dtype
