"""``course-kit preprocess``: a whole data set through one pipeline's per-image step.

:func:`preprocess` reads any of three inputs (``kind``, detected by :func:`detect_input_kind`),
runs a pipeline's :class:`PreprocessTarget` step on every image through the batch engine
(:mod:`course_lib.batch`: resumable, parallel, atomic) and writes an exam list and a report.
GMIC's target (``--for gmic``, the default) crops each breast and finds its window centre,
as GMIC's ``run.sh`` does before the model runs.

Inputs
------
- ``"dicom"``: a folder searched recursively; every file but hidden ones and DICOMDIR
  indexes is an input. Only the headers are read to plan the work
  (:func:`~course_lib.dicom.read_mammogram_tags`). Images are grouped into exams by
  PatientID and StudyInstanceUID. Short names are ``<patient>_<L|R>-<CC|MLO>``, made safe
  by :func:`~course_lib.batch.safe_name`; further images with the same name (a second
  study, a repeated view) get ``_2``, ``_3``... in the order of PatientID,
  StudyInstanceUID and path. Their ``cancer_label`` is unknown (a header says nothing
  about pathology). CBIS-DDSM's own DICOMs, whose PatientID carries the side and view
  (``Mass-Training_P_00001_LEFT_CC``) and whose every image has its own study, are grouped
  by the PatientID without that suffix. Files that are not regular files (FIFOs, devices)
  are reported and never opened. ``laterality`` overrides the tags of named files.
- ``"cbis-ddsm"``: a CBIS-DDSM download (its description CSVs anywhere below the folder);
  :func:`~course_lib.datasets.cbis_ddsm.convert_cbis_ddsm` writes the PNGs to
  ``OUTPUT/cbis_ddsm_png/``; one exam per patient, labels from the CSVs' pathology.
- ``"exam-list"``: a JSON or legacy pickle exam list; image ``<short>`` is
  ``<image_dir>/<short>.png`` (default: the ``images`` folder beside the list). Exams keep
  their own keys and their own ``horizontal_flip``.

Outputs
-------
- the target's files (GMIC: ``OUTPUT/cropped/<short>.png``);
- ``OUTPUT/exam_list.json`` (:mod:`course_lib.exam_list` format) with the target's
  per-view result keys. Only images that succeeded are listed. An exam that lost an
  image, or never had one of the four views, is still written, that view's list empty,
  with a ``problems`` list saying why;
- ``OUTPUT/report.csv``: one row per image of this run (:data:`REPORT_COLUMNS`),
  status ``ok``, ``skipped`` (done by an earlier run) or ``failed``;
- ``OUTPUT/.state/``: the batch engine's records. Running twice over the same input
  changes no byte of the outputs except ``report.csv``. Inputs are only read.

Refused before anything is written (ValueError): an output folder that is the input
folder (or the exam list's image folder), an input file that lies inside the output folder
(``--image-dir OUT/cropped`` would overwrite the originals with their crops), and an input
without a single usable image.
"""

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from course_lib.batch import BatchItem, map_items, run_batch, safe_name, unique_name
from course_lib.exam_list import VIEWS, cancer_label, check_horizontal_flip, read_exam_list, write_exam_list
from course_lib.io import atomic_output

__all__ = ["INPUT_KINDS", "REPORT_COLUMNS", "PreprocessTarget", "detect_input_kind", "preprocess",
           "summary_line"]

INPUT_KINDS = ("dicom", "cbis-ddsm", "exam-list")
#: Columns of ``report.csv`` and of the DataFrame :func:`preprocess` returns.
REPORT_COLUMNS = ["input", "short_name", "view", "status", "reason", "seconds"]


