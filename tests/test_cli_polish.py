"""``course-kit`` as a terminal user meets it: --version, plain help with an example per
command, a registry listing that fits 100 columns, one summary line for ``fetch --all``, a
light ``env`` that reports the active profile, and quiet ends when piped into ``head``."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

import course_lib
from course_lib import cli, data
from course_lib.data import registry

SCRIPT = Path(sys.executable).parent / "course-kit"


def every_command(parser, name="course-kit"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from every_command(subparser, f"{name} {sub}")


def leaf_commands():
    return [(name, parser) for name, parser in every_command(cli.build_parser())
            if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)]


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"course-kit {course_lib.__version__}"


@pytest.mark.parametrize("name, parser", list(every_command(cli.build_parser())), ids=lambda v: str(v))
def test_help_is_plain_text(name, parser):
    text = parser.format_help()
    assert "``" not in text and not re.search(r":(func|class|mod|meth|data|attr):`", text), f"{name}: reST markup"


KIT_COMMANDS = ("fetch", "run", "samples", "env", "preprocess")


@pytest.mark.parametrize("command", KIT_COMMANDS)
def test_each_kit_command_shows_an_example(command):
    parser = dict(leaf_commands())[f"course-kit {command}"]
    assert re.search(rf"example: course-kit {command}\b", parser.format_help()), f"course-kit {command}: no example"


def test_fetch_list_fits_100_columns_with_sizes(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path))
    monkeypatch.delenv(data.MIRROR_ENV_VAR, raising=False)
    assert cli.main(["fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert re.search(r"^course-kit/pretrained/gmic_phantom_quarter\.pt +28\.3 MB +kit +CC0$", out, flags=re.M)
    assert re.search(r"^gmic/LICENSE +34\.5 kB +remote +AGPL-3\.0$", out, flags=re.M)
    total = len(data.load_registry())
    assert f"{total} of {total} files" in out
    for key in data.load_registry():
        assert re.search(rf"^{re.escape(key)}( |$)", out, flags=re.M), f"{key} not listed whole"


def test_fetch_list_grep_filters(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path))
    assert cli.main(["fetch", "--list", "--grep", "BREAKHIS/SOB_M"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines()[1:] if line.startswith("breakhis/")]
    expected = [k for k in data.load_registry() if re.search("breakhis/sob_m", k, re.I)]
    assert listed == expected and expected
    assert f"{len(expected)} of {len(data.load_registry())} files" in out
    assert cli.main(["fetch", "--list", "--grep", "("]) == 2
    assert "not a regular expression" in capsys.readouterr().err


def test_fetch_all_ends_with_one_summary_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path))
    monkeypatch.delenv(data.MIRROR_ENV_VAR, raising=False)
    monkeypatch.setattr(registry, "_download", lambda *a: (_ for _ in ()).throw(ConnectionError("offline")))
    assert cli.main(["fetch", "--all"]) == 1
    captured = capsys.readouterr()
    total = len(data.load_registry())
    kit = sum(1 for e in data.load_registry().values() if e.checkout_path is not None and e.checkout_path.is_file())
    assert kit >= 1
    summary = captured.out.strip().splitlines()
    assert len(summary) == 1
    assert summary[0].startswith(f"{total} files: 0 fetched, {kit} already cached, {total - kit} unavailable, 0 corrupt")
    errors = captured.err.splitlines()
    assert len(errors) == total - kit and all(line.startswith("unavailable: ") for line in errors)
    assert "Traceback" not in captured.err


def test_env_imports_no_framework_and_reports_the_profile():
    code = ("import sys; from course_lib import cli; cli.main(['env']); "
            "print('frameworks:', sorted({'torch', 'tensorflow', 'keras'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "COURSE_PROFILE": "smoke"})
    assert out.returncode == 0, out.stderr
    assert "frameworks: []" in out.stdout
    assert re.search(r"^profile +smoke$", out.stdout, flags=re.M)
    assert re.search(r"^device +(CPU|GPU): ", out.stdout, flags=re.M)


def test_env_frameworks_asks_the_framework(capsys):
    pytest.importorskip("torch")
    assert cli.main(["env", "--frameworks"]) == 0
    assert re.search(r"^device +(cpu|cuda)", capsys.readouterr().out, flags=re.M)


@pytest.mark.skipif(not SCRIPT.is_file(), reason="no course-kit script beside this Python")
@pytest.mark.parametrize("command", ["fetch --list", "env", "--help", "gmic --help"])
def test_piped_into_head_ends_quietly(command):
    out = subprocess.run(f"'{SCRIPT}' {command} | head -1", shell=True, capture_output=True, text=True, timeout=120)
    assert out.stdout.count("\n") == 1
    assert "Error" not in out.stderr and "Broken pipe" not in out.stderr and "Traceback" not in out.stderr, out.stderr
