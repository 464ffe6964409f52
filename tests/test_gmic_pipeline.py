"""`course-kit gmic predict`: GMIC's run.sh as one command, in the official file formats."""

import csv
import json
import math

import pytest

torch = pytest.importorskip("torch")

from course_lib import cli, data  # noqa: E402
from course_lib.data import registry  # noqa: E402
from course_lib.exam_list import VIEWS  # noqa: E402
from course_lib.gmic.config import GMICGeometry  # noqa: E402
from course_lib.gmic.data import build_gmic_phantom_exams  # noqa: E402
from course_lib.exam_list import read_exam_list, write_exam_list  # noqa: E402
from course_lib.gmic.model import GMIC  # noqa: E402
from course_lib.gmic.config import gmic_config  # noqa: E402
from course_lib.gmic.predict import (  # noqa: E402
    PREDICTION_COLUMNS, ensemble_rows, exams_from_image_folder, predict, write_predictions_csv,
)
from course_lib.gmic.weights import official_model_indices  # noqa: E402

VIEW_FILES = [f"0_{v}.png" for v in VIEWS]
# README of nyukat/GMIC, model index 1 on the four sample exams (docs/original_pipelines.md, GMIC published predictions).
PUBLISHED = {
    "0_L-CC": (0.1356, 0.0081), "0_R-CC": (0.8929, 0.3259), "0_L-MLO": (0.2368, 0.0335), "0_R-MLO": (0.9509, 0.1812),
    "1_L-CC": (0.0546, 0.0168), "1_R-CC": (0.5986, 0.9910), "1_L-MLO": (0.0414, 0.0139), "1_R-MLO": (0.5383, 0.9308),
    "2_L-CC": (0.0678, 0.0227), "2_R-CC": (0.1917, 0.0603), "2_L-MLO": (0.1210, 0.0093), "2_R-MLO": (0.2440, 0.0231),
    "3_L-CC": (0.6295, 0.9326), "3_R-CC": (0.2291, 0.1603), "3_L-MLO": (0.6304, 0.7496), "3_R-MLO": (0.0622, 0.0507),
}


def exam0(registry_file, tmp_path):
    """GMIC's exam 0 from the registry, as a one-exam JSON exam list next to its images."""
    exams = read_exam_list(registry_file("gmic/sample_data/exam_list_before_cropping.pkl"))
    images = [registry_file(f"gmic/sample_data/images/{name}") for name in VIEW_FILES]
    write_exam_list(tmp_path / "exam0.json", exams[:1])
    return tmp_path / "exam0.json", images[0].parent


@pytest.mark.mirror
def test_predictions_csv_is_byte_identical_to_the_official_run(registry_file, gmic_fixture_dir, tmp_path):
    exam_list, image_dir = exam0(registry_file, tmp_path)
    status = cli.main(["gmic", "predict", "--exam-list", str(exam_list), "--image-dir", str(image_dir),
                       "--weights", str(gmic_fixture_dir / "gmic_random_state_dict.pt"),
                       "--output", str(tmp_path / "out"), "--device", "cpu"])
    assert status == 0
    expected = (gmic_fixture_dir / "predictions_random_weights.csv").read_bytes()
    assert (tmp_path / "out" / "predictions.csv").read_bytes() == expected


@pytest.mark.mirror
def test_published_sample_predictions_with_the_official_weights(registry_file, tmp_path):
    """Needs the official weights and exams 1-3 (network, or a mirror that has them)."""
    weights = registry_file("gmic/models/sample_model_1.p")
    exams = read_exam_list(registry_file("gmic/sample_data/exam_list_before_cropping.pkl"))
    image = None
    for name in PUBLISHED:
        image = registry_file(f"gmic/sample_data/images/{name}.png")
    from course_lib.gmic.weights import load_official_model

    rows = predict(exams, image.parent, tmp_path, {"1": load_official_model("1", "cpu", weights)})
    for row in rows:
        benign, malignant = PUBLISHED[row["image_index"]]
        assert round(row["benign_pred"], 4) == benign and round(row["malignant_pred"], 4) == malignant, row


def test_missing_official_weights_say_which_file_and_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.delenv(data.MIRROR_ENV_VAR, raising=False)
    monkeypatch.setattr(registry, "_download", lambda *a: (_ for _ in ()).throw(ConnectionError("offline")))
    build_gmic_phantom_exams(tmp_path / "exams", 1, seed=0)
    status = cli.main(["gmic", "predict", "--exam-list", str(tmp_path / "exams" / "exam_list_before_cropping.json"),
                       "--output", str(tmp_path / "out"), "--model-index", "2"])
    out = capsys.readouterr().err  # errors go to stderr (course_lib.cli.main)
    assert status == 2
    assert "gmic/models/sample_model_2.p" in out and "COURSE_DATA_MIRROR" in out


