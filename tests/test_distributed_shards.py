"""Sharded preprocessing: ``--shard K/N`` tasks merged give what one unsharded run writes.

A folder of 12 phantom DICOM views (3 exams) and one unreadable file goes through GMIC's
preprocessing once unsharded and as 2 shards, merged; one shard is killed (SIGKILL) in the
middle of its batch and started again.
"""

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from course_lib.exam_list import VIEWS
from course_lib.gmic.config import GMICGeometry
from course_lib.gmic.preprocess import preprocess_target
from course_lib.phantoms.dicom_writer import write_phantom_dicom
from course_lib.phantoms.mammogram import make_mammogram
from course_lib.preprocessing.job import preprocess
from course_lib.preprocessing.shards import Shard, merge

SHAPE = (368, 240)
TARGET = preprocess_target(GMICGeometry.eighth())  # small phantoms, small window
KILL_AT_CALL = 3  # the killed shard finishes 2 images, then dies starting the third


def write_input(folder):
    for exam in range(3):
        patient = f"SYNTH-P{exam:03d}"
        for number, view in enumerate(VIEWS):
            side, position = view.split("-")
            phantom = make_mammogram(10 * exam + number, position, side, SHAPE)
            path = folder / patient / f"{number}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_phantom_dicom(path, phantom.image, position, side, patient_id=patient)
    (folder / "SYNTH-P009").mkdir()
    (folder / "SYNTH-P009" / "broken.dcm").write_bytes(b"not a DICOM file")  # a planning failure
    return folder


def outputs(folder):
    """{relative path: sha256} of the run's outputs (not the records, manifests or report)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and not {".state", ".shards"} & set(p.relative_to(folder).parts)
            and p.name != "report.csv"}


def without_timing(folder):
    return pd.read_csv(Path(folder) / "report.csv").drop(columns="seconds")


def killing_step(item, output_dir, settings, calls=[]):  # noqa: B006 (counts the calls of this process)
    calls.append(item.name)
    if len(calls) == KILL_AT_CALL:
        os.kill(os.getpid(), signal.SIGKILL)
    return TARGET.step(item, output_dir, settings)


def killed_shard(input_dir, output_dir, shard):
    """Run ``shard`` in a subprocess whose step kills it in the middle of the batch."""
    code = ("import sys; sys.path[:0] = [sys.argv[1]]\n"
            "import dataclasses, test_distributed_shards as t\n"
            "from course_lib.preprocessing.job import preprocess\n"
            "target = dataclasses.replace(t.TARGET, step=t.killing_step)\n"
            "from course_lib.preprocessing.shards import Shard\n"
            "preprocess(sys.argv[2], sys.argv[3], target, processes=1, shard=Shard.parse(sys.argv[4]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(input_dir),
                           str(output_dir), shard], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    input_dir = write_input(root / "dicoms")
    preprocess(input_dir, root / "single", TARGET, processes=1)
    return input_dir, root / "single"


def test_shard_choice_depends_on_the_name_alone():
    names = [f"P_{n:05d}_{view}" for n in range(200) for view in VIEWS]
    shards = [Shard(k, 4) for k in range(1, 5)]
    owners = [[shard.owns(name) for shard in shards] for name in names]
    assert all(row.count(True) == 1 for row in owners)
    sizes = [sum(row[k] for row in owners) for k in range(4)]
    assert min(sizes) > 150  # about 200 each
    with pytest.raises(ValueError, match="K/N"):
        Shard.parse("2-8")
    with pytest.raises(ValueError, match="between 1 and N"):
        Shard.parse("0/8")


def test_two_shards_in_one_folder_merge_into_the_single_run(single, tmp_path):
    input_dir, reference = single
    shared = tmp_path / "shared"
    reports = [preprocess(input_dir, shared, TARGET, processes=1, shard=Shard(k, 2)) for k in (1, 2)]
    assert not (shared / "exam_list.json").exists()  # only the merge writes it
    assert sum(len(r) for r in reports) == len(pd.read_csv(reference / "report.csv"))
    assert all(len(r[r.status == "ok"]) >= 1 for r in reports)
    merge([shared])
    assert (shared / "exam_list.json").read_bytes() == (reference / "exam_list.json").read_bytes()
    assert outputs(shared) == outputs(reference)
    pd.testing.assert_frame_equal(without_timing(shared), without_timing(reference))
    assert (without_timing(shared).status == "failed").sum() == 1  # the broken file, reported once


def test_a_killed_shard_resumes_and_the_merge_still_equals_the_single_run(single, tmp_path):
    input_dir, reference = single
    first, second = tmp_path / "task1", tmp_path / "task2"
    killed_shard(input_dir, first, "1/2")
    done_before_kill = sorted(p.stem for p in Shard(1, 2).folder(first).glob(".state/*.json"))
    assert len(done_before_kill) == KILL_AT_CALL - 1
    with pytest.raises(ValueError, match="no finished shard"):
        merge([first, second])
    preprocess(input_dir, second, TARGET, processes=1, shard=Shard(2, 2))
    with pytest.raises(ValueError, match=r"shard\(s\) 1/2 have not finished"):
        merge([first, second])
    resumed = preprocess(input_dir, first, TARGET, processes=1, shard=Shard(1, 2))
    assert sorted(resumed.short_name[resumed.status == "skipped"]) == done_before_kill
    merged = tmp_path / "merged"
    merge([first, second], merged)
    assert (merged / "exam_list.json").read_bytes() == (reference / "exam_list.json").read_bytes()
    assert outputs(merged) == outputs(reference)
    report, expected = without_timing(merged), without_timing(reference)
    # The resumed images say so ("skipped": done by an earlier run); nothing else differs.
    resumed_rows = report.short_name.isin(done_before_kill)
    assert (report.status[resumed_rows] == "skipped").all()
    expected.loc[resumed_rows, "status"] = "skipped"
    pd.testing.assert_frame_equal(report, expected)
    # The merged folder is a complete run: an unsharded run there has nothing left to do.
    again = preprocess(input_dir, merged, TARGET, processes=1)
    assert set(again.status) == {"skipped", "failed"}


def test_the_command_line_runs_an_array_job_and_merges_it(single, tmp_path, capsys):
    from course_lib.cli import main

    input_dir, reference = single
    out = tmp_path / "out"
    small = ["--window", "384", "256", "--crop-buffer", "6", "--crop-iterations", "12", "--processes", "1"]
    for task in ("2/2", "1/2"):  # the order tasks finish in does not matter
        assert main(["preprocess", str(input_dir), str(out), "--shard", task, *small]) in (0, 1)
        assert f"in shard {task}" in capsys.readouterr().out
    assert main(["preprocess", "--merge", str(out)]) == 1  # the broken file failed, as in the single run
    assert (out / "exam_list.json").read_bytes() == (reference / "exam_list.json").read_bytes()
    pd.testing.assert_frame_equal(without_timing(out), without_timing(reference))
    assert main(["preprocess", "--shard", "3/2", str(input_dir), str(tmp_path / "bad"), *small]) == 2
    assert "between 1 and N" in capsys.readouterr().err
