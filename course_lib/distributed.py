"""Data parallelism on the engines clusters already run: ``torchrun`` and ``tf.distribute``.

Data parallelism copies the model to every device (a *replica*), gives each replica a
different part of every batch, and averages the replicas' gradients before each update, so
that every replica takes the same step. The batch the average runs over is the *global
batch*: per-replica batch x number of replicas.

PyTorch (GMIC, A-MIL)
---------------------
Launch the same script once per device with ``torchrun``; every process finds its place
from the environment torchrun sets (:func:`detect_launch`)::

    torchrun --nproc_per_node 4 my_training.py                          # one machine, 4 GPUs
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 4 \\
             --rdzv_backend c10d --rdzv_endpoint HOST:29400 my_training.py  # two machines

A trainer calls :func:`join` (the process group: ``nccl`` on GPUs, ``gloo`` on CPUs,
chosen from the device), splits each global batch with :func:`local_part`, wraps the model
with :func:`wrap` (DistributedDataParallel) and logs, writes checkpoints and draws progress
bars on the main process only (:func:`main_process_only`). Without torchrun, :func:`join`
returns :data:`SINGLE_PROCESS` at once and nothing else changes.

The kit keeps the recipe's batch size as the global batch: N processes each take 1/N of
it, so a run on N devices computes the same gradients as one device on the whole batch,
and the learning rate stays the recipe's. Two things make that exact:

- the loss of each part is weighed by its share (:func:`local_part`), so that the average
  DDP takes is the mean over the global batch even when the batch does not split evenly;
- BatchNorm normalises with the statistics of the global batch, not of one part
  (:func:`synchronised_batchnorm`; torch's ``SyncBatchNorm`` runs on GPUs only).

Checkpoints keep the official key names: :func:`unwrap` gives the model inside the DDP
wrapper, and :func:`plain_state_dict` strips the ``module.`` prefix of a state dict saved
from a wrapped model.

Keras (density, end2end)
------------------------
:func:`keras_strategy` picks ``tf.distribute.MultiWorkerMirroredStrategy`` when
``TF_CONFIG`` names several workers, else ``MirroredStrategy`` over the local GPUs (or the
given devices). Build and compile the model inside ``strategy.scope()``, with its
BatchNorm layers synchronised (:func:`synchronise_keras_batchnorm`); ``model.fit``
then splits each batch over the replicas and sums their gradients, each replica's loss
being divided by the number of replicas. The batch given to ``fit`` (or a ``tf.data``
pipeline's batch) is the global batch. Keep the recipe's global batch and nothing else
changes; grow it with the replicas (:func:`global_batch_size`) to keep every device busy,
and scale the learning rate with it (:func:`scaled_learning_rate`: linear, Goyal et al.
2017, "Accurate, large minibatch SGD").
"""

import atexit
import contextlib
import json
import os
import warnings
from dataclasses import dataclass

__all__ = ["Context", "SINGLE_PROCESS", "TORCHRUN_VARIABLES", "detect_launch", "backend_for", "join",
           "current", "leave", "main_process_only", "local_part", "EpochSampler", "all_sum", "wrap", "unwrap",
           "plain_state_dict", "synchronised_batchnorm", "average_batchnorm_statistics", "keras_strategy",
           "synchronise_keras_batchnorm", "global_batch_size", "scaled_learning_rate", "use_logical_cpus",
           "add_keras_distribute_option", "keras_strategy_from_args"]

