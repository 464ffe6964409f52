"""The one timing rule of the benchmarks: warm up once, then the median of several runs.

The median, not the mean: one run slowed by another process on a shared machine moves the
mean but not the median. The warm-up keeps one-time costs (tracing, compilation, caches)
out of the figure; skip it for work that has none, such as starting a fresh process.
"""

import statistics
import time


def median_seconds(function, repeats=5, warm_up=True):
    """Median wall time of ``function()`` over ``repeats`` calls, after one uncounted call."""
    if warm_up:
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