@dataclass(frozen=True)
class PreprocessTarget:
    """What one pipeline does to each image in ``course-kit preprocess --for NAME``.

    ``step(item, output_dir, settings)`` is a :mod:`course_lib.batch` step whose item
    ``options`` hold ``view`` and ``horizontal_flip``; ``result_keys`` are the keys of its
    result that go into the exam list, per view (e.g. GMIC's ``best_center``).
    """

    name: str
    step: object
    settings: dict
    result_keys: tuple = ()


@dataclass(frozen=True)
class _Image:
    """One image of the plan: the file the report names and the file read (a CBIS-DDSM DICOM's PNG)."""

    input: str
    source: str
    short_name: str
    view: str
    horizontal_flip: str

    def item(self):
        return BatchItem(self.short_name, self.source,
                         {"view": self.view, "horizontal_flip": self.horizontal_flip})


def _failure(input_path, reason, short_name=None, view=None):
    """Report row of an image that failed before it could be processed."""
    return {"input": input_path, "short_name": short_name, "view": view,
            "status": "failed", "reason": reason, "seconds": 0.0}


def _new_exam(horizontal_flip, **identity):
    """An exam with empty views, unknown labels and no problems yet."""
    exam = {"horizontal_flip": horizontal_flip, **{view: [] for view in VIEWS}}
    exam["cancer_label"] = cancer_label(unknown=1)
    return {**exam, **identity, "problems": []}


# --- input kind: DICOM folder -------------------------------------------------------


def _dicom_files(root, output_dir):
    """(regular files, other files) under ``root``, sorted, except hidden ones, DICOMDIRs and
    ``output_dir``. Other files (FIFOs, sockets, devices) would block or mislead a reader."""
    files, others = [], []
    for folder, subfolders, names in os.walk(root):
        folder = Path(folder)
        subfolders[:] = [
            name for name in subfolders if not name.startswith(".") and folder / name != output_dir
        ]
        for name in names:
            if name.startswith(".") or name == "DICOMDIR":
                continue
            try:
                regular = stat.S_ISREG(os.stat(folder / name).st_mode)
            except OSError:  # a dangling link
                regular = False
            (files if regular else others).append(str(folder / name))
    return sorted(files), sorted(others)


#: CBIS-DDSM's DICOM PatientID: the patient, then the image's side and view (and an ROI number).
_CBIS_PATIENT = re.compile(r"^(?P<patient>.*P_\d+)_(LEFT|RIGHT)_(CC|MLO)(_\d+)?$")


def _survey_dicom(path, laterality=None):
    """Patient, study and GMIC view of one DICOM file from its header, or ``reason`` why not."""
    import pydicom

    from course_lib.dicom import read_mammogram_tags

    found = {"input": path, "patient_id": None, "study_instance_uid": None, "view": None, "reason": None}
    try:
        tags = read_mammogram_tags(path, laterality=laterality)
    except Exception as error:  # one bad file must not stop the batch
        found["reason"] = f"{type(error).__name__}: {error}"
        try:  # a readable header still tells which exam lost an image
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID", "StudyInstanceUID"])
            found.update(patient_id=str(ds.get("PatientID") or ""),
                         study_instance_uid=str(ds.get("StudyInstanceUID") or ""))
        except Exception:
            pass
        return found
    patient, study = tags.patient_id, tags.study_instance_uid
    cbis = _CBIS_PATIENT.match(patient)
    if cbis:  # one study per image in CBIS-DDSM: the patient is the exam
        patient, study = cbis["patient"], ""
    found.update(patient_id=patient, study_instance_uid=study)
    if tags.view not in ("CC", "MLO"):
        where = f"from {tags.view_source}" if tags.view_source else "no tag names it"
        found["reason"] = f"DicomError: {path}: view {tags.view!r} ({where}); GMIC reads CC and MLO views only"
    else:
        found["view"] = f"{tags.laterality}-{tags.view}"
    return found


def _exam_order(survey):
    """Sort key: patient, study, then path (decides which image gets ``_2``)."""
    return survey["patient_id"] or "", survey["study_instance_uid"] or "", survey["input"]


