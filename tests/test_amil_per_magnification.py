"""The full profile's path: one A-MIL model per magnification on a BreakHis layout, with its own card."""

import argparse
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from course_lib.amil import train  # noqa: E402
from course_lib.datasets.breakhis import breakhis_filename, magnification_folder  # noqa: E402
from course_lib.io import write_png  # noqa: E402

#: (patient, label, subtype, split) of a tiny BreakHis tree in the Kaggle fold layout.
PATIENTS = [("101", "benign", "A", "train"), ("102", "malignant", "DC", "train"),
            ("103", "benign", "TA", "test"), ("104", "malignant", "MC", "test")]


def _tiny_breakhis(root, magnifications=(40, 100), shape=(460, 700)):
    """Noise images; malignant ones have a dark-purple square (the 'tumour', also written to masks/)."""
    rng = np.random.default_rng(0)
    for patient, label, subtype, split in PATIENTS:
        for magnification in magnifications:
            mag = magnification_folder(magnification)
            name = breakhis_filename(label, subtype, patient, magnification, 1)
            relative = f"fold1/{split}/{mag}/{label[0].upper()}_{mag}/{name}"
            image = rng.integers(180, 256, shape + (3,), dtype=np.uint8)
            mask = np.zeros(shape, np.uint8)
            if label == "malignant":
                mask[100:300, 200:500] = 255
                image[mask > 0] = (90, 40, 120)
            write_png(root / relative, image, compress_level=1)
            write_png(root / "masks" / relative, mask, compress_level=1)


def test_cli_trains_one_model_per_magnification(tmp_path, capsys):
    from course_lib.amil.cli import add_parser

    _tiny_breakhis(tmp_path / "bh")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["amil", "train", "--per-magnification", str(tmp_path / "bh"), "--out",
                              str(tmp_path / "out"), "--epochs", "1", "--learning-rate", "1e-3", "--centre-inputs",
                              "--attention-smoothing", "0.5", "--bootstrap", "100"])
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert "40X (2 test images, 2 patients): accuracy" in printed and "100X" in printed
    summary = pd.read_csv(tmp_path / "out" / "amil_breakhis_summary.csv")
    assert summary["magnification"].tolist() == [40, 100]
    assert (summary["train_images"] == 2).all() and (summary["test_patients"] == 2).all()
    for row in summary.itertuples():
        assert row.accuracy_low <= row.accuracy <= row.accuracy_high
        assert 0.0 <= row.localisation_auc <= 1.0  # the tree has tumour masks
        weights = tmp_path / "out" / row.weights
        card = json.loads(weights.with_suffix(".json").read_text())
        assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
        assert card["magnification"] == row.magnification and card["steps"] == 2
        assert card["test_metrics"]["accuracy"] == pytest.approx(row.accuracy, abs=1e-4)
        assert card["command"].startswith("course-kit amil train --per-magnification ROOT")
        assert "--attention-smoothing 0.5" in card["command"] and card["config"]["attention_smoothing"] == 0.5
        model, _ = train.load_kit_model(weights)
        assert sum(p.numel() for p in model.parameters()) == 491_828 and model.pooling.smoothing == 0.5


def test_a_split_that_mixes_patients_is_redone_by_patient(tmp_path):
    table = pd.DataFrame({"patient_id": list("aabbccdd"), "label": [0, 0, 1, 1, 0, 0, 1, 1],
                          "split": ["train", "test", "train", "train", "test", "test", "train", "test"]})
    with pytest.warns(UserWarning, match="both sides"):
        split = train._patient_level(table, 0.5, 0, log=None)
    assert (split.groupby("patient_id")["split"].nunique() == 1).all()
    kept = table.assign(split=["train", "train", "test", "test", "test", "test", "train", "train"])
    assert train._patient_level(kept, 0.5, 0, log=None) is kept


def test_a_magnification_without_test_images_is_a_clear_error(tmp_path):
    table = pd.DataFrame({"path": ["x.png"] * 2, "patient_id": ["a", "b"], "label": [0, 1], "magnification": 40,
                          "split": "train", "mask_path": None})
    with pytest.raises(ValueError, match="40X: 2 training and 0 test images"):
        train.train_per_magnification(table, tmp_path, log=None)
