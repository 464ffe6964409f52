"""``course-kit``: the kit's command line.

    course-kit fetch --list          every registry key, its licence and where it is
    course-kit fetch KEY [KEY ...]   fetch files into the cache (mirror or network)
    course-kit fetch --all           fetch everything (fills a workshop mirror)
    course-kit preprocess IN OUT     GMIC crop + optimal centre of a DICOM folder, CBIS-DDSM tree or exam list
    course-kit samples [--check]     regenerate data_samples/ from code, or check it
    course-kit gmic predict ...      GMIC inference: exam list -> predictions.csv and figures
    course-kit run [--profile P]     run every notebook with papermill into build/
    course-kit env                   the environment report
"""

import argparse
import sys
from pathlib import Path


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


def build_parser():
    parser = argparse.ArgumentParser(prog="course-kit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser("fetch", help="list or fetch registry files")
    fetch.add_argument("keys", nargs="*", help="registry keys to fetch")
    fetch.add_argument("--list", action="store_true", help="list every key with licence and availability")
    fetch.add_argument("--all", action="store_true",
                       help="fetch every key (with COURSE_DATA_DIR=FOLDER this fills a workshop mirror)")
    fetch.set_defaults(run=_cmd_fetch)

    run = commands.add_parser("run", help="run the course notebooks with papermill")
    run.add_argument("notebooks", nargs="*", help="notebooks to run (default: all numbered ones)")
    run.add_argument("--profile", default=None, help="smoke, default or full (default: $COURSE_PROFILE or default)")
    run.add_argument("--out", default="build", help="output folder (default: build)")
    run.add_argument("--no-html", action="store_true", help="skip the HTML export")
    run.set_defaults(run=_cmd_run)

    from course_lib.preprocessing.batch import add_preprocess_parser
    from course_lib.models.gmic_cli import add_gmic_parser
    from course_lib.samples import add_samples_parser

    add_preprocess_parser(commands)
    add_samples_parser(commands)
    add_gmic_parser(commands)

    env = commands.add_parser("env", help="print the environment report")
    env.set_defaults(run=_cmd_env)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
