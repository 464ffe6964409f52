"""``course-kit preprocess``: GMIC stage 1 and 2 over DICOM folders, CBIS-DDSM trees, exam lists."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from course_lib.phantoms.cbis_ddsm_tree import build_cbis_ddsm_phantom_tree
from course_lib.dicom import read_mammogram, to_png16
from course_lib.io import read_png, write_png
from course_lib.exam_list import VIEWS, read_exam_list, write_exam_list
from course_lib.phantoms.dicom_writer import write_phantom_dicom
from course_lib.phantoms.mammogram import make_mammogram
from course_lib.cli import main
from course_lib.gmic.config import GMICGeometry
from course_lib.gmic.preprocess import STAGE_KEYS, crop_mammogram, optimal_center, preprocess_target
from course_lib.preprocessing.job import REPORT_COLUMNS, detect_input_kind, preprocess

SHAPE = (368, 240)
# Small phantoms need a smaller window and fewer erosions than GMIC's full-size defaults.
EIGHTH = GMICGeometry.eighth()
SMALL = preprocess_target(EIGHTH)
SMALL_ARGS = ["--window", "384", "256", "--crop-buffer", "6", "--crop-iterations", "12"]


def write_exam(folder, patient_id, seed, views=VIEWS):
    """One synthetic exam as DICOM files ``folder/<patient>/<n>.dcm``; {view: path}."""
    paths = {}
    for number, view in enumerate(views):
        side, position = view.split("-")
        phantom = make_mammogram(seed + number, position, side, SHAPE)
        path = folder / patient_id / f"{number}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        paths[view] = write_phantom_dicom(
            path, phantom.image, position, side, patient_id=patient_id
        )
    return paths


def tree_hashes(root, skip=()):
    """{relative path: sha256} of every file under ``root``, except those named in ``skip``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file() and p.name not in skip
    }


def expected_stages(pixels, view, horizontal_flip="NO"):
    """(cropped, stage keys) computed directly with the GMIC functions."""
    cropped, info = crop_mammogram(
        pixels, view, horizontal_flip,
        buffer=EIGHTH.crop_buffer, iterations=EIGHTH.crop_iterations,
    )  # fmt: skip
    center = optimal_center(
        cropped, view, info["rightmost_points"], info["bottommost_points"],
        horizontal_flip, EIGHTH.window,
    )  # fmt: skip
    return cropped, json.loads(json.dumps({**info, "best_center": center}))


def run_cli(argv):
    """Exit code of ``course-kit preprocess ARGV`` through argparse."""
    return main(["preprocess", *argv])


@pytest.fixture(scope="module")
def dicom_dir(tmp_path_factory):
    """A folder of two synthetic exams, 8 DICOM files; {patient: {view: path}} alongside."""
    root = tmp_path_factory.mktemp("dicoms")
    exams = {p: write_exam(root, p, seed) for p, seed in (("SYNTH-0001", 10), ("SYNTH-0002", 20))}
    return root, exams


@pytest.fixture(scope="module")
def first_run(dicom_dir, tmp_path_factory):
    """(output folder, report, input hashes before) of one in-process run."""
    before = tree_hashes(dicom_dir[0])
    out = tmp_path_factory.mktemp("out") / "preprocessed"
    return out, preprocess(dicom_dir[0], out, SMALL, processes=1), before


def test_dicom_folder_gives_cropped_pngs_and_exam_list(dicom_dir, first_run):
    _, exams_in = dicom_dir
    out, report, _ = first_run
    assert list(report.columns) == REPORT_COLUMNS
    assert len(report) == 8 and (report.status == "ok").all()
    exams = read_exam_list(out / "exam_list.json")
    assert [e["patient_id"] for e in exams] == ["SYNTH-0001", "SYNTH-0002"]
    for exam in exams:
        assert "problems" not in exam and exam["cancer_label"]["unknown"] == 1
        for view in VIEWS:
            name = f"{exam['patient_id']}_{view}"
            assert exam[view] == [name]
            pixels, _ = read_mammogram(exams_in[exam["patient_id"]][view])
            cropped, stages = expected_stages(pixels, view)
            png = read_png(out / "cropped" / f"{name}.png")
            assert png.dtype == np.uint16 and np.array_equal(png, cropped)
            top, bottom, left, right = exam["window_location"][view][0]
            assert np.array_equal(png, pixels[top:bottom, left:right])  # the DICOM's stored values
            for key in STAGE_KEYS:
                assert exam[key][view] == [stages[key]], key


