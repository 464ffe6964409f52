"""GMIC in PyTorch: architecture, checkpoint loading, input checks, ROI search, the
constant-padding fast path, and conformance with the official implementation.

The conformance tests need $COURSE_FIXTURES/gmic_official and skip without it.
"""

import csv
import hashlib
from itertools import product

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from course_lib.exam_list import VIEWS  # noqa: E402
from course_lib.gmic import compact_map  # noqa: E402
from course_lib.gmic.model import (  # noqa: E402
    GMIC,
    GlobalNetwork,
    cells_to_pixels,
    check_input,
    crop_patches,
    load_gmic_checkpoint,
    retrieve_roi_cells,
)
from course_lib.gmic.config import GMICConfig, gmic_config  # noqa: E402

PATHS = {"full": True, "fast": False}  # name -> exact_full_forward

# sha256 of "key shape" lines of the official state_dict, in order (from the fixture's
# state_dict_keys.txt), so that this test runs without the fixture.
OFFICIAL_KEYS_SHA256 = "93cd4ff1b352ec388db087856c422e4d7d48f1e9351d420059fdf5d27e8d8905"
OFFICIAL_PARAMETER_COUNTS = {
    "ds_net": 2_799_536,
    "left_postprocess_net": 512,
    "dn_resnet": 11_176_512,
    "mil_attn_V": 65_536,
    "mil_attn_U": 65_536,
    "mil_attn_w": 128,
    "classifier_linear": 1_024,
    "fusion_dnn": 1_538,
}


@pytest.fixture(scope="module")
def fresh_model():
    torch.manual_seed(0)
    return GMIC().eval()


# --------------------------------------------------------------------------------------
# Architecture and checkpoints
# --------------------------------------------------------------------------------------


def test_parameter_counts_match_the_official_model(fresh_model):
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in fresh_model.named_children()}
    assert counts == OFFICIAL_PARAMETER_COUNTS
    assert sum(p.numel() for p in fresh_model.parameters()) == 14_110_322
    assert sum(b.numel() for b in fresh_model.buffers()) == 13_641


def test_state_dict_keys_and_shapes_match_the_official_listing(fresh_model):
    state = fresh_model.state_dict()
    listing = "\n".join(f"{key} {tuple(value.shape)}" for key, value in state.items())
    assert len(state) == 258
    assert hashlib.sha256(listing.encode()).hexdigest() == OFFICIAL_KEYS_SHA256, listing


def test_global_network_layout():
    state = GlobalNetwork().state_dict()
    assert state["first_conv.weight"].shape == (16, 1, 7, 7)
    widths = (16, 16, 32, 64, 128, 256)
    for stage in range(5):
        in_width, width = widths[stage], widths[stage + 1]
        prefix = f"layer_list.{stage}"
        assert state[f"{prefix}.0.bn1.weight"].shape == (in_width,)
        assert state[f"{prefix}.0.conv1.weight"].shape == (width, in_width, 3, 3)
        assert state[f"{prefix}.0.downsample.0.weight"].shape == (width, in_width, 1, 1)
        assert f"{prefix}.1.downsample.0.weight" not in state
    assert state["final_bn.running_var"].shape == (256,)


def test_local_network_is_the_torchvision_resnet18_trunk(fresh_model):
    expected = {
        key: value.shape
        for key, value in torchvision.models.resnet18(weights=None).state_dict().items()
        if not key.startswith("fc.")
    }
    actual = {key: value.shape for key, value in fresh_model.dn_resnet.state_dict().items()}
    assert actual == expected


def test_load_accepts_a_state_dict_and_a_file(fresh_model, tmp_path):
    state = fresh_model.state_dict()
    path = tmp_path / "sample_model_2.p"
    torch.save(state, path)
    for source in (state, path, str(path)):
        model = load_gmic_checkpoint(source, 2)
        assert not model.training
        assert model.config.percent_t == 0.03
        torch.testing.assert_close(model.fusion_dnn.bias, state["fusion_dnn.bias"], rtol=0, atol=0)


def test_load_refuses_a_file_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "weights.p"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(TypeError, match="not a state dict"):
        load_gmic_checkpoint(path, 1)