def test_unknown_model_index_lists_the_valid_ones():
    assert official_model_indices("ensemble") == ["1", "2", "3", "4", "5"]
    with pytest.raises(ValueError, match="1, 2, 3, 4, 5, ensemble"):
        official_model_indices("6")


def test_ensemble_rows_average_ignoring_nan_and_sort_by_image():
    model_1 = [{"image_index": "0_R-CC", "benign_pred": 0.2, "malignant_pred": float("nan"),
                "benign_label": 1, "malignant_label": 0},
               {"image_index": "0_L-CC", "benign_pred": 0.4, "malignant_pred": 0.1, "benign_label": 0,
                "malignant_label": 0}]
    model_2 = [dict(model_1[0], benign_pred=0.4, malignant_pred=0.3), dict(model_1[1], benign_pred=0.6)]
    rows = ensemble_rows([model_1, model_2])
    assert [r["image_index"] for r in rows] == ["0_L-CC", "0_R-CC"]
    assert rows[1]["benign_pred"] == pytest.approx(0.3) and rows[1]["malignant_pred"] == pytest.approx(0.3)
    assert rows[1]["benign_label"] == 1.0 and isinstance(rows[1]["benign_label"], float)


def test_csv_format_single_model_and_ensemble(tmp_path):
    single = [{"image_index": "0_L-CC", "benign_pred": 0.12345, "malignant_pred": 0.5, "benign_label": 0,
               "malignant_label": 1}]
    write_predictions_csv(single, tmp_path / "single.csv")
    assert (tmp_path / "single.csv").read_text() == (
        "image_index,benign_pred,malignant_pred,benign_label,malignant_label\n0_L-CC,0.1235,0.5000,0,1\n")
    write_predictions_csv(ensemble_rows([single]), tmp_path / "ensemble.csv")
    assert (tmp_path / "ensemble.csv").read_text().splitlines()[1] == "0_L-CC,0.1235,0.5000,0.0000,1.0000"


def test_phantom_exams_end_to_end_with_figures(tmp_path):
    """Exam order and view order, the four views batched, one figure per image."""
    build_gmic_phantom_exams(tmp_path / "exams", 2, seed=1)
    exams = read_exam_list(tmp_path / "exams" / "exam_list_before_cropping.json")
    torch.manual_seed(0)
    model = GMIC(gmic_config("1", input_shape=(768, 512), crop_shape=(64, 64))).eval()
    rows = predict(exams, tmp_path / "exams" / "images", tmp_path / "out", {"1": model},
                   segmentation_dir=tmp_path / "exams" / "segmentation", visualize=True, dpi=20,
                   geometry=GMICGeometry.quarter())
    assert [r["image_index"] for r in rows] == [f"{e}_{v}" for e in (0, 1) for v in VIEWS]
    with open(tmp_path / "out" / "predictions.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and all(0 <= float(r["benign_pred"]) <= 1 for r in table)
    assert {int(r["benign_label"]) for r in table} <= {0, 1}
    figures = sorted(p.name for p in (tmp_path / "out" / "visualization").glob("*.png"))
    assert figures == sorted(f"{r['image_index']}.png" for r in rows)


def test_image_folder_input_has_no_labels(tmp_path):
    build_gmic_phantom_exams(tmp_path / "exams", 1, seed=2)
    exams = exams_from_image_folder(tmp_path / "exams" / "images")
    assert exams[0]["R-MLO"] == ["0_R-MLO"]
    torch.manual_seed(0)
    model = GMIC(gmic_config("1", input_shape=(768, 512), crop_shape=(64, 64))).eval()
    rows = predict(exams, tmp_path / "exams" / "images", tmp_path / "out", {"1": model}, geometry=GMICGeometry.quarter())
    assert [r["image_index"] for r in rows] == [f"0_{v}" for v in VIEWS]
    assert all(r["benign_label"] is None for r in rows)
    header, *lines = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert header == ",".join(PREDICTION_COLUMNS) and len(lines) == 4  # an empty file fails here
    for line in lines:
        assert line.endswith(",,") and not math.isnan(float(line.split(",")[1]))
    with pytest.raises(ValueError, match="no <exam>_<VIEW>.png"):
        exams_from_image_folder(tmp_path)


def test_exam_list_missing_a_view_is_refused(tmp_path):
    build_gmic_phantom_exams(tmp_path / "exams", 1, seed=2)
    exams = read_exam_list(tmp_path / "exams" / "exam_list_before_cropping.json")
    del exams[0]["R-MLO"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(exams))
    with pytest.raises(ValueError, match="R-MLO"):
        read_exam_list(broken)