#: What torchrun sets in every process it starts (multi-node runs set the same).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Context:
    """This process's place in a data-parallel job: ``rank`` of ``world_size`` processes
    (``local_rank`` on its machine), its ``device`` and the process group's ``backend``
    (None: a single process, no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None

    @property
    def is_main(self):
        """True on the process that logs and writes checkpoints (rank 0)."""
        return self.rank == 0

    @property
    def is_distributed(self):
        return self.backend is not None


#: The context of a plain run (no torchrun).
SINGLE_PROCESS = Context()
_joined = None


def detect_launch(environ=None):
    """The (rank, world size, local rank) torchrun gave this process, or None without torchrun.

    >>> detect_launch({})
    >>> detect_launch({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
    ...                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    (1, 2, 1)
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ and "RANK" not in environ:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in environ]
    if missing:
        raise ValueError(f"a torchrun launch sets {', '.join(TORCHRUN_VARIABLES)}; {', '.join(missing)} "
                         "missing: start the script with torchrun, or unset RANK and WORLD_SIZE for a plain run")
    rank, world_size, local_rank = (int(environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is not in 0..WORLD_SIZE-1={world_size - 1}")
    return rank, world_size, local_rank


def backend_for(device):
    """The process-group backend for ``device``: ``nccl`` for CUDA, ``gloo`` otherwise.

    >>> backend_for("cuda:1"), backend_for("cpu")
    ('nccl', 'gloo')
    """
    return "nccl" if str(device).startswith("cuda") else "gloo"


def join(device="cpu", environ=None):
    """This process's :class:`Context`: joins the torchrun process group on the first call.

    Without torchrun it returns :data:`SINGLE_PROCESS` (with ``device``) and imports
    nothing. Under torchrun, ``device="cuda"`` becomes ``cuda:LOCAL_RANK`` (one GPU per
    process); the group is left at exit (:func:`leave`).
    """
    global _joined
    if _joined is not None:
        return _joined
    launch = detect_launch(environ)
    if launch is None:
        return Context(device=str(device))
    import torch
    import torch.distributed as dist

    rank, world_size, local_rank = launch
    device = str(device)
    if device == "cuda":
        device = f"cuda:{local_rank}"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    backend = backend_for(device)
    # synchronised_batchnorm needs the autograd-aware all-reduce, deprecated but not replaced.
    warnings.filterwarnings("ignore", r"torch\.distributed\.nn\.functional\.all_reduce is deprecated", FutureWarning)
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size)
        atexit.register(leave)
    _joined = Context(rank, world_size, local_rank, device, backend)
    return _joined


def current():
    """The context joined so far (:data:`SINGLE_PROCESS` before :func:`join` or without torchrun)."""
    return _joined if _joined is not None else SINGLE_PROCESS


def leave():
    """Leave the process group (the end of a distributed run); nothing to do otherwise."""
    global _joined
    if _joined is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _joined = None


def main_process_only(function, context=None):
    """``function`` on the main process, a no-op elsewhere (logging, progress, checkpoints).

    >>> main_process_only(print, Context(rank=1, world_size=2, backend="gloo"))("not shown")
    >>> main_process_only(print)("shown")
    shown
    """
    context = current() if context is None else context
    if context.is_main:
        return function
    return lambda *args, **kwargs: None


def local_part(batch, context=None):
    """This process's part of a global batch of indices, and the weight of its loss.

    Process r takes ``batch[r::world_size]``. DDP averages the processes' gradients; a
    part's mean loss times ``weight = len(part) * world_size / len(batch)`` makes that
    average the mean over the global batch, also when the batch does not split evenly.

    >>> local_part([7, 3, 5], Context(rank=1, world_size=2, backend="gloo"))
    ([3], 0.6666666666666666)
    >>> local_part([7, 3, 5])
    ([7, 3, 5], 1.0)
    """
    context = current() if context is None else context
    if len(batch) < context.world_size:
        raise ValueError(f"a batch of {len(batch)} cannot be split over {context.world_size} processes: "
                         f"use a batch size (and a data-set size) that gives every process at least one item")
    part = batch[context.rank::context.world_size]
    return part, len(part) * context.world_size / len(batch)


class EpochSampler:
    """A DistributedSampler without torch: this process's indices of a data set of ``size``
    items, reshuffled every epoch (:meth:`set_epoch`), the same order on every process.

    Like torch's sampler, the epoch's order is padded (wrapping around) to a multiple of
    the world size so that every process gets as many items; ``drop_last`` drops the tail
    instead. Usable as a ``DataLoader(sampler=...)``.

    >>> sampler = EpochSampler(5, Context(rank=0, world_size=2, backend="gloo"), seed=1)
    >>> len(sampler), sampler.epoch_order() == EpochSampler(5, seed=1).epoch_order()
    (3, True)
    """

    def __init__(self, size, context=None, seed=0, shuffle=True, drop_last=False):
        self.size, self.seed, self.shuffle, self.drop_last = int(size), int(seed), shuffle, drop_last
        self.context = current() if context is None else context
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def epoch_order(self):
        """The whole epoch's order (every process computes the same one)."""
        import numpy as np

        if not self.shuffle:
            return list(range(self.size))
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size).tolist()

    def __len__(self):
        world = self.context.world_size
        return self.size // world if self.drop_last else -(-self.size // world)

    def __iter__(self):
        order = self.epoch_order()
        total = len(self) * self.context.world_size
        order = (order * (1 + total // max(len(order), 1)))[:total]
        return iter(order[self.context.rank::self.context.world_size])


def all_sum(values, context=None):
    """The element-wise sum over the processes of a list of floats (itself on one process)."""
    context = current() if context is None else context
    if not context.is_distributed:
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(list(values), dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def wrap(model, context=None):
    """``model`` in DistributedDataParallel under torchrun, ``model`` itself otherwise.

    Every process starts from the main process's weights and buffers (DDP copies them). The
    BatchNorm buffers are not broadcast at each step: :func:`synchronised_batchnorm`
    keeps them equal on every process.
    """
    context = current() if context is None else context
    if not context.is_distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    model.to(context.device)
    device_ids = [context.device] if context.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def unwrap(model):
    """The model inside a DDP (or DataParallel) wrapper; its state dict has the official keys."""
    return getattr(model, "module", model) if type(model).__name__ in ("DistributedDataParallel",
                                                                      "DataParallel") else model


def plain_state_dict(state_dict):
    """``state_dict`` without the ``module.`` prefix a DDP-wrapped model's keys carry.

    >>> plain_state_dict({"module.ds_net.first_conv.weight": 1, "fusion_dnn.bias": 2})
    {'ds_net.first_conv.weight': 1, 'fusion_dnn.bias': 2}
    """
    return {(key[len("module."):] if key.startswith("module.") else key): value
            for key, value in state_dict.items()}


def _batchnorms(model):
    import torch

    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _synchronised_forward(norm, x):
    """BatchNorm in training mode with the mean and variance of the global batch.

    Two all-reduces (sums, then squared deviations from the global mean: as exact as the
    single-process variance); ``torch.distributed.nn`` carries the gradients back through
    them, so each process's gradient includes its effect on the other processes' statistics.
    """
    import torch
    from torch.distributed.nn.functional import all_reduce

    if not norm.training:
        return type(norm).forward(norm, x)
    axes = [0, *range(2, x.ndim)]
    shape = [1, -1] + [1] * (x.ndim - 2)
    count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
    sums = all_reduce(torch.cat([x.sum(axes), count]))
    total = sums[-1]
    mean = sums[:-1] / total
    variance = all_reduce(((x - mean.view(shape)) ** 2).sum(axes)) / total
    y = (x - mean.view(shape)) * torch.rsqrt(variance + norm.eps).view(shape)
    if norm.affine:
        y = y * norm.weight.view(shape) + norm.bias.view(shape)
    if norm.track_running_stats:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
            unbiased = variance * (total / (total - 1).clamp(min=1))
            norm.running_mean.mul_(1 - factor).add_(factor * mean.detach())
            norm.running_var.mul_(1 - factor).add_(factor * unbiased.detach())
    return y


@contextlib.contextmanager
def synchronised_batchnorm(model, context=None):
    """Inside, every BatchNorm of ``model`` in training mode normalises with the statistics
    of the global batch (all processes' parts); a no-op on a single process.

    The modules, their parameters and their state-dict keys stay what they are (only their
    forward is replaced while inside), so checkpoints keep the official key names.
    """
    context = current() if context is None else context
    if not context.is_distributed:
        yield model
        return
    import functools

    norms = _batchnorms(unwrap(model))
    for norm in norms:
        norm.forward = functools.partial(_synchronised_forward, norm)
    try:
        yield model
    finally:
        for norm in norms:
            del norm.forward


def average_batchnorm_statistics(model, batches, context=None):
    """Average the BatchNorm running statistics of ``model`` over the processes, each
    weighed by the number of ``batches`` it averaged (a re-estimation split by batches:
    every process ends with the statistics one process would have over all batches)."""
    context = current() if context is None else context
    if not context.is_distributed:
        return
    import torch
    import torch.distributed as dist

    for norm in _batchnorms(unwrap(model)):
        if not norm.track_running_stats:
            continue
        packed = torch.cat([norm.running_mean.double() * batches, norm.running_var.double() * batches,
                            torch.tensor([float(batches)], dtype=torch.float64, device=norm.running_mean.device)])
        dist.all_reduce(packed)
        channels, total = norm.running_mean.numel(), packed[-1].clamp(min=1)
        norm.running_mean.copy_(packed[:channels] / total)
        norm.running_var.copy_(packed[channels:2 * channels] / total)
        norm.num_batches_tracked.fill_(int(packed[-1]))


# --- Keras / tf.distribute -------------------------------------------------------------


def keras_strategy(devices=None, environ=None):
    """The ``tf.distribute`` strategy for this machine or cluster.

    ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` lists more than one worker (each
    machine runs the same script with its own ``TF_CONFIG``), else ``MirroredStrategy``
    over ``devices`` (default: every local GPU, or the CPU when there is none).
    """
    import tensorflow as tf

    environ = os.environ if environ is None else environ
    workers = json.loads(environ.get("TF_CONFIG") or "{}").get("cluster", {}).get("worker", [])
    if len(workers) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [device.name for device in gpus] or ["/cpu:0"]
    return tf.distribute.MirroredStrategy(devices=list(devices))


def synchronise_keras_batchnorm(model):
    """Make every BatchNormalization layer of a Keras ``model`` normalise with the global
    batch's statistics under a ``tf.distribute`` strategy (Keras' default: each replica's
    own part). Returns the number of layers changed."""
    import keras

    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)


def global_batch_size(per_replica_batch, replicas):
    """The batch a step averages over: per-replica batch x replicas (``strategy.num_replicas_in_sync``).

    >>> global_batch_size(8, 4)
    32
    """
    return int(per_replica_batch) * int(replicas)


def scaled_learning_rate(learning_rate, recipe_batch, global_batch):
    """The linear scaling rule: a global batch k times the recipe's takes a learning rate k
    times the recipe's (Goyal et al. 2017; warm it up over the first epochs).

    >>> scaled_learning_rate(1e-4, 8, 32)
    0.0004
    """
    return learning_rate * global_batch / recipe_batch


def use_logical_cpus(count):
    """Split the CPU into ``count`` logical devices (a multi-device machine to practise on;
    must run before TensorFlow creates its devices). Returns their names."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(count))
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def add_keras_distribute_option(parser):
    """Add ``--distribute`` to a Keras trainer's command line (see :func:`keras_strategy_from_args`)."""
    parser.add_argument("--distribute", action="store_true",
                        help="train data-parallel: MirroredStrategy over all local GPUs, or "
                             "MultiWorkerMirroredStrategy over the workers TF_CONFIG lists; the batch size "
                             "is the global batch")


def keras_strategy_from_args(args):
    """The strategy ``--distribute`` asks for (:func:`keras_strategy`), or None for a plain run."""
    if not getattr(args, "distribute", False):
        return None
    strategy = keras_strategy()
    print(f"tf.distribute: {type(strategy).__name__} over {strategy.num_replicas_in_sync} replica(s)")
    return strategy
