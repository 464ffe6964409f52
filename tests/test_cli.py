"""The ``course-kit`` command line."""

import subprocess
import sys
from pathlib import Path

import pytest

from course_lib import cli, data
from course_lib.data import registry


def test_fetch_list_shows_keys_licence_and_availability(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path))
    monkeypatch.delenv(data.MIRROR_ENV_VAR, raising=False)
    assert cli.main(["fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert "gmic/models/sample_model_1.p" in out
    assert "AGPL-3.0" in out and "BSD-2-Clause" in out
    assert "remote" in out and "COURSE_DATA_MIRROR" in out


def test_fetch_keys_prints_the_paths(capsys, tmp_path, monkeypatch):
    key = "gmic/sample_data/images/0_L-CC.png"
    target = tmp_path / "cached.png"
    monkeypatch.setattr(data, "fetch", lambda k, progressbar=False: target if k == key else None)
    assert cli.main(["fetch", key]) == 0
    assert capsys.readouterr().out.strip() == str(target)


def test_fetch_reports_each_failure_and_goes_on(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path))
    monkeypatch.delenv(data.MIRROR_ENV_VAR, raising=False)
    monkeypatch.setattr(registry, "_download", lambda *a: (_ for _ in ()).throw(ConnectionError("offline")))
    assert cli.main(["fetch", "no/such-key", "gmic/models/sample_model_1.p"]) == 1
    err = capsys.readouterr().err
    assert "unknown data key 'no/such-key'" in err
    assert "sample_model_1.p" in err and "COURSE_DATA_MIRROR" in err


def test_fetch_without_keys_is_a_usage_error(capsys):
    assert cli.main(["fetch"]) == 2


def test_console_script_is_installed():
    # The installed entry point, not the module: it lives beside the interpreter.
    script = Path(sys.executable).parent / "course-kit"
    assert script.is_file(), f"no course-kit script beside {sys.executable}: pip install -e . installs it"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("fetch", "preprocess", "samples", "run", "env", "gmic"):
        assert command in out.stdout


def test_env_command(capsys):
    assert cli.main(["env"]) == 0
    assert "numpy" in capsys.readouterr().out


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit) as exit_:
        cli.main(["frobnicate"])
    assert exit_.value.code == 2


@pytest.mark.notebook
def test_run_executes_a_notebook_and_writes_the_index(tmp_path, capsys):
    # `make course` is `course-kit run`: one notebook in the smoke profile, end to end.
    from course_lib.paths import NOTEBOOKS

    notebook = NOTEBOOKS / "00_getting_started.ipynb"
    assert cli.main(["run", str(notebook), "--profile", "smoke", "--out", str(tmp_path), "--no-html"]) == 0
    assert (tmp_path / "index.html").is_file() and (tmp_path / notebook.name).is_file()
    assert "00_getting_started  smoke    ok" in capsys.readouterr().out