def _survey_with_override(path, overrides):
    """:func:`_survey_dicom` with the laterality given for this file (by path or file name), if any."""
    return _survey_dicom(path, overrides.get(path) or overrides.get(Path(path).name))


def _plan_dicom(root, output_dir, horizontal_flip, processes, laterality):
    """(exams, images, failures) of a folder of DICOM files."""
    from functools import partial

    files, others = _dicom_files(root, output_dir)
    overrides = {str(Path(key).resolve()) if os.sep in key else key: value for key, value in laterality.items()}
    unused = sorted(key for key in overrides if key not in files and key not in {Path(f).name for f in files})
    if unused:
        raise ValueError(f"--laterality names files that are not inputs under {root}: {', '.join(unused)}")
    surveys = map_items(partial(_survey_with_override, overrides=overrides), files, processes,
                        "reading DICOM headers")
    exams, images, taken = {}, [], set()
    failures = [_failure(path, f"{path}: not a regular file (a FIFO, socket or device); not read")
                for path in others]
    for survey in sorted(surveys, key=_exam_order):
        if survey["reason"] is not None:
            failures.append(_failure(survey["input"], survey["reason"]))
        if survey["patient_id"] is None:  # not a readable DICOM: belongs to no exam
            continue
        key = (survey["patient_id"], survey["study_instance_uid"])
        if key not in exams:
            exams[key] = _new_exam(horizontal_flip, patient_id=key[0], study_instance_uid=key[1])
        exam = exams[key]
        if survey["reason"] is not None:
            exam["problems"].append(survey["reason"])
            continue
        name = unique_name(safe_name(f"{key[0] or 'anonymous'}_{survey['view']}"), taken)
        exam[survey["view"]].append(name)
        images.append(_Image(survey["input"], survey["input"], name, survey["view"], horizontal_flip))
    return list(exams.values()), images, failures


# --- input kind: CBIS-DDSM ----------------------------------------------------------


def _cbis_labels(lesions):
    """GMIC breast-level labels of one patient's lesion rows (pathology from the CSVs)."""
    malignant = lesions["malignant"].astype("boolean").fillna(False).to_numpy(bool)
    flags = {}
    for side in ("left", "right"):
        on_side = (lesions["side"] == side.upper()).to_numpy(bool)
        flags[f"{side}_benign"] = int((on_side & ~malignant).any())
        flags[f"{side}_malignant"] = int((on_side & malignant).any())
    return cancer_label(**flags)


def _csv_lacking(root, column):
    """The CBIS-DDSM description CSV(s) under ``root`` whose header lacks ``column``."""
    import csv

    from course_lib.datasets.cbis_ddsm import CSV_NAMES

    lacking = []
    for path in sorted(Path(root).rglob("*.csv")):
        if path.name in set(CSV_NAMES.values()):
            with open(path, newline="", encoding="utf-8", errors="replace") as f:
                header = next(csv.reader(f), [])
            if column not in header:
                lacking.append(str(path))
    return ", ".join(lacking) or str(root)


def _plan_cbis_ddsm(root, output_dir, horizontal_flip):
    """(exams, images, failures) of a CBIS-DDSM download: one exam per patient."""
    from course_lib.datasets.cbis_ddsm import convert_cbis_ddsm

    png_dir = output_dir / "cbis_ddsm_png"
    try:
        table = convert_cbis_ddsm(root, png_dir)
    except KeyError as error:  # a column renamed or missing in one of the description CSVs
        raise ValueError(f"{_csv_lacking(root, error.args[0])}: no column {error.args[0]!r} (renamed or "
                         "missing?); CBIS-DDSM description CSVs keep the names TCIA publishes") from None
    exams, images, failures = [], [], []
    for patient, lesions in table.groupby("patient_id", sort=True):
        exam = _new_exam(horizontal_flip, patient_id=patient)
        exam["cancer_label"] = _cbis_labels(lesions)
        for (side, view), rows in lesions.groupby(["side", "view"], sort=True):
            gmic_view = f"{side[:1]}-{view}"
            name = safe_name(f"{patient}_{gmic_view}")
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
            images.append(_Image(input_path, str(png_dir / pngs.iloc[0]), name, gmic_view, horizontal_flip))
        exams.append(exam)
    return exams, images, failures


