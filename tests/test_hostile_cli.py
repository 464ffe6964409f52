"""Hostile inputs to the shared command-line error handling, exam lists and the registry.

Each command-line case asserts the exit code, that the message names the file (or the bad
value), that no input changed and that nothing was written outside the output folder
(:func:`hostile_sandbox.run_case`).
"""

import json
import os
import pickle

import numpy as np
import pytest

from hostile_sandbox import run_case

from course_lib import data
from course_lib.cli import error_message
from course_lib.data import registry
from course_lib.exam_list import ExamListError, cancer_label, read_exam_list, write_exam_list
from course_lib.phantoms.cbis_ddsm_tree import build_cbis_ddsm_phantom_tree

SMALL_ARGS = ["--window", "384", "256", "--crop-buffer", "6", "--crop-iterations", "12", "--processes", "1"]
EXAM = {"horizontal_flip": "NO", "L-CC": ["0_L-CC"], "R-CC": [], "L-MLO": [], "R-MLO": [],
        "cancer_label": cancer_label()}


# --- exam lists: every error names the file --------------------------------------------


def bad_exam_list(kind, folder):
    if kind == "json-as-pkl":
        path = folder / "exams.pkl"
        path.write_text(json.dumps([EXAM]))
    elif kind == "empty-pkl":
        path = folder / "exams.pkl"
        path.write_bytes(b"")
    elif kind == "truncated-pkl":
        path = folder / "exams.pkl"
        path.write_bytes(pickle.dumps([EXAM])[:-10])
    elif kind == "malformed-json":
        path = folder / "exams.json"
        path.write_text('[{"horizontal_flip": "NO",')
    elif kind == "binary-json":
        path = folder / "exams.json"
        path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    elif kind == "malicious-pkl":
        path = folder / "exams.pkl"
        path.write_bytes(b"cos\nsystem\n(S'touch " + str(folder / "ran.txt").encode() + b"'\ntR.")
    return path


@pytest.mark.parametrize("kind, says", [("json-as-pkl", "looks like JSON"), ("empty-pkl", "EOFError"),
                                        ("truncated-pkl", "not a readable exam-list pickle"),
                                        ("malformed-json", "not a JSON exam list"),
                                        ("binary-json", "not a JSON exam list"),
                                        ("malicious-pkl", "refused to load the global")])
def test_damaged_exam_lists_name_the_file(tmp_path, capsys, kind, says):
    path = bad_exam_list(kind, tmp_path)
    for argv in (["preprocess", path, tmp_path / "out", *SMALL_ARGS],
                 ["gmic", "predict", "--exam-list", path, "--output", tmp_path / "out"]):
        run_case(capsys, tmp_path, argv, code=2, names=[path, says], output=tmp_path / "out")
    assert not (tmp_path / "ran.txt").exists()


def test_nan_cannot_be_written_into_an_exam_list(tmp_path):
    exam = {**EXAM, "best_center": {"L-CC": [[np.float64("nan"), 3]], "R-CC": [], "L-MLO": [], "R-MLO": []}}
    with pytest.raises(ExamListError):
        write_exam_list(tmp_path / "exams.json", [exam])
    exam = {**EXAM, "note": float("inf")}
    with pytest.raises(ExamListError, match=r"exams\.json: cannot write NaN or infinity"):
        write_exam_list(tmp_path / "exams.json", [exam])
    assert not (tmp_path / "exams.json").exists()
    write_exam_list(tmp_path / "exams.json", [EXAM])
    assert read_exam_list(tmp_path / "exams.json") == [EXAM]


def test_a_cbis_ddsm_csv_with_a_renamed_column_is_named(tmp_path, capsys):
    build_cbis_ddsm_phantom_tree(tmp_path / "cbis", n_patients=1, seed=0, shape=(368, 240))
    csv_path = sorted((tmp_path / "cbis").rglob("calc_case_description_*.csv"))[0]
    csv_path.write_text(csv_path.read_text().replace("pathology", "Pathology ", 1))
    run_case(capsys, tmp_path, ["preprocess", tmp_path / "cbis", tmp_path / "out", *SMALL_ARGS], code=2,
             names=[csv_path, "'pathology'"], output=tmp_path / "out")


# --- the shared handler -----------------------------------------------------------------


def test_unknown_or_mis_cased_profiles_are_reported(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "Default")
    run_case(capsys, tmp_path, ["env"], code=2, names=["unknown profile 'Default'", "Did you mean 'default'"],
             output=None)


def test_error_messages_name_the_file_not_a_traceback():
    assert error_message(KeyError("pathology")).startswith("missing key 'pathology'")
    assert error_message(PermissionError(13, "Permission denied", "/data/x.dcm")) == "/data/x.dcm: permission denied"
    assert error_message(RuntimeError()) == "RuntimeError"


def test_debug_variable_shows_the_traceback(tmp_path, monkeypatch):
    from course_lib.cli import main

    monkeypatch.setenv("COURSE_KIT_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["preprocess", str(tmp_path / "missing"), str(tmp_path / "out")])


# --- the registry: caches that cannot be written ----------------------------------------

CONTENT = b"a small file standing in for a mammogram\n"


@pytest.fixture
def one_entry(tmp_path, monkeypatch):
    """A one-entry registry, its file in a mirror, a network that must not be used."""
    import hashlib

    entry = data.RegistryEntry("demo/file.png", "https://raw.githubusercontent.com/o/r/" + "a" * 40 + "/file.png",
                               f"sha256:{hashlib.sha256(CONTENT).hexdigest()}", len(CONTENT), "CC0", "-", "-")
    monkeypatch.setattr(registry, "load_registry", lambda: {entry.key: entry})
    mirror = tmp_path / "mirror"
    (mirror / entry.relative_path).parent.mkdir(parents=True)
    (mirror / entry.relative_path).write_bytes(CONTENT)
    monkeypatch.setenv(data.MIRROR_ENV_VAR, str(mirror))
    monkeypatch.setattr(registry, "_download", lambda *a: (_ for _ in ()).throw(ConnectionError("offline")))
    return entry, mirror


def test_a_cache_under_a_file_uses_the_mirror_in_place(tmp_path, monkeypatch, one_entry):
    entry, mirror = one_entry
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "cache" / "sub"))
    assert data.fetch(entry.key) == mirror / entry.relative_path
    assert (tmp_path / "cache").read_text().startswith("a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_uses_the_mirror_in_place(tmp_path, monkeypatch, one_entry):
    entry, mirror = one_entry
    (tmp_path / "cache").mkdir(mode=0o555)
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "cache"))
    assert data.fetch(entry.key) == mirror / entry.relative_path


def test_an_unwritable_cache_without_a_mirror_says_so(tmp_path, capsys, monkeypatch, one_entry):
    entry, _ = one_entry
    monkeypatch.delenv(data.MIRROR_ENV_VAR)
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "cache" / "sub"))
    with pytest.raises(registry.CacheNotWritableError, match=r"cannot write the data cache at .*cache/sub"):
        data.fetch(entry.key)
    _, err = run_case(capsys, tmp_path, ["fetch", entry.key], code=1, names=[entry.key], output=None)
    assert "download failed" not in err
