"""Sharded preprocessing for cluster array jobs: ``course-kit preprocess ... --shard K/N`` and ``--merge``.

An array job of N tasks runs the same command with K = 1..N::

    course-kit preprocess dicoms/ out/ --for gmic --shard $SLURM_ARRAY_TASK_ID/N
    course-kit preprocess --merge out/          # once every task has finished

Each task plans the whole data set (as a single run does: the same short names), then
processes only the images its shard owns: image ``short_name`` belongs to shard
``1 + int(sha256(short_name)[:16], 16) mod N``. The choice depends on the name alone, so it
is the same in every rerun and resumption, on every machine, and adding images to a data set
moves none of the others to another shard.

Shard K writes into its own folder ``OUT/.shards/K-of-N/`` (its outputs, the batch engine's
records, and ``manifest.json``: the plan and its report rows), so N tasks can share one
output folder on a cluster file system without touching each other's files, and a killed
task resumes where it stopped when it is started again. :func:`merge` checks that every
shard finished the same plan, links (or copies) their outputs into ``OUT`` and writes the
``exam_list.json`` and ``report.csv`` that one unsharded run would have written (the report
rows carry the shards' own statuses and timings). Tasks that wrote to different folders
are merged with ``--merge OUT1 OUT2 ...``, into the first.
"""

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from course_lib.io import atomic_output, sha256_file

__all__ = ["Shard", "SHARDS_FOLDER", "MANIFEST_NAME", "run_shard", "merge"]

SHARDS_FOLDER = ".shards"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based, as array-job task ids usually are) of ``count``.

    >>> Shard.parse("2/3")
    Shard(index=2, count=3)
    >>> [Shard.parse(f"{k}/3").owns("P_00001_L-CC") for k in (1, 2, 3)].count(True)
    1
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text):
        """``"K/N"`` (or a Shard) -> Shard; a clear error for anything else."""
        if isinstance(text, Shard):
            return text
        try:
            index, count = (int(part) for part in str(text).split("/"))
        except ValueError:
            raise ValueError(f"--shard takes K/N, e.g. 2/8 (shard 2 of 8), not {text!r}") from None
        if not 1 <= index <= count:
            raise ValueError(f"shard {text!r}: K must be between 1 and N ({count})")
        return cls(index, count)

    def owns(self, name):
        """True if the image ``name`` belongs to this shard (a hash of the name, nothing else)."""
        return 1 + int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:16], 16) % self.count == self.index

    def folder(self, output_dir):
        """Where this shard writes: ``OUT/.shards/K-of-N``."""
        return Path(output_dir) / SHARDS_FOLDER / f"{self.index}-of-{self.count}"

    def __str__(self):
        return f"{self.index}/{self.count}"

    def run(self, output_dir, target, exams, images, failures, processes):
        """:func:`run_shard` of this shard (what ``preprocess(..., shard=)`` calls)."""
        return run_shard(self, output_dir, target, exams, images, failures, processes)


def _json(value):
    """JSON text of ``value``; NumPy scalars and arrays become numbers and lists."""
    def plain(item):
        if hasattr(item, "tolist"):
            return item.tolist()
        raise TypeError(f"{type(item).__name__} is not JSON serialisable")

    return json.dumps(value, default=plain, allow_nan=False, sort_keys=False)


def run_shard(shard, output_dir, target, exams, images, failures, processes):
    """Process the images of ``shard`` of a planned run (called by ``preprocess(..., shard=)``).

    Writes ``OUT/.shards/K-of-N/``; returns the report of this shard's images (the plan's
    failures included once, in shard 1), which is not written as ``report.csv``.
    """
    import pandas as pd

    from course_lib.batch import run_batch
    from course_lib.preprocessing.job import REPORT_COLUMNS

    shard = Shard.parse(shard)
    folder = shard.folder(output_dir)
    mine = [image for image in images if shard.owns(image.short_name)]
    batch = run_batch([image.item() for image in mine], target.step, folder, target.settings, processes,
                      description=f"preprocessing for {target.name}, shard {shard}")
    rows = {row["name"]: {key: row[key] for key in ("status", "reason", "seconds")} for row in batch.rows}
    plan = {"target": target.name, "settings": target.settings, "result_keys": list(target.result_keys),
            "exams": exams, "images": [asdict(image) for image in images], "failures": failures}
    plan_text = _json(plan)
    manifest = {"shard": str(shard), "plan_sha256": hashlib.sha256(plan_text.encode()).hexdigest(),
                "plan": json.loads(plan_text), "rows": rows}
    with atomic_output(folder / MANIFEST_NAME) as tmp:
        tmp.write_text(_json(manifest) + "\n", encoding="utf-8")
    report = pd.DataFrame((failures if shard.index == 1 else []) + [
        {"input": image.input, "short_name": image.short_name, "view": image.view, **rows[image.short_name]}
        for image in mine], columns=REPORT_COLUMNS)
    return report.sort_values(["input", "short_name"], kind="stable", ignore_index=True)


