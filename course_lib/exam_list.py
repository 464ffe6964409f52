"""GMIC exam lists: a documented JSON format, and a safe reader for the legacy pickles.

Format
------
An exam list is a JSON array with one object per exam (plain ints, strings and
lists only, no NumPy types)::

    [
    {"horizontal_flip": "NO",
     "L-CC": ["0_L-CC"], "R-CC": ["0_R-CC"], "L-MLO": ["0_L-MLO"], "R-MLO": ["0_R-MLO"],
     "cancer_label": {"benign": 1, "malignant": 0, "left_benign": 0, "right_benign": 1,
                      "left_malignant": 0, "right_malignant": 0, "unknown": 0},
     "window_location": {"L-CC": [[0, 2023, 0, 801]], ...},
     "rightmost_points": {"L-CC": [[[948, 957], 750]], ...},
     "bottommost_points": {"L-CC": [[1972, [100, 100]]], ...},
     "distance_from_starting_side": {"L-CC": [0], ...},
     "best_center": {"L-CC": [[1011, -211]], ...}}
    ]

Required for every exam:

- ``horizontal_flip``: ``"NO"`` (R views are mirrored at load) or ``"YES"`` (L views are);
- ``L-CC``, ``R-CC``, ``L-MLO``, ``R-MLO``: lists of image short names (file name
  without folder or extension; several images per view are allowed);
- ``cancer_label``: ints 0/1, at least ``left_benign``, ``right_benign``,
  ``left_malignant`` and ``right_malignant`` (a view's labels come from its side).

Added by preprocessing, each a dict view -> list with one entry per image of that view:

- stage 1 (:func:`course_lib.gmic.preprocess.crop_mammogram`):
  ``window_location`` (top, bottom, left, right), ``rightmost_points``
  ((y_first, y_last), x), ``bottommost_points`` (y, (x_first, x_last)),
  ``distance_from_starting_side`` (int);
- stage 2 (:func:`course_lib.gmic.preprocess.optimal_center`): ``best_center`` (y, x).

Other keys (e.g. GMIC's ``L-CC_benign_seg``) are kept as they are.

Short names must be safe file stems (:func:`check_short_name`: the rule of
:func:`course_lib.batch.safe_name`, so no folder, no ``..``, no hidden file), and a name
used again (in another exam, or twice in one) must keep its view and ``horizontal_flip``:
its crop and centres belong to one view of one image.
"""

import codecs
import json
import pickle
from pathlib import Path

from course_lib.batch import safe_name
from course_lib.io import atomic_output

__all__ = [
    "VIEWS",
    "ExamListError",
    "UnsafePickleError",
    "read_exam_list",
    "write_exam_list",
    "validate_exam_list",
    "check_short_name",
    "cancer_label",
    "view_labels",
    "HORIZONTAL_FLIPS",
    "check_horizontal_flip",
]

VIEWS = ("L-CC", "R-CC", "L-MLO", "R-MLO")
LABEL_KEYS = ("left_benign", "right_benign", "left_malignant", "right_malignant")
#: ``horizontal_flip`` values: "NO", R views are mirrored at load (they face left as stored); "YES", L views are.
HORIZONTAL_FLIPS = ("NO", "YES")


def check_horizontal_flip(value):
    """``value`` if it is a valid ``horizontal_flip``, else ValueError saying which are.

    >>> check_horizontal_flip("NO")
    'NO'
    """
    if value not in HORIZONTAL_FLIPS:
        raise ValueError(f"horizontal_flip must be 'NO' or 'YES', not {value!r}")
    return value


def cancer_label(*, left_benign=0, right_benign=0, left_malignant=0, right_malignant=0, unknown=0):
    """An exam's ``cancer_label``: the four breast-level flags, the exam-level ``benign``
    and ``malignant`` (either side), and ``unknown`` (1 when pathology is not known,
    e.g. an exam built from DICOM headers alone).

    >>> cancer_label(right_benign=1)
    {'benign': 1, 'malignant': 0, 'left_benign': 0, 'right_benign': 1, 'left_malignant': 0, 'right_malignant': 0, 'unknown': 0}
    """
    flags = dict(left_benign=left_benign, right_benign=right_benign,
                 left_malignant=left_malignant, right_malignant=right_malignant, unknown=unknown)
    for key, value in flags.items():
        if value not in (0, 1, False, True):
            raise ValueError(f"cancer_label.{key} must be 0 or 1, not {value!r}")
    flags = {key: int(value) for key, value in flags.items()}
    return {
        "benign": max(flags["left_benign"], flags["right_benign"]),
        "malignant": max(flags["left_malignant"], flags["right_malignant"]),
        **{key: flags[key] for key in LABEL_KEYS},
        "unknown": flags["unknown"],
    }


