"""The kit's download registry: every remote file, pinned and hash-checked.

``registry.csv`` beside this module lists each file the kit uses: a key, a URL pinned to
a commit, a hash (``sha256:...``, or ``gitsha1:...`` for files known only by their git
blob id), the licence, a citation and a one-line description.

:func:`fetch` resolves a key in this order and checks the hash before returning:

0. for the kit's own files (``pretrained/``), this checkout;
1. the local cache, ``$COURSE_DATA_DIR`` (default: the OS cache folder, see :func:`cache_dir`);
2. an offline mirror, ``$COURSE_DATA_MIRROR``: a folder laid out as ``OWNER/REPO/COMMIT/PATH``,
   the path of the raw URL, so a workshop can serve every file from a USB stick;
3. the network (through pooch).

The cache uses the mirror's layout too, so a filled cache is itself a mirror: copy it
to a stick and point ``COURSE_DATA_MIRROR`` at the copy.

A cache that cannot be written (read-only, or a path under a file) is not a download
failure: a mirror copy is then used in place (hash-checked), and otherwise
:class:`CacheNotWritableError` says which folder and how to choose another.
"""

import csv
import difflib
import functools
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from course_lib.io import atomic_output
from course_lib.paths import checkout_file
from course_lib.progress import is_shown, progress_bar

REGISTRY_FILE = Path(__file__).with_name("registry.csv")
#: Files of the kit's own repository (``pretrained/``) are used from the checkout when present.
KIT_REPOSITORY = "breast-imaging-course/course-kit"
CACHE_ENV_VAR = "COURSE_DATA_DIR"
MIRROR_ENV_VAR = "COURSE_DATA_MIRROR"
HASH_ALGORITHMS = ("sha256", "gitsha1")
#: A download's byte bar appears after this many seconds: quick downloads, and attempts that
#: fail (offline), draw none (no empty widget in a notebook's skip-notice cell).
DOWNLOAD_BAR_DELAY = 0.5


class UnknownKeyError(LookupError):
    """A key that is not in the registry."""


class HashMismatchError(RuntimeError):
    """A file whose content does not match its registered hash."""


class DataUnavailableError(RuntimeError):
    """A file that is neither cached, nor in the mirror, nor downloadable."""


class CacheNotWritableError(DataUnavailableError):
    """The local cache folder cannot be created or written."""


def _cache_problem(key, target, error):
    return CacheNotWritableError(
        f"cannot get {key!r}: cannot write the data cache at {target.parent} ({type(error).__name__}: "
        f"{getattr(error, 'strerror', None) or error}). Set {CACHE_ENV_VAR} to a writable folder "
        f"(e.g. {CACHE_ENV_VAR}=$HOME/course-data), or {MIRROR_ENV_VAR} to a folder that holds the file."
    )


@dataclass(frozen=True)
class RegistryEntry:
    """One remote file of the registry."""

    key: str
    url: str
    hash: str
    size: int | None
    licence: str
    citation: str
    description: str

    @property
    def relative_path(self):
        """``OWNER/REPO/COMMIT/PATH``: the URL's path, used by the mirror and the cache."""
        return urlparse(self.url).path.lstrip("/")

    @property
    def checkout_path(self):
        """Where a file of the kit's own repository lies in this checkout (None: not a kit
        file, or a wheel install, whose site-packages hold no ``pretrained/``)."""
        parts = self.relative_path.split("/", 3)
        return checkout_file(parts[3]) if len(parts) == 4 and "/".join(parts[:2]) == KIT_REPOSITORY else None


@functools.cache
def load_registry(path=REGISTRY_FILE):
    """Read the registry CSV into a dict key -> :class:`RegistryEntry`."""
    entries = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            size = int(row["size"]) if row["size"] else None
            entries[row["key"]] = RegistryEntry(
                row["key"], row["url"], row["hash"], size,
                row["licence"], row["citation"], row["description"],
            )
    return entries


def get_entry(key):
    """Return the :class:`RegistryEntry` of ``key``; an unknown key lists the closest ones."""
    registry = load_registry()
    if key in registry:
        return registry[key]
    close = difflib.get_close_matches(key, registry, n=5, cutoff=0.4)
    if not close:
        prefix = key.split("/", 1)[0]
        close = [k for k in registry if k.startswith(prefix)][:5]
    hint = ("closest keys: " + ", ".join(close)) if close else "no similar key"
    raise UnknownKeyError(
        f"unknown data key {key!r} ({hint}). `course-kit fetch --list` shows every key."
    )


