"""GMIC preprocessing of a whole data set as one resumable batch job.

``course-kit preprocess INPUT OUTPUT`` (or :func:`preprocess`) does for every
image what GMIC's ``run.sh`` does before the model runs:

1. read the grey levels as 16-bit values: a DICOM's stored values
   (:func:`course_lib.dicom.to_png16`: 12-bit data keeps 0..4095, GMIC's
   convention), or a PNG as stored;
2. stage 1, :func:`~course_lib.preprocessing.gmic.crop_mammogram`: crop the
   breast and save it, unflipped, as ``OUTPUT/cropped/<short>.png``;
3. stage 2, :func:`~course_lib.preprocessing.gmic.optimal_center`: the
   centre of the model window.

Inputs (``kind``, detected by :func:`detect_input_kind`)
---------------------------------------------------------
- ``"dicom"``: a folder searched recursively; every file but hidden ones and
  DICOMDIR indexes is an input. Images are grouped into exams by PatientID
  and StudyInstanceUID, the view comes from
  :func:`~course_lib.dicom.read_mammogram`. Short names are
  ``<patient>_<L|R>-<CC|MLO>`` with characters other than letters, digits,
  ``.``, ``_`` and ``-`` replaced by ``_``; further images with the same name
  (a second study, a repeated view) get ``_2``, ``_3``... in the order of
  PatientID, StudyInstanceUID and path. Exams also carry ``patient_id`` and
  ``study_instance_uid``; their ``cancer_label`` is all 0 with ``unknown`` 1,
  as a DICOM header says nothing about pathology.
- ``"cbis-ddsm"``: a CBIS-DDSM download (its description CSVs anywhere below
  the folder). :func:`~course_lib.datasets.cbis_ddsm.convert_cbis_ddsm`
  writes the PNGs to ``OUTPUT/cbis_ddsm_png/``; one exam per patient, with
  ``patient_id`` and labels from the CSVs' pathology.
- ``"exam-list"``: a JSON or legacy pickle exam list; image ``<short>`` is
  ``<image_dir>/<short>.png`` (default: the ``images`` folder beside the
  list). Exams keep their own keys and their own ``horizontal_flip``.

Outputs
-------
- ``OUTPUT/cropped/<short>.png``: the cropped images, same bit depth.
- ``OUTPUT/exam_list.json``: the exam list (:mod:`course_lib.exam_list`
  format) with the stage 1 and 2 keys. Only images that succeeded are listed.
  An exam that lost an image, or never had one of the four views, is still
  written, that view's list empty, with a ``problems`` list saying why: a bad
  file then does not silently remove the other views of its exam. Drop or
  repair those exams before running the model, which needs all four views.
- ``OUTPUT/report.csv``: one row per image of this run (:data:`REPORT_COLUMNS`),
  status ``ok``, ``skipped`` (done by an earlier run) or ``failed``.
- ``OUTPUT/.state/<short>.json``: each image's record (source file, its size
  and mtime, settings, stage results, sha256 of the cropped PNG).

Resuming
--------
An existing OUTPUT is resumed, not refused as GMIC does. An image is skipped
when its record matches (same source file, size, mtime and settings) and its
cropped PNG still has the recorded sha256. The record is written after the
PNG, both atomically, so an interrupted run leaves no half-written file and
the next run redoes only the unfinished images. Running twice over the same
input changes no byte of the outputs except ``report.csv``, which describes
the latest run. Files of images no longer in the input are left in place,
unlisted. Inputs are only read.
"""

import hashlib
import json
import os
import shutil
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import pydicom
from tqdm import tqdm

from course_lib.io import atomic_output
from course_lib.datasets.cbis_ddsm import CSV_NAMES, convert_cbis_ddsm
from course_lib.dicom import DicomError, read_mammogram, to_png16, write_png
from course_lib.exam_list import VIEWS, UnsafePickleError, read_exam_list, write_exam_list
from course_lib.preprocessing.gmic import MODEL_WINDOW, crop_mammogram, load_png16, optimal_center

__all__ = [
    "INPUT_KINDS",
    "REPORT_COLUMNS",
    "STAGE_KEYS",
    "detect_input_kind",
    "preprocess",
    "summary_line",
    "add_preprocess_parser",
]

