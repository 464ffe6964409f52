"""``course-kit``: the kit's command line.

    course-kit fetch --list [--grep TEXT]   registry keys: size, where each is, licence
    course-kit fetch KEY [KEY ...]   fetch files into the cache (mirror or network)
    course-kit fetch --all           fetch everything (fills a workshop mirror), one summary line
    course-kit preprocess IN OUT     a DICOM folder, CBIS-DDSM tree or exam list through a pipeline's
                                     per-image step (--for gmic: crop + optimal centre)
    course-kit samples [--check]     regenerate data_samples/ from code, or check it
    course-kit run [--profile P]     run every notebook with papermill into build/ (a checkout)
    course-kit env [--frameworks]    the environment report (--frameworks: ask torch/TF for the device)
    course-kit --version
    course-kit gmic predict|train    and the other pipelines' own commands (course-kit PIPELINE --help)

This module is the kit's entry point: the one place that loads the pipeline packages
(:data:`PIPELINES`), by name, so that each adds its own sub-commands from its ``cli.py``.
Nothing heavy is imported until a command runs, so ``--help`` is instant.
"""

import argparse
import importlib
import importlib.util
import re
import sys
from pathlib import Path

#: The pipeline packages of the course, one per published pipeline (and lesson).
PIPELINES = ("gmic", "density", "end2end", "amil")


LIST_WIDTH = 100  # columns of `course-kit fetch --list`
KEY_WIDTH = 60


def _size_text(size):
    """Bytes as a short human size; ``?`` when unknown.

    >>> _size_text(28333963), _size_text(512), _size_text(None)
    ('28.3 MB', '512 B', '?')
    """
    if size is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _short(text, width):
    return text if len(text) <= width else text[: width - 3] + "..."


def _list_registry(pattern):
    """``fetch --list``: one line per key (a long key gets its own line), within 100 columns."""
    import re

    from course_lib import data

    try:
        wanted = re.compile(pattern or "", re.IGNORECASE)
    except re.error as error:
        print(f"course-kit fetch: error: --grep {pattern!r} is not a regular expression ({error})",
              file=sys.stderr)
        return 2
    registry = data.load_registry()
    entries = [e for key, e in registry.items() if wanted.search(f"{key} {e.description} {e.licence}")]
    licence_width = LIST_WIDTH - KEY_WIDTH - 2 - 8 - 2 - 6 - 2
    print(f"{'key':<{KEY_WIDTH}}  {'size':>8}  {'where':<6}  licence")
    counts = {}
    for entry in entries:
        local = entry.checkout_path
        where = "kit" if local is not None and local.is_file() else (data.locate(entry.key) or "remote")
        counts[where] = counts.get(where, 0) + 1
        columns = f"{_size_text(entry.size):>8}  {where:<6}  {_short(entry.licence.split(' (')[0], licence_width)}"
        if len(entry.key) > KEY_WIDTH:
            print(entry.key)
            print(f"{'':<{KEY_WIDTH}}  {columns}")
        else:
            print(f"{entry.key:<{KEY_WIDTH}}  {columns}")
    total = sum(e.size or 0 for e in entries)
    where = ", ".join(f"{n} {w}" for w, n in sorted(counts.items())) or "nothing matches"
    print(f"\n{len(entries)} of {len(registry)} files, {_size_text(total)}: {where}")
    print("licences and citations in full: course_lib/data/registry.csv")
    print(f"cache:  {data.cache_dir()}")
    print(f"mirror: {data.mirror_dir() or '(none: set COURSE_DATA_MIRROR)'}")
    return 0


