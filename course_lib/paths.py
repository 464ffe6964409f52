"""Where the kit's own folders are: in a checkout of the kit's repository, or nowhere.

A wheel holds only ``course_lib``: the notebooks, ``data_samples/`` and ``pretrained/`` live in
the repository, not in site-packages. :data:`CHECKOUT` is the checkout's root: the folder above
``course_lib/`` when that is one (an editable install, ``make``, a Colab clone), else the first
checkout found from the working directory upwards (a non-editable install used from inside a
checkout, as when a notebook runs in ``notebooks/``), else ``None``. The folder constants are
then inside that checkout, or ``None``: never a path into site-packages for files that a
wheel does not contain. Commands that need the checkout call :func:`require_checkout`, which
says how to get one. The kit's own weights also have registry entries, so
``course_lib.data.fetch("course-kit/pretrained/...")`` gets them with or without a checkout.
"""

from pathlib import Path

#: The folder that holds this ``course_lib/``: a checkout's root, or site-packages for a wheel.
INSTALL_ROOT = Path(__file__).resolve().parent.parent
CLONE_COMMAND = "git clone https://github.com/breast-imaging-course/course-kit && pip install -e course-kit"


def is_checkout(root):
    """True when ``root`` is a checkout of the kit (its ``pyproject.toml`` names ``course-kit``
    and ``notebooks/`` lies beside ``course_lib/``), not an installation folder.

    >>> is_checkout(Path("/"))
    False
    """
    root = Path(root)
    project = root / "pyproject.toml"
    return ((root / "notebooks").is_dir() and (root / "course_lib").is_dir() and project.is_file()
            and 'name = "course-kit"' in project.read_text(encoding="utf-8", errors="replace"))


def find_checkout(start=None):
    """The kit's checkout: :data:`INSTALL_ROOT` if it is one, else the first one at or above
    ``start`` (default: the working directory), else None."""
    if is_checkout(INSTALL_ROOT):
        return INSTALL_ROOT
    start = Path.cwd() if start is None else Path(start)
    return next((folder for folder in (start, *start.parents) if is_checkout(folder)), None)


#: The checkout's root, or None (a wheel install used outside any checkout).
CHECKOUT = find_checkout()
DATA_SAMPLES = CHECKOUT / "data_samples" if CHECKOUT else None
PRETRAINED = CHECKOUT / "pretrained" if CHECKOUT else None
NOTEBOOKS = CHECKOUT / "notebooks" if CHECKOUT else None
BUILD = CHECKOUT / "build" if CHECKOUT else None


class CheckoutRequiredError(RuntimeError):
    """A command that works on the repository's files, run without a checkout."""


def require_checkout(what):
    """The checkout's root; without one, :class:`CheckoutRequiredError` saying that ``what``
    needs a checkout of the kit and how to get one."""
    if CHECKOUT is None:
        raise CheckoutRequiredError(
            f"{what} needs a checkout of the kit: its notebooks and data_samples/ are in the "
            f"repository, not in the installed package ({INSTALL_ROOT}). Get one with "
            f"`{CLONE_COMMAND}` and run the command inside it.")
    return CHECKOUT


def checkout_file(relative):
    """``relative`` inside the checkout, or None without one."""
    return CHECKOUT / relative if CHECKOUT is not None else None
