"""``course-kit amil``: train the kit's A-MIL weights, index and unpack BreakHis.

    course-kit amil train [--model amil|gated|cnn] [--epochs N] ...   phantom-trained weights + model card
    course-kit amil train --per-magnification ROOT [--epochs N] ...   one model per magnification (full profile)
    course-kit amil table ROOT                                        index a BreakHis folder, list skipped files
    course-kit amil extract ARCHIVE DEST                              unpack a download, refusing unsafe paths
    course-kit amil export ROOT DEST                                  the study's <mag>X/<train|test>/<0|1> layout

Heavy libraries (torch, pandas) are imported inside the handlers.
"""

import sys


def _train(args):
    from course_lib.amil.train import TrainSettings, train_phantom_kit

    settings = TrainSettings(epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
                             seed=args.seed, threads=args.threads, lr_schedule=args.lr_schedule,
                             augment=args.augment, average_from=args.average_from)
    if args.per_magnification:
        return _train_per_magnification(args, settings)
    card = train_phantom_kit(args.model, args.out, settings, args.train_patients, args.images_per_patient,
                             args.test_patients, centre_inputs=args.centre_inputs,
                             validation_patients=args.validation_patients, keep_best_epoch=args.keep_best_epoch,
                             attention_smoothing=args.attention_smoothing, what_helped=args.what_helped)
    print(f"held-out SYNTHETIC patients: {card['test_metrics']}")
    return 0


def _train_per_magnification(args, settings):
    from course_lib.amil.data import breakhis_table
    from course_lib.amil.evaluate import format_interval
    from course_lib.amil.train import train_per_magnification

    if args.model == "cnn":
        print("error: --per-magnification trains A-MIL models: use --model amil or gated", file=sys.stderr)
        return 2
    try:
        table = breakhis_table(args.per_magnification)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if table.skipped:
        print(f"{len(table.skipped)} files skipped (not BreakHis names): see `course-kit amil table`")
    try:
        summary = train_per_magnification(table.images, args.out, settings, gated=args.model == "gated",
                                          centre_inputs=args.centre_inputs,
                                          attention_smoothing=args.attention_smoothing,
                                          magnifications=args.magnifications,
                                          test_fraction=args.test_fraction, n_bootstrap=args.bootstrap)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for row in summary.itertuples():
        print(f"{row.magnification}X ({row.test_images} test images, {row.test_patients} patients): accuracy "
              f"{format_interval(row.accuracy, (row.accuracy_low, row.accuracy_high))}, AUC "
              f"{format_interval(row.auc, (row.auc_low, row.auc_high))}  -> {row.weights}")
    return 0


def _table(args):
    from course_lib.amil.data import breakhis_table, patient_split

    try:
        table = breakhis_table(args.root)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(table.report())
    if args.csv:
        from course_lib.io import atomic_output

        images = table.images
        if images["split"].isna().any():
            images = patient_split(images, args.test_fraction, args.seed)
            print("no split in the layout: patient-level split made "
                  f"(test fraction {args.test_fraction}, seed {args.seed})")
        with atomic_output(args.csv) as tmp:
            images.to_csv(tmp, index=False)
    return 0


def _extract(args):
    from course_lib.amil.data import safe_extract

    try:
        written = safe_extract(args.archive, args.dest)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{len(written)} files unpacked")
    return 0


def _export(args):
    from course_lib.amil.data import breakhis_table, patient_split
    from course_lib.datasets.breakhis import make_amil_layout

    images = breakhis_table(args.root).images
    if images["split"].isna().any():
        images = patient_split(images, args.test_fraction, args.seed)
    laid_out = make_amil_layout(images, args.dest, mode=args.mode)
    print(f"{len(laid_out)} images laid out as <mag>X/<train|test>/<0|1>/")
    return 0


def add_parser(commands):
    """Add ``amil`` and its sub-commands to the ``course-kit`` sub-parsers ``commands``."""
    amil = commands.add_parser("amil", help="attention MIL on BreakHis (notebook 04)")
    sub = amil.add_subparsers(dest="amil_command", required=True)

    train = sub.add_parser("train", help="train the kit's weights on SYNTHETIC phantom patients")
    train.add_argument("--model", choices=("amil", "gated", "cnn"), default="amil")
    train.add_argument("--out", default="runs/amil",
                       help="folder for amil_phantom_<model>.pt and .json (the default never touches the kit's "
                            "weights in pretrained/)")
    train.add_argument("--train-patients", type=int, default=40)
    train.add_argument("--test-patients", type=int, default=12)
    train.add_argument("--images-per-patient", type=int, default=4)
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--learning-rate", type=float, default=1e-4)
    train.add_argument("--batch-size", type=int, default=1)
    train.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                       help="cosine: the learning rate falls along half a cosine over the epochs (not in the study)")
    train.add_argument("--augment", action="store_true",
                       help="turn each patch and re-stain each bag at every visit (A-MIL only; not in the study)")
    train.add_argument("--average-from", type=int, default=0, metavar="EPOCH",
                       help="end with the mean of the weights after epochs EPOCH..last (stochastic weight "
                            "averaging; not in the study)")
    train.add_argument("--seed", type=int, default=1)
    train.add_argument("--centre-inputs", action="store_true",
                       help="map patches from [0, 1] to [-1, 1] (not in the study; trains faster)")
    train.add_argument("--attention-smoothing", type=float, default=0.0, metavar="ALPHA",
                       help="smooth the attention scores over the patch grid, alpha in [0, 1) (Sm operator of "
                            "Castro-Macias et al. 2024; A-MIL only; not in the study)")
    train.add_argument("--threads", type=int, default=2, help="CPU threads (fixed, for reproducibility)")
    train.add_argument("--validation-patients", type=int, default=8,
                       help="SYNTHETIC validation patients (x 2 images) scored after every epoch (0: none)")
    train.add_argument("--keep-best-epoch", action="store_true",
                       help="keep the epoch with the best validation accuracy + attention localisation AUC")
    train.add_argument("--what-helped", help="a sentence for the model card: what made these weights work")
    train.add_argument("--per-magnification", metavar="ROOT",
                       help="instead of phantoms: one model per magnification on the BreakHis folder ROOT "
                            "(the full profile; writes amil_breakhis_<mag>X.pt + card each, and a summary CSV)")
    train.add_argument("--magnifications", type=int, nargs="+", help="with --per-magnification: only these")
    train.add_argument("--bootstrap", type=int, default=1000,
                       help="with --per-magnification: patient-bootstrap resamples of the 95 %% intervals")
    train.add_argument("--test-fraction", type=float, default=0.3,
                       help="with --per-magnification, where the layout has no patient-level split")
    train.set_defaults(run=_train)

    for name, handler, text in (("table", _table, "index a BreakHis folder and report skipped files"),
                                ("export", _export, "write the study's <mag>X/<split>/<0|1> layout")):
        command = sub.add_parser(name, help=text)
        command.add_argument("root", help="BreakHis folder (archive, Kaggle fold1, A-MIL or flat layout)")
        if name == "export":
            command.add_argument("dest", help="output folder")
            command.add_argument("--mode", choices=("copy", "symlink"), default="copy")
        else:
            command.add_argument("--csv", help="write the table (with a patient-level split) to this CSV")
        command.add_argument("--test-fraction", type=float, default=0.3)
        command.add_argument("--seed", type=int, default=0)
        command.set_defaults(run=handler)

    extract = sub.add_parser("extract", help="unpack a BreakHis archive, refusing paths outside DEST")
    extract.add_argument("archive")
    extract.add_argument("dest")
    extract.set_defaults(run=_extract)
    return amil
