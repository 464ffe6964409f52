"""Root pytest configuration, shared by the unit tests and by nbval on the notebooks."""

import json
from collections import defaultdict
from pathlib import Path

try:  # torch first: the unit tests run both frameworks in one process, and torchvision imported
    # after TensorFlow aborts the process (both bring their own LLVM: "Option ... registered more
    # than once"); in the other order both work.
    import torchvision  # noqa: F401
except ImportError:  # a lesson-only install without torch
    pass

BUILD_DIR = Path(__file__).parent / "build"
_notebook_seconds = defaultdict(float)


def pytest_collectstart(collector):
    # nbval compares outputs; stderr (TensorFlow/absl chatter, warnings) and rich HTML/JS
    # reprs differ from run to run and carry no reproduced figure.
    if hasattr(collector, "skip_compare"):
        collector.skip_compare += ("stderr", "text/html", "application/javascript")


def pytest_runtest_logreport(report):
    # Per-notebook nbval time, for the timing table printed at the end of `make test`.
    path = str(report.nodeid).split("::", 1)[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[Path(path).name] += report.duration


def pytest_sessionfinish(session):
    if _notebook_seconds:
        BUILD_DIR.mkdir(exist_ok=True)
        out = BUILD_DIR / "nbval_timings.json"
        out.write_text(json.dumps(dict(sorted(_notebook_seconds.items())), indent=1))
