"""GMIC under torchrun: two gloo processes train like one process on the whole batch.

The test runs this file as three programs (its ``__main__`` part): ``init`` writes the
starting checkpoint; ``torchrun --standalone --nproc_per_node 2`` trains from it on 7
windows, global batch 4, one epoch = 2 steps (the second batch, of 3, splits 2 + 1 over
the processes), then the sharded BatchNorm re-estimation; ``single`` trains the same way
in one process and loads the DDP checkpoint (strictly, by the official key names). The
weights, BatchNorm statistics and logged losses must agree.

(The training runs in subprocesses: pytest's root conftest imports TensorFlow, after
which torchvision cannot be imported in the same process.)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_lib import distributed  # noqa: E402

SMALL = dict(input_shape=(256, 192), crop_shape=(64, 64))  # 4x3 saliency cells
# Small steps, so that the second step's gradients are taken at (to float rounding) the same
# weights in both runs: Adam turns rounding-level differences of near-zero gradient elements
# into +-lr steps, and with a larger rate the ROI crops of step 2 can differ on a near tie.
LEARNING_RATE = 1e-6


def training_data():
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(7, 256, 192)).astype(np.float32)
    windows[:3, 100:140, 60:100] += 3.0
    labels = np.zeros((7, 2), np.float32)
    labels[:3, 1] = 1
    labels[5, 0] = 1
    return windows, labels


def train_from(checkpoint, log=print):
    """Load ``checkpoint`` and train two steps; the same code in every program."""
    from course_lib.gmic.model import load_gmic_checkpoint
    from course_lib.gmic.train import TrainingSettings, train_gmic

    torch.set_num_threads(1)
    model = load_gmic_checkpoint(str(checkpoint), "5", **SMALL)
    windows, labels = training_data()
    settings = TrainingSettings(epochs=1, batch_size=4, learning_rate=LEARNING_RATE, seed=3)
    return model, train_gmic(model, windows, labels, settings, log=log)


def program(mode, folder):
    folder = Path(folder)
    if mode == "init":
        from course_lib.gmic.config import gmic_config
        from course_lib.gmic.model import GMIC

        torch.manual_seed(0)
        torch.save(GMIC(gmic_config("5", **SMALL)).state_dict(), folder / "initial.pt")
        return
    logged, gradients = [], []

    def keep_gradients(optimiser, args, kwargs):  # what each step of train_gmic applies
        gradients.append([p.grad.clone() for group in optimiser.param_groups for p in group["params"]])

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    register_optimizer_step_pre_hook(keep_gradients)
    model, history = train_from(folder / "initial.pt", log=logged.append)
    context = distributed.current()
    summary = {"loss": history.loss, "parts": history.parts, "logged": logged,
               "world_size": context.world_size, "backend": context.backend}
    if mode == "ddp":
        wrapped = distributed.wrap(model)  # what a script that kept the DDP model would save
        summary["wrapped_prefix"] = next(iter(wrapped.state_dict())).split(".")[0]
        summary["keys_match"] = list(distributed.plain_state_dict(wrapped.state_dict())) == list(model.state_dict())
        summary["rank"] = context.rank
        if not context.is_main:
            (folder / "ddp_rank1.json").write_text(json.dumps(summary))
            return
    else:
        from course_lib.gmic.model import load_gmic_checkpoint

        loaded = load_gmic_checkpoint(str(folder / "ddp.pt"), "5", **SMALL)  # strict: official keys
        images = torch.as_tensor(training_data()[0][:2, None])
        with torch.no_grad():
            difference = (loaded(images).y_fusion - model.eval()(images).y_fusion).abs().max()
        summary["loaded_prediction_difference"] = float(difference)
    torch.save(model.state_dict(), folder / f"{mode}.pt")
    torch.save(gradients, folder / f"{mode}_gradients.pt")  # about 50 MB a step
    (folder / f"{mode}.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for name in distributed.TORCHRUN_VARIABLES:
        env.pop(name, None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for command in ([sys.executable, __file__, "init"], [*torchrun, __file__, "ddp"],
                    [sys.executable, __file__, "single"]):
        done = subprocess.run([*command, str(folder)], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder, {name: json.loads((folder / f"{name}.json").read_text()) for name in ("ddp", "ddp_rank1", "single")}


def relative_difference(value, reference):
    return float((value - reference).norm() / reference.norm().clamp(min=1e-30))


def test_two_processes_compute_the_gradients_of_one_process_on_the_whole_batch(runs):
    folder, _ = runs
    ddp, single = (torch.load(folder / f"{name}_gradients.pt") for name in ("ddp", "single"))
    assert len(ddp) == len(single) == 2  # two steps, every parameter
    for step, (first, second) in enumerate(zip(ddp, single)):
        assert len(first) == len(second) > 100
        worst = max(relative_difference(a, b) for a, b in zip(first, second))
        assert worst < 1e-4, f"step {step + 1}: gradients differ by {worst:.1e} (relative)"


def test_two_processes_train_like_one_on_the_whole_batch(runs):
    folder, summaries = runs
    ddp, single = summaries["ddp"], summaries["single"]
    assert (ddp["world_size"], ddp["backend"]) == (2, "gloo") and (single["world_size"], single["backend"]) == (1, None)
    initial, state, reference = (torch.load(folder / f"{name}.pt") for name in ("initial", "ddp", "single"))
    assert list(state) == list(reference) == list(initial)
    moved = 0
    for key, value in reference.items():
        if value.is_floating_point():
            # Adam's steps are about +-lr whatever the gradient's size: a gradient element that
            # float rounding leaves near 0 may step the other way (at most 2 lr per step).
            torch.testing.assert_close(state[key], value, rtol=1e-4, atol=4 * LEARNING_RATE, msg=key)
            moved += int(not torch.equal(value, initial[key]))
        else:
            assert torch.equal(state[key], value), key  # num_batches_tracked: every re-estimation batch
    assert moved > 100  # the steps and the BatchNorm re-estimation changed the model
    assert ddp["loss"] == pytest.approx(single["loss"], rel=1e-5)
    for parts, expected in zip(ddp["parts"], single["parts"]):
        assert parts == pytest.approx(expected, rel=1e-5)
    # Only the main process logs; both processes end with the same history.
    assert len(ddp["logged"]) == len(single["logged"]) == 1 and summaries["ddp_rank1"]["logged"] == []
    assert summaries["ddp_rank1"]["loss"] == ddp["loss"]


def test_a_ddp_checkpoint_loads_in_one_process_with_the_official_keys(runs):
    _, summaries = runs
    assert summaries["ddp"]["wrapped_prefix"] == "module" and summaries["ddp"]["keys_match"]
    assert summaries["single"]["loaded_prediction_difference"] < 1e-4


def test_a_plain_run_joins_no_process_group():
    assert distributed.join("cpu", environ={}) == distributed.Context(device="cpu")
    assert distributed.current() is distributed.SINGLE_PROCESS
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        distributed.detect_launch({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


if __name__ == "__main__":
    program(*sys.argv[1:])
