"""``course-kit``: the kit's command line.

    course-kit fetch --list          every registry key, its licence and where it is
    course-kit fetch KEY [KEY ...]   fetch files into the cache (mirror or network)
    course-kit fetch --all           fetch everything (fills a workshop mirror)
    course-kit preprocess IN OUT     a DICOM folder, CBIS-DDSM tree or exam list through a pipeline's
                                     per-image step (--for gmic: crop + optimal centre)
    course-kit samples [--check]     regenerate data_samples/ from code, or check it
    course-kit run [--profile P]     run every notebook with papermill into build/
    course-kit env                   the environment report
    course-kit gmic predict|train    and the other pipelines' own commands (course-kit PIPELINE --help)

This module is the kit's entry point: the one place that loads the pipeline packages
(:data:`PIPELINES`), by name, so that each adds its own sub-commands from its ``cli.py``.
Nothing heavy is imported until a command runs, so ``--help`` is instant.
"""

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

#: The pipeline packages of the course, one per published pipeline (and lesson).
PIPELINES = ("gmic", "density", "end2end", "amil")


def _cmd_fetch(args):
    from course_lib import data

    if args.list:
        registry = data.load_registry()
        width = max(map(len, registry))
        print(f"{'key':<{width}}  {'where':<7}  licence")
        for key, entry in registry.items():
            print(f"{key:<{width}}  {data.locate(key) or 'remote':<7}  {entry.licence}")
        print(f"\ncache: {data.cache_dir()}   mirror: {data.mirror_dir() or '(none: set COURSE_DATA_MIRROR)'}")
        return 0
    keys = list(data.load_registry()) if args.all else args.keys
    if not keys:
        print("course-kit fetch: give one or more keys, --all, or --list", file=sys.stderr)
        return 2
    failures = 0
    for key in keys:
        try:
            print(data.fetch(key, progressbar=sys.stderr.isatty()))
        except (data.UnknownKeyError, data.DataUnavailableError, data.HashMismatchError) as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


def _cmd_env(args):
    from course_lib.env import environment_report

    print(environment_report())
    return 0


def _cmd_run(args):
    from course_lib import runner

    notebooks = [Path(n) for n in args.notebooks] or None
    runs = runner.run_course(args.out, args.profile, notebooks, html_export=not args.no_html)
    print()
    print(runner.format_timing_table(runs))
    print(f"\nindex: {Path(args.out) / 'index.html'}")
    return 0 if all(r.status == "ok" for r in runs) else 1


def _cmd_samples(args):
    """``course-kit samples``: regenerate the samples, or check them with ``--check``."""
    from course_lib import samples

    if args.check:
        differences = samples.compare_samples(args.out)
        for difference in differences:
            print(difference)
        if differences:
            print(f"{len(differences)} file(s) in {args.out} differ from what the code makes; "
                  "run `course-kit samples` to regenerate", file=sys.stderr)
            return 1
        print(f"{args.out} matches the code")
        return 0
    rows = samples.build_samples(args.out)
    total = sum(size for _, size, _ in rows)
    print(f"wrote {len(rows)} files ({total / 1e6:.1f} MB) and {samples.MANIFEST_NAME} to {args.out}")
    return 0


def _cmd_preprocess(args):
    """``course-kit preprocess``; exit code 0: all succeeded, 1: some failed, 2: bad input."""
    from course_lib.exam_list import UnsafePickleError
    from course_lib.preprocessing.job import preprocess, summary_line

    try:
        target = args.preprocess_targets[args.target](args)
        report = preprocess(args.input, args.output, target, kind=args.input_kind, processes=args.processes,
                            horizontal_flip=args.horizontal_flip, image_dir=args.image_dir)
    except (OSError, ValueError, UnsafePickleError) as error:
        print(f"course-kit preprocess: error: {error}", file=sys.stderr)
        return 2
    print(summary_line(report, args.output))
    return 1 if (report["status"] == "failed").any() else 0


