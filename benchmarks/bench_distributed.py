"""Benchmark data-parallel GMIC training: images/s on 1 device against N devices (torchrun, DDP).

Trains GMIC at the phantom weights' quarter scale (768x512 windows, model index 1 settings)
on random windows with ``train_gmic``, once in one process and once under ``torchrun
--nproc_per_node N``, each device getting the same per-device batch (so the global batch
grows with N, as one does to keep every device busy). Devices: every GPU when there are
GPUs, else N CPU processes of one thread each (a stand-in that measures the
communication overhead, not a speed-up a cluster would see). The first step is a
warm-up; images/s counts the others. Prints the speed-up, the scaling efficiency and what
an epoch of the ``full`` phantom recipe (``PhantomRecipe``: 160 exams, 4 views) would take.

Usage::

    python benchmarks/bench_distributed.py [--processes N] [--per-device-batch 2] [--steps 4]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(per_device_batch, steps, out):
    """One process of the measured run (plain or under torchrun)."""
    import numpy as np
    import torch

    from course_lib import distributed
    from course_lib.gmic.train import TrainingSettings, train_gmic
    from course_lib.gmic.weights import phantom_model

    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    context = distributed.join(device)
    global_batch = per_device_batch * context.world_size
    model = phantom_model(seed=0)
    windows = np.random.default_rng(0).normal(size=(global_batch * steps, 768, 512)).astype(np.float32)
    labels = np.zeros((len(windows), 2), np.float32)
    times = []

    def timed_step(optimiser, args, kwargs):
        if context.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(timed_step)
    settings = TrainingSettings(epochs=1, batch_size=global_batch)
    train_gmic(model, windows, labels, settings, device=device, log=lambda *a: None)
    if context.is_main:
        seconds = (times[-1] - times[0]) / (len(times) - 1)
        Path(out).write_text(json.dumps({"devices": context.world_size, "device": context.device,
                                         "global_batch": global_batch, "seconds_per_step": seconds,
                                         "images_per_second": global_batch / seconds}))


def measure(processes, per_device_batch, steps):
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        script = [__file__, "--worker", str(per_device_batch), str(steps), str(out)]
        command = ([sys.executable, *script] if processes == 1 else
                   [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    str(processes), *script])
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(command, check=True, env=env)
        return json.loads(out.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=None, help="default: every GPU, else 2 CPU processes")
    parser.add_argument("--per-device-batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(int(args.worker[0]), int(args.worker[1]), args.worker[2])
    import torch

    from course_lib.gmic.config import PhantomRecipe

    processes = args.processes or (torch.cuda.device_count() if torch.cuda.is_available() else 2)
    one = measure(1, args.per_device_batch, args.steps)
    many = measure(processes, args.per_device_batch, args.steps)
    speedup = many["images_per_second"] / one["images_per_second"]
    epoch_images = PhantomRecipe().train_exams * 4
    print(f"device: {one['device']} (1 process) vs {many['device'].split(':')[0]} x {processes} processes")
    for result in (one, many):
        print(f"  {result['devices']} device(s), global batch {result['global_batch']}: "
              f"{result['images_per_second']:.2f} images/s ({result['seconds_per_step']:.2f} s/step); "
              f"one epoch of the full phantom recipe ({epoch_images} views): "
              f"{epoch_images / result['images_per_second'] / 60:.1f} min")
    print(f"speed-up {speedup:.2f}x on {processes} devices (scaling efficiency {speedup / processes:.0%})")


if __name__ == "__main__":
    main()
