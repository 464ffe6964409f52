"""What lessons 01 and 05 claim of the kit's code: Grad-CAM on post-ReLU h_g is the positive part of
the saliency logit, the two-row view figure, and a breast mask without a notch at the skin edge."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")


def test_gradcam_on_h_g_is_the_relu_of_the_saliency_logit():
    from course_lib.gmic.gradcam import block_mean, gmic_gradcam
    from course_lib.gmic.weights import phantom_model

    model = phantom_model(seed=0).eval()
    windows = np.random.default_rng(0).normal(size=(2, 768, 512)).astype(np.float32)
    cams = block_mean(gmic_gradcam(model, windows, class_index=1, layer="h_g"), 64)
    with torch.no_grad():
        logits = model(torch.from_numpy(windows)[:, None], exact_full_forward=True).saliency_logits[:, 1].numpy()
    for cam, logit in zip(cams, logits):
        positive = np.maximum(logit, 0)
        if positive.max() > 0:
            positive = (positive - positive.min()) / (positive.max() - positive.min())
            np.testing.assert_allclose(cam, positive, atol=1e-4)
    with pytest.raises(ValueError, match="layer"):
        gmic_gradcam(model, windows, 1, layer="conv1")


def test_two_row_view_figure():
    import matplotlib

    matplotlib.use("Agg")
    from course_lib.gmic.figures import gmic_view_figure

    window = np.zeros((768, 512), np.float32)
    args = (window, np.random.default_rng(1).random((2, 12, 8)), np.zeros((6, 2)), np.zeros((6, 128, 128)),
            np.full(6, 1 / 6), (128, 128))
    fig = gmic_view_figure(*args, rows=2)
    assert len(fig.axes) == 2 * 6 + 3  # two rows of six panels, three colour bars
    with pytest.raises(ValueError, match="rows"):
        gmic_view_figure(*args, rows=3)


def test_breast_mask_reaches_the_skin_edge():
    from course_lib.metrics import dice
    from course_lib.phantoms.mammogram import make_mammogram
    from course_lib.preprocessing.breast import breast_mask

    for seed in range(4):
        phantom = make_mammogram(seed, view=("CC", "MLO")[seed % 2], side="LR"[seed // 2], shape=(368, 240))
        found = breast_mask(phantom.image)
        assert dice(found, phantom.breast_mask) >= 0.999
        assert np.count_nonzero(phantom.breast_mask & ~found) <= 0.001 * phantom.breast_mask.sum()
