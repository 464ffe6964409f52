"""The ``course-kit gmic`` sub-command; torch is imported only when it runs."""

from pathlib import Path


def _cmd_predict(args):
    from course_lib.env import pick_device
    from course_lib.exam_list import read_exam_list
    from course_lib.models.gmic_pipeline import (
        exams_from_image_folder, load_official_model, official_model_indices, predict,
    )

    device = pick_device(None if args.device == "auto" else args.device)
    if args.exam_list:
        exams = read_exam_list(args.exam_list)
        image_dir = args.image_dir or Path(args.exam_list).parent / "images"
    elif args.image_folder:
        exams, image_dir = exams_from_image_folder(args.image_folder), args.image_folder
    else:
        print("course-kit gmic predict: give --exam-list or --image-folder")
        return 2
    try:
        indices = official_model_indices(args.model_index)
        if args.weights and len(indices) > 1:
            raise ValueError("--weights names one checkpoint; it cannot be used with the ensemble")
        models = {i: load_official_model(i, device, args.weights) for i in indices}
    except (ValueError, RuntimeError) as error:  # unknown index, missing weights, bad checkpoint
        print(f"error: {error}")
        return 2
    rows = predict(exams, image_dir, args.output, models, device, args.segmentation_dir,
                   args.visualize, args.dpi)
    print(f"{len(rows)} predictions written to {Path(args.output) / 'predictions.csv'}")
    return 0


def add_gmic_parser(subparsers):
    """The ``gmic predict`` sub-command."""
    gmic = subparsers.add_parser("gmic", help="GMIC inference (run.sh as one command)")
    actions = gmic.add_subparsers(dest="gmic_command", required=True)
    run = actions.add_parser("predict", help="exam list or image folder -> predictions.csv (+ figures)")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--exam-list", help="exam list (.json, or GMIC's legacy .pkl)")
    source.add_argument("--image-folder", help="folder of <exam>_<VIEW>.png images (labels unknown)")
    run.add_argument("--image-dir", help="images of the exam list (default: images/ beside it)")
    run.add_argument("--segmentation-dir", help="<short>_<benign|malignant>.png masks for the figures")
    run.add_argument("--output", required=True, help="output folder (predictions.csv, visualization/)")
    run.add_argument("--model-index", default="1", help="1..5 or ensemble (default 1)")
    run.add_argument("--weights", help="checkpoint file instead of the registry's official weights")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    run.add_argument("--visualize", action="store_true", help="write one figure per image")
    run.add_argument("--dpi", type=int, default=500, help="figure resolution (official: 500)")
    run.set_defaults(run=_cmd_predict)