# --- input kind: exam list ----------------------------------------------------------


def _plan_exam_list(path, image_dir):
    """(exams, images, failures) of an exam list whose images are ``<image_dir>/<short>.png``."""
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


def _finish_exams(exams, rows, results, result_keys):
    """The exam list: views keep the images that succeeded, with the target's per-view results."""
    finished = []
    for exam in exams:
        exam = dict(exam)
        problems = exam.pop("problems")
        per_view = {key: {} for key in result_keys}
        for view in VIEWS:
            kept = []
            for name in exam[view]:
                if name in results:
                    kept.append(name)
                else:
                    problems.append(f"{name}: {rows[name]['reason']}")
            exam[view] = kept
            for key in result_keys:
                per_view[key][view] = [results[name][key] for name in kept]
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
    from course_lib.datasets.cbis_ddsm import CSV_NAMES

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


def _inside(path, folder):
    return path == folder or folder in path.parents


def _check_folders(kind, input_path, output_dir, images, image_dir):
    """Refuse runs that could overwrite an input (see the module docstring)."""
    input_folder = input_path if kind != "exam-list" else image_dir
    if output_dir == input_folder:
        raise ValueError(f"the output folder {output_dir} is the input folder: give another output folder "
                         "(outputs never go beside the inputs)")
    if kind == "exam-list" and _inside(input_path, output_dir):
        raise ValueError(f"the exam list {input_path} lies inside the output folder {output_dir}, whose "
                         "exam_list.json would overwrite it: give another output folder")
    for image in images:
        resolved = Path(image.input).resolve()
        if _inside(resolved, output_dir):
            raise ValueError(
                f"input {image.input} lies inside the output folder {output_dir}"
                + (f" (it resolves to {resolved})" if str(resolved) != image.input else "")
                + ": a run could overwrite its own inputs; give an output folder outside the inputs"
            )