INPUT_KINDS = ("dicom", "cbis-ddsm", "exam-list")
#: Columns of ``report.csv`` and of the DataFrame :func:`preprocess` returns.
REPORT_COLUMNS = ["input", "short_name", "view", "status", "reason", "seconds"]
#: Per-view keys that stage 1 and 2 add to each exam.
STAGE_KEYS = (
    "window_location",
    "rightmost_points",
    "bottommost_points",
    "distance_from_starting_side",
    "best_center",
)
_UNKNOWN_LABEL = {
    "benign": 0, "malignant": 0, "left_benign": 0, "right_benign": 0,
    "left_malignant": 0, "right_malignant": 0, "unknown": 1,
}  # fmt: skip
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class _Settings:
    """The parameters an image's results depend on, besides its pixels and flip flag."""

    window: tuple
    crop_buffer: int
    crop_iterations: int


@dataclass(frozen=True)
class _Image:
    """One image to preprocess."""

    input: str  # the file the report names (a DICOM for CBIS-DDSM, whose PNG is read)
    source: str  # the file read: a DICOM or a PNG
    short_name: str
    view: str
    horizontal_flip: str
    # DICOM inputs: kept in the record so that a resumed run need not read the file.
    patient_id: str | None = None
    study_instance_uid: str | None = None


# --- small helpers ------------------------------------------------------------------


def _reason(error):
    return f"{type(error).__name__}: {error}"


def _safe_name(text):
    """``text`` usable as a file name: unsafe characters become ``_``."""
    return _UNSAFE.sub("_", text) or "_"


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _cropped_path(output_dir, short_name):
    return output_dir / "cropped" / f"{short_name}.png"


def _record_path(output_dir, short_name):
    return output_dir / ".state" / f"{short_name}.json"


def _new_exam(horizontal_flip, **identity):
    """An exam with empty views, unknown labels and no problems yet."""
    exam = {"horizontal_flip": horizontal_flip, **{view: [] for view in VIEWS}}
    exam["cancer_label"] = dict(_UNKNOWN_LABEL)
    return {**exam, **identity, "problems": []}


def _failure(input_path, reason, short_name=None, view=None, seconds=0.0):
    """Report row of an image that failed before it could be processed."""
    return {
        "input": input_path, "short_name": short_name, "view": view,
        "status": "failed", "reason": reason, "seconds": round(seconds, 3),
    }  # fmt: skip


# --- per image: stage 1 and 2 (runs in the worker processes) ------------------------


def _fingerprint(image, settings):
    """What an image's results depend on: its source file (size, mtime) and the settings."""
    stat = os.stat(image.source)
    return {
        "source": image.source,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "view": image.view,
        "horizontal_flip": image.horizontal_flip,
        "window": list(settings.window),
        "crop_buffer": settings.crop_buffer,
        "crop_iterations": settings.crop_iterations,
    }