def view_labels(labels, view):
    """(benign, malignant) 0/1 labels of ``view`` from an exam's ``cancer_label``.

    >>> view_labels(cancer_label(right_benign=1), "R-MLO")
    (1, 0)
    """
    side = "left" if view.startswith("L") else "right"
    return int(labels[f"{side}_benign"]), int(labels[f"{side}_malignant"])


class ExamListError(ValueError):
    """An exam list that does not follow the format."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that asks to load something other than plain data."""


# --- value checks: name -> (test, description) --------------------------------------


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_pair(value, test=_is_int):
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(test, value))


_PREPROCESSING_KEYS = {
    "window_location": (
        lambda v: isinstance(v, (list, tuple)) and len(v) == 4 and all(map(_is_int, v)),
        "[top, bottom, left, right]",
    ),
    "rightmost_points": (
        lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and _is_pair(v[0]) and _is_int(v[1]),
        "[[y_first, y_last], x]",
    ),
    "bottommost_points": (
        lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and _is_int(v[0]) and _is_pair(v[1]),
        "[y, [x_first, x_last]]",
    ),
    "distance_from_starting_side": (_is_int, "an int"),
    "best_center": (_is_pair, "[y, x]"),
}


def check_short_name(name, where="exam list"):
    """Raise :class:`ExamListError` unless ``name`` is a safe image short name.

    A short name becomes ``<folder>/<name>.png`` for reading and writing, so it must be what
    :func:`course_lib.batch.safe_name` makes: letters, digits, ``.``, ``_``, ``-``, no
    leading ``.``, at most 150 characters.

    >>> check_short_name("0_L-CC")
    >>> check_short_name("../../home/me/scan")
    Traceback (most recent call last):
    ...
    course_lib.exam_list.ExamListError: exam list: unsafe image short name '../../home/me/scan': a short name is a file stem (letters, digits, '.', '_', '-', no leading '.', no folder), e.g. '_._.._home_me_scan'
    """
    if not isinstance(name, str) or not name or safe_name(name) != name:
        suggestion = f", e.g. {safe_name(name)!r}" if isinstance(name, str) and name else ""
        raise ExamListError(
            f"{where}: unsafe image short name {name!r}: a short name is a file stem (letters, digits, "
            f"'.', '_', '-', no leading '.', no folder){suggestion}"
        )


def validate_exam_list(exams, path=None):
    """Check ``exams`` against the format; raise :class:`ExamListError` naming exam and key."""
    where = str(path) if path is not None else "exam list"
    if not isinstance(exams, list):
        raise ExamListError(f"{where}: an exam list is a list of exams, got {type(exams).__name__}")
    for index, exam in enumerate(exams):
        _validate_exam(exam, f"{where}: exam {index}")
    _check_reuse(exams, where)


def _check_reuse(exams, where):
    """A short name listed more than once must name the same view with the same flag."""
    first = {}
    for index, exam in enumerate(exams):
        for view in VIEWS:
            for name in exam[view]:
                use = (view, exam["horizontal_flip"])
                seen = first.setdefault(name, (index, *use))
                if seen[1:] != use:
                    raise ExamListError(
                        f"{where}: image {name!r} is listed as {seen[1]} (horizontal_flip {seen[2]}) in "
                        f"exam {seen[0]} and as {view} (horizontal_flip {use[1]}) in exam {index}; "
                        "one image has one view: fix the list or give the second use its own short name"
                    )


def _validate_exam(exam, at):
    if not isinstance(exam, dict):
        raise ExamListError(f"{at}: an exam is a dict, got {type(exam).__name__}")
    for key in ("horizontal_flip", *VIEWS, "cancer_label"):
        if key not in exam:
            raise ExamListError(
                f"{at}: missing key {key!r} (every exam needs horizontal_flip, "
                f"{', '.join(VIEWS)} and cancer_label)"
            )
    try:
        check_horizontal_flip(exam["horizontal_flip"])
    except ValueError as error:
        raise ExamListError(f"{at}: {error}") from None
    for view in VIEWS:
        names = exam[view]
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise ExamListError(f"{at}: {view!r} must be a list of image short names, got {names!r}")
        for name in names:
            check_short_name(name, f"{at}: {view!r}")
    labels = exam["cancer_label"]
    if not isinstance(labels, dict):
        raise ExamListError(f"{at}: 'cancer_label' must be a dict, got {labels!r}")
    for key in LABEL_KEYS:
        if key not in labels:
            raise ExamListError(f"{at}: missing key 'cancer_label.{key}'")
        if not _is_int(labels[key]) or labels[key] not in (0, 1):
            raise ExamListError(f"{at}: 'cancer_label.{key}' must be 0 or 1, not {labels[key]!r}")
    for key, (test, shape) in _PREPROCESSING_KEYS.items():
        if key in exam:
            _validate_per_view(exam, key, test, shape, at)