def test_load_lists_missing_keys(fresh_model):
    state = dict(fresh_model.state_dict())
    del state["mil_attn_w.weight"], state["ds_net.final_bn.bias"]
    with pytest.raises(ValueError, match=r"missing keys \(2\)") as error:
        load_gmic_checkpoint(state, 1)
    assert "mil_attn_w.weight" in str(error.value) and "ds_net.final_bn.bias" in str(error.value)


def test_load_lists_unexpected_keys(fresh_model):
    state = dict(fresh_model.state_dict())
    state["module.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): module\.extra\.weight"):
        load_gmic_checkpoint(state, 1)


def test_load_names_shape_mismatches(fresh_model):
    state = dict(fresh_model.state_dict())
    state["fusion_dnn.weight"] = torch.zeros(3, 768)
    with pytest.raises(ValueError, match=r"fusion_dnn\.weight: checkpoint \(3, 768\), model \(2, 768\)"):
        load_gmic_checkpoint(state, 1)


# --------------------------------------------------------------------------------------
# Configuration and input checks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("index, percent_t", [("1", 0.02), (2, 0.03), ("3", 0.03), (4, 0.05), ("5", 0.10)])
def test_model_index_sets_percent_t(index, percent_t):
    config = gmic_config(index)
    assert config.percent_t == percent_t
    assert config.cam_size == (46, 30) and config.roi_window_cells == (4, 4) and config.num_rois == 6


def test_top_t_count_uses_python_rounding():
    assert gmic_config("1").top_t_count == 28  # round(27.6)
    assert gmic_config("5").top_t_count == 138


@pytest.mark.parametrize("index", ["0", "6", 7, "ensemble", "sample_model_1"])
def test_unknown_model_index_lists_the_valid_ones(index):
    with pytest.raises(ValueError, match="'1', '2', '3', '4', '5'"):
        gmic_config(index)


def test_config_rejects_sizes_that_are_not_multiples_of_64():
    with pytest.raises(ValueError, match="multiples of 64"):
        GMICConfig(input_shape=(1000, 640))
    with pytest.raises(ValueError, match="crop_shape"):
        GMICConfig(input_shape=(128, 128), crop_shape=(256, 256))


def test_reduced_input_size_derives_the_saliency_grid():
    config = gmic_config(1, input_shape=(1472, 960))
    assert config.cam_size == (23, 15)


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.zeros(1, 1, 2944, 1920, dtype=torch.float64), "float32"),
        (torch.zeros(1, 1, 2944, 1920, dtype=torch.uint8), "float32"),
        (torch.zeros(1, 2944, 1920), r"\(N, 1, H, W\)"),
        (torch.zeros(1, 3, 2944, 1920), r"\(N, 1, H, W\)"),
        (torch.zeros(1, 1, 2944, 1900), "course_lib.gmic.preprocess"),
        (torch.zeros(1, 1, 3000, 2000), "2944x1920"),
    ],
)
def test_check_input_says_what_was_expected(images, message):
    with pytest.raises(ValueError, match=message):
        check_input(images, GMICConfig())


def test_forward_checks_its_input(fresh_model):
    with pytest.raises(ValueError, match="expects 2944x1920 images, got 1472x960"):
        fresh_model(torch.zeros(1, 1, 1472, 960))


