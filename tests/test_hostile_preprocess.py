"""Hostile inputs to ``course-kit preprocess`` (issue "Hostile inputs and faults").

Every case asserts the exit code, that the message names the file, that no input changed
and that nothing was written outside the output folder (:func:`hostile_sandbox.run_case`).
"""

import json
import os
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from hostile_sandbox import run_case

from course_lib.batch import BatchItem, run_batch, safe_name
from course_lib.dicom import to_png16
from course_lib.exam_list import VIEWS, cancer_label, read_exam_list
from course_lib.io import write_png
from course_lib.phantoms.dicom_writer import write_phantom_dicom
from course_lib.phantoms.mammogram import make_mammogram

SHAPE = (368, 240)
SMALL_ARGS = ["--window", "384", "256", "--crop-buffer", "6", "--crop-iterations", "12", "--processes", "1"]


def phantom(seed, view):
    side, position = view.split("-")
    return make_mammogram(seed, position, side, SHAPE).image


def dicom_exam(folder, patient="SYNTH-0001", seed=10):
    paths = {}
    for number, view in enumerate(VIEWS):
        side, position = view.split("-")
        path = folder / patient / f"{number}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        paths[view] = write_phantom_dicom(path, phantom(seed + number, view), position, side, patient_id=patient)
    return paths


