"""A-MIL training is deterministic; Grad-CAM by hand agrees with pytorch-grad-cam; metrics; CLI."""

import argparse

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_lib.amil import evaluate, explain, train  # noqa: E402
from course_lib.amil.model import AttentionMIL  # noqa: E402


def _tiny_bags(seed=0):
    generator = torch.Generator().manual_seed(seed)
    bags = [torch.rand(n, 3, 28, 28, generator=generator) for n in (6, 4, 5, 3)]
    for bag, label in zip(bags, (1, 0, 1, 0)):
        bag[:2, 0] += 0.5 * label  # malignant bags: two redder instances
    return bags, np.array([1, 0, 1, 0])


def test_training_is_deterministic_and_batches_work():
    bags, labels = _tiny_bags()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = AttentionMIL()
        history = train.train_amil(model, bags, labels, train.TrainSettings(epochs=2, batch_size=2, seed=4),
                                   log=None)
        runs.append((history["loss"], [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    assert history["steps"] == 4 and len(history["loss"]) == 2


def test_cosine_schedule_changes_only_later_epochs():
    bags, labels = _tiny_bags()
    losses = {}
    for schedule in ("constant", "cosine"):
        torch.manual_seed(123)
        settings = train.TrainSettings(epochs=3, learning_rate=1e-3, seed=4, lr_schedule=schedule)
        losses[schedule] = train.train_amil(AttentionMIL(), bags, labels, settings, log=None)["loss"]
    assert losses["constant"][0] == losses["cosine"][0]  # the first epoch runs at the full rate
    assert losses["constant"][1:] != losses["cosine"][1:]
    with pytest.raises(ValueError, match="lr_schedule"):
        train.train_amil(AttentionMIL(), bags, labels, train.TrainSettings(epochs=1, lr_schedule="step"), log=None)


def test_augmentation_is_reproducible_and_keeps_the_bag_order():
    bags, labels = _tiny_bags()
    runs = {}
    for name, augment in (("plain", False), ("augmented", True), ("again", True)):
        torch.manual_seed(123)
        settings = train.TrainSettings(epochs=2, learning_rate=1e-3, seed=4, augment=augment)
        runs[name] = train.train_amil(AttentionMIL(), bags, labels, settings, log=None)["loss"]
    assert runs["augmented"] == runs["again"] and runs["augmented"] != runs["plain"]
    assert train.settings_card(settings)["augment"] is True


def test_weight_averaging_ends_with_the_mean_of_the_last_epochs():
    bags, labels = _tiny_bags()
    seen = []
    torch.manual_seed(123)
    model = AttentionMIL()
    settings = train.TrainSettings(epochs=4, learning_rate=1e-3, seed=4, average_from=2)
    history = train.train_amil(model, bags, labels, settings, log=None, after_epoch=lambda epoch, m: seen.append(
        {k: v.detach().clone() for k, v in m.state_dict().items()}))
    assert history["averaged_epochs"] == 3
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, torch.stack([state[name] for state in seen[1:]]).mean(dim=0), msg=name)
    assert not torch.equal(model.pooling.w.weight, seen[-1]["pooling.w.weight"])  # not the last epoch
    with pytest.raises(ValueError, match="average_from"):
        train.train_amil(AttentionMIL(), bags, labels, train.TrainSettings(epochs=2, average_from=3), log=None)


def test_phantom_kit_card_of_averaged_weights(tmp_path):
    from course_lib.cli import build_parser

    settings = train.TrainSettings(epochs=2, learning_rate=1e-3, threads=1, augment=True, average_from=1)
    card = train.train_phantom_kit("amil", tmp_path, settings, train_patients=2, images_per_patient=1,
                                   test_patients=2, test_images_per_patient=1, validation_patients=2,
                                   attention_smoothing=0.5, log=None)
    assert card["epoch_kept"] is None and set(card["validation_of_average"]) == {"accuracy",
                                                                                 "attention_localisation_auc"}
    assert any("stochastic weight averaging" in d for d in card["deviations_from_the_study"])
    assert any("re-stained" in d for d in card["deviations_from_the_study"])
    args = build_parser().parse_args(card["command"].split()[1:])  # the card's command gives these settings back
    assert (args.augment, args.average_from, args.epochs, args.seed, args.validation_patients) == (True, 1, 2, 1, 2)
    assert args.attention_smoothing == card["config"]["attention_smoothing"] == 0.5
    assert any("Castro-Macias" in d for d in card["deviations_from_the_study"])
    model, _ = train.load_kit_model(tmp_path / "amil_phantom_amil.pt")  # rebuilt from the card: smoothed too
    assert (model.pooling.smoothing, model.pooling.grid) == (0.5, (16, 25))
    with pytest.raises(ValueError, match="choose one"):
        train.train_phantom_kit("amil", tmp_path, settings, 2, 1, 2, keep_best_epoch=True, log=None)
    with pytest.raises(ValueError, match="CNN baseline"):
        train.train_phantom_kit("cnn", tmp_path, train.TrainSettings(epochs=1), 2, 1, 2, keep_best_epoch=True,
                                log=None)
    with pytest.raises(ValueError, match="CNN baseline"):
        train.train_phantom_kit("cnn", tmp_path, train.TrainSettings(epochs=1), 2, 1, 2, attention_smoothing=0.5,
                                log=None)


def test_kit_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = AttentionMIL(gated=True)
    card = train.save_kit_weights(model, tmp_path / "m.pt", {"config": {"gated": True}})  # a card of before smoothing
    assert card["dtype"] == "float16" and len(card["sha256"]) == 64
    loaded, loaded_card = train.load_kit_model(tmp_path / "m.pt")
    assert loaded_card["warning"] == train.KIT_WARNING and loaded.pooling.smoothing == 0.0
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a.half().float(), b, msg=name)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gradcam_by_hand_agrees_with_pytorch_grad_cam(sign):
    pytest.importorskip("pytorch_grad_cam")
    torch.manual_seed(0)
    model = explain.PatchCNN().eval()
    images = torch.rand(2, 3, 64, 96)
    by_hand = explain.gradcam_by_hand(model, images, sign=sign)
    library = explain.gradcam_library(model, images, sign=sign)
    assert by_hand.shape == library.shape == (2, 64, 96)
    assert by_hand.max() > 0.5
    # OpenCV (inside pytorch-grad-cam) resizes with its own rounding: ~2e-4 apart
    np.testing.assert_allclose(by_hand, library, atol=1e-3)
    assert np.abs(by_hand - library).mean() < 1e-4


def test_dimming_and_patch_means():
    crop = np.ones((56, 84, 3), np.float32)
    weights = np.arange(6, dtype=np.float32)
    dimmed = explain.dim_by_attention(crop, weights)
    assert dimmed[0, 0, 0] == 0.0 and dimmed[-1, -1, 0] == 1.0 and dimmed[0, 28, 0] == pytest.approx(0.2)
    pixel_map = np.kron(np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((28, 28), np.float32))
    np.testing.assert_allclose(explain.patch_means(pixel_map), np.arange(6))


def test_localisation_auc_and_bootstrap():
    fractions = [np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.0] * 4)]
    perfect, per_bag = evaluate.localisation_auc([np.array([0.4, 0.3, 0.2, 0.1]), np.ones(4)], fractions)
    assert perfect == 1.0 and len(per_bag) == 1  # the bag without tumour patches is left out
    inverted, _ = evaluate.localisation_auc([np.array([0.1, 0.2, 0.3, 0.4])], fractions[:1])
    assert inverted == 0.0
    labels = np.array([0, 0, 1, 1, 0, 1])
    metrics = evaluate.bag_metrics(labels, np.array([0.1, 0.6, 0.7, 0.9, 0.2, 0.4]),
                                   groups=np.array(["a", "a", "b", "b", "c", "d"]), n_bootstrap=200)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["accuracy_ci"][0] <= metrics["accuracy"] <= metrics["accuracy_ci"][1]


def test_auc_is_sklearns():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, 30)
        scores = rng.integers(0, 6, 30) / 5.0  # many ties
        assert evaluate._auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(evaluate._auc(np.ones(4), np.arange(4)))


def test_cli_table_and_extract(tmp_path, capsys):
    from course_lib.amil.cli import add_parser
    from course_lib.phantoms.breakhis_set import build_breakhis_phantom_dataset

    build_breakhis_phantom_dataset(tmp_path / "bh", 4, 1, layout="archive", magnifications=(40,))
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["amil", "table", str(tmp_path / "bh"), "--csv", str(tmp_path / "t.csv")])
    assert args.run(args) == 0
    assert "4 images, 4 patients" in capsys.readouterr().out
    import pandas as pd

    assert pd.read_csv(tmp_path / "t.csv")["split"].notna().all()
    bad = tmp_path / "bad.tar"
    import tarfile

    with tarfile.open(bad, "w") as bundle:
        info = tarfile.TarInfo("../../x")
        bundle.addfile(info)
    args = parser.parse_args(["amil", "extract", str(bad), str(tmp_path / "out")])
    assert args.run(args) == 1
    assert "refused" in capsys.readouterr().err