def _valid_record(image, output_dir, settings):
    """The saved record of ``image`` if it still holds, else None.

    It holds when the fingerprint is unchanged and the cropped PNG is the one written.
    """
    record_path = _record_path(output_dir, image.short_name)
    png_path = _cropped_path(output_dir, image.short_name)
    if not (record_path.is_file() and png_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except ValueError:  # a damaged record: redo the image
        return None
    fingerprint = _fingerprint(image, settings)
    if any(record.get(key) != value for key, value in fingerprint.items()):
        return None
    return record if record.get("cropped_sha256") == _sha256(png_path) else None


def _read_pixels(image):
    """Grey levels as stored: a DICOM's stored values as uint16, or the PNG's."""
    if image.source.lower().endswith(".png"):
        return load_png16(image.source)
    pixels, info = read_mammogram(image.source, laterality=image.view[0])
    return to_png16(pixels, info.bits_stored)


def save_cropped(source, pixels, cropped, target):
    """Write the cropped image as a 16-bit PNG at ``target`` (atomically) and return it.

    When nothing was cut off and the source is a PNG, its bytes are copied: they
    already hold exactly these values, and PNG encoding would be most of the stage's time.
    """
    if cropped.shape == pixels.shape and str(source).lower().endswith(".png"):
        with atomic_output(target) as tmp:
            shutil.copyfile(source, tmp)
        return Path(target)
    return write_png(target, cropped)


def _crop_and_center(image, output_dir, settings):
    """Run stage 1 and 2, save the cropped PNG and then the record; return the record."""
    fingerprint = _fingerprint(image, settings)  # before reading: a later change invalidates it
    pixels = _read_pixels(image)
    cropped, info = crop_mammogram(
        pixels, image.view, image.horizontal_flip,
        buffer=settings.crop_buffer, iterations=settings.crop_iterations, source=image.input,
    )  # fmt: skip
    center = optimal_center(
        cropped, image.view, info["rightmost_points"], info["bottommost_points"],
        image.horizontal_flip, settings.window,
    )  # fmt: skip
    png_path = save_cropped(image.source, pixels, cropped, _cropped_path(output_dir, image.short_name))
    record = {
        **fingerprint,
        "short_name": image.short_name,
        "patient_id": image.patient_id,
        "study_instance_uid": image.study_instance_uid,
        "cropped_sha256": _sha256(png_path),
        **info,
        "best_center": center,
    }
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    with atomic_output(_record_path(output_dir, image.short_name)) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return json.loads(text)  # tuples as lists, like a record read back


def _process_image(image, output_dir, settings):
    """Report row of one image, plus ``results`` (its stage keys; None if it failed)."""
    start = time.perf_counter()
    row = {"input": image.input, "short_name": image.short_name, "view": image.view}
    try:
        if _safe_name(image.short_name) != image.short_name:
            raise ValueError(
                f"unsafe short name {image.short_name!r}: "
                "use letters, digits, '.', '_' and '-' only"
            )
        record = _valid_record(image, output_dir, settings)
        status = "ok" if record is None else "skipped"
        if record is None:
            record = _crop_and_center(image, output_dir, settings)
    except Exception as error:  # one bad file must not stop the batch
        status, reason, results = "failed", _reason(error), None
    else:
        reason, results = None, {key: record[key] for key in STAGE_KEYS}
    seconds = round(time.perf_counter() - start, 3)
    return {**row, "status": status, "reason": reason, "seconds": seconds, "results": results}


# --- running many: a process pool and a progress bar --------------------------------


def _progress(total, description):
    """A tqdm bar, off when stderr is not a terminal (TQDM_DISABLE is honoured otherwise)."""
    # Passing disable only when needed leaves tqdm's TQDM_DISABLE default in force.
    options = {} if sys.stderr.isatty() else {"disable": True}
    return tqdm(total=total, desc=description, unit="image", **options)


def _map(function, items, pool, description):
    """``[function(item) for item in items]``, in ``pool`` unless it is None."""
    with _progress(len(items), description) as bar:
        if pool is None:
            results = []
            for item in items:
                results.append(function(item))
                bar.update()
            return results
        futures = [pool.submit(function, item) for item in items]
        for _ in as_completed(futures):
            bar.update()
        return [future.result() for future in futures]


# --- input kind: DICOM folder -------------------------------------------------------


def _dicom_files(root, output_dir):
    """Every file under ``root``, sorted, except hidden ones, DICOMDIRs and ``output_dir``."""
    files = []
    for folder, subfolders, names in os.walk(root):
        folder = Path(folder)
        subfolders[:] = [
            name for name in subfolders if not name.startswith(".") and folder / name != output_dir
        ]
        files += [
            str(folder / name) for name in names if not name.startswith(".") and name != "DICOMDIR"
        ]
    return sorted(files)


def _exam_ids(path):
    """(PatientID, StudyInstanceUID) from the header, or (None, None) if it cannot be read."""
    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["PatientID", "StudyInstanceUID"]
        )
    except Exception:  # read_mammogram then says why
        return None, None
    return str(ds.get("PatientID") or ""), str(ds.get("StudyInstanceUID") or "")


def _gmic_view(info):
    """GMIC view name (``"L-CC"``...) of a mammogram, or DicomError for other views."""
    if info.view not in ("CC", "MLO"):
        where = f"from {info.view_source}" if info.view_source else "no tag names it"
        raise DicomError(
            f"{info.path}: view {info.view!r} ({where}); GMIC reads CC and MLO views only"
        )
    return f"{info.laterality}-{info.view}"


def _survey_dicom(path):
    """Exam and view of one DICOM file, or ``reason`` why it cannot be used."""
    start = time.perf_counter()
    patient_id, study_uid = _exam_ids(path)
    found = {"input": path, "patient_id": patient_id, "study_instance_uid": study_uid}
    try:
        _, info = read_mammogram(path)
        found.update(view=_gmic_view(info), reason=None)
    except Exception as error:  # one bad file must not stop the batch
        found.update(view=None, reason=_reason(error))
    return {**found, "seconds": time.perf_counter() - start}