def _fetch_all(keys):
    """``fetch --all``: fetch quietly (a bar over the files), then list what could not be had
    and one summary line."""
    from course_lib import data
    from course_lib.progress import progress_bar

    outcome = {"fetched": [], "cached": [], "unavailable": [], "corrupt": []}
    with progress_bar(len(keys), "fetching", "file") as bar:
        for key in keys:
            local = data.get_entry(key).checkout_path
            had = (local is not None and local.is_file()) or data.locate(key) == "cache"
            try:
                data.fetch(key)
                outcome["cached" if had else "fetched"].append(key)
            except data.DataUnavailableError:
                outcome["unavailable"].append(key)
            except data.HashMismatchError:
                outcome["corrupt"].append(key)
            bar.update()
    for kind in ("unavailable", "corrupt"):
        for key in outcome[kind]:
            print(f"{kind}: {key}", file=sys.stderr)
    print(f"{len(keys)} files: {len(outcome['fetched'])} fetched, {len(outcome['cached'])} already cached, "
          f"{len(outcome['unavailable'])} unavailable, {len(outcome['corrupt'])} corrupt"
          + ("  (`course-kit fetch KEY` says why and where to put it)" if outcome["unavailable"] else "")
          + f"  -> {data.cache_dir()}")
    return 1 if outcome["unavailable"] or outcome["corrupt"] else 0


def _cmd_fetch(args):
    from course_lib import data

    if args.list:
        return _list_registry(args.grep)
    if args.all:
        return _fetch_all(list(data.load_registry()))
    if not args.keys:
        print("course-kit fetch: give one or more keys, --all, or --list", file=sys.stderr)
        return 2
    failures = 0
    for key in args.keys:
        try:
            print(data.fetch(key))
        except (data.UnknownKeyError, data.DataUnavailableError, data.HashMismatchError) as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


def _cmd_env(args):
    from course_lib.env import environment_report

    print(environment_report(with_device=args.frameworks))
    return 0


def _cmd_run(args):
    from course_lib import runner
    from course_lib.paths import CheckoutRequiredError, require_checkout

    notebooks = [Path(n) for n in args.notebooks] or None
    try:
        if notebooks is None:
            require_checkout("course-kit run (without notebook paths)")
        runner.kernel_options(args.kernel)  # an unknown --kernel fails here, before any notebook runs
    except (CheckoutRequiredError, LookupError) as error:
        print(f"course-kit run: error: {error}", file=sys.stderr)
        return 2
    runs = runner.run_course(args.out, args.profile, notebooks, html_export=not args.no_html, kernel=args.kernel)
    print()
    print(runner.format_timing_table(runs))
    print(f"\nindex: {Path(args.out) / 'index.html'}")
    return 0 if all(r.status == "ok" for r in runs) else 1


def _cmd_samples(args):
    """``course-kit samples``: regenerate the samples, or check them with ``--check``."""
    from course_lib import samples
    from course_lib.paths import CheckoutRequiredError, require_checkout

    if args.out is None:  # the default, data_samples/, is in a checkout only
        try:
            require_checkout("course-kit samples" + (" --check" if args.check else "") + " (without --out)")
        except CheckoutRequiredError as error:
            print(f"course-kit samples: error: {error}", file=sys.stderr)
            return 2
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


def _shard(text):
    """The ``--shard K/N`` of ``course-kit preprocess`` (None: the whole data set)."""
    from course_lib.preprocessing.shards import Shard

    return None if text is None else Shard.parse(text)


def _cmd_preprocess(args):
    """``course-kit preprocess``; exit code 0: all succeeded, 1: some images failed or some exams
    are incomplete, 2: bad input (see :func:`main`)."""
    from course_lib.preprocessing.job import preprocess, summary_line

    if args.merge:  # the shards of an array job (course_lib.preprocessing.shards)
        from course_lib.preprocessing.shards import merge

        args.output = args.merge[0]
        report = merge(args.merge)
    elif args.input is None or args.output is None:
        raise ValueError("give the input and the output folder (or --merge OUT... to merge shards)")
    else:
        target = args.preprocess_targets[args.target](args)
        report = preprocess(args.input, args.output, target, kind=args.input_kind, processes=args.processes,
                            horizontal_flip=args.horizontal_flip, image_dir=args.image_dir,
                            laterality=dict(args.laterality or ()), shard=_shard(args.shard))
    if args.shard and not args.merge:
        print(f"{summary_line(report, args.output).split(':')[0]} in shard {args.shard}; once every shard "
              f"is done: course-kit preprocess --merge {args.output}")
        return 1 if (report["status"] == "failed").any() else 0
    print(summary_line(report, args.output))
    incomplete = report.attrs.get("incomplete_exams", [])
    for exam, problems in incomplete:
        print(f"warning: incomplete exam {exam}: {'; '.join(problems)}", file=sys.stderr)
    if incomplete:
        print(f"{len(incomplete)} incomplete exam(s), listed with 'problems' in "
              f"{Path(args.output) / 'exam_list.json'}", file=sys.stderr)
    return 1 if (report["status"] == "failed").any() or incomplete else 0


