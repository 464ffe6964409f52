"""nbval's options for the stored notebooks, so that a bare ``pytest --nbval-lax notebooks/05_gmic_saliency.ipynb``
checks them as ``make test`` does: outputs sanitized with ``nbval_sanitize.cfg`` (durations, memory
addresses, absolute paths, figure sizes), the kernel run by this Python (``--nbval-current-env``) and
no progress bars (``TQDM_DISABLE=1``, inherited by the kernel: the stored notebooks were run without them, and a
bar's widget is an output nbval would report). Options given on the command line win; unit-test runs (no nbval)
are untouched.
"""

import os
from pathlib import Path

SANITIZE_FILE = Path(__file__).with_name("nbval_sanitize.cfg")


def pytest_configure(config):
    option = config.option
    if not hasattr(option, "nbval_sanitize_with"):
        return  # nbval is not installed
    if option.nbval or option.nbval_lax:
        os.environ.setdefault("TQDM_DISABLE", "1")
    if option.nbval_sanitize_with is None and not getattr(option, "sanitize_with", None):
        option.nbval_sanitize_with = str(SANITIZE_FILE)
    if not option.nbval_kernel_name and not option.nbval_current_env and not getattr(option, "current_env", False):
        option.nbval_current_env = True
