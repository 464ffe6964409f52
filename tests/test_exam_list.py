"""Exam lists: the legacy GMIC pickle, refusing unsafe pickles, JSON round trip, validation."""

import datetime
import json
import os
import pickle

import numpy as np
import pytest

from course_lib.exam_list import (
    VIEWS,
    ExamListError,
    UnsafePickleError,
    read_exam_list,
    validate_exam_list,
    write_exam_list,
)
from helpers import fetch_or_skip


def exam(**extra):
    """A valid exam before preprocessing, one image per view."""
    return {
        "horizontal_flip": "NO",
        **{view: [f"0_{view}"] for view in VIEWS},
        "cancer_label": {
            "benign": 1, "malignant": 0, "unknown": 0,
            "left_benign": 0, "right_benign": 1, "left_malignant": 0, "right_malignant": 0,
        },
        **extra,
    }


def preprocessed():
    """An exam after both stages, with the NumPy ints and tuples the official scripts write."""
    i = np.int64
    return exam(
        window_location={v: [(i(0), i(2023), i(0), i(801))] for v in VIEWS},
        rightmost_points={v: [((i(948), i(957)), i(750))] for v in VIEWS},
        bottommost_points={v: [(i(1972), (i(100), i(100)))] for v in VIEWS},
        distance_from_starting_side={v: [i(0)] for v in VIEWS},
        best_center={v: [(i(1011), i(-211))] for v in VIEWS},
    )


# --- the real GMIC pickle ---------------------------------------------------------------


@pytest.mark.mirror
def test_reads_the_official_exam_list():
    exams = read_exam_list(fetch_or_skip("gmic/sample_data/exam_list_before_cropping.pkl"))
    assert len(exams) == 4
    first = exams[0]
    assert first["horizontal_flip"] == "NO"
    assert {view: first[view] for view in VIEWS} == {view: [f"0_{view}"] for view in VIEWS}
    assert first["cancer_label"] == {
        "benign": 1, "malignant": 0, "unknown": 0,
        "left_benign": 0, "right_benign": 1, "left_malignant": 0, "right_malignant": 0,
    }
    assert first["L-CC_benign_seg"] == ["0_L-CC_benign"]  # listed though the file does not exist
    assert "best_center" not in first  # only added by preprocessing
    sides = [(e["cancer_label"]["left_malignant"], e["cancer_label"]["right_malignant"],
              e["cancer_label"]["right_benign"]) for e in exams]
    assert sides == [(0, 0, 1), (0, 1, 0), (0, 0, 1), (1, 0, 0)]
    assert all(e["horizontal_flip"] == "NO" for e in exams)


# --- pickles ----------------------------------------------------------------------------


def test_numpy_values_become_plain_python(tmp_path):
    path = tmp_path / "cropped.pkl"
    path.write_bytes(pickle.dumps([preprocessed()], protocol=4))
    [loaded] = read_exam_list(path)
    assert loaded["best_center"]["R-CC"] == [[1011, -211]]
    assert loaded["rightmost_points"]["L-CC"] == [[[948, 957], 750]]
    assert type(loaded["distance_from_starting_side"]["L-MLO"][0]) is int


def test_numpy_1_protocol_2_pickle_is_read(tmp_path):
    """Pickles written by NumPy 1 name numpy.core.multiarray and use _codecs.encode."""
    data = pickle.dumps([preprocessed()], protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"cnumpy.core.multiarray\nscalar" in data and b"_codecs" in data
    path = tmp_path / "legacy.pkl"
    path.write_bytes(data)
    assert read_exam_list(path)[0]["best_center"]["L-CC"] == [[1011, -211]]


def test_numpy_arrays_are_accepted(tmp_path):
    path = tmp_path / "arrays.pkl"
    path.write_bytes(pickle.dumps([exam(best_center={v: [np.array([3, 4])] for v in VIEWS})]))
    assert read_exam_list(path)[0]["best_center"]["L-CC"] == [[3, 4]]


class TouchFile:
    """Unpickling this runs os.system: what a malicious exam list could do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_before_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([exam(note=TouchFile(marker))]))
    with pytest.raises(UnsafePickleError, match=r"evil.pkl: refused to load the global (posix|nt)\.system"):
        read_exam_list(path)
    assert not marker.exists()


def test_other_classes_are_refused(tmp_path):
    path = tmp_path / "dated.pkl"
    path.write_bytes(pickle.dumps([exam(acquired=datetime.date(2020, 1, 1))]))
    with pytest.raises(UnsafePickleError, match="refused to load the global datetime.date"):
        read_exam_list(path)


# --- JSON -------------------------------------------------------------------------------


def test_json_round_trip(tmp_path):
    path = write_exam_list(tmp_path / "exams.json", [preprocessed(), exam()])
    loaded = read_exam_list(path)
    assert loaded == json.loads(path.read_text())
    assert loaded[0]["window_location"]["R-MLO"] == [[0, 2023, 0, 801]]
    assert loaded[1] == exam()
    assert len(path.read_text().splitlines()) == 4  # "[", one line per exam, "]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exams.json"]  # no temp file left


def test_invalid_list_is_not_written(tmp_path):
    with pytest.raises(ExamListError):
        write_exam_list(tmp_path / "bad.json", [{"horizontal_flip": "NO"}])
    assert not (tmp_path / "bad.json").exists()


def test_unknown_suffix(tmp_path):
    path = tmp_path / "exams.yaml"
    path.write_text("[]")
    with pytest.raises(ExamListError, match="use .json or .pkl"):
        read_exam_list(path)


# --- validation -------------------------------------------------------------------------


def without(mapping, key):
    return {k: v for k, v in mapping.items() if k != key}


@pytest.mark.parametrize(
    "exams, message",
    [
        ({"L-CC": []}, "an exam list is a list of exams"),
        ([exam(), without(exam(), "R-MLO")], "exam 1: missing key 'R-MLO'"),
        ([without(exam(), "horizontal_flip")], "exam 0: missing key 'horizontal_flip'"),
        ([exam(horizontal_flip="no")], "exam 0: horizontal_flip must be 'NO' or 'YES'"),
        ([exam(**{"L-CC": "0_L-CC"})], "exam 0: 'L-CC' must be a list of image short names"),
        ([exam(cancer_label={"left_benign": 0})], "exam 0: missing key 'cancer_label.right_benign'"),
        ([exam(best_center={"L-CC": [[1, 2]]})], "exam 0: missing key 'best_center.R-CC'"),
        ([exam(best_center={v: [] for v in VIEWS})], "'best_center.L-CC' must be a list with one entry per image"),
        ([exam(window_location={v: [[0, 1, 2]] for v in VIEWS})], r"entries must be \[top, bottom, left, right\]"),
        ([exam(rightmost_points={v: [[1, 2]] for v in VIEWS})], r"entries must be \[\[y_first, y_last\], x\]"),
    ],
)
def test_validation_names_exam_and_key(exams, message):
    with pytest.raises(ExamListError, match=message) as raised:
        validate_exam_list(exams, "exams.json")
    assert str(raised.value).startswith("exams.json")
