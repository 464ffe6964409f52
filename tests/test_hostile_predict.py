"""Hostile inputs to ``course-kit gmic predict``: exam lists, image folders and checkpoints.

Each command-line case asserts the exit code, that the message names the file, that no input
changed and that nothing was written outside the output folder (:func:`hostile_sandbox.run_case`).
The model is the kit's small GMIC at quarter scale (the official one needs 2944x1920 windows).
"""

import csv
import functools
import json
import os
import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from hostile_sandbox import run_case, snapshot  # noqa: E402

from course_lib.exam_list import VIEWS  # noqa: E402
from course_lib.gmic import predict as predict_module  # noqa: E402
from course_lib.gmic import weights  # noqa: E402
from course_lib.gmic.config import GMICGeometry, gmic_config  # noqa: E402
from course_lib.gmic.data import build_gmic_phantom_exams  # noqa: E402
from course_lib.gmic.model import GMIC, CheckpointError, load_gmic_checkpoint  # noqa: E402

QUARTER = GMICGeometry.quarter()
SMALL = {"input_shape": QUARTER.window, "crop_shape": (64, 64)}


@functools.cache
def small_model():
    torch.manual_seed(0)
    return GMIC(gmic_config("1", **SMALL)).eval()


@pytest.fixture
def kit(monkeypatch):
    """``course-kit gmic predict`` with the small model at quarter scale."""
    monkeypatch.setattr(weights, "load_official_model", lambda index, device, path=None: small_model())
    monkeypatch.setattr(predict_module, "predict_exams",
                        functools.partial(predict_module.predict_exams, geometry=QUARTER))


def phantom_exams(folder, n_exams=2):
    build_gmic_phantom_exams(folder, n_exams, seed=3)
    return folder / "exam_list_before_cropping.json", json.loads((folder / "exam_list_before_cropping.json").read_text())


def names_only_exam_list(folder):
    """An exam list whose images are never reached (the command fails before reading them)."""
    folder.mkdir(parents=True, exist_ok=True)
    exams = [{"horizontal_flip": "NO", **{view: [f"0_{view}"] for view in VIEWS},
              "cancer_label": {key: 0 for key in ("left_benign", "right_benign", "left_malignant", "right_malignant")}}]
    (folder / "exams.json").write_text(json.dumps(exams))
    return folder / "exams.json"


def predictions(out):
    with open(out / "predictions.csv") as f:
        return [row["image_index"] for row in csv.DictReader(f)]


# --- bad 1: short names that leave their folder -----------------------------------------


