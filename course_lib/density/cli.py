"""``course-kit density``: train and predict with the INFN density models.

    course-kit density train DATA OUT [--projections CC_L ...] [--input-size 64] [--recipe short]
    course-kit density train --phantoms 100 OUT          # SYNTHETIC phantom set, written to OUT/data
    course-kit density predict DATA WEIGHTS OUT [--split test]
    course-kit density predict DATA weights-improvement-46-0.80.h5 OUT --projections CC_R

DATA is a folder in the INFN layout (``<PROJ>/{train,validation,test}/{A,B,C,D}/*.png``
below it). ``train`` writes, per projection, ``OUT/<PROJ>/density_phantom_<PROJ>.npz``
(float16 weights), the original's history files and ``history.json``; ``predict`` reads
such a folder (or the kit's ``pretrained/``), or one projection's Keras file (the INFN's
own Keras 2 ``.h5``, or a ``.keras``), and writes the original's prediction files
(``predictions_ccr.txt`` ...) with the image names beside them, then prints the
figures of merit. ``course-kit preprocess --for density`` makes INFN-style images.
Nothing heavy is imported until a command runs.
"""

import sys

from course_lib.distributed import add_keras_distribute_option

PROJECTION_CHOICES = ("CC_L", "CC_R", "MLO_L", "MLO_R")
#: Input side of the kit's phantom-trained weights (the original's is 650).
KIT_INPUT_SIZE = 64


def _train(args):
    import json
    from pathlib import Path

    from course_lib.datasets.density import read_density_dataset
    from course_lib.distributed import keras_strategy_from_args
    from course_lib.phantoms.density_set import build_density_phantom_dataset
    from course_lib.density.data import LayoutError, check_layout
    from course_lib.density.model import weight_file_name
    from course_lib.density.train import (
        PHANTOM_SET, PHANTOM_SHAPE, save_weights_float16, train_projections, write_history,
    )
    from course_lib.io import atomic_output

    output = Path(args.output)
    if args.phantoms:
        frame = build_density_phantom_dataset(output / "data", args.phantoms, projections=args.projections,
                                              shape=PHANTOM_SHAPE, seed=PHANTOM_SET["seed"],
                                              splits=PHANTOM_SET["splits"])
    elif args.data:
        frame = read_density_dataset(args.data)
    else:
        print("course-kit density train: give DATA or --phantoms N", file=sys.stderr)
        return 2
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    try:
        check_layout(frame, args.projections, ("train", "validation"), root=args.data or output / "data")
        trained = train_projections(frame, args.projections, args.input_size, args.recipe, seed=args.seed,
                                    verbose=1 if sys.stdout.isatty() else 2,
                                    strategy=keras_strategy_from_args(args), **overrides)
    except LayoutError as error:
        print(f"course-kit density train: error: {error}", file=sys.stderr)
        return 2
    for projection, (model, history) in trained.items():
        folder = output / projection
        save_weights_float16(model, folder / weight_file_name(projection))
        write_history(history, folder)
        with atomic_output(folder / "history.json") as tmp:
            tmp.write_text(json.dumps(history, indent=1))
        print(f"{projection}: best val accuracy {max(history['val_accuracy']):.3f} -> {folder}")
    return 0


def _keras_file_model(path, input_size):
    """One projection's model from a Keras file: the INFN's Keras 2 ``.h5``, or a ``.keras``/``.weights.h5``."""
    from course_lib.density.keras2_weights import build_from_keras2_h5
    from course_lib.density.model import load_density_model

    if path.name.endswith((".keras", ".weights.h5")):
        return load_density_model(path, input_size)
    model, report = build_from_keras2_h5(path, input_size)
    print(report.summary())
    return model