def _saved_records(output_dir):
    """Every image record under ``OUTPUT/.state``, by source file."""
    records = {}
    for path in sorted((output_dir / ".state").glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:  # damaged: that image is redone anyway
            continue
        records[record.get("source")] = record
    return records


def _known_survey(path, record):
    """The survey of ``path`` kept in its record, or None if the file changed since."""
    if record is None or record.get("patient_id") is None:
        return None
    stat = os.stat(path)
    if (stat.st_size, stat.st_mtime_ns) != (record["size"], record["mtime_ns"]):
        return None
    return {
        "input": path, "patient_id": record["patient_id"],
        "study_instance_uid": record["study_instance_uid"], "view": record["view"], "reason": None,
    }  # fmt: skip


def _exam_order(survey):
    """Sort key: patient, study, then path (decides which image gets ``_2``)."""
    return survey["patient_id"] or "", survey["study_instance_uid"] or "", survey["input"]


def _unique_name(base, taken):
    """``base``, or ``base_2``, ``base_3``... whichever is not in ``taken`` yet; added to it."""
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}_{number}"
    taken.add(name)
    return name


def _plan_dicom(root, output_dir, horizontal_flip, pool):
    """(exams, images, failures) of a folder of DICOM files."""
    paths = _dicom_files(root, output_dir)
    records = _saved_records(output_dir)
    surveys = {path: _known_survey(path, records.get(path)) for path in paths}
    unknown = [path for path, survey in surveys.items() if survey is None]
    surveys.update(zip(unknown, _map(_survey_dicom, unknown, pool, "reading DICOM files")))

    exams, images, failures, taken = {}, [], [], set()
    for survey in sorted(surveys.values(), key=_exam_order):
        if survey["reason"] is not None:
            failures.append(_failure(survey["input"], survey["reason"], seconds=survey["seconds"]))
        if survey["patient_id"] is None:  # not a readable DICOM: belongs to no exam
            continue
        key = (survey["patient_id"], survey["study_instance_uid"])
        if key not in exams:
            exams[key] = _new_exam(horizontal_flip, patient_id=key[0], study_instance_uid=key[1])
        exam = exams[key]
        if survey["reason"] is not None:
            exam["problems"].append(survey["reason"])
            continue
        name = _unique_name(_safe_name(f"{key[0] or 'anonymous'}_{survey['view']}"), taken)
        exam[survey["view"]].append(name)
        images.append(
            _Image(survey["input"], survey["input"], name, survey["view"], horizontal_flip, *key)
        )
    return list(exams.values()), images, failures


# --- input kind: CBIS-DDSM ----------------------------------------------------------


def _cbis_labels(lesions):
    """GMIC breast-level labels of one patient's lesion rows (pathology from the CSVs)."""
    malignant = lesions["malignant"].astype("boolean").fillna(False).to_numpy(bool)
    labels = {}
    for side in ("left", "right"):
        on_side = (lesions["side"] == side.upper()).to_numpy(bool)
        labels[f"{side}_benign"] = int((on_side & ~malignant).any())
        labels[f"{side}_malignant"] = int((on_side & malignant).any())
    return {
        "benign": max(labels["left_benign"], labels["right_benign"]),
        "malignant": max(labels["left_malignant"], labels["right_malignant"]),
        **labels,
        "unknown": 0,
    }


def _plan_cbis_ddsm(root, output_dir, horizontal_flip):
    """(exams, images, failures) of a CBIS-DDSM download: one exam per patient."""
    png_dir = output_dir / "cbis_ddsm_png"
    table = convert_cbis_ddsm(root, png_dir)
    exams, images, failures = [], [], []
    for patient, lesions in table.groupby("patient_id", sort=True):
        exam = _new_exam(horizontal_flip, patient_id=patient)
        exam["cancer_label"] = _cbis_labels(lesions)
        for (side, view), rows in lesions.groupby(["side", "view"], sort=True):
            gmic_view = f"{side[:1]}-{view}"
            name = _safe_name(f"{patient}_{gmic_view}")
            dicoms = sorted(rows["full_path"].dropna())
            input_path = dicoms[0] if dicoms else rows["csv_image_path"].iloc[0]
            pngs = rows["full_png"].dropna()
            if gmic_view not in VIEWS or pngs.empty:
                problems = sorted(set(rows["problem"].dropna()))
                reason = "; ".join(problems) or f"view {gmic_view!r} is not one GMIC reads"
                failures.append(_failure(input_path, reason, name, gmic_view))
                exam["problems"].append(f"{name}: {reason}")
                continue
            exam[gmic_view].append(name)
            png = str(png_dir / pngs.iloc[0])
            images.append(_Image(input_path, png, name, gmic_view, horizontal_flip))
        exams.append(exam)
    return exams, images, failures


