"""``course-kit end2end``: Shen et al.'s patch -> whole-image classifier (sample patches, train, predict).

Heavy libraries are imported inside the handlers, so ``--help`` stays instant.
"""

import sys

from course_lib.distributed import add_keras_distribute_option


def _sample_patches(args):
    from course_lib.end2end.patches import SamplingSettings, sample_patches

    try:
        settings = SamplingSettings(patch_size=args.patch_size, n_roi=args.n_roi, n_background=args.n_background,
                                    n_hard=args.n_hard, n_classes=args.classes, seed=args.seed)
        report = sample_patches(args.input, args.output, settings, val_size=args.val_size,
                                test_size=args.test_size, processes=args.processes)
    except (ValueError, FileNotFoundError) as error:
        print(f"course-kit end2end sample-patches: {error}", file=sys.stderr)
        return 2
    print(report.counts().to_string())
    print(f"{len(report.index)} patches from {report.index.groupby(['patient_id', 'side', 'view']).ngroups} "
          f"views written to {args.output} (index.csv); {len(report.problems)} problem(s)"
          + (" listed in problems.txt" if report.problems else ""))
    return 0


def _train(args):
    from course_lib.distributed import keras_strategy_from_args
    from course_lib.end2end import pipeline
    from course_lib.end2end.train import make_deterministic

    print(make_deterministic(args.seed, args.threads))
    settings = pipeline.LessonSettings(n_patients=args.patients, seed=args.seed)
    data = pipeline.prepare(args.workdir, settings)
    print(data.sampling_report.counts().to_string())
    patch, whole, histories = pipeline.train(data, settings, strategy=keras_strategy_from_args(args))
    metrics = pipeline.evaluate(data, patch, whole, settings)
    for name in ("auc", "auc_flips"):
        auc, low, high = metrics[name]
        print(f"test {name:9} {auc:.3f} (95% CI {low:.3f}-{high:.3f}), n={metrics['n_images']}")
    print(f"pointing game: heatmap {metrics['pointing_heatmap']:.3f}, Grad-CAM {metrics['pointing_gradcam']:.3f} "
          f"({metrics['n_pointing']} images with a malignant lesion)")
    if args.weights:
        command = f"course-kit end2end train WORKDIR --patients {args.patients} --seed {args.seed} --weights {args.weights}"
        digest = pipeline.save(args.weights, patch, whole, data, settings, histories, metrics, command)
        print(f"weights written to {args.weights} (sha256 {digest[:12]}...) with their model card")
    return 0


def _predict(args):
    from pathlib import Path

    from course_lib.end2end import pipeline
    from course_lib.end2end.data import load_images
    from course_lib.end2end.model import BACKBONES
    from course_lib.end2end.predict import model_input, predict_cancer
    from course_lib.end2end.scaling import infer_bit_depth
    from course_lib.io import atomic_output

    patch, whole, card = pipeline.load(args.weights)
    shape = tuple(card["settings"]["shape"])
    rows, failures = [], 0
    for path in map(Path, args.images):
        try:
            if path.suffix.lower() == ".dcm":
                from course_lib.dicom import read_mammogram

                pixels, info = read_mammogram(path)
                bits = int(info.bits_stored)
                image = load_images_from_array(pixels, shape)
            else:
                image = load_images(path.parent, [path.name], shape)[0]
                bits = infer_bit_depth(image.max()) if args.bits is None else args.bits
            x = model_input(image[None], bits, card["intensity"]["featurewise_mean"], BACKBONES[card["settings"]["backbone"]])
            probability = float(predict_cancer(whole, x, flips=not args.no_flips)[0])
            rows.append(f"{path.name},{bits},{probability:.4f},")
        except (ValueError, OSError) as error:
            rows.append(f"{path.name},,,{str(error).replace(',', ';')}")
            failures += 1
            print(f"course-kit end2end predict: {path}: {error}", file=sys.stderr)
    with atomic_output(args.output) as tmp:
        tmp.write_text("file,bits,p_cancer,problem\n" + "".join(r + "\n" for r in rows))
    print("\n".join(rows))
    print(f"predictions written to {args.output}; {card['warning']}")
    return 1 if failures else 0


def load_images_from_array(pixels, shape):
    """A DICOM's pixel array resized like the PNG path (bicubic to ``shape``)."""
    from course_lib.end2end.data import _resize

    return _resize(pixels, shape)


def add_parser(commands):
    """Add ``course-kit end2end`` and its sub-commands to the ``course-kit`` parser."""
    parser = commands.add_parser("end2end", help="Shen et al. patch -> whole-image classifier (Keras)",
                                 description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="end2end_command", required=True)

    sample = sub.add_parser("sample-patches", help="sample 16-bit PNG patches from images and ROI masks",
                            epilog="example: course-kit end2end sample-patches cbis_png/ patches/ --classes 5")
    sample.add_argument("input", help="converted CBIS-DDSM folder (metadata.csv, full/, roi/)")
    sample.add_argument("output", help="output folder (resumed if it exists)")
    sample.add_argument("--patch-size", type=int, default=48, help="patch side in pixels (paper: 224 at 1152x896)")
    sample.add_argument("--n-roi", type=int, default=10, help="patches per lesion (paper's S10: 10)")
    sample.add_argument("--n-background", type=int, default=10, help="background patches per view")
    sample.add_argument("--n-hard", type=int, default=5, help="hard negatives per view, at most")
    sample.add_argument("--classes", type=int, choices=(3, 5), default=3)
    sample.add_argument("--val-size", type=float, default=0.1)
    sample.add_argument("--test-size", type=float, default=0.2)
    sample.add_argument("--processes", type=int, default=1)
    sample.add_argument("--seed", type=int, default=12345)
    sample.set_defaults(run=_sample_patches)

    train = sub.add_parser("train", help="train both stages on SYNTHETIC phantoms and report held-out metrics",
                           epilog="example: course-kit end2end train runs/end2end --weights pretrained/end2end_phantom_small.npz")
    train.add_argument("workdir", help="working folder (phantoms and patches are written here)")
    train.add_argument("--patients", type=int, default=60)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=2)
    train.add_argument("--weights", default=None, help="write float16 weights and a model card here")
    add_keras_distribute_option(train)
    train.set_defaults(run=_train)

    predict = sub.add_parser("predict", help="P(cancer) of PNG or DICOM mammograms with the kit's weights",
                             epilog="example: course-kit end2end predict pretrained/end2end_phantom_small.npz a.png b.dcm")
    predict.add_argument("weights", help="weights written by `course-kit end2end train --weights`")
    predict.add_argument("images", nargs="+", help="16-bit PNG or DICOM files")
    predict.add_argument("--output", default="end2end_predictions.csv")
    predict.add_argument("--bits", type=int, default=None, help="bit depth of PNGs (default: inferred from each image)")
    predict.add_argument("--no-flips", action="store_true", help="no flip test-time augmentation")
    predict.set_defaults(run=_predict)
    return parser
