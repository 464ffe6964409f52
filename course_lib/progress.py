"""Progress bars for long work (preprocessing, training, fetching), one rule for when they show.

A bar is drawn where someone watches: in a Jupyter kernel (as a widget, through
``tqdm.auto``) or on a terminal (as text on stderr). It is hidden in a log file or CI
(stderr not a terminal, no kernel), on every process but the main one of a ``torchrun``
job (:func:`course_lib.distributed.current`) or of a multi-worker ``tf.distribute`` job
(the chief in ``TF_CONFIG``), and whenever ``TQDM_DISABLE`` is set: the
stored notebooks are executed with it set, so their outputs hold no widget state.

The batch engine, the registry's downloads and the trainers all take their bars from
:func:`progress_bar`; a Keras ``fit`` takes :func:`keras_callbacks`::

    with progress_bar(len(items), "converting", "image") as bar:
        for item in items:
            convert(item)
            bar.update()

tqdm (and Keras) are imported inside the functions: importing this module is cheap.
"""

import functools
import json
import os
import sys

from course_lib import distributed

__all__ = ["DISABLE_ENV_VAR", "is_shown", "progress_bar", "beside", "keras_callbacks"]

#: tqdm's own switch; set (to anything but "" or "0") it hides every bar of the kit.
DISABLE_ENV_VAR = "TQDM_DISABLE"


def is_shown(context=None, stream=None):
    """True when a bar should be drawn: main process, a notebook kernel or a terminal, and
    ``TQDM_DISABLE`` unset.

    ``context`` is a :class:`~course_lib.distributed.Context` (default: this process's),
    ``stream`` the bars' stream (default: ``sys.stderr``).

    >>> from course_lib.distributed import Context
    >>> is_shown(Context(rank=1, world_size=2, backend="gloo"))  # never on a non-main rank
    False
    """
    if os.environ.get(DISABLE_ENV_VAR, "") not in ("", "0"):
        return False
    context = distributed.current() if context is None else context
    if not context.is_main or not _keras_chief():
        return False
    if _in_notebook_kernel():  # tqdm.auto draws a widget
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False


def _in_notebook_kernel():
    """True inside a running Jupyter (or Colab) kernel. Having imported ``ipykernel`` is not
    enough: nbval and other tools import it in processes that are no kernel."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has imported it already
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _keras_chief(environ=None):
    """False on a worker of a multi-worker ``tf.distribute`` job that is not its chief (the
    ``"chief"`` task, else worker 0, as Keras decides); True without ``TF_CONFIG``.

    >>> _keras_chief({"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}'})
    False
    """
    environ = os.environ if environ is None else environ
    try:
        config = json.loads(environ.get("TF_CONFIG") or "{}")
        task, cluster = config.get("task") or {}, config.get("cluster") or {}
        if not task:
            return True
        if "chief" in cluster:
            return task.get("type") == "chief"
        return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0
    except (ValueError, TypeError, AttributeError):  # a malformed TF_CONFIG is tf.distribute's to report
        return True


def progress_bar(total, description, unit="item", shown=None, delay=0.0):
    """A tqdm bar of ``total`` ``unit``s (``"B"``: bytes, scaled to kB, MB, ...), drawn when
    :func:`is_shown` (or ``shown``) says so and a silent, free stand-in otherwise; with a
    ``delay``, only once that many seconds have passed (quick work draws nothing).

    Use it as a context manager (closed at the end) and call ``bar.update(n)``; training
    loops put the loss in ``bar.set_postfix(loss=..., refresh=False)`` and print their log
    lines through :func:`beside`.

    >>> with progress_bar(3, "counting", shown=False) as bar:
    ...     for _ in range(3):
    ...         bar.update()
    >>> bar.disable  # hidden: a stand-in that draws nothing
    True
    """
    from tqdm.auto import tqdm

    shown = is_shown() if shown is None else bool(shown)
    scaled = unit == "B"
    return tqdm(total=total, desc=description, unit=unit, unit_scale=scaled, unit_divisor=1024 if scaled else 1000,
                disable=not shown, dynamic_ncols=True, delay=delay)


def beside(bar, log):
    """``log`` (``print``, or a trainer's ``after_epoch`` hook that prints) made to write
    between two drawings of ``bar``: on a terminal the bar's line is cleared first and redrawn
    after, so that the two do not run into each other. ``log`` itself when the bar is hidden
    (or ``log`` is None).

    >>> with progress_bar(2, "training", shown=False) as bar:
    ...     beside(bar, print) is print
    True
    """
    if log is None or bar.disable:
        return log

    def write(*args, **kwargs):
        with bar.external_write_mode():
            return log(*args, **kwargs)

    return write


def keras_callbacks(description="training", shown=None):
    """``[callback]`` showing one bar over every step of a Keras ``fit`` (all epochs), the
    loss in its postfix and the validation metrics after each epoch; ``[]`` when no bar is
    shown, so that a hidden bar adds no per-step hook.

    For ``fit(..., verbose=0)``: Keras' own bar (``verbose=1``) draws one bar per epoch, in a
    terminal only. Keras is imported when a bar is shown.

    >>> keras_callbacks(shown=False)
    []
    """
    shown = is_shown() if shown is None else bool(shown)
    return [_keras_progress_class()(description)] if shown else []


@functools.cache
def _keras_progress_class():
    """The Keras callback class, defined on first use (this module does not import Keras)."""
    import keras

    class KerasProgress(keras.callbacks.Callback):
        """One bar over all steps of ``fit`` (over epochs when the steps are unknown)."""

        def __init__(self, description):
            super().__init__()
            self.description = description
            self.bar = None

        def on_train_begin(self, logs=None):
            epochs, steps = self.params.get("epochs") or 1, self.params.get("steps")
            self.by_step = bool(steps)
            self.bar = progress_bar(epochs * steps if steps else epochs, self.description,
                                    "step" if steps else "epoch", shown=True)

        def on_train_batch_end(self, batch, logs=None):
            if self.by_step:
                if logs and "loss" in logs:
                    self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)
                self.bar.update()

        def on_epoch_end(self, epoch, logs=None):
            shown = {key: f"{float(value):.4f}" for key, value in (logs or {}).items()
                     if key == "loss" or key.startswith("val_")}
            self.bar.set_postfix(epoch=epoch + 1, **shown, refresh=not self.by_step)
            if not self.by_step:
                self.bar.update()

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.close()

    return KerasProgress