@pytest.mark.parametrize("name", ["../outside", "/outside/x/0_L-CC", "..", ".secret"])
def test_unsafe_short_names_are_refused_before_anything_is_read(tmp_path, capsys, kit, name):
    exam_list = names_only_exam_list(tmp_path / "exams")
    exams = json.loads(exam_list.read_text())
    exams[0]["L-CC"] = [name]
    exam_list.write_text(json.dumps(exams))
    run_case(capsys, tmp_path, ["gmic", "predict", "--exam-list", exam_list, "--output", tmp_path / "out",
                                "--visualize", "--dpi", "10"], code=2,
             names=[exam_list, "unsafe image short name"], output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unsafe_names_given_to_the_function_are_skipped_and_no_figure_escapes(tmp_path):
    _, exams = phantom_exams(tmp_path / "exams", 1)
    victim = tmp_path / "exams" / "images" / "0_L-CC.png"
    exams[0]["L-CC"] = [str(victim.with_suffix(""))]  # absolute: would read, then overwrite, the original
    before = snapshot(tmp_path / "exams")
    rows, skipped = predict_module.predict_exams(exams, tmp_path / "exams" / "images", tmp_path / "out",
                                                 {"1": small_model()}, visualize=True, dpi=10, geometry=QUARTER)
    assert snapshot(tmp_path / "exams") == before
    assert [item["image"] for item in skipped] == [str(victim.with_suffix(""))]
    assert "unsafe image short name" in skipped[0]["reason"]
    assert len(rows) == 3 and len(list((tmp_path / "out" / "visualization").iterdir())) == 3


def test_a_figure_path_linked_outside_the_output_is_refused(tmp_path):
    _, exams = phantom_exams(tmp_path / "exams", 1)
    target = tmp_path / "elsewhere.png"
    target.write_bytes(b"precious")
    (tmp_path / "out" / "visualization").mkdir(parents=True)
    (tmp_path / "out" / "visualization" / "0_L-CC.png").symlink_to(target)
    with pytest.raises(ValueError, match="lies outside"):
        predict_module.predict_exams(exams, tmp_path / "exams" / "images", tmp_path / "out",
                                     {"1": small_model()}, visualize=True, dpi=10, geometry=QUARTER)
    assert target.read_bytes() == b"precious"


# --- bad 5: one bad view must not lose the batch ----------------------------------------


def test_bad_views_and_exams_are_skipped_and_the_rest_written(tmp_path, capsys, kit):
    exam_list, exams = phantom_exams(tmp_path / "exams", 3)
    broken = tmp_path / "exams" / "images" / "1_R-MLO.png"
    broken.write_bytes(b"not a PNG")
    exams[2]["problems"] = ["2_L-CC: DicomError: unreadable"]  # as `course-kit preprocess` lists them
    empty = {**exams[0], **{view: [] for view in VIEWS}}
    exam_list.write_text(json.dumps(exams + [empty]))
    out = tmp_path / "out"
    _, err = run_case(capsys, tmp_path, ["gmic", "predict", "--exam-list", exam_list, "--output", out], code=1,
                      names=["7 predictions written", broken, "exam 2", "listed with problems", "exam 3",
                             "no image"], output=out)
    assert predictions(out) == [f"0_{v}" for v in VIEWS] + [f"1_{v}" for v in VIEWS if v != "R-MLO"]


def test_an_image_folder_lists_the_files_that_match_no_view(tmp_path, capsys, kit):
    phantom_exams(tmp_path / "exams", 1)
    images = tmp_path / "exams" / "images"
    (images / "scan 7.png").write_bytes((images / "0_L-CC.png").read_bytes())
    (images / "0_L-XCC.png").write_bytes((images / "0_L-CC.png").read_bytes())
    run_case(capsys, tmp_path, ["gmic", "predict", "--image-folder", images, "--output", tmp_path / "out"],
             code=0, names=["scan 7.png", "0_L-XCC.png", "4 predictions written"], output=tmp_path / "out")
    for path in images.iterdir():
        path.unlink()
    (images / "notes.png").write_bytes(b"")
    run_case(capsys, tmp_path, ["gmic", "predict", "--image-folder", images, "--output", tmp_path / "out2"],
             code=2, names=[images, "notes.png"], output=tmp_path / "out2")


@pytest.mark.parametrize("argv, named", [(["--dpi", "0"], "--dpi"), (["--device", "cdua"], "cdua"),
                                         (["--model-index", "7"], "unknown model index")])
def test_bad_options_are_usage_errors(tmp_path, capsys, argv, named):
    exam_list = names_only_exam_list(tmp_path / "exams")
    run_case(capsys, tmp_path, ["gmic", "predict", "--exam-list", exam_list, "--output", tmp_path / "out", *argv],
             code=2, names=[named], output=tmp_path / "out")
    assert not (tmp_path / "out" / "predictions.csv").exists()


# --- weak: checkpoints ------------------------------------------------------------------


class Payload:
    """A pickle that would create a file when loaded by an unsafe loader."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_checkpoint(kind, path, marker):
    if kind == "text":
        path.write_text("these are not weights\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "list":
        torch.save([torch.zeros(1)], path)
    elif kind == "json":
        path.write_text(json.dumps({"fusion_dnn.bias": [0.0, 0.0]}))
    elif kind == "malicious":
        path.write_bytes(pickle.dumps(Payload(marker)))
    elif kind == "malicious-torch":
        torch.save({"fusion_dnn.bias": Payload(marker)}, path)
    elif kind == "truncated":
        torch.save(small_model().state_dict(), path)
        path.write_bytes(path.read_bytes()[:5000])
    return path


@pytest.mark.parametrize("kind, says", [("text", "not a PyTorch checkpoint"), ("empty", "empty or truncated"),
                                        ("list", "not a state dict"), ("json", "not a PyTorch checkpoint"),
                                        ("malicious", "refused for safety"),
                                        ("malicious-torch", "refused for safety"),
                                        ("truncated", "download it again"), ("missing", "no such checkpoint")])
def test_bad_checkpoints_are_named_and_never_run(tmp_path, capsys, kind, says):
    exam_list = names_only_exam_list(tmp_path / "exams")
    marker = tmp_path / "ran.txt"
    checkpoint = write_checkpoint(kind, tmp_path / "weights.pkl", marker)
    _, err = run_case(capsys, tmp_path, ["gmic", "predict", "--exam-list", exam_list, "--output", tmp_path / "out",
                                         "--weights", checkpoint], code=2, names=[checkpoint, says],
                      output=tmp_path / "out")
    assert not marker.exists()
    assert "weights_only=False" not in err


def test_a_wrapped_state_dict_is_unwrapped(tmp_path):
    state = small_model().state_dict()
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pt")
    model = load_gmic_checkpoint(tmp_path / "wrapped.pt", "1", **SMALL)
    torch.testing.assert_close(model.fusion_dnn.bias, state["fusion_dnn.bias"], rtol=0, atol=0)


def test_nan_or_infinite_weights_are_refused(tmp_path):
    state = {key: value.clone() for key, value in small_model().state_dict().items()}
    state["fusion_dnn.bias"][0] = float("nan")
    state["mil_attn_w.weight"][0, 0] = float("inf")
    torch.save(state, tmp_path / "diverged.pt")
    with pytest.raises(CheckpointError, match=r"diverged\.pt.*NaN or infinite weights in 2") as error:
        load_gmic_checkpoint(tmp_path / "diverged.pt", "1", **SMALL)
    assert "fusion_dnn.bias" in str(error.value)
    assert Path(tmp_path / "diverged.pt").is_file()
