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
outputs changed. The record is written after the outputs, both atomically.
"""

import hashlib
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from course_lib.io import atomic_output

__all__ = ["BatchItem", "BatchReport", "safe_name", "unique_name", "run_batch", "map_items"]

STATE_FOLDER = ".state"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text):
    """``text`` usable as a file name: characters other than letters, digits, ``.``, ``_``
    and ``-`` become ``_``.

    >>> safe_name("P_00001 LEFT/CC")
    'P_00001_LEFT_CC'
    """
    return _UNSAFE.sub("_", text) or "_"


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


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain(value):
    """``value`` as JSON reads it back (tuples become lists), for comparisons with records."""
    return json.loads(json.dumps(value))


def _fingerprint(item, settings):
    """What an item's outputs depend on: its source's bytes, its options and the settings."""
    return {
        "source": item.source,
        "size": os.stat(item.source).st_size,
        "sha256": _sha256(item.source),
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
        outputs = record["outputs"]
        if any(record.get(key) != value for key, value in fingerprint.items()):
            return None
        if not all(_sha256(Path(output_dir) / rel) == digest for rel, digest in outputs.items()):
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
            outputs = {rel: _sha256(Path(output_dir) / rel) for rel in result.pop("outputs", [])}
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


def _progress(total, description):
    """A tqdm bar in a notebook or a terminal, none elsewhere (a log file, CI) or when
    ``TQDM_DISABLE`` is set (the stored notebooks are executed with it set)."""
    from tqdm.auto import tqdm

    shown = sys.stderr.isatty() or "ipykernel" in sys.modules
    disabled = os.environ.get("TQDM_DISABLE", "") not in ("", "0") or not shown
    return tqdm(total=total, desc=description, unit="item", disable=disabled)


def map_items(function, items, processes=1, description="working"):
    """``[function(item) for item in items]`` with a progress bar, in ``processes`` worker
    processes when more than 1 (``function`` must then be picklable)."""
    items = list(items)
    with _progress(len(items), description) as bar:
        if processes <= 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(function(item))
                bar.update()
            return results
        with ProcessPoolExecutor(min(processes, len(items))) as pool:
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
    worker = partial(_run_item, step=step, output_dir=output_dir, settings=_plain(settings))
    rows = map_items(worker, items, int(processes), description)
    results = {row["name"]: row.pop("result") for row in rows}
    return BatchReport(rows, {name: result for name, result in results.items() if result is not None})
