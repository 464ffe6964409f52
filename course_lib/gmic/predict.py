"""GMIC's ``run.sh`` as one function: exam list -> crop -> optimal centres -> model -> predictions.csv.

``predictions.csv`` follows the official format (docs/original_pipelines.md, GMIC predictions.csv): columns
``image_index, benign_pred, malignant_pred, benign_label, malignant_label``, no index,
floats with 4 decimals. A single model writes rows in exam order, views L-CC, R-CC,
L-MLO, R-MLO, with integer labels; the ensemble (models 1-5) writes the NaN-ignoring
mean per image, rows sorted by ``image_index``, labels as floats. Images given as a
plain folder have no labels: those columns are left empty.

Bad input loses nothing that could be done: an image that cannot be read or prepared is
skipped, and so is an exam left without images or listed with ``problems`` (by
``course-kit preprocess``); each is reported with the reason (:func:`predict_exams`) and the
rows of the other exams are written. Short names are checked to be safe file stems
(:func:`course_lib.exam_list.check_short_name`), and every image read and figure written is
checked to lie inside its folder.
"""

import csv
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from course_lib.batch import contained_path
from course_lib.exam_list import VIEWS, ExamListError, check_short_name, view_labels
from course_lib.gmic.config import GMICGeometry
from course_lib.gmic.data import segmentation_paths
from course_lib.gmic.preprocess import gmic_input_window, preprocess_view
from course_lib.io import atomic_output, read_png

PREDICTION_COLUMNS = ("image_index", "benign_pred", "malignant_pred", "benign_label", "malignant_label")
FILE_VIEW = re.compile(r"^(?P<exam>.+)_(?P<view>[LR]-(CC|MLO))$")


@dataclass
class ViewInput:
    """One image ready for the model."""

    short_name: str
    view: str
    window: np.ndarray  # (H, W) float32, standardised
    labels: tuple | None  # (benign, malignant), None when unknown
    benign_mask: np.ndarray | None = None  # model frame, from the segmentation folder
    malignant_mask: np.ndarray | None = None


def exams_from_image_folder(folder):
    """An exam list built from file names ``<exam>_<VIEW>.png`` (labels unknown).

    The other PNG files (no view in the name, or a name that is not a safe file stem) are
    listed in a warning, or in the error when no file matches.
    """
    exams, unmatched = {}, []
    if not Path(folder).is_dir():
        raise FileNotFoundError(2, "no such folder", str(folder))
    for path in sorted(Path(folder).glob("*.png")):
        match = FILE_VIEW.match(path.stem)
        try:
            check_short_name(path.stem, str(folder))
        except ExamListError:
            match = None
        if match:
            exam = exams.setdefault(match["exam"], {"horizontal_flip": "NO", **{v: [] for v in VIEWS}})
            exam[match["view"]].append(path.stem)
        else:
            unmatched.append(path.name)
    shown = ", ".join(unmatched[:10]) + (f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else "")
    if not exams:
        raise ValueError(f"no <exam>_<VIEW>.png files (e.g. 0_L-CC.png) in {folder}"
                         + (f"; these match no view name: {shown}" if unmatched else ""))
    if unmatched:
        warnings.warn(f"{folder}: {len(unmatched)} PNG file(s) match no <exam>_<VIEW>.png name and are "
                      f"not used: {shown}", stacklevel=2)
    return list(exams.values())


def _image_path(folder, short):
    """``folder/<short>.png`` for a checked short name (the check keeps it inside ``folder``)."""
    check_short_name(short, f"image folder {folder}")
    return Path(folder) / f"{short}.png"


def _prepare_view(exam, view, index, short, image_dir, segmentation_dir, geometry):
    """The :class:`ViewInput` of one image of ``exam``; raises naming the file."""
    path = _image_path(image_dir, short)
    if not path.is_file():
        raise FileNotFoundError(2, "image named in the exam list does not exist", str(path))
    image = read_png(path, expect_bits=16)
    try:
        if "best_center" in exam:
            window = gmic_input_window(image, view, exam["best_center"][view][index],
                                       exam["horizontal_flip"], geometry.window)
        else:
            window, _ = preprocess_view(image, view, exam["horizontal_flip"], geometry)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    labels = view_labels(exam["cancer_label"], view) if "cancer_label" in exam else None
    masks = [None, None]
    if segmentation_dir is not None:
        masks = [read_png(p, expect_bits=8) > 0 if p is not None else None
                 for p in segmentation_paths(segmentation_dir, short)]
    return ViewInput(short, view, window, labels, *masks)


def prepare_views(exams, image_dir, segmentation_dir=None, geometry=GMICGeometry.official(), skipped=None):
    """Yield :class:`ViewInput` per exam, in GMIC's order (exam, then L-CC, R-CC, L-MLO, R-MLO).

    Exams that already carry ``best_center`` (an exam list written by ``course-kit
    preprocess``) are read as cropped images; otherwise stages 1 and 2 run here.

    With a ``skipped`` list, images that cannot be read or prepared, exams left without
    images and exams listed with ``problems`` are appended to it (dicts: ``exam``,
    ``image``, ``reason``) and left out; without one the first of them raises.
    """
    for number, exam in enumerate(exams):
        def skip(reason, image=None):
            if skipped is None:
                raise ValueError(f"exam {number}: {reason}")
            skipped.append({"exam": number, "image": image, "reason": reason})

        if exam.get("problems"):
            skip("listed with problems by preprocessing: " + "; ".join(map(str, exam["problems"])))
            continue
        views = []
        for view in VIEWS:
            for index, short in enumerate(exam[view]):
                try:
                    views.append(_prepare_view(exam, view, index, short, image_dir, segmentation_dir, geometry))
                except (OSError, ValueError, IndexError, KeyError) as error:
                    if skipped is None:
                        raise
                    skip(f"{type(error).__name__}: {error}", short)
        if views:
            yield views
        elif not any(exam[view] for view in VIEWS):
            skip("no image in any view")


