"""``course-kit density train|predict`` end to end on a tiny SYNTHETIC set, and ``preprocess --for density``."""

import argparse
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from course_lib.batch import BatchItem  # noqa: E402
from course_lib.density.cli import add_parser  # noqa: E402
from course_lib.density.evaluate import read_prediction_file  # noqa: E402


def run(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_train_then_predict_writes_the_originals_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["density", "train", "--phantoms", "10", str(out), "--projections", "CC_L", "--input-size", "32",
                "--epochs", "1"]) == 0
    weights = out / "CC_L" / "density_phantom_CC_L.npz"
    assert weights.is_file() and len((out / "CC_L" / "loss_train.txt").read_text().splitlines()) == 1
    assert run(["density", "predict", str(out / "data"), str(out), str(tmp_path / "pred"), "--projections", "CC_L",
                "--input-size", "32"]) == 0
    table = read_prediction_file(tmp_path / "pred" / "predictions_ccl.txt")
    names = (tmp_path / "pred" / "predictions_ccl.names.txt").read_text().split()
    assert table.shape == (len(names), 4) and all(n.endswith("_CC_L.png") for n in names)
    assert names == sorted(names, key=lambda n: (n.split("_")[2], n))  # class folder, then file name
    assert "accuracy" in capsys.readouterr().out


def test_train_names_what_is_missing(tmp_path, capsys):
    (tmp_path / "TrainingSet" / "CC_L" / "train" / "A").mkdir(parents=True)
    assert run(["density", "train", str(tmp_path), str(tmp_path / "out"), "--projections", "CC_L"]) == 2
    assert "no images for CC_L/train/A" in capsys.readouterr().err


def test_preprocess_step_writes_an_infn_style_image(tmp_path):
    from course_lib.density.preprocess import infn_style_step
    from course_lib.phantoms.dicom_writer import write_phantom_dicom
    from course_lib.phantoms.mammogram import make_mammogram

    phantom = make_mammogram(3, view="MLO", side="L", shape=(368, 240), dense_fraction=0.3)
    source = Path(write_phantom_dicom(tmp_path / "in" / "mlo.dcm", phantom.image, "MLO", "L"))
    before = source.read_bytes()
    record = infn_style_step(BatchItem("p1_L-MLO", str(source), {"view": "L-MLO"}), tmp_path / "out", {})
    assert record["outputs"] == ["density/p1_L-MLO.png"] and record["pectoral_filled"]
    from PIL import Image

    image = np.asarray(Image.open(tmp_path / "out" / record["outputs"][0]))
    assert image.dtype == np.uint8 and image.ndim == 2
    assert (image == 0).mean() > 0.05  # background removed
    values, counts = np.unique(image[image > 0], return_counts=True)
    assert counts.max() > 0.02 * (image > 0).sum()  # the muscle became one flat grey level
    assert source.read_bytes() == before  # input untouched
    with pytest.raises(ValueError, match="nothing.dcm"):
        (tmp_path / "nothing.dcm").write_bytes(b"\0" * 200)
        infn_style_step(BatchItem("bad", str(tmp_path / "nothing.dcm"), {"view": "L-CC"}), tmp_path / "out", {})