def test_second_run_skips_everything_and_changes_no_byte(dicom_dir, first_run):
    out, _, inputs_before = first_run
    before = tree_hashes(out, skip={"report.csv"})
    report = preprocess(dicom_dir[0], out, SMALL, processes=1)
    assert (report.status == "skipped").all() and len(report) == 8
    assert tree_hashes(out, skip={"report.csv"}) == before
    assert tree_hashes(dicom_dir[0]) == inputs_before


def test_damaged_outputs_and_changed_settings_are_redone(dicom_dir, first_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(first_run[0], out)
    (out / "cropped" / "SYNTH-0001_L-CC.png").write_bytes(b"truncated")
    (out / ".state" / "SYNTH-0002_R-MLO.json").unlink()  # as if interrupted before the record
    report = preprocess(dicom_dir[0], out, SMALL, processes=1).set_index("short_name")
    assert sorted(report.index[report.status == "ok"]) == ["SYNTH-0001_L-CC", "SYNTH-0002_R-MLO"]
    assert tree_hashes(out, {"report.csv"}) == tree_hashes(first_run[0], {"report.csv"})

    report = preprocess(dicom_dir[0], out, preprocess_target(GMICGeometry(window=EIGHTH.window, crop_buffer=4, crop_iterations=EIGHTH.crop_iterations)), processes=1)
    assert (report.status == "ok").all()


def test_two_processes_give_the_same_outputs(dicom_dir, first_run, tmp_path):
    report = preprocess(dicom_dir[0], tmp_path / "parallel", SMALL, processes=2)
    assert (report.status == "ok").all()
    skip = {"report.csv"}
    assert tree_hashes(tmp_path / "parallel", skip) == tree_hashes(first_run[0], skip)


def test_failed_files_are_reported_and_the_rest_is_processed(tmp_path, capsys):
    inputs = tmp_path / "in"
    write_exam(inputs, "SYNTH-0001", 30)
    broken = write_exam(inputs, "SYNTH-0003", 40)
    (inputs / "notes.dcm").write_bytes(b"not a DICOM file")
    black = np.zeros(SHAPE, np.uint16)
    write_phantom_dicom(broken["R-CC"], black, "CC", "R", patient_id="SYNTH-0003")
    ds = pydicom.dcmread(broken["R-MLO"])
    del ds.ImageLaterality, ds.PatientOrientation
    ds.SeriesDescription = "SYNTHETIC MLO"
    ds.save_as(broken["R-MLO"])
    before = tree_hashes(inputs)

    out = tmp_path / "out"
    assert run_cli([str(inputs), str(out), "--processes", "1", *SMALL_ARGS]) == 1
    assert capsys.readouterr().out.strip() == f"6 ok, 0 skipped, 3 failed: see {out / 'report.csv'}"
    assert tree_hashes(inputs) == before

    report = pd.read_csv(out / "report.csv").set_index("input")
    reasons = report.reason.dropna()
    assert "not a DICOM file" in reasons[str(inputs / "notes.dcm")]
    assert "no breast found" in reasons[broken["R-CC"]]
    assert reasons[broken["R-MLO"]].startswith("UnknownLateralityError")
    assert (report.status == "ok").sum() == 6

    exams = {e["patient_id"]: e for e in read_exam_list(out / "exam_list.json")}
    assert "problems" not in exams["SYNTH-0001"]
    exam = exams["SYNTH-0003"]
    assert exam["R-CC"] == exam["R-MLO"] == [] and exam["best_center"]["R-CC"] == []
    assert exam["L-CC"] == ["SYNTH-0003_L-CC"]
    problems = " | ".join(exam["problems"])
    assert "no breast found" in problems and "unknown laterality" in problems

    # A second run retries the failures and skips the rest.
    assert run_cli([str(inputs), str(out), "--processes", "1", *SMALL_ARGS]) == 1
    assert capsys.readouterr().out.startswith("0 ok, 6 skipped, 3 failed")


def test_exam_list_input(tmp_path):
    images = tmp_path / "list" / "images"
    images.mkdir(parents=True)
    pixels = {}
    for number, view in enumerate(VIEWS):
        side, position = view.split("-")
        pixels[view] = to_png16(make_mammogram(50 + number, position, side, SHAPE).image, 12)
        write_png(images / f"0_{view}.png", pixels[view])
    labels = {"benign": 0, "malignant": 1, "left_benign": 0, "right_benign": 0,
              "left_malignant": 1, "right_malignant": 0, "unknown": 0}  # fmt: skip
    exam = {"horizontal_flip": "NO", **{v: [f"0_{v}"] for v in VIEWS}, "cancer_label": labels,
            "L-CC_benign_seg": ["0_L-CC_benign"]}  # fmt: skip
    missing = {**exam, "L-CC": ["1_L-CC"], "L-CC_benign_seg": []}
    write_exam_list(tmp_path / "list" / "exams.json", [exam, missing])
    assert detect_input_kind(tmp_path / "list" / "exams.json") == "exam-list"

    report = preprocess(tmp_path / "list" / "exams.json", tmp_path / "out", SMALL, processes=1)
    assert sorted(report.status) == ["failed"] + ["ok"] * 4
    first, second = read_exam_list(tmp_path / "out" / "exam_list.json")
    assert first["cancer_label"] == labels and first["L-CC_benign_seg"] == ["0_L-CC_benign"]
    for view in VIEWS:
        cropped, stages = expected_stages(pixels[view], view)
        assert np.array_equal(read_png(tmp_path / "out" / "cropped" / f"0_{view}.png"), cropped)
        for key in STAGE_KEYS:
            assert first[key][view] == [stages[key]], key
    assert second["L-CC"] == [] and second["R-CC"] == ["0_R-CC"]
    assert "1_L-CC" in second["problems"][0] and "FileNotFoundError" in second["problems"][0]


def test_cbis_ddsm_input(tmp_path):
    truth = build_cbis_ddsm_phantom_tree(tmp_path / "cbis", n_patients=2, seed=0, shape=SHAPE)
    assert detect_input_kind(tmp_path / "cbis") == "cbis-ddsm"
    report = preprocess(tmp_path / "cbis", tmp_path / "out", SMALL, processes=1)
    assert len(report) == 8 and (report.status == "ok").all()
    exams = read_exam_list(tmp_path / "out" / "exam_list.json")
    assert [e["patient_id"] for e in exams] == sorted(truth.patient_id.unique())
    for exam in exams:
        lesions = truth[truth.patient_id == exam["patient_id"]]
        for side in ("LEFT", "RIGHT"):
            malignant = lesions[lesions.side == side].pathology.eq("MALIGNANT")
            assert exam["cancer_label"][f"{side.lower()}_malignant"] == int(malignant.any())
            assert exam["cancer_label"][f"{side.lower()}_benign"] == int((~malignant).any())
        for view in VIEWS:
            (name,) = exam[view]
            side = {"L": "LEFT", "R": "RIGHT"}[view[0]]
            png_name = f"{exam['patient_id']}_{side}_{view[2:]}.png"
            full = read_png(tmp_path / "out" / "cbis_ddsm_png" / "full" / png_name)
            cropped, stages = expected_stages(full, view)
            assert np.array_equal(read_png(tmp_path / "out" / "cropped" / f"{name}.png"), cropped)
            assert exam["best_center"][view] == [stages["best_center"]]


def test_bad_input_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert run_cli([str(tmp_path / "notes.txt"), str(tmp_path / "out")]) == 2
    assert "not an exam list" in capsys.readouterr().err
    assert run_cli([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
