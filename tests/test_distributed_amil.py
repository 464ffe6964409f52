"""A-MIL under torchrun: two gloo processes train like one process on the whole batch.

The test runs this file as programs (its ``__main__`` part): ``torchrun --standalone
--nproc_per_node 2`` and a plain run train the gated A-MIL model for two steps (7 bags of
different sizes, global batch 4: the second batch of 3 splits 2 + 1) from the same weights.
Padded bags differ between the runs (each process pads its own part): the mask makes that
irrelevant, and the weights, gradients and logged losses agree. The bags are augmented
(``augment=True``): each bag is turned and re-stained alike whatever the number of processes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from course_lib import distributed  # noqa: E402

LEARNING_RATE = 1e-4


def program(mode, folder):
    from course_lib.amil.model import AttentionMIL
    from course_lib.amil.train import TrainSettings, train_amil
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    folder = Path(folder)
    torch.manual_seed(0)
    model = AttentionMIL(gated=True)
    generator = torch.Generator().manual_seed(1)
    bags = [torch.rand(size, 3, 28, 28, generator=generator) for size in (5, 9, 6, 12, 7, 5, 10)]
    labels = [1, 0, 1, 1, 0, 0, 1]
    gradients, logged = [], []
    register_optimizer_step_pre_hook(lambda optimiser, args, kwargs: gradients.append(
        [p.grad.clone() for group in optimiser.param_groups for p in group["params"]]))
    settings = TrainSettings(epochs=1, learning_rate=LEARNING_RATE, batch_size=4, seed=2, threads=1,
                             augment=True)
    history = train_amil(model, bags, labels, settings, log=logged.append)
    context = distributed.current()
    summary = {"loss": history["loss"], "accuracy": history["accuracy"], "logged": logged,
               "world_size": context.world_size, "rank": context.rank}
    name = mode if context.is_main else f"{mode}_rank{context.rank}"
    torch.save({"state": model.state_dict(), "gradients": gradients}, folder / f"{name}.pt")
    (folder / f"{name}.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("amil_ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for name in distributed.TORCHRUN_VARIABLES:
        env.pop(name, None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for command in ([*torchrun, __file__, "ddp"], [sys.executable, __file__, "single"]):
        done = subprocess.run([*command, str(folder)], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder


def test_two_processes_train_amil_like_one_on_the_whole_batch(runs):
    ddp, single, other = (torch.load(runs / f"{name}.pt") for name in ("ddp", "single", "ddp_rank1"))
    summaries = {name: json.loads((runs / f"{name}.json").read_text()) for name in ("ddp", "single", "ddp_rank1")}
    assert summaries["ddp"]["world_size"] == 2 and summaries["single"]["world_size"] == 1
    assert len(ddp["gradients"]) == len(single["gradients"]) == 2
    for first, second in zip(ddp["gradients"], single["gradients"]):
        for a, b in zip(first, second):
            # (the attention's last bias has a zero gradient, softmax being shift-invariant: float noise)
            assert float((a - b).norm()) <= 1e-4 * float(b.norm()) + 1e-8
    for key, value in single["state"].items():
        torch.testing.assert_close(ddp["state"][key], value, rtol=1e-4, atol=4 * LEARNING_RATE, msg=key)
        assert torch.equal(ddp["state"][key], other["state"][key])  # the replicas stay identical
    assert summaries["ddp"]["loss"] == pytest.approx(summaries["single"]["loss"], rel=1e-5)
    assert summaries["ddp"]["accuracy"] == summaries["single"]["accuracy"]
    assert len(summaries["ddp"]["logged"]) == 1 and summaries["ddp_rank1"]["logged"] == []


def test_a_batch_smaller_than_the_world_is_refused():
    context = distributed.Context(rank=0, world_size=2, backend="gloo")
    with pytest.raises(ValueError, match="batch size"):
        distributed.local_part([3], context)


if __name__ == "__main__":
    program(*sys.argv[1:])