def run_model(model, views, device):
    """GMIC on a list of :class:`ViewInput` as one batch; returns the output on the CPU."""
    batch = torch.from_numpy(np.stack([v.window for v in views]))[:, None].to(device)
    with torch.inference_mode():
        output = model(batch)
    return type(output)(**{k: v.cpu() for k, v in vars(output).items()})


def prediction_rows(views, output):
    """Rows of predictions.csv for one batch of views."""
    return [
        {"image_index": v.short_name,
         "benign_pred": float(output.y_fusion[k, 0]), "malignant_pred": float(output.y_fusion[k, 1]),
         "benign_label": None if v.labels is None else v.labels[0],
         "malignant_label": None if v.labels is None else v.labels[1]}
        for k, v in enumerate(views)
    ]


def ensemble_rows(rows_per_model):
    """NaN-ignoring mean of the predictions per image; labels from the first model; sorted by image."""
    merged = {}
    for rows in rows_per_model:
        for row in rows:
            merged.setdefault(row["image_index"], []).append(row)
    result = []
    for image_index in sorted(merged):
        group = merged[image_index]
        mean = {key: float(np.nanmean([r[key] for r in group])) for key in ("benign_pred", "malignant_pred")}
        labels = {key: None if group[0][key] is None else float(group[0][key])
                  for key in ("benign_label", "malignant_label")}
        result.append({"image_index": image_index, **mean, **labels})
    return result


def _format(value):
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_predictions_csv(rows, path):
    """Write rows in the official predictions.csv format, atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PREDICTION_COLUMNS)
        for row in rows:
            writer.writerow([_format(row[c]) for c in PREDICTION_COLUMNS])
    return Path(path)


def save_visualization(view, output, index, path, crop_shape=(256, 256), dpi=500):
    """The official per-image figure (see :func:`course_lib.gmic.figures.gmic_view_figure`), saved as PNG.

    ``path`` is written atomically: a link at ``path`` is replaced, never followed.
    """
    import matplotlib.pyplot as plt

    from course_lib.gmic.figures import gmic_view_figure

    fig = gmic_view_figure(view.window, output.saliency_map[index].numpy(),
                           output.patch_locations[index].numpy(), output.patches[index].numpy(),
                           output.patch_attns[index].numpy(), crop_shape,
                           view.benign_mask, view.malignant_mask)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def describe_skipped(item):
    """``"image 0_L-CC of exam 3: reason"`` or ``"exam 3: reason"``, for messages."""
    what = f"image {item['image']} of exam {item['exam']}" if item["image"] else f"exam {item['exam']}"
    return f"{what}: {item['reason']}"


def predict_exams(exams, image_dir, output_dir, models, device="cpu", segmentation_dir=None,
                  visualize=False, dpi=500, geometry=GMICGeometry.official()):
    """Run ``models`` (dict index -> GMIC) over ``exams`` and write predictions.csv.

    One exam's views form one batch. With several models (the ensemble) the predictions
    are averaged and visualizations come from the first model only, as in run.sh.
    Bad images and exams are skipped (see :func:`prepare_views`); predictions.csv holds
    the rows of every exam done, and is written even when a later exam raises.

    Returns ``(rows, skipped)``: the rows written and the skipped images and exams.
    """
    if dpi <= 0:
        raise ValueError(f"dpi must be more than 0, not {dpi}")
    output_dir = Path(output_dir)
    figures = output_dir / "visualization"
    rows_per_model = {index: [] for index in models}
    skipped = []
    try:
        for views in prepare_views(exams, image_dir, segmentation_dir, geometry, skipped):
            done = {}
            for number, (index, model) in enumerate(models.items()):
                output = run_model(model, views, device)
                done[index] = prediction_rows(views, output)
                if visualize and number == 0:
                    for k, view in enumerate(views):
                        save_visualization(view, output, k, contained_path(figures, f"{view.short_name}.png"),
                                           model.config.crop_shape, dpi)
            for index, rows in done.items():  # an exam counts once every model has done it
                rows_per_model[index] += rows
    finally:
        rows = ensemble_rows(rows_per_model.values()) if len(models) > 1 else next(iter(rows_per_model.values()))
        write_predictions_csv(rows, output_dir / "predictions.csv")
    return rows, skipped


def predict(exams, image_dir, output_dir, models, device="cpu", segmentation_dir=None,
            visualize=False, dpi=500, geometry=GMICGeometry.official()):
    """:func:`predict_exams`, returning the rows only; skipped images and exams are warned about."""
    rows, skipped = predict_exams(exams, image_dir, output_dir, models, device, segmentation_dir,
                                  visualize, dpi, geometry)
    for item in skipped:
        warnings.warn(f"skipped {describe_skipped(item)}", stacklevel=2)
    return rows
