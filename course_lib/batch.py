"""The kit's batch engine: one per-image step over many inputs, resumable, parallel and atomic.

A pipeline supplies the *step*, the engine does the rest (``course-kit preprocess`` runs
GMIC's crop and centre, or the density model's 8-bit images, through it)::

    items = [BatchItem(safe_name(path.stem), str(path)) for path in sorted(folder.glob("*.png"))]
    report = run_batch(items, my_step, "out", settings={"size": 650}, processes=2)

``step(item, output_dir, settings) -> dict`` is a module-level function (worker processes
pickle it). It writes its files under ``output_dir`` atomically (:func:`course_lib.io.atomic_output`)
and returns a JSON-serialisable result whose ``"outputs"`` lists the files it wrote, relative
to ``output_dir``. It raises for a bad input, with a message naming the file: that item is
reported ``failed`` and the batch goes on.

Resuming
--------
After each item the engine writes ``OUTPUT/.state/<name>.json``: the source's size and
sha256, the item's options, the settings, the result and the sha256 of every output. An
item is ``skipped`` (its result taken from the record) when all of these still hold, so a
rerun after a crash, a kill or an edit redoes exactly the items whose inputs, settings or
outputs changed. The record is written after the outputs, both atomically. A record that
cannot be read back whole (damaged, or missing a key) is treated as absent: the item is redone.

Faults
------
Sources that are not regular files (a FIFO, a device, a folder) fail without being opened,
so that none can hang the run. Worker processes exit as soon as the process that started
them dies (a SIGKILL included), and a run first removes the temporary files that an
interrupted run left in the output folder.
"""

import hashlib
import json
import os
import re
import signal
import stat
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from course_lib.io import atomic_output, sha256_file
from course_lib.progress import progress_bar

__all__ = ["BatchItem", "BatchReport", "safe_name", "contained_path", "unique_name", "run_batch", "map_items",
           "remove_stale_temporary_files"]

STATE_FOLDER = ".state"
#: Longest name :func:`safe_name` returns: with a suffix and the temporary-file decoration
#: of :func:`course_lib.io.atomic_output` it stays well below the usual 255-byte limit.
MAX_NAME_LENGTH = 150
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: What :func:`course_lib.io.atomic_output` names its temporary files.
_TEMPORARY = re.compile(r"^\..+\.[^.]+\.tmp$")


def safe_name(text):
    """``text`` usable as a file name: characters other than letters, digits, ``.``, ``_``
    and ``-`` become ``_``, a leading ``.`` too (no hidden files, no ``..``), and a name
    longer than :data:`MAX_NAME_LENGTH` is shortened, ending in a hash of the whole text
    so that different long names stay different.

    >>> safe_name("P_00001 LEFT/CC"), safe_name("../etc/passwd")
    ('P_00001_LEFT_CC', '_._etc_passwd')
    >>> len(safe_name("x" * 300))
    150
    """
    name = _UNSAFE.sub("_", text)
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > MAX_NAME_LENGTH:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = f"{name[: MAX_NAME_LENGTH - 13]}_{digest}"
    return name or "_"


def contained_path(folder, relative):
    """``folder / relative``, refused (ValueError) unless it lies inside ``folder``.

    Both are resolved first (``..`` and symbolic links followed), so neither an absolute
    ``relative`` nor a link planted in ``folder`` can lead a write elsewhere.

    >>> contained_path("/data/out", "figures/0_L-CC.png").as_posix()
    '/data/out/figures/0_L-CC.png'
    >>> contained_path("/data/out", "../images/0_L-CC.png")
    Traceback (most recent call last):
    ...
    ValueError: ../images/0_L-CC.png lies outside /data/out (resolves to /data/images/0_L-CC.png); refused
    """
    root = Path(folder).resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise ValueError(f"{relative} lies outside {folder} (resolves to {path}); refused")
    return path


