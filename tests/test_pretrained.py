"""The kit's phantom-trained GMIC weights: card, registry entry, and that they localise.

Two sets: ``gmic_phantom_quarter`` (image labels + a lesion-mask term) and
``gmic_phantom_quarter_weak`` (the paper's loss, image labels only), which notebook 05 compares.
"""

import hashlib
import json

import pytest

torch = pytest.importorskip("torch")

from course_lib import data  # noqa: E402
from course_lib.gmic.data import gmic_phantom_views  # noqa: E402
from course_lib.gmic.config import PHANTOM_DENSE_RANGE, PHANTOM_LESION_CONTRAST  # noqa: E402
from course_lib.gmic.evaluate import evaluate_localisation, predict_views  # noqa: E402
from course_lib.gmic.weights import PHANTOM_WEIGHTS_KEY, load_phantom_gmic  # noqa: E402
from course_lib.paths import PRETRAINED  # noqa: E402

WEIGHTS = PRETRAINED / "gmic_phantom_quarter.pt"
CARD = PRETRAINED / "gmic_phantom_quarter.json"
WEAK_WEIGHTS = PRETRAINED / "gmic_phantom_quarter_weak.pt"


@pytest.mark.parametrize("weights", [WEIGHTS, WEAK_WEIGHTS], ids=["mask-supervised", "image-labels-only"])
def test_model_card_matches_the_checkpoint(weights):
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "not for clinical use" in card["warning"].lower() and "synthetic" in card["warning"].lower()
    assert card["dtype"] == "float16" and weights.stat().st_size <= 30 * 2**20
    assert card["command"].startswith("course-kit gmic train")
    for key in ("data", "settings", "steps", "test_metrics", "loss"):
        assert card[key], key
    # The card names its loss: the mask term's weight and the words that say which setting it is.
    weakly_supervised = card["settings"]["mask_weight"] == 0
    assert ("image labels only" in card["loss"]) == weakly_supervised
    assert ("--mask-weight 0.0" in card["command"]) == weakly_supervised


def test_the_image_labels_only_card_reports_what_its_weights_do():
    """Its held-out numbers, recomputed from the weights on the card's own test phantoms."""
    card = json.loads(WEAK_WEIGHTS.with_suffix(".json").read_text())
    model = load_phantom_gmic(WEAK_WEIGHTS)
    views = gmic_phantom_views(25, seed=3, dense_range=PHANTOM_DENSE_RANGE, lesion_contrast=PHANTOM_LESION_CONTRAST)
    y, saliency, _ = predict_views(model, views["windows"])
    scores = evaluate_localisation(y, saliency, views["labels"], views["benign_masks"], views["malignant_masks"])
    for name in ("auc_benign", "auc_malignant", "pointing_game"):
        assert scores[name] == pytest.approx(card["test_metrics"][name], abs=2e-3), name


def test_registry_resolves_the_weights_from_the_checkout():
    assert data.fetch(PHANTOM_WEIGHTS_KEY) == WEIGHTS


def test_weights_load_strictly_and_localise_held_out_phantoms():
    model = load_phantom_gmic(WEIGHTS)
    views = gmic_phantom_views(8, seed=3, dense_range=PHANTOM_DENSE_RANGE, lesion_contrast=PHANTOM_LESION_CONTRAST)
    y, saliency, _ = predict_views(model, views["windows"])
    scores = evaluate_localisation(y, saliency, views["labels"], views["benign_masks"], views["malignant_masks"])
    # An untrained model points at a lesion about 1 time in 20; the card reports the full test set.
    assert scores["pointing_game_n"] >= 5 and scores["pointing_game"] >= 0.6, scores


def test_gradcam_gives_one_map_per_image():
    from course_lib.gmic.gradcam import block_mean, gmic_gradcam

    model = load_phantom_gmic(WEIGHTS)
    views = gmic_phantom_views(1, seed=3)
    maps = gmic_gradcam(model, views["windows"][:3], class_index=1)
    assert maps.shape == (3, 768, 512) and 0 <= maps.min() and maps.max() <= 1
    assert block_mean(maps, 64).shape == (3, 12, 8)
    assert not (maps[0] == maps[1]).all()