def _validate_per_view(exam, key, test, shape, at):
    per_view = exam[key]
    if not isinstance(per_view, dict):
        kind = type(per_view).__name__
        raise ExamListError(f"{at}: {key!r} must be a dict view -> list, got {kind}")
    for view in VIEWS:
        if view not in per_view:
            raise ExamListError(f"{at}: missing key '{key}.{view}'")
        values = per_view[view]
        if not isinstance(values, (list, tuple)) or len(values) != len(exam[view]):
            raise ExamListError(
                f"{at}: '{key}.{view}' must be a list with one entry per image "
                f"({len(exam[view])}), got {values!r}"
            )
        for value in values:
            if not test(value):
                raise ExamListError(f"{at}: '{key}.{view}' entries must be {shape}, got {value!r}")


# --- plain values -------------------------------------------------------------------


def _to_plain(value):
    """The same data with NumPy scalars/arrays and tuples turned into int, float, list."""
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(item) for item in value]
    import numpy as np  # here: reading and writing plain exam lists needs no NumPy import

    if isinstance(value, np.ndarray):
        return _to_plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- legacy pickles -----------------------------------------------------------------


def _allowed_globals():
    """The only globals a GMIC exam-list pickle needs: NumPy's scalar and array rebuilders.

    They are taken from NumPy's own pickling (``__reduce__``) rather than from
    their private modules, which moved between NumPy 1 and 2.
    """
    import numpy as np

    scalar = np.int64(0).__reduce__()[0]
    reconstruct = np.zeros(0).__reduce__()[0]
    allowed = {("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "scalar")] = scalar
        allowed[(module, "_reconstruct")] = reconstruct
    # Protocol-2 pickles of NumPy scalars wrap their bytes as _codecs.encode(str, "latin1").
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that loads plain data and NumPy numbers/arrays, and nothing else."""

    def __init__(self, file, path):
        super().__init__(file)
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refused to load the global {module}.{name}; an exam-list "
                "pickle holds only lists, dicts, strings and numbers. Do not load this file "
                "with pickle: it may run code. Convert trusted lists to JSON with write_exam_list."
            ) from None


def read_exam_list(path):
    """Read an exam list: JSON (``.json``), or a legacy GMIC pickle (``.pkl``/``.pickle``).

    Pickles are read with a restricted unpickler that accepts only plain
    containers, str, int, float, bool, None and NumPy scalars/arrays; anything
    else raises :class:`UnsafePickleError` before it can run. NumPy values are
    returned as plain Python ints/floats/lists, tuples as lists. The result is
    checked with :func:`validate_exam_list`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            with open(path, encoding="utf-8") as f:
                exams = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ExamListError(f"{path}: not a JSON exam list ({error}); check the file, or give the "
                                "legacy pickle a .pkl name") from None
    elif suffix in (".pkl", ".pickle"):
        try:
            with open(path, "rb") as f:
                exams = _PlainDataUnpickler(f, path).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as error:
            hint = " (it looks like JSON: name it .json)" if path.read_bytes()[:1] in (b"[", b"{") else ""
            raise ExamListError(f"{path}: not a readable exam-list pickle{hint}: "
                                f"{type(error).__name__}: {error}") from None
    else:
        raise ExamListError(f"{path}: unknown exam-list type {suffix!r}; use .json or .pkl")
    exams = _to_plain(exams)
    validate_exam_list(exams, path)
    return exams


def write_exam_list(path, exams):
    """Validate ``exams`` and write them as JSON, one exam per line, atomically.

    NumPy values and tuples are written as plain numbers and lists. The file
    is written to a temporary name in the same folder, then renamed.
    """
    path = Path(path)
    exams = _to_plain(exams)
    validate_exam_list(exams, path)
    try:
        text = "[\n" + ",\n".join(json.dumps(exam, allow_nan=False) for exam in exams) + "\n]\n"
    except ValueError as error:  # NaN or infinity: not JSON, other readers would refuse the file
        raise ExamListError(f"{path}: cannot write NaN or infinity into an exam list ({error})") from None
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