def png_exam_list(folder, names=None, flip="NO"):
    """An exam list ``folder/exams.json`` with images ``folder/images/<name>.png``."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    names = names or {view: f"0_{view}" for view in VIEWS}
    for number, view in enumerate(VIEWS):
        write_png(images / f"0_{view}.png", to_png16(phantom(50 + number, view), 12))
    exams = [{"horizontal_flip": flip, **{view: [names[view]] for view in VIEWS}, "cancer_label": cancer_label()}]
    (folder / "exams.json").write_text(json.dumps(exams))
    return folder / "exams.json"


def report_of(out):
    return pd.read_csv(out / "report.csv")


# --- bad 1, 6: exam-list short names -----------------------------------------------------


@pytest.mark.parametrize("name", ["../../escaped", "/outside/absolute", ".hidden", "a/b"])
def test_unsafe_short_names_in_an_exam_list_are_refused(tmp_path, capsys, name):
    exams = png_exam_list(tmp_path / "list", {**{v: f"0_{v}" for v in VIEWS}, "L-CC": name})
    run_case(capsys, tmp_path, ["preprocess", exams, tmp_path / "out", *SMALL_ARGS], code=2,
             names=[exams, "unsafe image short name"], output=tmp_path / "out")


def test_a_short_name_reused_with_another_view_is_refused(tmp_path, capsys):
    exams_path = png_exam_list(tmp_path / "list")
    exams = json.loads(exams_path.read_text())
    swapped = {**exams[0], "L-CC": exams[0]["R-CC"], "R-CC": exams[0]["L-CC"]}
    exams_path.write_text(json.dumps([exams[0], swapped]))
    run_case(capsys, tmp_path, ["preprocess", exams_path, tmp_path / "out", *SMALL_ARGS], code=2,
             names=[exams_path, "0_R-CC", "one image has one view"], output=tmp_path / "out")


def test_a_short_name_reused_in_the_same_view_is_done_once(tmp_path, capsys):
    exams_path = png_exam_list(tmp_path / "list")
    exams = json.loads(exams_path.read_text())
    exams_path.write_text(json.dumps([exams[0], exams[0]]))
    run_case(capsys, tmp_path, ["preprocess", exams_path, tmp_path / "out", *SMALL_ARGS], code=0,
             names=["4 ok"], output=tmp_path / "out")
    first, second = read_exam_list(tmp_path / "out" / "exam_list.json")
    assert first["best_center"] == second["best_center"]


# --- bad 2: inputs destroyed ------------------------------------------------------------


def test_image_dir_inside_the_output_folder_is_refused(tmp_path, capsys):
    exams = png_exam_list(tmp_path / "list")
    out = tmp_path / "out"
    run_case(capsys, tmp_path, ["preprocess", exams, out, *SMALL_ARGS], code=0, names=["4 ok"], output=out)
    # The crops as the "originals" of a second run into the same folder: it would overwrite them.
    run_case(capsys, tmp_path, ["preprocess", out / "exam_list.json", tmp_path / "again", "--image-dir",
                                out / "cropped", *SMALL_ARGS], code=0, names=["4 ok"], output=tmp_path / "again")
    run_case(capsys, tmp_path, ["preprocess", exams, out, "--image-dir", out / "cropped", *SMALL_ARGS], code=2,
             names=[out / "cropped", "inside the output folder"], output=None)


def test_an_exam_list_inside_its_output_folder_is_refused(tmp_path, capsys):
    exams = png_exam_list(tmp_path / "list")
    run_case(capsys, tmp_path, ["preprocess", exams, tmp_path / "list", "--image-dir", tmp_path / "list" / "images",
                                *SMALL_ARGS], code=2, names=[exams, "inside the output folder"], output=None)


def test_an_input_linked_to_an_output_path_is_refused(tmp_path, capsys):
    exams = png_exam_list(tmp_path / "list")
    out = tmp_path / "out"
    (out / "cropped").mkdir(parents=True)
    image = tmp_path / "list" / "images" / "0_L-CC.png"
    target = out / "cropped" / "0_L-CC.png"
    os.replace(image, target)
    image.symlink_to(target)
    run_case(capsys, tmp_path, ["preprocess", exams, out, *SMALL_ARGS], code=2,
             names=[image, "inside the output folder"], output=None)


def test_output_folder_equal_to_the_input_folder_is_refused(tmp_path, capsys):
    dicom_exam(tmp_path / "dicoms")
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "dicoms", tmp_path / "dicoms", *SMALL_ARGS], code=2,
             names=[tmp_path / "dicoms", "is the input folder"], output=None)
    exams = png_exam_list(tmp_path / "list")
    run_case(capsys, tmp_path, ["preprocess", exams, tmp_path / "list" / "images", *SMALL_ARGS], code=2,
             names=["is the input folder"], output=None)


# --- bad 3: laterality ------------------------------------------------------------------


def test_a_left_breast_tagged_right_is_reported_and_can_be_overridden(tmp_path, capsys):
    paths = dicom_exam(tmp_path / "dicoms")
    wrong = Path(paths["L-CC"])
    write_phantom_dicom(wrong, phantom(10, "L-CC"), "CC", "R", patient_id="SYNTH-0001")  # a left breast tagged R
    out = tmp_path / "out"
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "dicoms", out, *SMALL_ARGS], code=1,
             names=["3 ok", wrong, "chest wall", f"--laterality {wrong.name}=L"], output=out)
    report = report_of(out).set_index("input")
    assert report.loc[str(wrong), "status"] == "failed"
    (exam,) = read_exam_list(out / "exam_list.json")
    assert exam["L-CC"] == [] and any("chest wall" in problem for problem in exam["problems"])

    # The tag overridden for that file: the image is cropped as the left breast it is.
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "dicoms", out, *SMALL_ARGS, "--laterality",
                                f"{wrong.name}=L"], code=0, names=["0 failed"], output=out)
    (exam,) = read_exam_list(out / "exam_list.json")
    assert exam["L-CC"] == ["SYNTH-0001_L-CC"] and exam["distance_from_starting_side"]["L-CC"][0] < 20


def test_a_laterality_override_for_no_input_is_refused(tmp_path, capsys):
    dicom_exam(tmp_path / "dicoms")
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "dicoms", tmp_path / "out", *SMALL_ARGS,
                                "--laterality", "nothere.dcm=L"], code=2, names=["nothere.dcm"], output=tmp_path / "out")


# --- bad 4: bits above BitsStored -------------------------------------------------------


def test_values_above_bits_stored_fail_that_file(tmp_path, capsys):
    paths = dicom_exam(tmp_path / "dicoms")
    ds = pydicom.dcmread(paths["R-MLO"])
    ds.BitsStored, ds.HighBit = 8, 7  # the values stay 12-bit
    ds.save_as(paths["R-MLO"])
    out = tmp_path / "out"
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "dicoms", out, *SMALL_ARGS], code=1,
             names=["3 ok", "1 failed"], output=out)
    reason = report_of(out).set_index("input").loc[str(paths["R-MLO"]), "reason"]
    assert "Bits Stored is 8" in reason and str(paths["R-MLO"]) in reason


# --- weak: argument ranges, folders, exams ----------------------------------------------


@pytest.mark.parametrize("option, value", [("--window", ["0", "256"]), ("--window", ["384", "-1"]),
                                           ("--crop-buffer", ["-5"]), ("--crop-iterations", ["0"]),
                                           ("--processes", ["0"])])
def test_out_of_range_arguments_are_usage_errors(tmp_path, capsys, option, value):
    dicom_exam(tmp_path / "dicoms")
    argv = ["preprocess", tmp_path / "dicoms", tmp_path / "out", *SMALL_ARGS, option, *value]
    run_case(capsys, tmp_path, argv, code=2, names=[option, "must be"], output=None)
    assert not (tmp_path / "out").exists()


def test_an_input_folder_without_usable_files_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "empty", tmp_path / "out"], code=2,
             names=["no usable image", tmp_path / "empty"], output=tmp_path / "out")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.dcm").write_text("not an image")
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "junk", tmp_path / "out"], code=2,
             names=["no usable image", "readme.dcm"], output=tmp_path / "out")


def test_a_fifo_among_the_inputs_is_reported_not_read(tmp_path, capsys):
    dicom_exam(tmp_path / "dicoms")
    fifo = tmp_path / "dicoms" / "SYNTH-0001" / "pipe.dcm"
    os.mkfifo(fifo)  # opening it for reading would block the run forever
    out = tmp_path / "out"
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "dicoms", out, *SMALL_ARGS], code=1,
             names=["4 ok", "1 failed"], output=out)
    assert "not a regular file" in report_of(out).set_index("input").loc[str(fifo), "reason"]


def test_cbis_ddsm_dicoms_are_grouped_by_patient(tmp_path, capsys):
    for number, view in enumerate(VIEWS):
        side, position = view.split("-")
        folder = tmp_path / "cbis" / f"Mass-Training_P_00001_{'LEFT' if side == 'L' else 'RIGHT'}_{position}"
        folder.mkdir(parents=True)
        path = write_phantom_dicom(folder / "1-1.dcm", phantom(60 + number, view), position, side)
        ds = pydicom.dcmread(path)
        ds.PatientID = folder.name
        ds.StudyInstanceUID = pydicom.uid.generate_uid()  # CBIS-DDSM: one study per image
        ds.save_as(path)
    out = tmp_path / "out"
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "cbis", out, "--input-kind", "dicom", *SMALL_ARGS],
             code=0, names=["4 ok"], output=out)
    (exam,) = read_exam_list(out / "exam_list.json")
    assert exam["patient_id"] == "Mass-Training_P_00001"
    assert all(exam[view] == [f"Mass-Training_P_00001_{view}"] for view in VIEWS)


def test_incomplete_exams_are_counted_in_the_summary_and_exit_code(tmp_path, capsys):
    paths = dicom_exam(tmp_path / "dicoms")
    Path(paths["R-MLO"]).unlink()  # an exam without one of its four views, every image fine
    out = tmp_path / "out"
    _, err = run_case(capsys, tmp_path, ["preprocess", tmp_path / "dicoms", out, *SMALL_ARGS], code=1,
                      names=["3 ok, 0 skipped, 0 failed", "incomplete exam SYNTH-0001", "R-MLO: no image"],
                      output=out)
    assert "1 incomplete exam(s)" in err


# --- weak: the batch engine -------------------------------------------------------------


def copy_step(item, output_dir, settings):
    """A batch step: the source's bytes, reversed, as ``<name>.bin``."""
    data = open(item.source, "rb").read()
    (output_dir / f"{item.name}.bin").write_bytes(data[::-1])
    return {"outputs": [f"{item.name}.bin"], "size": len(data)}