def cache_dir():
    """The local cache: ``$COURSE_DATA_DIR``, else the OS cache folder of ``course-kit``."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    import pooch

    return Path(pooch.os_cache("course-kit"))


def mirror_dir():
    """The offline mirror given by ``$COURSE_DATA_MIRROR``, or None."""
    configured = os.environ.get(MIRROR_ENV_VAR)
    return Path(configured).expanduser() if configured else None


def cached_path(key):
    """Where ``key`` lives (or would live) in the local cache."""
    return cache_dir() / get_entry(key).relative_path


def file_hash(path, algorithm):
    """Hex digest of a file: ``sha256``, or ``gitsha1`` = sha1(b"blob <size>\\0" + bytes)."""
    if algorithm == "sha256":
        digest = hashlib.sha256()
    elif algorithm == "gitsha1":
        digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    else:
        raise ValueError(f"unknown hash algorithm {algorithm!r}; use one of {HASH_ALGORITHMS}")
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_matches(path, entry):
    algorithm, expected = entry.hash.split(":", 1)
    actual = file_hash(path, algorithm)
    return actual == expected, f"{algorithm}:{actual}"


def _set_aside(path, actual):
    """Move a corrupt file out of the way so that it is never used, and return its new path."""
    bad = path.with_name(f"{path.name}.bad-{actual.split(':', 1)[1][:12]}")
    os.replace(path, bad)
    return bad


class _PoochProgress:
    """The bar interface pooch drives (``total``, ``update``, ``reset``, ``close``), on a kit bar.

    pooch ends a download with ``reset()`` then ``update(total)`` to fill the bar; here that
    moves the bar to the total (tqdm's ``reset`` would redraw it at once, before its delay).
    """

    def __init__(self, bar):
        self.bar, self.filling = bar, False

    @property
    def total(self):
        return self.bar.total

    @total.setter
    def total(self, value):  # the server's Content-Length; 0 when it sent none
        self.bar.total = value or None

    def update(self, n):
        self.bar.update(n - self.bar.n if self.filling else n)

    def reset(self):
        self.filling = True

    def close(self):
        self.bar.close()


def _download(url, destination, progressbar):
    """Download ``url`` to ``destination`` with pooch (which writes atomically); ``progressbar``
    is a bar to advance by the bytes received, or False."""
    import pooch

    pooch.get_logger().setLevel("WARNING")
    pooch.retrieve(
        url,
        known_hash=None,  # checked by fetch(), which also knows git blob hashes
        fname=destination.name,
        path=destination.parent,
        downloader=pooch.HTTPDownloader(progressbar=progressbar, timeout=60),
    )


def locate(key):
    """Where ``key`` can be had right now without downloading: "cache", "mirror" or None.

    Existence only; :func:`fetch` checks the hash.
    """
    if cached_path(key).is_file():
        return "cache"
    mirror = mirror_dir()
    if mirror is not None and (mirror / get_entry(key).relative_path).is_file():
        return "mirror"
    return None


def fetch(key, progressbar=None):
    """Return the local path of registry file ``key``, fetching it if needed.

    Order: cache, then ``$COURSE_DATA_MIRROR``, then the network. The file's hash is
    checked before it is returned; a cached or downloaded file with the wrong hash is
    moved aside (``<name>.bad-<hash>``) and :class:`HashMismatchError` is raised.

    A download shows a bar of the bytes received (in a notebook or a terminal:
    :func:`course_lib.progress.is_shown`; ``progressbar=True`` or False decides instead).
    """
    entry = get_entry(key)
    target = cached_path(key)

    local = entry.checkout_path
    if local is not None and local.is_file() and _hash_matches(local, entry)[0]:
        return local  # the kit's own file, committed beside this code

    if target.is_file():
        ok, actual = _hash_matches(target, entry)
        if ok:
            return target
        bad = _set_aside(target, actual)
        raise HashMismatchError(
            f"cached file for {key!r} is corrupt: expected {entry.hash}, got {actual}. "
            f"It was moved aside to {bad}; run the fetch again to get a fresh copy."
        )

    mirror = mirror_dir()
    mirrored = mirror / entry.relative_path if mirror is not None else None
    if mirrored is not None and mirrored.is_file():
        ok, actual = _hash_matches(mirrored, entry)
        if not ok:
            raise HashMismatchError(
                f"mirror copy of {key!r} at {mirrored} has the wrong hash: expected "
                f"{entry.hash}, got {actual}. It was not used; replace it in the mirror."
            )
        try:
            with atomic_output(target) as tmp:
                shutil.copyfile(mirrored, tmp)
        except OSError:  # read-only or misplaced cache: the checked mirror copy serves in place
            return mirrored
        return target

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(target.parent, os.W_OK):
            raise PermissionError(13, "Permission denied", str(target.parent))
    except OSError as error:
        raise _cache_problem(key, target, error) from None
    shown = is_shown() if progressbar is None else bool(progressbar)
    try:
        with progress_bar(entry.size, key, "B", shown=shown, delay=DOWNLOAD_BAR_DELAY) as bar:
            _download(entry.url, target, _PoochProgress(bar) if shown else False)
    except Exception as error:  # no network, HTTP error, DNS failure, ...
        where = f"the mirror {mirror} has no {entry.relative_path}" if mirror else (
            f"{MIRROR_ENV_VAR} is not set"
        )
        raise DataUnavailableError(
            f"cannot get {key!r}: download of {entry.url} failed ({type(error).__name__}: "
            f"{error}) and {where}. Either place the file by hand at {target}, or set "
            f"{MIRROR_ENV_VAR} to a folder laid out as OWNER/REPO/COMMIT/PATH that holds it."
        ) from error

    ok, actual = _hash_matches(target, entry)
    if not ok:
        bad = _set_aside(target, actual)
        raise HashMismatchError(
            f"download of {key!r} from {entry.url} has the wrong hash: expected {entry.hash}, "
            f"got {actual}. It was moved aside to {bad} and not used."
        )
    return target


def try_fetch(key):
    """Like :func:`fetch`, but print why and return None when the file cannot be had.

    For notebooks, whose real-data sections are skipped (with the reason shown) on a
    machine that has neither the network nor a mirror.
    """
    try:
        return fetch(key)
    except DataUnavailableError:
        # The full error names local paths; a stored notebook output should not.
        print(f"[real data unavailable, section skipped] {key}: not in the cache, the mirror or the "
              f"network. `course-kit fetch {key}` says where to put it.")
        return None
