"""end2end training: schedules, determinism, float16 weights and the kit's model card, CLI."""

import argparse
import hashlib
import json

import numpy as np
import pytest

pytest.importorskip("keras")

from course_lib.end2end import pipeline  # noqa: E402
from course_lib.end2end.cli import add_parser  # noqa: E402
from course_lib.end2end.data import write_phantom_cases  # noqa: E402
from course_lib.end2end.patches import SamplingSettings  # noqa: E402
from course_lib.end2end.train import (  # noqa: E402
    ImageTrainingSettings, PatchTrainingSettings, load_patch_split, make_deterministic, stage_schedule,
)
from course_lib.paths import PRETRAINED  # noqa: E402

TINY = pipeline.LessonSettings(
    n_patients=10, shape=(184, 120), val_size=0.2, test_size=0.2,
    sampling=SamplingSettings(n_roi=3, n_background=3, n_hard=1),
    patch_training=PatchTrainingSettings(end_epochs=(1, 1, 2), steps_per_epoch=2, batch_size=12),
    image_training=ImageTrainingSettings(end_epochs=(1, 2), batch_size=4, learning_rates=(1e-3, 1e-4)),
)
KIT_WEIGHTS = PRETRAINED / "end2end_phantom_small.npz"


def test_stage_epochs_are_cumulative():
    assert stage_schedule((1, 5, 15), (1, 2, 3)) == [(1, 1, 1), (2, 4, 2), (3, 10, 3)]
    assert stage_schedule((0, 50), (1e-4, 1e-6)) == [(1, 0, 1e-4), (2, 50, 1e-6)]  # the paper's fine-tuning recipe
    with pytest.raises(ValueError, match="cumulative"):
        stage_schedule((5, 3), (1, 1))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return pipeline.prepare(tmp_path_factory.mktemp("lesson"), TINY)


def test_two_runs_print_the_same_numbers(tiny_data):
    runs = []
    for _ in range(2):
        make_deterministic(0)
        patch, whole, history = pipeline.train(tiny_data, TINY)
        pixels, _, _ = tiny_data.subset("test")
        from course_lib.end2end.predict import model_input, predict_cancer

        runs.append((history, predict_cancer(whole, model_input(pixels, tiny_data.bits, tiny_data.mean))))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    stages = [row["stage"] for row in runs[0][0]["patch"]]
    assert stages == [1, 3, 3] or stages == [1, 3]  # (1, 1, 2): stage 2 has no epoch


def test_missing_class_folder_is_a_clear_error(tiny_data, tmp_path):
    import shutil

    copy = tmp_path / "patches"
    shutil.copytree(tiny_data.patch_dir, copy)
    shutil.rmtree(copy / "train" / "benign")
    with pytest.raises(FileNotFoundError, match="class folder .*benign.* is missing"):
        load_patch_split(copy, "train")


def test_weights_round_trip_in_float16(tiny_data, tmp_path):
    patch, whole = pipeline.build_models(TINY)
    path = tmp_path / "w.npz"
    digest = pipeline.save(path, patch, whole, tiny_data, TINY, command="test")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sha256"] == digest == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded_patch, loaded_whole, _ = pipeline.load(path)
    x = np.random.default_rng(0).normal(0, 30, (1, 184, 120, 1)).astype("float32")
    np.testing.assert_allclose(loaded_whole.predict(x, verbose=0), whole.predict(x, verbose=0), atol=5e-3)


@pytest.mark.skipif(not KIT_WEIGHTS.exists(), reason="kit weights not built (course-kit end2end train --weights)")
def test_kit_weights_are_small_float16_with_a_card():
    card = json.loads(KIT_WEIGHTS.with_suffix(".json").read_text())
    assert KIT_WEIGHTS.stat().st_size <= 10 * 2**20
    assert card["sha256"] == hashlib.sha256(KIT_WEIGHTS.read_bytes()).hexdigest()
    assert card["dtype"] == "float16" and "SYNTHETIC" in card["warning"]
    with np.load(KIT_WEIGHTS) as arrays:
        assert {arrays[k].dtype for k in arrays.files} == {np.dtype("float16")}
    assert card["test_metrics"]["auc_flips"][0] >= 0.80 and card["test_metrics"]["pointing_heatmap"] >= 0.6


def _run(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_sample_patches(tmp_path, capsys):
    write_phantom_cases(tmp_path / "cases", n_patients=3, seed=2, shape=(184, 120))
    assert _run(["end2end", "sample-patches", str(tmp_path / "cases"), str(tmp_path / "out"),
                 "--n-roi", "2", "--n-background", "2", "--classes", "5", "--val-size", "0", "--test-size", "0"]) == 0
    assert (tmp_path / "out" / "index.csv").is_file() and "patches from" in capsys.readouterr().out
    assert _run(["end2end", "sample-patches", str(tmp_path / "nothing"), str(tmp_path / "out2")]) == 2


@pytest.mark.skipif(not KIT_WEIGHTS.exists(), reason="kit weights not built")
def test_cli_predict_reports_bad_files_and_goes_on(tmp_path):
    images = write_phantom_cases(tmp_path / "cases", n_patients=1, seed=3)
    good = tmp_path / "cases" / images.full_png[0]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "predictions.csv"
    assert _run(["end2end", "predict", str(KIT_WEIGHTS), str(good), str(bad), "--output", str(out)]) == 1
    lines = out.read_text().splitlines()
    assert lines[0] == "file,bits,p_cancer,problem" and lines[1].split(",")[1] == "12"
    assert 0 <= float(lines[1].split(",")[2]) <= 1 and "broken.png" in lines[2] and lines[2].split(",")[3]
