"""``course-kit gmic predict`` and ``course-kit gmic train``; torch is imported only when one runs."""

from pathlib import Path

from course_lib.cli import at_least
from course_lib.gmic.config import GMICGeometry, PhantomRecipe

_OFFICIAL = GMICGeometry.official()


def _cmd_predict(args):
    """Exit code 0: every exam predicted; 1: some images or exams skipped (listed on stderr);
    2: bad input (``course-kit``'s error handler prints it)."""
    import sys
    import warnings

    from course_lib.env import pick_device
    from course_lib.exam_list import read_exam_list
    from course_lib.gmic.predict import describe_skipped, exams_from_image_folder, predict_exams
    from course_lib.gmic.weights import load_official_model, official_model_indices

    try:
        device = pick_device(None if args.device == "auto" else args.device)
    except RuntimeError as error:  # torch's message lists every device type it knows
        raise ValueError(f"unknown device {args.device!r}: use auto, cpu or cuda (cuda:1, ...)") from error
    if args.exam_list:
        exams = read_exam_list(args.exam_list)
        image_dir = args.image_dir or Path(args.exam_list).parent / "images"
    else:
        with warnings.catch_warnings(record=True) as caught:  # files that match no view name
            warnings.simplefilter("always")
            exams, image_dir = exams_from_image_folder(args.image_folder), args.image_folder
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
    indices = official_model_indices(args.model_index)
    if args.weights and len(indices) > 1:
        raise ValueError("--weights names one checkpoint; it cannot be used with the ensemble")
    models = {i: load_official_model(i, device, args.weights) for i in indices}
    rows, skipped = predict_exams(exams, image_dir, args.output, models, device, args.segmentation_dir,
                                  args.visualize, args.dpi)
    for item in skipped:
        print(f"skipped {describe_skipped(item)}", file=sys.stderr)
    print(f"{len(rows)} predictions written to {Path(args.output) / 'predictions.csv'}"
          + (f"; {len(skipped)} image(s) or exam(s) skipped" if skipped else ""))
    return 1 if skipped else 0


def _cmd_train(args):
    from dataclasses import fields

    from course_lib.gmic.train import train_phantom_weights

    values = {f.name: getattr(args, f.name) for f in fields(PhantomRecipe)}
    recipe = PhantomRecipe(**{**values, "dense_range": tuple(values["dense_range"])})
    # Every setting written out, so that the model card's command reproduces the weights.
    options = " ".join(f"--{name.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, tuple) else value}"
                       for name, value in vars(recipe).items())
    train_phantom_weights(recipe, args.out, f"course-kit gmic train {options} --out {args.out}")
    return 0


def _add_predict(actions):
    run = actions.add_parser(
        "predict", help="exam list or image folder -> predictions.csv (+ figures)",
        description="GMIC's run.sh as one command: crop, optimal centre, model, predictions.csv.",
        epilog="example: course-kit gmic predict --exam-list exams/exam_list.json --output out --visualize",
    )
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
    run.add_argument("--dpi", type=at_least(0, strictly=True), default=500, help="figure resolution (official: 500)")
    run.set_defaults(run=_cmd_predict)


def _add_train(actions):
    defaults = PhantomRecipe()
    train = actions.add_parser(
        "train", help="train GMIC on SYNTHETIC phantoms at quarter scale (CPU, about 13 minutes)",
        description="Train the kit's phantom weights; writes OUT.pt (float16) and its model card OUT.json.",
        epilog="example: course-kit gmic train --train-exams 200 --epochs 8 --out pretrained/gmic_phantom_quarter",
    )
    for name in ("train_exams", "validation_exams", "test_exams", "epochs", "batch_size"):
        train.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    train.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    train.add_argument("--dense-range", type=float, nargs=2, default=defaults.dense_range,
                       help="interval of the phantoms' dense fraction (fatty breasts by default)")
    train.add_argument("--beta", type=float, default=defaults.beta, help="weight of the saliency regulariser")
    train.add_argument("--lesion-contrast", type=float, default=defaults.lesion_contrast,
                       help="multiplies the phantoms' lesion signal (teaching phantoms)")
    train.add_argument("--mask-weight", type=float, default=defaults.mask_weight,
                       help="lesion-cell supervision of the saliency map (0: the paper's weakly supervised loss)")
    train.add_argument("--out", default="pretrained/gmic_phantom_quarter", help="output path without suffix")
    train.set_defaults(run=_cmd_train)


def add_parser(commands):
    """Add ``course-kit gmic`` (``predict``, ``train``) to ``course-kit``'s sub-commands."""
    gmic = commands.add_parser("gmic", help="GMIC: inference (run.sh as one command) and training on phantoms")
    actions = gmic.add_subparsers(dest="gmic_command", required=True)
    _add_predict(actions)
    _add_train(actions)
    return gmic


def add_preprocess_options(group):
    """The ``--for gmic`` options of ``course-kit preprocess`` (official geometry by default)."""
    group.add_argument("--window", type=at_least(0, strictly=True), nargs=2, default=list(_OFFICIAL.window), metavar=("ROWS", "COLS"),
                       help=f"window that stage 2 centres (default: {_OFFICIAL.window[0]} {_OFFICIAL.window[1]})")
    group.add_argument("--crop-buffer", type=at_least(0), default=_OFFICIAL.crop_buffer,
                       help=f"stage 1 margin (default: {_OFFICIAL.crop_buffer})")
    group.add_argument("--crop-iterations", type=at_least(1), default=_OFFICIAL.crop_iterations,
                       help=f"stage 1 erosions and dilations (default: {_OFFICIAL.crop_iterations})")


def preprocess_target(args):
    """GMIC's step of ``course-kit preprocess`` at the geometry the options give (validated)."""
    from course_lib.gmic.preprocess import preprocess_target as target

    geometry = GMICGeometry(window=tuple(args.window), crop_buffer=args.crop_buffer,
                            crop_iterations=args.crop_iterations)
    return target(geometry)
