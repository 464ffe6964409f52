"""Progress bars: when they show (terminal, notebook kernel, TQDM_DISABLE, torchrun rank), and
that preprocessing, training and fetching advance one; with TQDM_DISABLE set nothing is drawn."""

import functools
import hashlib
import http.server
import io
import json
import re
import sys
import threading
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_lib import batch, data, distributed, progress  # noqa: E402
from course_lib.data import registry  # noqa: E402
from course_lib.distributed import Context  # noqa: E402

SECOND_RANK = Context(rank=1, world_size=2, backend="gloo")


class Terminal(io.StringIO):
    """stderr as a terminal would be: a tty, whose text the test can read."""

    def isatty(self):
        return True


class TerminalFixture(Terminal):
    """Puts itself on ``sys.stderr`` when a test's body starts (pytest's capture sets
    ``sys.stderr`` again between a fixture's setup and the test's call)."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.monkeypatch = monkeypatch

    def on(self):
        self.monkeypatch.setattr(sys, "stderr", self)
        return self


@pytest.fixture
def terminal(monkeypatch):
    """A terminal for stderr (``terminal.on()``), TQDM_DISABLE unset, no notebook kernel, one process."""
    monkeypatch.delenv(progress.DISABLE_ENV_VAR, raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    monkeypatch.setattr(distributed, "_joined", None)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    return TerminalFixture(monkeypatch)


def fake_kernel(monkeypatch):
    """What a running Jupyter kernel looks like from inside: IPython's shell, configured by IPKernelApp."""
    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


def final_counts(text, description):
    """The ``n/total`` of the last drawing of the bar named ``description``."""
    drawn = re.findall(re.escape(description) + r":.*?\|\s*([\d.]+\w?)/([\d.]+\w?)", text)
    assert drawn, f"no {description!r} bar in {text!r}"
    return drawn[-1]


# --- the rule ----------------------------------------------------------------------------

def test_shown_on_a_terminal_hidden_in_a_log(terminal):
    terminal.on()
    assert progress.is_shown()
    assert not progress.is_shown(stream=io.StringIO())  # a log file, CI


def test_hidden_when_stderr_is_not_a_terminal(terminal, monkeypatch):
    terminal.on()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not progress.is_shown()
    monkeypatch.setattr(sys, "stderr", None)  # pythonw: no stderr at all
    assert not progress.is_shown()


def test_shown_in_a_notebook_kernel_without_a_terminal(terminal, monkeypatch):
    terminal.on()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    fake_kernel(monkeypatch)
    assert progress.is_shown()