def test_reduced_resolution_model_runs_batched():
    torch.manual_seed(1)
    config = GMICConfig(percent_t=0.1, input_shape=(256, 192), crop_shape=(64, 64), num_rois=3)
    model = GMIC(config).eval()
    images = torch.randn(2, 1, 256, 192)
    with torch.no_grad():
        output = model(images)
    assert output.h_g.shape == (2, 256, 4, 3)
    assert output.saliency_map.shape == (2, 2, 4, 3)
    assert output.patches.shape == (2, 3, 64, 64)
    assert output.local_feature_maps.shape == (2, 3, 512, 2, 2)
    assert output.y_fusion.shape == (2, 2)
    with torch.no_grad():
        one = model(images[1:])
    torch.testing.assert_close(one.y_fusion, output.y_fusion[1:], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------
# ROI retrieval
# --------------------------------------------------------------------------------------


def reference_roi_cells(saliency_map: np.ndarray, window, num_rois):
    """Loop-by-loop numpy version of the greedy search, for one (C, h, w) map."""
    low = saliency_map.min(axis=(1, 2), keepdims=True)
    high = saliency_map.max(axis=(1, 2), keepdims=True)
    current = ((saliency_map - low) / np.where(high > low, high - low, 1)).sum(axis=0)
    cells = []
    for _ in range(num_rois):
        best, best_cell = -np.inf, None
        for row in range(current.shape[0] - window[0] + 1):
            for col in range(current.shape[1] - window[1] + 1):
                value = current[row : row + window[0], col : col + window[1]].mean()
                if value > best:  # strict: the first maximum wins
                    best, best_cell = value, (row, col)
        cells.append(best_cell)
        current[best_cell[0] : best_cell[0] + window[0], best_cell[1] : best_cell[1] + window[1]] = 0
    return cells


def test_roi_tie_goes_to_the_first_window_in_row_major_order():
    saliency = torch.zeros(1, 2, 8, 8)
    saliency[0, :, 5, 1] = 1.0  # two equal bumps: (5, 1) comes after (1, 5) in row-major order
    saliency[0, :, 1, 5] = 1.0
    cells = retrieve_roi_cells(saliency, (2, 2), 2).cells[0].tolist()
    assert cells == [[0, 4], [4, 0]]


def test_roi_windows_may_overlap_zeroed_ones():
    saliency = torch.zeros(1, 2, 10, 10)
    saliency[0, :, 2:8, 2:8] = 1.0  # a 6x6 plateau: the second 4x4 window overlaps the first
    search = retrieve_roi_cells(saliency, (4, 4), 3)
    assert search.cells[0].tolist() == [[2, 2], [4, 4], [0, 4]]  # (4, 4) overlaps (2, 2)
    assert search.maps[0, 1, 2:6, 2:6].eq(0).all()
    assert search.pooled_maps.shape == (1, 3, 7, 7)


def test_roi_normalises_each_class_channel_separately():
    generator = torch.Generator().manual_seed(2)
    saliency = torch.randint(0, 8, (1, 2, 12, 9), generator=generator) / 8
    rescaled = saliency.clone()
    rescaled[:, 1] = 4 + 2 * rescaled[:, 1]  # exact in float32: the same normalised map
    expected = retrieve_roi_cells(saliency, (3, 3), 4).cells
    torch.testing.assert_close(retrieve_roi_cells(rescaled, (3, 3), 4).cells, expected)


@pytest.mark.parametrize("seed", range(5))
def test_roi_matches_a_loop_by_loop_reference(seed):
    rng = np.random.default_rng(seed)
    saliency = rng.integers(0, 4, size=(3, 2, 11, 7)).astype(np.float32)  # many ties
    search = retrieve_roi_cells(torch.from_numpy(saliency), (3, 2), 5)
    for image, cells in zip(saliency, search.cells.tolist()):
        assert [tuple(cell) for cell in cells] == reference_roi_cells(image.copy(), (3, 2), 5)


def test_flat_saliency_gives_zeros_not_nan():
    search = retrieve_roi_cells(torch.full((1, 2, 6, 6), 0.5), (2, 2), 2)
    assert search.cells[0].tolist() == [[0, 0], [0, 0]]  # all ties: the first window, twice
    assert not search.maps.isnan().any()


def test_cells_map_to_upper_left_pixels_rounding_half_to_even():
    cells = torch.tensor([[[42, 26], [1, 1]]])
    assert cells_to_pixels(cells, (46, 30), (2944, 1920)).tolist() == [[[2688, 1664], [64, 64]]]
    assert cells_to_pixels(torch.tensor([[[1, 1]]]), (4, 4), (2, 6)).tolist() == [[[0, 2]]]


def test_crops_inside_the_image_are_plain_copies():
    images = torch.arange(20 * 16, dtype=torch.float32).view(1, 1, 20, 16)
    patches = crop_patches(images, torch.tensor([[[3, 5]]]), (4, 6))
    torch.testing.assert_close(patches[0, 0], images[0, 0, 3:7, 5:11], rtol=0, atol=0)


def test_crops_past_the_border_are_filled_with_the_minimum_and_shifted_bottom_right():
    images = torch.arange(1, 1 + 10 * 8, dtype=torch.float32).view(1, 1, 10, 8)
    patches = crop_patches(images, torch.tensor([[[8, 5]]]), (4, 4))  # rows 8..11, cols 5..8
    patch = patches[0, 0]
    torch.testing.assert_close(patch[2:, 1:], images[0, 0, 8:10, 5:8], rtol=0, atol=0)
    assert patch[:2].eq(1).all() and patch[:, :1].eq(1).all()


# --------------------------------------------------------------------------------------
# The constant-padding fast path of the global network
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def global_network():
    """A global network with non-trivial BN statistics, so that BN is not an identity."""
    torch.manual_seed(3)
    network = GlobalNetwork()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    return network.eval()


def padded_image(height, width, box, seed, padding_value=-0.4):
    generator = torch.Generator().manual_seed(seed)
    image = torch.full((1, 1, height, width), padding_value)
    row0, row1, col0, col1 = box
    image[..., row0:row1, col0:col1] = torch.randn(row1 - row0, col1 - col0, generator=generator)
    return image


BOXES = {
    "chest wall left, padded right": (0, 448, 0, 150),
    "CC: padded top, bottom, right": (100, 350, 0, 170),
    "MLO: padded bottom and right": (5, 400, 0, 200),
    "centred": (200, 260, 150, 190),
    "touching bottom-right": (300, 448, 250, 320),
    "single pixel": (447, 448, 319, 320),
    "no padding": (0, 448, 0, 320),
    "constant image": (0, 0, 0, 0),
}


@pytest.mark.parametrize("layout", BOXES)
def test_fast_path_equals_the_full_forward(global_network, layout):
    image = padded_image(448, 320, BOXES[layout], seed=len(layout))
    with torch.no_grad():
        full = global_network(image)
        fast = global_network(image, collapse_constant_runs=True)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("min_kept, min_run", list(product([1, 3, 7], [2, 9])))
def test_fast_path_with_short_runs_relengthens_them_exactly(global_network, monkeypatch, min_kept, min_run):
    monkeypatch.setattr(compact_map, "MIN_KEPT_ROWS", min_kept)
    monkeypatch.setattr(compact_map, "MIN_COLLAPSED_RUN", min_run)
    image = padded_image(384, 256, (40, 300, 0, 90), seed=min_kept)
    image[..., 350:352, 200:230] = 2.0  # a second object splits the padding runs
    with torch.no_grad():
        full = global_network(image)
        fast = global_network.forward_map(
            compact_map.CompactMap.collapse(image, 64, min_run), global_network._separable_first_pool
        ).to_dense()
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)