def at_least(low, kind=int, strictly=False):
    """An argparse ``type``: ``kind(text)``, refused unless ``>= low`` (``> low`` if ``strictly``).

    >>> at_least(1)("3"), at_least(0, float, strictly=True)("0.5")
    (3, 0.5)
    """
    def convert(text):
        value = kind(text)
        if value < low or (strictly and value == low):
            raise argparse.ArgumentTypeError(f"must be {'more than' if strictly else 'at least'} {low}, not {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in "invalid int value"
    return convert


def _laterality_override(text):
    """``--laterality FILE=L``: (file, "L" or "R")."""
    name, _, side = text.rpartition("=")
    if not name or side not in ("L", "R"):
        raise argparse.ArgumentTypeError(f"expected FILE=L or FILE=R, not {text!r}")
    return name, side


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
    parser.add_argument("input", nargs="?", help="folder of DICOM files, CBIS-DDSM download, or exam list (.json/.pkl)")
    parser.add_argument("output", nargs="?", help="output folder; an existing one is resumed")
    parser.add_argument("--shard", metavar="K/N", default=None,
                        help="process shard K of N only (an array job's task); then merge with --merge")
    parser.add_argument("--merge", nargs="+", metavar="OUT", default=None,
                        help="write the exam list and report of finished shards (into the first OUT)")
    targets = {name: cli.preprocess_target for name, cli in clis.items() if hasattr(cli, "preprocess_target")}
    parser.add_argument("--for", dest="target", choices=sorted(targets), default="gmic",
                        help="the pipeline whose preprocessing to run (default: gmic)")
    parser.add_argument("--input-kind", choices=INPUT_KINDS, default=None, help="default: detected")
    parser.add_argument("--image-dir", default=None,
                        help="exam lists: folder of <short>.png (default: images/ beside the list)")
    parser.add_argument("--processes", type=at_least(1), default=None,
                        help="worker processes (default: all CPUs; 1: no worker processes)")
    parser.add_argument("--laterality", type=_laterality_override, action="append", metavar="FILE=L|R",
                        help="DICOM input: the breast of FILE (name or path) when its tag is wrong or missing; repeatable")
    parser.add_argument("--horizontal-flip", choices=("NO", "YES"), default="NO",
                        help="flag of exams built from DICOM/CBIS-DDSM (default: NO)")
    for name, cli in clis.items():
        if hasattr(cli, "add_preprocess_options"):
            cli.add_preprocess_options(parser.add_argument_group(f"--for {name}"))
    parser.set_defaults(run=_cmd_preprocess, preprocess_targets=targets)


class PlainHelpFormatter(argparse.HelpFormatter):
    """Help text as a terminal shows it: reStructuredText roles and double backticks, which the
    pipelines' docstrings use, become plain text (``:func:`fetch``` -> fetch, ````x```` -> x)."""

    _ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")

    def _plain(self, text):
        return self._ROLE.sub(r"\1", text).replace("``", "")

    def _format_text(self, text):
        return super()._format_text(self._plain(text)) if text else text

    def _expand_help(self, action):
        return self._plain(super()._expand_help(action))


class KitArgumentParser(argparse.ArgumentParser):
    """The kit's parsers (sub-commands inherit the class): plain help, examples kept as written."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser():
    """The ``course-kit`` argument parser, with every pipeline's sub-commands."""
    from course_lib import __version__

    parser = KitArgumentParser(
        prog="course-kit", description="course-kit: the kit's command line (each sub-command has --help with an example).",
        epilog="example: course-kit fetch --list --grep breakhis")
    parser.add_argument("--version", action="version", version=f"course-kit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser("fetch", help="list or fetch registry files",
                                epilog="example: course-kit fetch gmic/sample_data/images/0_L-CC.png")
    fetch.add_argument("keys", nargs="*", help="registry keys to fetch")
    fetch.add_argument("--list", action="store_true",
                       help="list every key with its size, where it is (kit, cache, mirror, remote) and licence")
    fetch.add_argument("--grep", metavar="TEXT", default=None,
                       help="with --list: only keys whose key, description or licence match TEXT (a regex, any case)")
    fetch.add_argument("--all", action="store_true",
                       help="fetch every key (with COURSE_DATA_DIR=FOLDER this fills a workshop mirror)")
    fetch.set_defaults(run=_cmd_fetch)

    run = commands.add_parser("run", help="run the course notebooks with papermill",
                              epilog="example: course-kit run --profile smoke --out build/smoke")
    run.add_argument("notebooks", nargs="*", help="notebooks to run (default: all numbered ones)")
    run.add_argument("--profile", default=None, help="smoke, default or full (default: $COURSE_PROFILE or default)")
    run.add_argument("--out", default="build", help="output folder (default: build)")
    run.add_argument("--no-html", action="store_true", help="skip the HTML export")
    run.add_argument("--kernel", default=None,
                     help="Jupyter kernel to run them in (default: the one of this Python, installed if needed)")
    run.set_defaults(run=_cmd_run)

    from course_lib.paths import DATA_SAMPLES  # None without a checkout: _cmd_samples says so

    samples = commands.add_parser("samples", help="regenerate data_samples/ from code, or check it",
                                  epilog="example: course-kit samples --check")
    samples.add_argument("--out", type=Path, default=DATA_SAMPLES,
                         help="sample folder (default: the checkout's data_samples/)")
    samples.add_argument("--check", action="store_true",
                         help="regenerate into a temporary folder and list the files that differ")
    samples.set_defaults(run=_cmd_samples)

    env = commands.add_parser("env", help="print the environment report (versions, profile, device)",
                              epilog="example: course-kit env --frameworks")
    env.add_argument("--frameworks", action="store_true",
                     help="ask torch or TensorFlow which device they use (imports them: slower)")
    env.set_defaults(run=_cmd_env)

    clis = pipeline_clis()
    _add_preprocess_parser(commands, clis)
    for cli in clis.values():
        cli.add_parser(commands)
    return parser


#: What a command may raise for a bad input, a bad file or a missing one: reported, never a traceback.
USER_ERRORS = (OSError, ValueError, RuntimeError, LookupError, EOFError)


def error_message(error):
    """One line (or a few) saying what went wrong with which file, for the command line.

    >>> error_message(KeyError("pathology"))
    "missing key 'pathology' (a renamed column or a damaged file?)"
    >>> error_message(FileNotFoundError(2, "No such file or directory", "exams.json"))
    'exams.json: no such file or directory'
    """
    if isinstance(error, KeyError):
        return f"missing key {error} (a renamed column or a damaged file?)"
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror[:1].lower()}{error.strerror[1:]}"
    return str(error) or type(error).__name__


def main(argv=None):
    """``course-kit``. Exit codes: 0 done, 1 done with per-file failures (the command says which),
    2 bad input or usage: one message on stderr naming the file and what to do, no traceback
    (``COURSE_KIT_DEBUG=1`` shows it)."""
    import os
    import pickle

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `course-kit ... | head`: the reader has all it wanted; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 0
    except (*USER_ERRORS, pickle.UnpicklingError) as error:
        if os.environ.get("COURSE_KIT_DEBUG", "") not in ("", "0"):
            raise
        command = " ".join(filter(None, (args.command, *(getattr(args, key, None) for key in vars(args)
                                                          if key.endswith("_command")))))
        print(f"course-kit {command}: error: {error_message(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
