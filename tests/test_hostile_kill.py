"""SIGKILL in the middle of ``course-kit preprocess --processes 2``, then a rerun.

Killing the process group, or the parent alone, must leave no orphan worker, and the rerun
must remove the temporary files the killed run left and give outputs byte-identical to an
uninterrupted run.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_lib.exam_list import VIEWS
from course_lib.phantoms.dicom_writer import write_phantom_dicom
from course_lib.phantoms.mammogram import make_mammogram

psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and /proc: Linux")

SHAPE = (736, 480)
QUARTER_ARGS = ["--window", "768", "512", "--crop-buffer", "12", "--crop-iterations", "25", "--processes", "2"]
N_EXAMS = 4


@pytest.fixture(scope="module")
def dicoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicoms")
    for exam in range(N_EXAMS):
        for number, view in enumerate(VIEWS):
            side, position = view.split("-")
            image = make_mammogram(100 + 10 * exam + number, position, side, SHAPE).image
            path = root / f"SYNTH-{exam:04d}" / f"{number}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_phantom_dicom(path, image, position, side, patient_id=f"SYNTH-{exam:04d}")
    return root


def start(dicoms, out):
    """``course-kit preprocess`` in its own process group (session)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "course_lib.cli", "preprocess", str(dicoms), str(out), *QUARTER_ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)


def hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file() and p.name != "report.csv"}


def records(out):
    return len(list((out / ".state").glob("*.json"))) if (out / ".state").is_dir() else 0


def wait_for_workers(process, out, count=2, timeout=120):
    """The worker processes, once they exist and at least one image is done."""
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = parent.children(recursive=True)
        if len(children) >= count and records(out) >= 1:
            return children
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {process.stderr.read().decode()}")
        time.sleep(0.05)
    pytest.fail("no worker processes appeared")


def gone(processes, timeout=15):
    """True once none of ``processes`` runs (a zombie waiting for its reaper counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for proc in processes:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def reference(dicoms, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    process = start(dicoms, out)
    assert process.wait(timeout=600) == 0, process.stderr.read().decode()
    return hashes(out)


@pytest.mark.parametrize("whom", ["process group", "parent only"])
def test_sigkill_then_rerun_gives_identical_outputs_and_no_orphans(dicoms, reference, tmp_path, whom):
    out = tmp_path / "out"
    process = start(dicoms, out)
    workers = wait_for_workers(process, out)
    if whom == "process group":
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert records(out) < N_EXAMS * len(VIEWS), "the run finished before the kill: nothing was tested"
    assert gone(workers), f"orphan workers after killing the {whom}: {[p.pid for p in workers]}"

    stale = out / "cropped" / ".SYNTH-0000_L-CC.png.x1y2z3.tmp"  # as a kill mid-write leaves
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a PNG")
    rerun = start(dicoms, out)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read().decode()
    assert not list(out.rglob("*.tmp")), "temporary files left behind"
    assert hashes(out) == reference