def test_fast_path_handles_a_batch_of_different_layouts(global_network):
    images = torch.cat(
        [
            padded_image(256, 192, box, seed)
            for seed, box in enumerate([(0, 256, 0, 60), (50, 200, 0, 100), (0, 0, 0, 0)])
        ]
    )
    with torch.no_grad():
        full = global_network(images)
        fast = global_network(images, collapse_constant_runs=True)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)


def test_separable_max_pool_is_bit_identical():
    values = torch.randn(2, 3, 37, 24)
    expected = torch.nn.functional.max_pool2d(values, 3, 2)
    assert torch.equal(compact_map.separable_max_pool(values, 3, 2), expected)


def test_fast_path_is_the_default_in_eval_mode_only(monkeypatch):
    model = GMIC(GMICConfig(percent_t=0.1, input_shape=(256, 192), crop_shape=(64, 64), num_rois=2)).eval()
    calls = []
    collapse = compact_map.CompactMap.collapse
    monkeypatch.setattr(compact_map.CompactMap, "collapse", lambda *args: calls.append(1) or collapse(*args))
    with torch.no_grad():
        model(torch.randn(2, 1, 256, 192))
        model(torch.randn(2, 1, 256, 192), exact_full_forward=True)
    assert len(calls) == 2  # once per image of the first batch
    images = torch.randn(1, 1, 256, 192, requires_grad=True)
    model(images).y_fusion.sum().backward()  # the input gradient needs the full forward
    assert images.grad is not None
    model.train()
    model(torch.randn(2, 1, 256, 192))  # BN batch statistics need the full forward
    assert len(calls) == 2