def _manifests(folders):
    """{shard index: (shard folder, manifest)} of every finished shard under ``folders``."""
    found = {}
    for folder in folders:
        for path in sorted(Path(folder).glob(f"{SHARDS_FOLDER}/*/{MANIFEST_NAME}")):
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
                shard = Shard.parse(manifest["shard"])
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}: not a shard manifest ({error}); run that shard again") from None
            if shard.index in found and found[shard.index][0] != path.parent:
                raise ValueError(f"shard {shard} was found twice: {found[shard.index][0]} and {path.parent}; "
                                 "merge the folders of one array job only")
            found[shard.index] = (path.parent, manifest)
    return found


def _place(source, destination):
    """``destination`` becomes a hard link to ``source`` (a copy across file systems), atomically."""
    with atomic_output(destination) as tmp:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def merge(folders, output_dir=None):
    """Merge the shards found under ``folders`` into ``output_dir`` (default: the first folder).

    Every shard 1..N of one plan must have finished; their outputs are checked against the
    records, linked into ``output_dir`` with their records (a later unsharded run there
    resumes), and ``exam_list.json`` and ``report.csv`` are written as one run writes them.
    Returns the report (a DataFrame).
    """
    from course_lib.batch import STATE_FOLDER
    from course_lib.preprocessing.job import _Image, write_outputs

    folders = [Path(folder).resolve() for folder in folders]
    if not folders:
        raise ValueError("--merge needs at least one output folder of a sharded run")
    output_dir = Path(output_dir).resolve() if output_dir is not None else folders[0]
    found = _manifests(folders)
    if not found:
        raise ValueError(f"no finished shard under {', '.join(map(str, folders))}: run "
                         "course-kit preprocess IN OUT --shard K/N for K = 1..N first")
    (_, first), *_ = found.values()
    count = Shard.parse(first["shard"]).count
    if {Shard.parse(m["shard"]).count for _, m in found.values()} != {count} or \
            {m["plan_sha256"] for _, m in found.values()} != {first["plan_sha256"]}:
        raise ValueError("these shards come from different runs (another N, input or setting): "
                         "merge the shards of one array job")
    missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in found]
    if missing:
        raise ValueError(f"shard(s) {', '.join(missing)} have not finished: run them (a killed shard "
                         "resumes where it stopped), then merge again")
    plan = first["plan"]
    rows, records = {}, {}
    for index in sorted(found):
        folder, manifest = found[index]
        for name, row in manifest["rows"].items():
            rows[name] = row
            if row["status"] == "failed":
                continue
            record_path = folder / STATE_FOLDER / f"{name}.json"
            record = json.loads(record_path.read_text(encoding="utf-8"))
            for relative, digest in record["outputs"].items():
                if not (folder / relative).is_file() or sha256_file(folder / relative) != digest:
                    raise ValueError(f"{folder / relative} is missing or changed since shard "
                                     f"{manifest['shard']} wrote it: run that shard again, then merge")
                if folder != output_dir:
                    _place(folder / relative, output_dir / relative)
            if folder != output_dir:
                _place(record_path, output_dir / STATE_FOLDER / f"{name}.json")
            records[name] = record["result"]
    images = [_Image(**image) for image in plan["images"]]
    unprocessed = sorted(image.short_name for image in images if image.short_name not in rows)
    if unprocessed:
        raise ValueError(f"no shard processed {', '.join(unprocessed[:5])}: the shards' plans disagree")
    return write_outputs(output_dir, plan["exams"], images, plan["failures"], rows, records,
                         tuple(plan["result_keys"]))
