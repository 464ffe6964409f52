"""The exact padding skip of GMIC's global network: feature maps that store runs of
identical rows and columns shortened.

62-82 % of a GMIC input window is constant zero padding. Away from the breast and the
image border, a convolution of a constant region is constant again, so a run of
identical rows (or columns) stays a run through every layer. :class:`CompactMap` keeps
each such run as a few representative rows plus its length, runs the network on the
rest, and expands the result: ``h_g`` equals the plain forward's to float rounding, in
roughly half the time. :func:`separable_max_pool` is the max-pool it needs (rows, then
columns), equal to :func:`torch.nn.functional.max_pool2d`.
"""

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn.modules.utils import _pair

__all__ = ["MIN_COLLAPSED_RUN", "MIN_KEPT_ROWS", "Run", "Axis", "CompactMap", "find_identical_runs",
           "separable_max_pool"]


# --------------------------------------------------------------------------------------
# Feature maps that store runs of identical rows and columns shortened
# --------------------------------------------------------------------------------------

# Input runs shorter than this are computed in full: shortening them saves less than
# it costs.
MIN_COLLAPSED_RUN = 64
# Rows of a shortened run that stay stored, so that several 3x3 convolutions can run
# before the run must be lengthened again.
MIN_KEPT_ROWS = 16


@dataclass(frozen=True)
class Run:
    """Positions [lo, hi) of an axis hold identical rows; ``removed`` of them are not stored."""

    lo: int
    hi: int
    removed: int

    @property
    def kept(self) -> int:
        return self.hi - self.lo - self.removed