def _predict(args):
    from pathlib import Path

    import numpy as np

    from course_lib.datasets.density import read_density_dataset
    from course_lib.density.evaluate import combine_projections, figures_of_merit
    from course_lib.density.model import build_density_resnet, weight_file_name
    from course_lib.density.predict import predict_split, write_predictions
    from course_lib.density.train import load_weights_float16

    source = Path(args.weights)
    if not source.exists():
        print(f"course-kit density predict: {source}: no such file or folder", file=sys.stderr)
        return 2
    if source.is_file() and len(args.projections) != 1:
        print(f"course-kit density predict: {source} holds one projection's model: say which with "
              "--projections (e.g. --projections CC_R)", file=sys.stderr)
        return 2
    frame = read_density_dataset(args.data)
    probabilities, truth = {}, None
    for projection in args.projections:
        if source.is_file():
            try:
                model = _keras_file_model(source, args.input_size)
            except ValueError as error:  # not HDF5, or not this architecture: the message lists what differs
                print(f"course-kit density predict: error: {error}", file=sys.stderr)
                return 2
        else:
            weights = next(source.rglob(weight_file_name(projection)), None)
            if weights is None:
                print(f"course-kit density predict: no {weight_file_name(projection)} under {args.weights}",
                      file=sys.stderr)
                return 2
            model = load_weights_float16(build_density_resnet(args.input_size or KIT_INPUT_SIZE), weights)
        try:
            rows, probabilities[projection] = predict_split(model, frame, projection, args.split)
        except FileNotFoundError as error:
            print(f"course-kit density predict: {args.data}: {error}", file=sys.stderr)
            return 2
        write_predictions(args.output, projection, probabilities[projection], names=rows["path"])
        truth = rows["label_index"].to_numpy()
        fom = figures_of_merit(truth, probabilities[projection])
        print(f"{projection:6} n={len(rows):4d}  accuracy {fom['accuracy']:.3f}  "
              f"QWK {fom['kappa_quadratic']:.3f}  linear kappa {fom['kappa_linear']:.3f}")
    sizes = {len(p) for p in probabilities.values()}
    if len(sizes) == 1:
        for name, combined in combine_projections(probabilities).items():
            fom = figures_of_merit(truth, combined)
            print(f"{name:6} accuracy {fom['accuracy']:.3f}  QWK {fom['kappa_quadratic']:.3f}")
    print(f"predictions written to {args.output}")
    return 0 if np.isfinite(list(probabilities.values())[0]).all() else 1


def add_parser(commands):
    """Add ``course-kit density`` and its sub-commands to the ``course-kit`` parser."""
    parser = commands.add_parser("density", help="INFN BI-RADS density ResNet: train, predict",
                                 description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="density_command", required=True)

    train = sub.add_parser("train", help="train one model per projection",
                           epilog="example: course-kit density train --phantoms 100 runs/density")
    train.add_argument("data", nargs="?", help="folder in the INFN layout (or use --phantoms)")
    train.add_argument("output", help="output folder")
    train.add_argument("--phantoms", type=int, default=None, metavar="N",
                       help="build a SYNTHETIC phantom set with N patients per class into OUTPUT/data")
    train.add_argument("--projections", nargs="+", choices=PROJECTION_CHOICES, default=list(PROJECTION_CHOICES))
    train.add_argument("--input-size", type=int, default=KIT_INPUT_SIZE, help="square input side (original: 650)")
    train.add_argument("--recipe", choices=("short", "original"), default="short",
                       help="short: the CPU lesson's; original: plain SGD 0.01, batch 4, 100 epochs")
    train.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    train.add_argument("--seed", type=int, default=0)
    add_keras_distribute_option(train)
    train.set_defaults(run=_train)

    predict = sub.add_parser("predict", help="write the original's prediction files and print figures of merit",
                             epilog="example: course-kit density predict runs/density/data pretrained/ preds/")
    predict.add_argument("data", help="folder in the INFN layout")
    predict.add_argument("weights", help="folder holding density_phantom_<PROJ>.npz files, or one projection's "
                         "Keras file (the INFN's Keras 2 .h5, a .keras)")
    predict.add_argument("output", help="output folder for predictions_*.txt")
    predict.add_argument("--projections", nargs="+", choices=PROJECTION_CHOICES, default=list(PROJECTION_CHOICES))
    predict.add_argument("--split", choices=("train", "validation", "test"), default="test")
    predict.add_argument("--input-size", type=int, default=None,
                         help=f"square input side (default: {KIT_INPUT_SIZE} for .npz weights, a Keras file's own)")
    predict.set_defaults(run=_predict)
    return parser


def preprocess_target(args):
    """``course-kit preprocess --for density``: INFN-style 8-bit images."""
    from course_lib.density.preprocess import preprocess_target as target

    return target()