# --- input kind: exam list ----------------------------------------------------------


def _plan_exam_list(path, image_dir):
    """(exams, images, failures) of an exam list whose images are ``<image_dir>/<short>.png``."""
    image_dir = Path(image_dir).resolve() if image_dir is not None else path.parent / "images"
    exams = [{**exam, "problems": []} for exam in read_exam_list(path)]
    images, seen = [], set()
    for exam in exams:
        for view in VIEWS:
            for name in exam[view]:
                if name in seen:  # listed twice: processed once, both entries get its results
                    continue
                seen.add(name)
                png = str(image_dir / f"{name}.png")
                images.append(_Image(png, png, name, view, exam["horizontal_flip"]))
    return exams, images, []


# --- putting it together -----------------------------------------------------------


def _finish_exams(exams, results):
    """The exam list: views keep the images that succeeded, with their stage results."""
    finished = []
    for exam in exams:
        exam = dict(exam)
        problems = exam.pop("problems")
        per_view = {key: {} for key in STAGE_KEYS}
        for view in VIEWS:
            kept = []
            for name in exam[view]:
                result = results[name]
                if result["results"] is None:
                    problems.append(f"{name}: {result['reason']}")
                else:
                    kept.append(name)
            exam[view] = kept
            for key in STAGE_KEYS:
                per_view[key][view] = [results[name]["results"][key] for name in kept]
            if not kept:
                problems.append(f"{view}: no image")
        exam.update(per_view)
        if problems:
            exam["problems"] = problems
        finished.append(exam)
    return finished