def pipeline_clis():
    """The ``cli`` modules of the pipeline packages that exist, by pipeline name."""
    found = {}
    for name in PIPELINES:
        module = f"course_lib.{name}.cli"
        if importlib.util.find_spec(f"course_lib.{name}") and importlib.util.find_spec(module):
            found[name] = importlib.import_module(module)
    return found


def _add_preprocess_parser(commands, clis):
    """``course-kit preprocess``: each pipeline whose cli module has ``preprocess_target(args)``
    is a ``--for`` choice, with its options from ``add_preprocess_options(group)``."""
    from course_lib.preprocessing.job import INPUT_KINDS  # light: the job imports heavy modules lazily

    parser = commands.add_parser(
        "preprocess", help="a DICOM folder, CBIS-DDSM download or exam list through a pipeline's per-image step",
        description="Preprocess a data set for one pipeline: resumable, parallel, atomic; inputs are only read.",
        epilog="example: course-kit preprocess dicoms/ out/ --for gmic --processes 2",
    )
    parser.add_argument("input", help="folder of DICOM files, CBIS-DDSM download, or exam list (.json/.pkl)")
    parser.add_argument("output", help="output folder; an existing one is resumed")
    targets = {name: cli.preprocess_target for name, cli in clis.items() if hasattr(cli, "preprocess_target")}
    parser.add_argument("--for", dest="target", choices=sorted(targets), default="gmic",
                        help="the pipeline whose preprocessing to run (default: gmic)")
    parser.add_argument("--input-kind", choices=INPUT_KINDS, default=None, help="default: detected")
    parser.add_argument("--image-dir", default=None,
                        help="exam lists: folder of <short>.png (default: images/ beside the list)")
    parser.add_argument("--processes", type=int, default=None,
                        help="worker processes (default: all CPUs; 1: no worker processes)")
    parser.add_argument("--horizontal-flip", choices=("NO", "YES"), default="NO",
                        help="flag of exams built from DICOM/CBIS-DDSM (default: NO)")
    for name, cli in clis.items():
        if hasattr(cli, "add_preprocess_options"):
            cli.add_preprocess_options(parser.add_argument_group(f"--for {name}"))
    parser.set_defaults(run=_cmd_preprocess, preprocess_targets=targets)


def build_parser():
    """The ``course-kit`` argument parser, with every pipeline's sub-commands."""
    parser = argparse.ArgumentParser(prog="course-kit", description="course-kit: the kit's command line (each sub-command has --help with an example).")
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser("fetch", help="list or fetch registry files",
                                epilog="example: course-kit fetch gmic/sample_data/images/0_L-CC.png")
    fetch.add_argument("keys", nargs="*", help="registry keys to fetch")
    fetch.add_argument("--list", action="store_true", help="list every key with licence and availability")
    fetch.add_argument("--all", action="store_true",
                       help="fetch every key (with COURSE_DATA_DIR=FOLDER this fills a workshop mirror)")
    fetch.set_defaults(run=_cmd_fetch)

    run = commands.add_parser("run", help="run the course notebooks with papermill",
                              epilog="example: course-kit run --profile smoke --out build/smoke")
    run.add_argument("notebooks", nargs="*", help="notebooks to run (default: all numbered ones)")
    run.add_argument("--profile", default=None, help="smoke, default or full (default: $COURSE_PROFILE or default)")
    run.add_argument("--out", default="build", help="output folder (default: build)")
    run.add_argument("--no-html", action="store_true", help="skip the HTML export")
    run.set_defaults(run=_cmd_run)

    from course_lib.paths import DATA_SAMPLES

    samples = commands.add_parser("samples", help="regenerate data_samples/ from code, or check it",
                                  epilog="example: course-kit samples --check")
    samples.add_argument("--out", type=Path, default=DATA_SAMPLES,
                         help="sample folder (default: the checkout's data_samples/)")
    samples.add_argument("--check", action="store_true",
                         help="regenerate into a temporary folder and list the files that differ")
    samples.set_defaults(run=_cmd_samples)

    env = commands.add_parser("env", help="print the environment report")
    env.set_defaults(run=_cmd_env)

    clis = pipeline_clis()
    _add_preprocess_parser(commands, clis)
    for cli in clis.values():
        cli.add_parser(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