def test_an_imported_ipykernel_is_no_notebook(terminal, monkeypatch):
    """nbval imports ipykernel into pytest's process, and IPython may be imported with no kernel running."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert not progress.is_shown()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not progress.is_shown()


@pytest.mark.parametrize("value, shown", [("1", False), ("True", False), ("0", True), ("", True)])
def test_tqdm_disable_hides_every_bar(terminal, monkeypatch, value, shown):
    terminal.on()
    fake_kernel(monkeypatch)
    monkeypatch.setenv(progress.DISABLE_ENV_VAR, value)
    assert progress.is_shown() is shown


def test_only_the_main_process_of_a_torchrun_job_draws(terminal, monkeypatch):
    terminal.on()
    fake_kernel(monkeypatch)
    assert not progress.is_shown(SECOND_RANK)
    monkeypatch.setattr(distributed, "_joined", SECOND_RANK)  # what distributed.join() leaves on rank 1
    assert not progress.is_shown()
    with progress.progress_bar(5, "rank 1") as bar:
        bar.update(5)
    assert terminal.getvalue() == ""
    monkeypatch.setattr(distributed, "_joined", Context(rank=0, world_size=2, backend="gloo"))
    assert progress.is_shown()


@pytest.mark.parametrize("cluster, task, shown", [
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True),
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False),
    ({"chief": ["a:1"], "worker": ["b:1"]}, {"type": "worker", "index": 0}, False),
    ({"chief": ["a:1"], "worker": ["b:1"]}, {"type": "chief", "index": 0}, True),
])
def test_only_the_chief_of_a_multi_worker_keras_job_draws(terminal, monkeypatch, cluster, task, shown):
    terminal.on()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert progress.is_shown() is shown


def test_a_bar_draws_its_description_and_count(terminal):
    terminal.on()
    with progress.progress_bar(4, "counting", "image") as bar:
        bar.update(4)
    assert final_counts(terminal.getvalue(), "counting") == ("4", "4")
    assert "image" in terminal.getvalue()


def test_byte_bars_scale_their_unit(terminal):
    terminal.on()
    with progress.progress_bar(3 * 1024 * 1024, "big.h5", "B") as bar:
        bar.update(3 * 1024 * 1024)
    assert final_counts(terminal.getvalue(), "big.h5") == ("3.00M", "3.00M")


# --- preprocessing, training and fetching advance a bar ------------------------------------

def _square(x):
    return x * x


def test_the_batch_engine_draws_through_the_rule(terminal):
    terminal.on()
    assert batch.map_items(_square, range(5), description="squaring") == [0, 1, 4, 9, 16]
    assert final_counts(terminal.getvalue(), "squaring") == ("5", "5")


def test_gmic_training_advances_a_bar_over_its_steps(terminal):
    terminal.on()
    from course_lib.gmic.config import GMICConfig
    from course_lib.gmic.model import GMIC
    from course_lib.gmic.train import TrainingSettings, train_gmic

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: extra threads only wait on each other
    try:
        torch.manual_seed(0)
        model = GMIC(GMICConfig(percent_t=0.25, input_shape=(128, 128), crop_shape=(64, 64)))  # 2 x 2 cells
        windows = np.random.default_rng(0).normal(size=(2, 128, 128)).astype(np.float32)
        labels = np.array([[0, 1], [0, 0]], np.float32)
        train_gmic(model, windows, labels, TrainingSettings(epochs=2, batch_size=1),
                   log=functools.partial(print, file=terminal),
                   after_epoch=lambda epoch, model: print(f"validated {epoch + 1}", file=terminal))
    finally:
        torch.set_num_threads(threads)
    text = terminal.getvalue()
    assert final_counts(text, "training GMIC") == ("4", "4")  # 2 epochs x 2 steps
    assert re.search(r"epoch=2, loss=\d+\.\d{4}", text)
    # each log line starts a line of its own, the bar's line cleared first: they do not run together
    assert len(re.findall(r"[\r\n] *\repoch [12]/2: loss \d", text)) == 2, text
    assert len(re.findall(r"[\r\n] *\rvalidated [12]\n", text)) == 2, text  # an after_epoch hook's lines too


def test_amil_training_advances_a_bar_over_its_steps(terminal):
    terminal.on()
    from course_lib.amil.model import AttentionMIL
    from course_lib.amil.train import TrainSettings, train_amil

    generator = torch.Generator().manual_seed(0)
    bags = [torch.rand(n, 3, 28, 28, generator=generator) for n in (6, 4, 5)]
    torch.manual_seed(0)
    train_amil(AttentionMIL(), bags, [1, 0, 1], TrainSettings(epochs=2, batch_size=2), log=None)
    text = terminal.getvalue()
    assert final_counts(text, "training A-MIL") == ("4", "4")  # 2 epochs x 2 batches (2 + 1 bags)
    assert re.search(r"epoch=2, loss=\d+\.\d{4}", text)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request lines on the stderr the tests read
        pass


CONTENT = b"a small file standing in for a mammogram\n" * 100


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A one-entry registry whose file a loopback HTTP server serves; empty cache, no mirror."""
    (tmp_path / "www" / "o" / "r").mkdir(parents=True)
    (tmp_path / "www" / "o" / "r" / "file.png").write_bytes(CONTENT)
    handler = functools.partial(QuietHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    entry = data.RegistryEntry("demo/file.png", f"http://127.0.0.1:{server.server_port}/o/r/file.png",
                               "sha256:" + hashlib.sha256(CONTENT).hexdigest(), len(CONTENT), "CC0",
                               "Nobody 2026", "a test file")
    monkeypatch.setattr(registry, "load_registry", lambda: {entry.key: entry})
    monkeypatch.setattr(registry, "DOWNLOAD_BAR_DELAY", 0.0)  # a loopback download is too quick for the delay
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.delenv(data.MIRROR_ENV_VAR, raising=False)
    yield entry
    server.shutdown()


def test_a_download_draws_a_byte_bar(terminal, served):
    terminal.on()
    path = data.fetch(served.key)
    assert path.read_bytes() == CONTENT
    assert final_counts(terminal.getvalue(), served.key) == ("4.00k", "4.00k")  # 4,100 bytes
    terminal.seek(0), terminal.truncate()
    assert data.fetch(served.key) == path  # from the cache: no download, no bar
    assert terminal.getvalue() == ""


def test_a_download_can_be_kept_quiet(terminal, served):
    terminal.on()
    data.fetch(served.key, progressbar=False)
    assert terminal.getvalue() == ""


def test_a_quick_or_failed_download_draws_nothing(terminal, served, monkeypatch):
    terminal.on()
    monkeypatch.setattr(registry, "DOWNLOAD_BAR_DELAY", 30.0)
    data.fetch(served.key)
    entry = data.RegistryEntry("demo/gone.png", served.url.replace("file.png", "gone.png"), served.hash,
                               served.size, "CC0", "Nobody 2026", "a missing file")
    monkeypatch.setattr(registry, "load_registry", lambda: {entry.key: entry})
    with pytest.raises(data.DataUnavailableError):
        data.fetch(entry.key)  # HTTP 404
    assert terminal.getvalue() == ""


def test_fetch_all_draws_a_file_count_bar(terminal, served, capsys):
    terminal.on()
    from course_lib import cli

    assert cli._fetch_all([served.key]) == 0
    text = terminal.getvalue()
    assert final_counts(text, "fetching") == ("1", "1")
    assert final_counts(text, served.key) == ("4.00k", "4.00k")


# --- stored outputs: with TQDM_DISABLE set, nothing is drawn ---------------------------------

def test_nothing_is_drawn_with_tqdm_disable(terminal, served, monkeypatch):
    """What the stored notebooks run with: a terminal and a kernel, yet no bar anywhere."""
    terminal.on()
    from course_lib.amil.model import AttentionMIL
    from course_lib.amil.train import TrainSettings, train_amil

    monkeypatch.setenv(progress.DISABLE_ENV_VAR, "1")
    fake_kernel(monkeypatch)
    batch.map_items(_square, range(3))
    data.fetch(served.key)
    bags = [torch.rand(n, 3, 28, 28) for n in (3, 4)]
    train_amil(AttentionMIL(), bags, [1, 0], TrainSettings(epochs=1), log=None)
    assert progress.keras_callbacks() == []
    assert terminal.getvalue() == ""