@dataclass(frozen=True)
class Axis:
    """One spatial axis of a :class:`CompactMap`: its full size and its shortened runs.

    The stored rows are the full axis minus the last ``removed`` rows of each run.
    Removed counts are multiples of ``alignment``, the product of the strides still
    ahead, so that the strided ops keep their grid.
    """

    size: int
    runs: tuple[Run, ...] = ()
    alignment: int = 1

    def stored_positions(self) -> np.ndarray:
        """The full-size position of every stored row."""
        stored = np.ones(self.size, dtype=bool)
        for run in self.runs:
            stored[run.lo + run.kept : run.hi] = False
        return np.flatnonzero(stored)

    def stored_index(self, positions: np.ndarray) -> np.ndarray:
        """The stored row holding each full-size position: a row left out of a run is
        equal to the run's last stored row."""
        return np.searchsorted(self.stored_positions(), positions, side="right") - 1

    def after_window_op(self, kernel: int, stride: int, padding: int) -> "Axis":
        """The axis of a convolution or pooling output: each run shrinks to the outputs
        whose window lies inside it, and its removed rows are divided by the stride."""
        size = (self.size + 2 * padding - kernel) // stride + 1
        runs = tuple(
            Run(
                -(-(run.lo + padding) // stride),
                min((run.hi - kernel + padding) // stride + 1, size),
                run.removed // stride,
            )
            for run in self.runs
        )
        return Axis(size, runs, max(self.alignment // stride, 1))

    def supports(self, kernel: int, stride: int, padding: int) -> bool:
        """Whether the op can run on the stored rows alone.

        It can when no window spans a whole stored run (so every window sees what it
        would see on the full axis), the removed rows keep the stride grid, and every
        output run keeps a stored row.
        """
        fits = all(run.removed % stride == 0 and run.kept >= kernel - 1 for run in self.runs)
        return fits and all(run.kept >= 1 for run in self.after_window_op(kernel, stride, padding).runs)

    def lengthened(self, min_kept: int, stride: int) -> "Axis":
        """The axis with at least ``min_kept`` rows stored per run.

        Removed counts stay multiples of the alignment and of ``stride``; runs too
        short for that are stored whole, i.e. dropped from the list.
        """
        granule = math.lcm(self.alignment, stride)
        runs = []
        for run in self.runs:
            removed = min(run.removed, (run.hi - run.lo - min_kept) // granule * granule)
            if removed > 0:
                runs.append(Run(run.lo, run.hi, removed))
        return Axis(self.size, tuple(runs), self.alignment)


def find_identical_runs(same_as_next: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """Runs [lo, hi) of at least ``min_length`` identical rows.

    ``same_as_next[i]`` says whether row i equals row i + 1.
    """
    flags = np.concatenate([[0], same_as_next.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(flags))
    runs = [(int(lo), int(last) + 1) for lo, last in zip(edges[0::2], edges[1::2])]
    return [(lo, hi) for lo, hi in runs if hi - lo >= min_length]


def _gather(values: torch.Tensor, dim: int, index: np.ndarray) -> torch.Tensor:
    """``values.index_select(dim, index)`` for a non-decreasing ``index``.

    Copies whole blocks of consecutive positions and broadcasts repeated ones:
    several times faster than index_select, which is slow along the last axis on CPU.
    """
    if len(index) == values.shape[dim] and np.array_equal(index, np.arange(len(index))):
        return values
    positions, counts = np.unique(index, return_counts=True)
    single = counts == 1
    starts_block = np.ones(len(positions), dtype=bool)
    starts_block[1:] = ~(single[1:] & single[:-1] & (np.diff(positions) == 1))
    pieces = []
    for block in np.split(np.arange(len(positions)), np.flatnonzero(starts_block)[1:]):
        first = int(positions[block[0]])
        if len(block) == 1 and counts[block[0]] > 1:
            repeated = values.narrow(dim, first, 1)
            pieces.append(repeated.expand(*values.shape[:dim], int(counts[block[0]]), *values.shape[dim + 1 :]))
        else:
            pieces.append(values.narrow(dim, first, len(block)))
    return pieces[0].contiguous() if len(pieces) == 1 else torch.cat(pieces, dim=dim)


def _window_geometry(module: nn.Module):
    """((kernel, stride, padding) along rows, the same along columns) of a conv or pool."""
    kernel, stride, padding = (_pair(getattr(module, name)) for name in ("kernel_size", "stride", "padding"))
    return (kernel[0], stride[0], padding[0]), (kernel[1], stride[1], padding[1])


def _common_axis(first: Axis, second: Axis) -> Axis:
    """An axis whose runs lie inside runs of both: overlaps, with the smaller removal."""
    runs = []
    for run_a in first.runs:
        for run_b in second.runs:
            lo, hi = max(run_a.lo, run_b.lo), min(run_a.hi, run_b.hi)
            removed = min(run_a.removed, run_b.removed)
            if removed > 0 and hi - lo - removed >= 1:
                runs.append(Run(lo, hi, removed))
    return Axis(first.size, tuple(sorted(runs, key=lambda run: run.lo)), min(first.alignment, second.alignment))


def _paired_axis(first: Axis, second: Axis):
    """The common axis of two axes whose stored rows match one to one, else None.

    They match when their runs pair up with equal removals and overlap by more than
    that: stored row i then shows the same full-size row in both.
    """
    if len(first.runs) != len(second.runs):
        return None
    runs = []
    for run_a, run_b in zip(first.runs, second.runs):
        lo, hi = max(run_a.lo, run_b.lo), min(run_a.hi, run_b.hi)
        if run_a.removed != run_b.removed or hi - lo <= run_a.removed:
            return None
        runs.append(Run(lo, hi, run_a.removed))
    return Axis(first.size, tuple(runs), min(first.alignment, second.alignment))


def separable_max_pool(values: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Max-pooling of the last two axes without padding: a max over rows, then over columns.

    Bit-identical to ``F.max_pool2d`` (a maximum does not round), and several times
    faster on CPU than its channels-first kernel, which also computes indices.
    """
    rows = (values.shape[-2] - kernel_size) // stride + 1
    cols = (values.shape[-1] - kernel_size) // stride + 1
    row_span, col_span = stride * (rows - 1) + 1, stride * (cols - 1) + 1
    row_max = values[..., 0:row_span:stride, :]
    for offset in range(1, kernel_size):
        row_max = torch.maximum(row_max, values[..., offset : offset + row_span : stride, :])
    pooled = row_max[..., 0:col_span:stride]
    for offset in range(1, kernel_size):
        pooled = torch.maximum(pooled, row_max[..., offset : offset + col_span : stride])
    return pooled


@dataclass(frozen=True)
class CompactMap:
    """A (N, C, H, W) feature map whose runs of identical rows/columns are stored shortened.

    A row run holds rows identical across all columns and channels (columns alike),
    e.g. the constant padding of a mammogram window. Convolutions, pooling and
    pointwise ops keep such runs (shrunk by the window), so the global network can
    compute on the stored rows only: outside the runs every window sees exactly what
    it sees on the full map. With no runs this is an ordinary dense map.
    """

    values: torch.Tensor
    rows: Axis
    cols: Axis

    @classmethod
    def dense(cls, values: torch.Tensor) -> "CompactMap":
        """Wrap a dense map (no runs)."""
        return cls(values, Axis(values.shape[-2]), Axis(values.shape[-1]))

    @classmethod
    def collapse(cls, values: torch.Tensor, alignment: int, min_run: int = MIN_COLLAPSED_RUN) -> "CompactMap":
        """Find the runs of identical rows and columns of a dense map and shorten them by
        multiples of ``alignment`` (the network's total stride)."""
        same_rows = (values[..., 1:, :] == values[..., :-1, :]).flatten(0, 1).all(dim=0).all(dim=-1)
        same_cols = (values[..., 1:] == values[..., :-1]).flatten(0, 1).all(dim=0).all(dim=0)
        axes = []
        for same, size in ((same_rows, values.shape[-2]), (same_cols, values.shape[-1])):
            runs = [
                Run(lo, hi, (hi - lo - MIN_KEPT_ROWS) // alignment * alignment)
                for lo, hi in find_identical_runs(same.cpu().numpy(), min_run)
            ]
            axes.append(Axis(size, tuple(run for run in runs if run.removed > 0), alignment))
        return cls.dense(values).restored(*axes)  # the runs found hold identical rows

    def restored(self, rows: Axis, cols: Axis) -> "CompactMap":
        """The same map stored on other axes, whose runs must hold identical rows of this
        map (e.g. lie inside its runs). Copies nothing when the stored rows already match."""
        if _paired_axis(self.rows, rows) is not None and _paired_axis(self.cols, cols) is not None:
            return CompactMap(self.values, rows, cols)
        row_index = self.rows.stored_index(rows.stored_positions())
        col_index = self.cols.stored_index(cols.stored_positions())
        values = _gather(_gather(self.values, self.values.ndim - 2, row_index), self.values.ndim - 1, col_index)
        return CompactMap(values, rows, cols)

    def to_dense(self) -> torch.Tensor:
        """The full-size map."""
        return self.restored(Axis(self.rows.size), Axis(self.cols.size)).values

    def pointwise(self, function) -> "CompactMap":
        """Apply an op that acts on each position separately (BN, ReLU)."""
        return replace(self, values=function(self.values))

    def ready_for(self, module: nn.Module) -> "CompactMap":
        """This map, with runs lengthened where too short for a Conv2d or MaxPool2d."""
        rows, cols = _window_geometry(module)
        if self.rows.supports(*rows) and self.cols.supports(*cols):
            return self
        return self.restored(
            self.rows.lengthened(max(MIN_KEPT_ROWS, rows[0] + rows[1]), rows[1]),
            self.cols.lengthened(max(MIN_KEPT_ROWS, cols[0] + cols[1]), cols[1]),
        )

    def window_op(self, module: nn.Module, function=None) -> "CompactMap":
        """Apply a Conv2d or MaxPool2d to the stored rows/columns; ``function``, if
        given, computes the module's op."""
        x = self.ready_for(module)
        rows, cols = _window_geometry(module)
        return CompactMap((function or module)(x.values), x.rows.after_window_op(*rows), x.cols.after_window_op(*cols))

    def __add__(self, other: "CompactMap") -> "CompactMap":
        rows, cols = _common_axis(self.rows, other.rows), _common_axis(self.cols, other.cols)
        return CompactMap(self.restored(rows, cols).values + other.restored(rows, cols).values, rows, cols)