def unique_name(base, taken):
    """``base``, or ``base_2``, ``base_3``... whichever is not in ``taken`` yet; added to it.

    >>> taken = set()
    >>> unique_name("P1_L-CC", taken), unique_name("P1_L-CC", taken)
    ('P1_L-CC', 'P1_L-CC_2')
    """
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}_{number}"
    taken.add(name)
    return name


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch: a unique, safe ``name`` (the outputs' stem), the ``source``
    file it is read from, and the ``options`` that belong to it (e.g. its view)."""

    name: str
    source: str
    options: dict = field(default_factory=dict)


@dataclass
class BatchReport:
    """What a batch did: one row per item (name, source, status, reason, seconds), with status
    ``ok``, ``skipped`` (done by an earlier run) or ``failed``, and each finished item's result (``records``)."""

    rows: list
    records: dict  # name -> the step's result, for items that did not fail

    @property
    def failed(self):
        """The rows of the items that failed."""
        return [row for row in self.rows if row["status"] == "failed"]


def _plain(value):
    """``value`` as JSON reads it back (tuples become lists), for comparisons with records."""
    return json.loads(json.dumps(value))


def _fingerprint(item, settings):
    """What an item's outputs depend on: its source's bytes, its options and the settings."""
    status = os.stat(item.source)
    if not stat.S_ISREG(status.st_mode):  # a FIFO would block the read forever
        raise ValueError(f"{item.source} is not a regular file (a FIFO, device or folder); it was not read")
    return {
        "source": item.source,
        "size": status.st_size,
        "sha256": sha256_file(item.source),
        "options": _plain(item.options),
        "settings": _plain(settings),
    }


def _record_path(output_dir, name):
    return Path(output_dir) / STATE_FOLDER / f"{name}.json"


def _valid_record(item, output_dir, fingerprint):
    """The saved record of ``item`` if its fingerprint and every output still hold, else None."""
    path = _record_path(output_dir, item.name)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        outputs, _ = record["outputs"], record["result"]  # a record missing either is redone
        if any(record.get(key) != value for key, value in fingerprint.items()):
            return None
        if not all(sha256_file(Path(output_dir) / rel) == digest for rel, digest in outputs.items()):
            return None
        return record
    except (OSError, ValueError, KeyError, AttributeError, TypeError):  # absent or damaged: redo
        return None


def _run_item(item, step, output_dir, settings):
    """Report row of one item plus its ``result`` (None if it failed); never raises."""
    start = time.perf_counter()
    row = {"name": item.name, "source": item.source}
    try:
        if safe_name(item.name) != item.name:
            raise ValueError(f"unsafe name {item.name!r}: use letters, digits, '.', '_' and '-' only")
        fingerprint = _fingerprint(item, settings)  # before the step: a later change invalidates it
        record = _valid_record(item, output_dir, fingerprint)
        status = "ok" if record is None else "skipped"
        if record is None:
            result = dict(step(item, Path(output_dir), settings))
            outputs = {rel: sha256_file(Path(output_dir) / rel) for rel in result.pop("outputs", [])}
            record = {**fingerprint, "name": item.name, "outputs": outputs, "result": result}
            text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n"
            with atomic_output(_record_path(output_dir, item.name)) as tmp:
                tmp.write_text(text, encoding="utf-8")
            record = json.loads(text)  # tuples as lists, like a record read back
    except Exception as error:  # one bad file must not stop the batch
        reason = f"{type(error).__name__}: {error}"
        return {**row, "status": "failed", "reason": reason,
                "seconds": round(time.perf_counter() - start, 3), "result": None}
    return {**row, "status": status, "reason": None,
            "seconds": round(time.perf_counter() - start, 3), "result": record["result"]}


def _exit_with_parent(parent_pid):
    """Worker initializer: end this worker when the process that started it dies.

    On Linux the kernel sends SIGKILL at once (``PR_SET_PDEATHSIG``); a watcher thread
    checking the parent's id every half second covers the other systems.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # died before the line above ran
        os._exit(1)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def remove_stale_temporary_files(folder):
    """Delete the temporary files (``.<name>.<random>.tmp``) that an interrupted run left
    under ``folder``; returns their paths. Only names that :func:`~course_lib.io.atomic_output`
    makes are touched."""
    removed = []
    for path in sorted(Path(folder).rglob(".*.tmp")):
        if _TEMPORARY.match(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def map_items(function, items, processes=1, description="working"):
    """``[function(item) for item in items]`` with a progress bar, in ``processes`` worker
    processes when more than 1 (``function`` must then be picklable)."""
    items = list(items)
    with progress_bar(len(items), description) as bar:
        if processes <= 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(function(item))
                bar.update()
            return results
        with ProcessPoolExecutor(min(processes, len(items)), initializer=_exit_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(function, item) for item in items]
            for _ in as_completed(futures):
                bar.update()
            return [future.result() for future in futures]


def run_batch(items, step, output_dir, settings, processes=1, description="processing"):
    """Run ``step`` over ``items`` into ``output_dir``, resuming earlier runs; see the module docstring.

    Parameters
    ----------
    items : list of BatchItem
        Names must be unique.
    step : callable
        ``step(item, output_dir, settings) -> dict`` (module level, so that workers can pickle it).
    output_dir : str or path
        Created if needed.
    settings : dict
        JSON-serialisable settings every item's result depends on.
    processes : int
        Worker processes; 1 runs everything in this process.

    Returns
    -------
    BatchReport
    """
    items = list(items)
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"item names must be unique; repeated: {', '.join(repeated)}")
    if int(processes) < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    output_dir = Path(output_dir)
    (output_dir / STATE_FOLDER).mkdir(parents=True, exist_ok=True)
    remove_stale_temporary_files(output_dir)
    worker = partial(_run_item, step=step, output_dir=output_dir, settings=_plain(settings))
    rows = map_items(worker, items, int(processes), description)
    results = {row["name"]: row.pop("result") for row in rows}
    return BatchReport(rows, {name: result for name, result in results.items() if result is not None})