def detect_input_kind(path):
    """The kind of input ``path`` is, one of :data:`INPUT_KINDS`.

    ``"exam-list"`` for a .json or .pkl file, ``"cbis-ddsm"`` for a folder with
    a CBIS-DDSM description CSV anywhere below it, ``"dicom"`` for any other folder.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in (".json", ".pkl", ".pickle"):
            return "exam-list"
        raise ValueError(
            f"{path} is a file but not an exam list (.json or .pkl); give a folder of "
            "DICOM files, a CBIS-DDSM download or an exam list"
        )
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or folder: {path}")
    names = set(CSV_NAMES.values())
    return "cbis-ddsm" if any(p.name in names for p in path.rglob("*.csv")) else "dicom"


def preprocess(
    input_path, output_dir, *, kind=None, processes=None, horizontal_flip="NO",
    window=MODEL_WINDOW, crop_buffer=50, crop_iterations=100, image_dir=None,
):  # fmt: skip
    """Crop every image of a data set and find its window centre, GMIC stage 1 and 2.

    Parameters
    ----------
    input_path : str or path
        A folder of DICOM files, a CBIS-DDSM download or an exam list (.json, .pkl).
    output_dir : str or path
        Created if needed; an existing one is resumed (see the module docstring).
    kind : {"dicom", "cbis-ddsm", "exam-list"}, optional
        Default: :func:`detect_input_kind`.
    processes : int, optional
        Worker processes; default ``os.cpu_count()``. 1 runs everything in this process.
    horizontal_flip : {"NO", "YES"}
        Flag of the exams built from DICOM or CBIS-DDSM files ("NO": right
        breasts face left, the standard orientation). Exam lists keep their own.
    window : (int, int)
        Model window (rows, cols) that stage 2 centres.
    crop_buffer, crop_iterations : int
        Stage 1 margin and number of erosions / dilations.
    image_dir : str or path, optional
        Exam lists only: the folder of ``<short>.png``; default ``images`` beside the list.

    Returns
    -------
    DataFrame
        The report, also written to ``OUTPUT/report.csv``: one row per image,
        columns :data:`REPORT_COLUMNS`, sorted by input.
    """
    input_path, output_dir = Path(input_path).resolve(), Path(output_dir).resolve()
    kind = kind or detect_input_kind(input_path)
    if kind not in INPUT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(INPUT_KINDS)}, not {kind!r}")
    if horizontal_flip not in ("NO", "YES"):
        raise ValueError(f"horizontal_flip must be 'NO' or 'YES', not {horizontal_flip!r}")
    processes = os.cpu_count() if processes is None else int(processes)
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    settings = _Settings(tuple(int(v) for v in window), int(crop_buffer), int(crop_iterations))
    for folder in ("cropped", ".state"):
        (output_dir / folder).mkdir(parents=True, exist_ok=True)

    with ProcessPoolExecutor(processes) if processes > 1 else nullcontext() as pool:
        if kind == "dicom":
            exams, images, failures = _plan_dicom(input_path, output_dir, horizontal_flip, pool)
        elif kind == "cbis-ddsm":
            exams, images, failures = _plan_cbis_ddsm(input_path, output_dir, horizontal_flip)
        else:
            exams, images, failures = _plan_exam_list(input_path, image_dir)
        worker = partial(_process_image, output_dir=output_dir, settings=settings)
        rows = _map(worker, images, pool, "cropping")

    write_exam_list(
        output_dir / "exam_list.json",
        _finish_exams(exams, {image.short_name: row for image, row in zip(images, rows)}),
    )
    report = pd.DataFrame(failures + rows, columns=REPORT_COLUMNS)
    report = report.sort_values(["input", "short_name"], kind="stable", ignore_index=True)
    with atomic_output(output_dir / "report.csv") as tmp:
        report.to_csv(tmp, index=False)
    return report


def summary_line(report, output_dir):
    """``"12 ok, 3 skipped, 1 failed: see OUTPUT/report.csv"``."""
    counts = report["status"].value_counts()
    parts = ", ".join(f"{counts.get(status, 0)} {status}" for status in ("ok", "skipped", "failed"))
    return f"{parts}: see {Path(output_dir) / 'report.csv'}"


# --- command line -------------------------------------------------------------------


def _cmd_preprocess(args):
    """``course-kit preprocess``; exit code 0: all succeeded, 1: some failed, 2: bad input."""
    try:
        report = preprocess(
            args.input, args.output, kind=args.input_kind, processes=args.processes,
            horizontal_flip=args.horizontal_flip, window=args.window,
            crop_buffer=args.crop_buffer, crop_iterations=args.crop_iterations,
            image_dir=args.image_dir,
        )  # fmt: skip
    except (OSError, ValueError, UnsafePickleError) as error:
        print(f"course-kit preprocess: error: {error}", file=sys.stderr)
        return 2
    print(summary_line(report, args.output))
    return 1 if (report["status"] == "failed").any() else 0


def add_preprocess_parser(subparsers):
    """Add the ``preprocess`` sub-command to ``course-kit``'s ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "preprocess",
        help="GMIC preprocessing (crop, optimal centre) of a DICOM folder, CBIS-DDSM or exam list",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument(
        "input", help="folder of DICOM files, CBIS-DDSM download, or exam list (.json/.pkl)"
    )
    parser.add_argument("output", help="output folder; an existing one is resumed")
    parser.add_argument("--input-kind", choices=INPUT_KINDS, default=None, help="default: detected")
    parser.add_argument("--image-dir", default=None,
                        help="exam lists: folder of <short>.png (default: images/ beside the list)")
    parser.add_argument("--processes", type=int, default=None,
                        help="worker processes (default: all CPUs; 1: no worker processes)")
    parser.add_argument("--horizontal-flip", choices=("NO", "YES"), default="NO",
                        help="flag of exams built from DICOM/CBIS-DDSM (default: NO)")
    parser.add_argument("--window", type=int, nargs=2, default=list(MODEL_WINDOW),
                        metavar=("ROWS", "COLS"),
                        help="window that stage 2 centres (default: 2944 1920)")
    parser.add_argument("--crop-buffer", type=int, default=50, help="stage 1 margin (default: 50)")
    parser.add_argument("--crop-iterations", type=int, default=100,
                        help="stage 1 erosions and dilations (default: 100)")
    parser.set_defaults(run=_cmd_preprocess)
    return parser
