"""The Keras adapter: one bar over every step of a ``fit`` (all epochs), with the loss and the
validation metrics; and bars drawn in a real Jupyter kernel as widgets, none with TQDM_DISABLE."""

import io
import re
import sys

import numpy as np
import pytest

from course_lib import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _fit(callbacks, epochs=2, validation=True):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    y = keras.utils.to_categorical(np.arange(10) % 2, 2)
    return model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=callbacks,
                     validation_data=(x, y) if validation else None)


def test_one_bar_over_every_step_of_fit(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    callbacks = progress.keras_callbacks("training density CC", shown=True)
    assert len(callbacks) == 1
    fit = _fit(callbacks)
    text = sys.stderr.getvalue()
    drawn = re.findall(r"training density CC:.*?\|\s*(\d+)/(\d+)", text)
    assert drawn and drawn[-1] == ("6", "6")  # 2 epochs x 3 steps (10 images, batch 4)
    last = text.rsplit("training density CC:", 1)[1]
    assert f"loss={fit.history['loss'][-1]:.4f}" in last
    assert f"val_loss={fit.history['val_loss'][-1]:.4f}" in last and "epoch=2" in last


def test_hidden_it_adds_no_callback(monkeypatch):
    monkeypatch.setenv(progress.DISABLE_ENV_VAR, "1")
    assert progress.keras_callbacks("training") == []


def _run_in_a_kernel(tqdm_disable):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from course_lib import runner

    code = (f"import os\nos.environ['TQDM_DISABLE'] = {tqdm_disable!r}\n"
            "from course_lib import batch\n"
            "squares = batch.map_items(abs, [-1, -2, -3], description='in a notebook')\n"
            "print(squares)")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(notebook, timeout=120, **runner.kernel_options()).execute()
    return notebook.cells[0].outputs


def test_a_notebook_kernel_draws_a_widget_and_nothing_with_tqdm_disable():
    pytest.importorskip("ipywidgets")
    shown = _run_in_a_kernel("")
    widgets = [o for o in shown if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1 and "in a notebook" in widgets[0]["data"]["text/plain"]
    hidden = _run_in_a_kernel("1")  # how the stored notebooks are executed
    assert [(o["output_type"], o.get("text")) for o in hidden] == [("stream", "[1, 2, 3]\n")]


# --- the Keras trainers: density (fit with the callback) and patch -> whole image (epoch loops) ---

def _on_a_terminal(monkeypatch):
    monkeypatch.delenv(progress.DISABLE_ENV_VAR, raising=False)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(sys, "stderr", Terminal())
    return sys.stderr


def _last_count(text, description):
    drawn = re.findall(re.escape(description) + r".*?\|\s*(\d+)/(\d+)", text)
    assert drawn, f"no {description!r} bar in {text!r}"
    return drawn[-1]


def test_density_training_draws_one_bar_over_its_steps(monkeypatch):
    pytest.importorskip("tensorflow")
    from course_lib.density.train import train_projection

    terminal = _on_a_terminal(monkeypatch)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (12, 64, 64), dtype=np.uint8)
    labels = np.arange(12) % 4
    _, history = train_projection(images, labels, images[:4], labels[:4], 64, "short", epochs=2, batch_size=6)
    text = terminal.getvalue()
    assert _last_count(text, "training density") == ("4", "4")  # 2 epochs x 2 batches of 6
    assert f"val_loss={history['val_loss'][-1]:.4f}" in text.rsplit("training density", 1)[1]


def test_end2end_training_draws_a_bar_over_its_epochs(monkeypatch):
    pytest.importorskip("tensorflow")
    from course_lib.end2end.model import patch_classifier, whole_image_classifier
    from course_lib.end2end.train import (ImageTrainingSettings, PatchTrainingSettings, make_deterministic,
                                          train_patch_classifier, train_whole_image)

    terminal = _on_a_terminal(monkeypatch)
    make_deterministic(0)
    rng = np.random.default_rng(0)
    patch = patch_classifier("kit_small", 48, 3)
    x, y = rng.normal(size=(12, 48, 48, 1)).astype(np.float32), np.arange(12) % 3
    train_patch_classifier(patch, "kit_small", x, y, PatchTrainingSettings(end_epochs=(1, 1, 2), steps_per_epoch=1,
                                                                           batch_size=6))
    whole = whole_image_classifier(patch, (96, 96))
    images, cancer = rng.normal(size=(4, 96, 96, 1)).astype(np.float32), np.array([0, 1, 0, 1])
    train_whole_image(whole, images, cancer, images, cancer, ImageTrainingSettings(end_epochs=(1, 2), batch_size=2))
    text = terminal.getvalue()
    assert _last_count(text, "training patches") == ("2", "2")  # stages of 1, 0 and 1 epochs
    assert _last_count(text, "training whole images") == ("2", "2")
    assert re.search(r"training whole images.*stage=2.*val_auc=", text)