# --------------------------------------------------------------------------------------
# Conformance with the official implementation (random weights, exam 0)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official_outputs(gmic_fixture_dir):
    """{(view, path): (our output, fixture npz)} for the four views and both paths."""
    model = load_gmic_checkpoint(gmic_fixture_dir / "gmic_random_state_dict.pt", 1)
    outputs = {}
    for view in VIEWS:
        expected = dict(np.load(gmic_fixture_dir / f"exam0_{view}.npz"))
        images = torch.from_numpy(expected["input"])
        with torch.no_grad():
            for path, exact in PATHS.items():
                outputs[view, path] = (model(images, exact_full_forward=exact), expected)
    return outputs


def assert_near(actual: torch.Tensor, expected: np.ndarray, atol=1e-6):
    np.testing.assert_allclose(actual.numpy().reshape(expected.shape), expected, rtol=0, atol=atol)


def assert_near_to_scale(actual: torch.Tensor, expected: np.ndarray):
    """atol 1e-6 times the tensor's largest magnitude: float32 rounding noise grows with
    the values summed. h_crops reaches 11, where one float32 step is 9.5e-7, and the
    official values themselves lie 2.5e-6 from a float64 recomputation."""
    assert_near(actual, expected, atol=1e-6 * max(1.0, float(np.abs(expected).max())))


@pytest.mark.fixtures
@pytest.mark.parametrize("view, path", list(product(VIEWS, PATHS)))
def test_global_branch_matches_official(official_outputs, view, path):
    output, expected = official_outputs[view, path]
    for name in ("h_g", "global_vec", "saliency_map", "y_global"):
        assert_near(getattr(output, name), expected[name])


@pytest.mark.fixtures
@pytest.mark.parametrize("view, path", list(product(VIEWS, PATHS)))
def test_roi_crops_match_official_exactly(official_outputs, view, path):
    output, expected = official_outputs[view, path]
    assert np.array_equal(output.roi_small_locations.numpy(), expected["roi_small_locations"])
    assert np.array_equal(output.patch_locations.numpy(), expected["patch_locations"])
    assert np.array_equal(output.patches.numpy(), expected["patches"])


@pytest.mark.fixtures
@pytest.mark.parametrize("view, path", list(product(VIEWS, PATHS)))
def test_local_branch_and_prediction_match_official(official_outputs, view, path):
    output, expected = official_outputs[view, path]
    assert_near_to_scale(output.h_crops, expected["h_crops"])
    assert_near_to_scale(output.z, expected["z"])
    for name in ("patch_attns", "y_local", "y_fusion"):
        assert_near(getattr(output, name), expected[name])


@pytest.mark.fixtures
@pytest.mark.parametrize("view", VIEWS)
def test_fast_and_full_paths_agree(official_outputs, view):
    fast, _ = official_outputs[view, "fast"]
    full, _ = official_outputs[view, "full"]
    torch.testing.assert_close(fast.h_g, full.h_g, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast.y_fusion, full.y_fusion, rtol=0, atol=1e-6)


@pytest.mark.fixtures
def test_predictions_match_the_official_csv(official_outputs, gmic_fixture_dir):
    with open(gmic_fixture_dir / "predictions_random_weights_full_precision.csv", newline="") as table:
        rows = {row["image_index"]: row for row in csv.DictReader(table)}
    for view, path in product(VIEWS, PATHS):
        y_fusion = official_outputs[view, path][0].y_fusion[0]
        row = rows[f"0_{view}"]
        expected = [float(row["benign_pred"]), float(row["malignant_pred"])]
        np.testing.assert_allclose(y_fusion.numpy(), expected, rtol=0, atol=1e-6)
