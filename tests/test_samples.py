"""``data_samples/``: exactly what the code makes, listed in its manifest, small and documented."""

import csv

import pytest

from course_lib import samples
from course_lib.cli import build_parser
from course_lib.samples import (
    DATA_SAMPLES,
    MANIFEST_NAME,
    README_NAME,
    build_samples,
    compare_samples,
    file_manifest,
)

MAX_TOTAL_BYTES = 15_000_000


def _samples_parser():
    """The ``course-kit`` parser (its ``samples`` sub-command is under test)."""
    return build_parser()


def test_committed_samples_are_what_the_code_makes():
    # `course-kit samples --check`: regenerate and compare every file, the manifest included.
    assert compare_samples(DATA_SAMPLES) == []


def test_manifest_lists_every_file_with_size_and_sha256():
    with open(DATA_SAMPLES / MANIFEST_NAME, newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == ["path", "bytes", "sha256"]
    assert rows == [[path, str(size), digest] for path, size, digest in file_manifest(DATA_SAMPLES)]


def test_samples_stay_small():
    total = sum(path.stat().st_size for path in DATA_SAMPLES.rglob("*") if path.is_file())
    assert total <= MAX_TOTAL_BYTES, f"data_samples holds {total / 1e6:.1f} MB"


def test_readme_has_a_section_for_every_folder_and_says_synthetic_cc0():
    readme = (DATA_SAMPLES / README_NAME).read_text(encoding="utf-8")
    headings = [line for line in readme.splitlines() if line.startswith("#")]
    top_level = {path.split("/")[0] for path, _, _ in file_manifest(DATA_SAMPLES)} | {MANIFEST_NAME}
    undocumented = [name for name in sorted(top_level) if not any(f"`{name}" in h for h in headings)]
    assert undocumented == []
    for phrase in ("synthetic", "CC0", "not for clinical use", "course-kit samples --check"):
        assert phrase.lower() in readme.lower()


def test_build_samples_replaces_the_folder_but_keeps_the_readme(tmp_path):
    dest = tmp_path / "data_samples"
    dest.mkdir()
    (dest / README_NAME).write_text("written by hand\n")
    (dest / MANIFEST_NAME).write_text("an old manifest\n")
    (dest / "stale.png").write_bytes(b"no longer made")
    rows = build_samples(dest)
    assert (dest / README_NAME).read_text() == "written by hand\n"
    assert not (dest / "stale.png").exists()
    assert rows == file_manifest(dest) == file_manifest(DATA_SAMPLES)
    assert (dest / MANIFEST_NAME).read_bytes() == (DATA_SAMPLES / MANIFEST_NAME).read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["data_samples"]  # no staging folder left


def test_build_samples_refuses_a_folder_that_is_not_a_samples_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=MANIFEST_NAME):
        build_samples(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_samples_check_prints_the_differences_and_exits_1(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(samples, "compare_samples", lambda dest: [f"differs: {dest} rescale/L-CC.dcm"])
    args = _samples_parser().parse_args(["samples", "--check", "--out", str(tmp_path)])
    assert args.run(args) == 1
    assert f"differs: {tmp_path} rescale/L-CC.dcm" in capsys.readouterr().out


def test_samples_check_exits_0_when_nothing_differs(monkeypatch):
    monkeypatch.setattr(samples, "compare_samples", lambda dest: [])
    args = _samples_parser().parse_args(["samples", "--check"])
    assert args.out == DATA_SAMPLES and args.run(args) == 0


def test_samples_command_builds_into_out(monkeypatch, capsys, tmp_path):
    built = []
    rows = [("a.png", 2_000_000, "0" * 64)]
    monkeypatch.setattr(samples, "build_samples", lambda dest: built.append(dest) or rows)
    args = _samples_parser().parse_args(["samples", "--out", str(tmp_path)])
    assert args.run(args) == 0
    assert built == [tmp_path] and "wrote 1 files (2.0 MB)" in capsys.readouterr().out