def preprocess(input_path, output_dir, target, *, kind=None, processes=None, horizontal_flip="NO",
               image_dir=None, laterality=None, shard=None):
    """Run ``target``'s step on every image of a data set; see the module docstring.

    Parameters
    ----------
    input_path : str or path
        A folder of DICOM files, a CBIS-DDSM download or an exam list (.json, .pkl).
    output_dir : str or path
        Created if needed; an existing one is resumed.
    target : PreprocessTarget
        The pipeline's step, e.g. :func:`course_lib.gmic.preprocess.preprocess_target`.
    kind : {"dicom", "cbis-ddsm", "exam-list"}, optional
        Default: :func:`detect_input_kind`.
    processes : int, optional
        Worker processes; default ``os.cpu_count()``. 1 runs everything in this process.
    horizontal_flip : {"NO", "YES"}
        Flag of the exams built from DICOM or CBIS-DDSM files ("NO": right breasts face
        left, the standard orientation). Exam lists keep their own.
    image_dir : str or path, optional
        Exam lists only: the folder of ``<short>.png``; default ``images`` beside the list.
    laterality : dict, optional
        DICOM folders only: ``{file name or path: "L" or "R"}``, the laterality of files whose
        tags are wrong or missing (the command line's ``--laterality FILE=L``).
    shard : Shard, optional
        ``Shard.parse("K/N")``: process only shard K of N (:mod:`course_lib.preprocessing.shards`); the exam
        list and report are written by ``shards.merge`` once every shard is done.

    Returns
    -------
    DataFrame
        The report, also written to ``OUTPUT/report.csv``: one row per image, columns
        :data:`REPORT_COLUMNS`, sorted by input. ``report.attrs["incomplete_exams"]`` lists
        ``(exam, problems)`` of the exams written with ``problems``.
    """
    input_path, output_dir = Path(input_path).resolve(), Path(output_dir).resolve()
    kind = kind or detect_input_kind(input_path)
    if kind not in INPUT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(INPUT_KINDS)}, not {kind!r}")
    check_horizontal_flip(horizontal_flip)
    processes = os.cpu_count() if processes is None else int(processes)
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    laterality = dict(laterality or {})
    for key, value in laterality.items():
        if value not in ("L", "R"):
            raise ValueError(f"laterality of {key} must be 'L' or 'R', not {value!r}")
    if laterality and kind != "dicom":
        raise ValueError("laterality overrides apply to DICOM folders only; fix the view in the exam list instead")
    if kind == "exam-list":
        image_dir = Path(image_dir).resolve() if image_dir is not None else input_path.parent / "images"
    _check_folders(kind, input_path, output_dir, [], image_dir)

    if kind == "dicom":
        exams, images, failures = _plan_dicom(input_path, output_dir, horizontal_flip, processes, laterality)
    elif kind == "cbis-ddsm":
        output_dir.mkdir(parents=True, exist_ok=True)
        exams, images, failures = _plan_cbis_ddsm(input_path, output_dir, horizontal_flip)
    else:
        exams, images, failures = _plan_exam_list(input_path, image_dir)
    _check_folders(kind, input_path, output_dir, images, image_dir)
    if not images:
        reasons = "; ".join(sorted({row["reason"] for row in failures})[:3])
        raise ValueError(f"no usable image in {input_path}" + (f": {reasons}" if reasons else
                         " (no files found): give a folder of DICOM files, a CBIS-DDSM download or an exam list"))
    output_dir.mkdir(parents=True, exist_ok=True)
    if shard is not None:  # a course_lib.preprocessing.shards.Shard
        return shard.run(output_dir, target, exams, images, failures, processes)
    batch = run_batch([image.item() for image in images], target.step, output_dir, target.settings,
                      processes, description=f"preprocessing for {target.name}")
    rows = {row["name"]: row for row in batch.rows}
    return write_outputs(output_dir, exams, images, failures, rows, batch.records, target.result_keys)


def write_outputs(output_dir, exams, images, failures, rows, records, result_keys):
    """Write ``exam_list.json`` and ``report.csv`` of a run (or of merged shards); return the report."""
    import pandas as pd

    finished = _finish_exams(exams, rows, records, result_keys)
    write_exam_list(output_dir / "exam_list.json", finished)
    report_rows = failures + [
        {"input": image.input, "short_name": image.short_name, "view": image.view,
         **{key: rows[image.short_name][key] for key in ("status", "reason", "seconds")}}
        for image in images
    ]
    report = pd.DataFrame(report_rows, columns=REPORT_COLUMNS)
    report = report.sort_values(["input", "short_name"], kind="stable", ignore_index=True)
    with atomic_output(output_dir / "report.csv") as tmp:
        report.to_csv(tmp, index=False)
    report.attrs["incomplete_exams"] = [(_exam_title(exam, number), exam["problems"])
                                        for number, exam in enumerate(finished) if exam.get("problems")]
    return report


def _exam_title(exam, number):
    """How a message names an exam: its patient (and study), else its place in the list."""
    if exam.get("patient_id"):
        return exam["patient_id"] + (f" {exam['study_instance_uid']}" if exam.get("study_instance_uid") else "")
    return f"exam {number}"


def summary_line(report, output_dir):
    """``"12 ok, 3 skipped, 1 failed: see OUTPUT/report.csv"``."""
    counts = report["status"].value_counts()
    parts = ", ".join(f"{counts.get(status, 0)} {status}" for status in ("ok", "skipped", "failed"))
    return f"{parts}: see {Path(output_dir) / 'report.csv'}"