def test_a_state_record_missing_a_key_is_redone(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    items = [BatchItem("a", str(tmp_path / "a.txt"))]
    run_batch(items, copy_step, tmp_path / "out", {})
    record_path = tmp_path / "out" / ".state" / "a.json"
    for key in ("result", "outputs", "sha256"):
        record = json.loads(record_path.read_text())
        del record[key]
        record_path.write_text(json.dumps(record))
        (row,) = run_batch(items, copy_step, tmp_path / "out", {}).rows
        assert row["status"] == "ok", (key, row)


def test_a_changed_input_with_the_same_size_and_mtime_is_redone(tmp_path):
    source = tmp_path / "a.txt"
    source.write_text("alpha")
    items = [BatchItem("a", str(source))]
    run_batch(items, copy_step, tmp_path / "out", {})
    stat = source.stat()
    source.write_text("omega")  # same size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime
    (row,) = run_batch(items, copy_step, tmp_path / "out", {}).rows
    assert row["status"] == "ok" and (tmp_path / "out" / "a.bin").read_text() == "agemo"


def test_stale_temporary_files_are_removed_at_start(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    stale = tmp_path / "out" / "cropped" / ".a.png.k3j9x_2q.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a PNG")
    kept = tmp_path / "out" / "cropped" / ".notes.tmp"  # not a name atomic_output makes
    kept.write_text("mine")
    run_batch([BatchItem("a", str(tmp_path / "a.txt"))], copy_step, tmp_path / "out", {})
    assert not stale.exists() and kept.exists()


def test_file_names_over_the_file_system_limit_are_shortened(tmp_path):
    long = "P_" + "0123456789" * 40 + "_L-CC"
    name = safe_name(long)
    assert len(name) <= 150 and name != safe_name(long.replace("P_", "Q_"))
    (tmp_path / "a.txt").write_text("alpha")
    (row,) = run_batch([BatchItem(name, str(tmp_path / "a.txt"))], copy_step, tmp_path / "out", {}).rows
    assert row["status"] == "ok" and (tmp_path / "out" / f"{name}.bin").is_file()


def test_an_image_too_small_for_the_crop_says_so(tmp_path, capsys):
    exams = png_exam_list(tmp_path / "list")
    tiny = tmp_path / "list" / "images" / "0_L-CC.png"
    write_png(tiny, to_png16(phantom(50, "L-CC")[::16, ::16], 12))  # 23 x 15 pixels
    out = tmp_path / "out"
    run_case(capsys, tmp_path, ["preprocess", exams, out, *SMALL_ARGS], code=1, names=["3 ok", "1 failed"], output=out)
    reason = report_of(out).set_index("input").loc[str(tiny), "reason"]
    assert "too small for 12 erosions" in reason and str(tiny) in reason and "no breast" not in reason
