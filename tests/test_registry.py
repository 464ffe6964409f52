"""The download registry: resolution order, hash checks, and the errors users see."""

import functools
import hashlib
import http.server
import re
import shutil
import subprocess
import threading

import pytest

from course_lib import data, paths
from course_lib.exam_list import VIEWS
from course_lib.data import registry

CONTENT = b"a small file standing in for a mammogram\n"
SHA256 = hashlib.sha256(CONTENT).hexdigest()
REAL_DOWNLOAD = registry._download


def make_entry(key="demo/file.png", url="https://raw.githubusercontent.com/o/r/" + "a" * 40 + "/file.png",
               hash_=f"sha256:{SHA256}"):
    return data.RegistryEntry(key, url, hash_, len(CONTENT), "CC0", "Nobody 2026", "a test file")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty cache, no mirror, a one-entry registry, and a network that must not be used."""
    entry = make_entry()
    monkeypatch.setattr(registry, "load_registry", lambda: {entry.key: entry})
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.delenv(data.MIRROR_ENV_VAR, raising=False)

    def no_network(url, destination, progressbar):
        raise ConnectionError("network disabled in this test")

    monkeypatch.setattr(registry, "_download", no_network)
    return entry


def put(path, content=CONTENT):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --- the registry itself -------------------------------------------------------------

def test_every_entry_is_pinned_and_documented():
    entries = data.load_registry()
    assert len(entries) >= 80
    for key, entry in entries.items():
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/.+", entry.url), key
        assert re.fullmatch(r"sha256:[0-9a-f]{64}|gitsha1:[0-9a-f]{40}", entry.hash), key
        assert entry.licence and entry.citation and entry.description, key
        assert entry.url.endswith("/" + key.split("/", 1)[1]), key


def test_registry_holds_the_not_mirrored_official_weights_and_exams():
    keys = set(data.load_registry())
    for i in range(1, 6):
        assert f"gmic/models/sample_model_{i}.p" in keys
    for exam in (1, 2, 3):
        for view in VIEWS:
            assert f"gmic/sample_data/images/{exam}_{view}.png" in keys
    assert "infn-density/myproject/CC_R_model/weights-improvement-46-0.80.h5" in keys


def test_registry_covers_the_mirror_manifest():
    mirror = data.mirror_dir()
    manifest = mirror / "MANIFEST.md" if mirror else None
    if manifest is None or not manifest.is_file():
        pytest.skip("COURSE_DATA_MIRROR with MANIFEST.md not available")
    listed = {}
    for line in manifest.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[1].isdigit():
            listed[cells[0]] = cells[2]
    by_path = {e.relative_path: e for e in data.load_registry().values()}
    assert listed, "no rows parsed from MANIFEST.md"
    for path, sha in listed.items():
        assert by_path[path].hash == f"sha256:{sha}", path


# --- resolution order ------------------------------------------------------------------

def test_cache_hit_uses_the_cached_file(isolated):
    cached = put(data.cached_path(isolated.key))
    assert data.fetch(isolated.key) == cached
    assert data.locate(isolated.key) == "cache"


def test_mirror_hit_copies_into_the_cache(isolated, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    put(mirror / isolated.relative_path)
    monkeypatch.setenv(data.MIRROR_ENV_VAR, str(mirror))
    assert data.locate(isolated.key) == "mirror"
    path = data.fetch(isolated.key)
    assert path == data.cached_path(isolated.key)
    assert path.read_bytes() == CONTENT
    assert data.locate(isolated.key) == "cache"


def test_network_is_used_last_and_checked(isolated, tmp_path, monkeypatch):
    """A real HTTP download through pooch, from a server on the loopback interface."""
    served = put(tmp_path / "www" / "o" / "r" / "file.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entry = make_entry(url=f"http://127.0.0.1:{server.server_port}/o/r/file.png")
        monkeypatch.setattr(registry, "load_registry", lambda: {entry.key: entry})
        monkeypatch.setattr(registry, "_download", REAL_DOWNLOAD)
        path = data.fetch(entry.key)
        assert path.read_bytes() == served.read_bytes()
    finally:
        server.shutdown()


# --- hashes ------------------------------------------------------------------------------

def test_git_blob_sha1_matches_git(tmp_path):
    path = put(tmp_path / "blob.bin")
    expected = hashlib.sha1(b"blob %d\0" % len(CONTENT) + CONTENT).hexdigest()
    assert data.file_hash(path, "gitsha1") == expected
    if shutil.which("git"):
        out = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected
    empty = put(tmp_path / "empty", b"")
    assert data.file_hash(empty, "gitsha1") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_blob_sha1_entries_are_verified(isolated, monkeypatch):
    blob = hashlib.sha1(b"blob %d\0" % len(CONTENT) + CONTENT).hexdigest()
    entry = make_entry(hash_=f"gitsha1:{blob}")
    monkeypatch.setattr(registry, "load_registry", lambda: {entry.key: entry})
    put(data.cached_path(entry.key))
    assert data.fetch(entry.key).read_bytes() == CONTENT
    put(data.cached_path(entry.key), CONTENT + b"tampered")
    with pytest.raises(data.HashMismatchError, match=f"gitsha1:{blob}"):
        data.fetch(entry.key)


def test_corrupt_cached_file_is_moved_aside_never_used(isolated):
    cached = put(data.cached_path(isolated.key), b"truncated download")
    actual = hashlib.sha256(b"truncated download").hexdigest()
    with pytest.raises(data.HashMismatchError) as error:
        data.fetch(isolated.key)
    message = str(error.value)
    assert isolated.key in message and SHA256 in message and actual in message
    assert not cached.exists()
    assert list(cached.parent.glob(f"{cached.name}.bad-*"))


def test_corrupt_download_is_moved_aside(isolated, monkeypatch):
    def bad_download(url, destination, progressbar):
        put(destination, b"an HTML error page")

    monkeypatch.setattr(registry, "_download", bad_download)
    with pytest.raises(data.HashMismatchError, match="moved aside"):
        data.fetch(isolated.key)
    assert not data.cached_path(isolated.key).exists()


def test_corrupt_mirror_file_is_refused_and_left_alone(isolated, tmp_path, monkeypatch):
    mirrored = put(tmp_path / "mirror" / isolated.relative_path, b"bit rot")
    monkeypatch.setenv(data.MIRROR_ENV_VAR, str(tmp_path / "mirror"))
    with pytest.raises(data.HashMismatchError, match="mirror copy"):
        data.fetch(isolated.key)
    assert mirrored.read_bytes() == b"bit rot"
    assert not data.cached_path(isolated.key).exists()


# --- errors ------------------------------------------------------------------------------

def test_offline_without_mirror_says_where_to_put_the_file(isolated):
    with pytest.raises(data.DataUnavailableError) as error:
        data.fetch(isolated.key)
    message = str(error.value)
    assert isolated.url in message
    assert str(data.cached_path(isolated.key)) in message
    assert data.MIRROR_ENV_VAR in message


def test_offline_with_a_mirror_lacking_the_file(isolated, tmp_path, monkeypatch):
    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv(data.MIRROR_ENV_VAR, str(tmp_path / "mirror"))
    with pytest.raises(data.DataUnavailableError, match="has no o/r/"):
        data.fetch(isolated.key)


def test_unknown_key_lists_the_closest_keys():
    with pytest.raises(data.UnknownKeyError) as error:
        data.fetch("gmic/sample_data/images/0_L-C.png")
    assert "gmic/sample_data/images/0_L-CC.png" in str(error.value)


# --- the real mirror -----------------------------------------------------------------------

@pytest.mark.mirror
def test_real_gmic_mammogram_through_the_registry(registry_file):
    path = registry_file("gmic/sample_data/images/0_L-CC.png")
    assert data.file_hash(path, "sha256").startswith("a32931d5")


def test_kit_files_resolve_from_the_checkout(isolated, monkeypatch):
    """Files of the kit's own repository (pretrained weights) need no cache, mirror or network."""
    relative = "pretrained/README.md"
    local = paths.CHECKOUT / relative
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    entry = make_entry(key="course-kit/" + relative, hash_=f"sha256:{digest}",
                       url=f"https://raw.githubusercontent.com/{registry.KIT_REPOSITORY}/{'b' * 40}/{relative}")
    monkeypatch.setattr(registry, "load_registry", lambda: {entry.key: entry})
    assert data.fetch(entry.key) == local


def test_every_kit_file_in_the_registry_is_committed_with_its_hash():
    for entry in data.load_registry().values():
        if entry.checkout_path is not None:
            assert entry.checkout_path.is_file(), entry.key
            algorithm, expected = entry.hash.split(":")
            assert data.file_hash(entry.checkout_path, algorithm) == expected, entry.key


def test_try_fetch_skips_with_a_short_message(isolated, capsys):
    assert data.try_fetch(isolated.key) is None
    out = capsys.readouterr().out
    assert isolated.key in out and "course-kit fetch" in out and "/" + "tmp" not in out
