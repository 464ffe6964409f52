"""The kit's phantom-trained A-MIL and CNN-baseline weights: model cards, and that they still work."""

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_lib.amil.data import patch_fractions, phantom_patients  # noqa: E402
from course_lib.amil.evaluate import localisation_auc  # noqa: E402
from course_lib.amil.train import PHANTOM_TEST_SEED, ImageBags, load_kit_model, predict_bags, predict_cnn  # noqa: E402
from course_lib.paths import PRETRAINED  # noqa: E402

KINDS = ("amil", "cnn")


@pytest.mark.parametrize("kind", KINDS)
def test_model_card_matches_the_checkpoint(kind):
    weights = PRETRAINED / f"amil_phantom_{kind}.pt"
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "not for clinical use" in card["warning"].lower() and "synthetic" in card["warning"].lower()
    assert card["dtype"] == "float16" and weights.stat().st_size <= 10 * 2**20
    assert card["command"].startswith(f"course-kit amil train --model {kind}")
    for key in ("data", "settings", "steps", "test_metrics", "training_loss"):
        assert card[key], key


@pytest.fixture(scope="module")
def held_out():
    return phantom_patients(4, 1, seed=PHANTOM_TEST_SEED)  # the first 4 of the cards' held-out patients


def test_amil_weights_classify_and_attend(held_out):
    model, card = load_kit_model(PRETRAINED / "amil_phantom_amil.pt")
    assert sum(p.numel() for p in model.parameters()) == 491_828
    assert model.pooling.smoothing == card["config"]["attention_smoothing"]
    probability, attention = predict_bags(model, ImageBags(held_out.images))
    labels = held_out.table["label"].to_numpy()
    assert np.mean((probability >= 0.5) == labels) >= 0.75, probability
    malignant = np.flatnonzero(labels == 1)
    score, _ = localisation_auc([attention[k] for k in malignant],
                                [patch_fractions(held_out.masks[k]) for k in malignant])
    assert score > 0.6  # chance is 0.5; the card reports the full held-out set


def test_cnn_weights_classify(held_out):
    model, _ = load_kit_model(PRETRAINED / "amil_phantom_cnn.pt")
    probability = predict_cnn(model, held_out.images)
    assert np.mean((probability >= 0.5) == held_out.table["label"].to_numpy()) >= 0.75, probability


def test_amil_card_keeps_the_best_validation_epoch():
    card = json.loads((PRETRAINED / "amil_phantom_amil.json").read_text())
    curve = card["validation_curve"]
    assert [row["epoch"] for row in curve] == list(range(1, card["settings"]["epochs"] + 1))
    totals = [row["accuracy"] + row["attention_localisation_auc"] for row in curve]
    best = max(range(len(curve)), key=lambda k: (round(totals[k], 6), k))  # the later epoch on a tie
    assert "--keep-best-epoch" in card["command"] and card["epoch_kept"] == curve[best]["epoch"]
    assert card["what_helped"]
    # the lesson's targets, on held-out patients that were never used to choose the epoch
    assert card["test_metrics"]["attention_localisation_auc"] >= 0.80 and card["test_metrics"]["accuracy"] >= 0.85


def test_amil_card_lists_every_recipe_tried_with_a_command_the_kit_runs():
    from course_lib.cli import build_parser

    card = json.loads((PRETRAINED / "amil_phantom_amil.json").read_text())
    rows = card["recipes_tried"]
    targets = ("accuracy", "attention_localisation_auc")
    kept = card["validation_curve"][card["epoch_kept"] - 1]
    assert rows[0]["command"] == card["command"]  # the first row is these weights
    assert rows[0]["validation"] == {k: round(kept[k], 3) for k in targets}
    assert rows[0]["held_out"] == {k: round(card["test_metrics"][k], 3) for k in targets}
    parser = build_parser()
    for row in rows:
        args = parser.parse_args(row["command"].split()[1:])  # every command is one `course-kit` accepts
        assert args.model == "amil" and args.threads == 1, row["recipe"]
        assert f"{args.train_patients} patients" in row["recipe"] and f"seed {args.seed}" in row["recipe"]
        assert ("augmented" in row["recipe"]) == args.augment
        assert ("smoothed" in row["recipe"]) == (args.attention_smoothing > 0)
        assert set(row["held_out"]) == set(targets)
        assert row["validation"] is None or set(row["validation"]) == set(targets)

