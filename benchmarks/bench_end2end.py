"""Benchmark the end2end pipeline: one-pass heatmap vs patch loop; patch sampling speed.

Prints
1. the dense heatmap of the kit's patch classifier on SYNTHETIC phantoms, computed in ONE
   fully convolutional pass and by cutting and classifying every patch (same weights,
   same image): seconds of each, their ratio (target >= 20x) and the largest difference
   (target <= 1e-5);
2. patch sampling (:func:`course_lib.end2end.patches.sample_patches`) in views per second
   on a SYNTHETIC CBIS-DDSM-style folder, serial and with 2 processes.

Usage::

    python benchmarks/bench_end2end.py [--patients 10] [--repeats 3]
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def best_of(function, repeats):
    """Smallest wall time of ``repeats`` calls, and the last result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def bench_heatmap(repeats):
    from course_lib.end2end import pipeline
    from course_lib.end2end.data import PHANTOM_BITS
    from course_lib.end2end.predict import dense_heatmap, heatmap_geometry, model_input, patch_loop_heatmap
    from course_lib.paths import PRETRAINED
    from course_lib.phantoms.mammogram import make_mammogram

    patch, _, card = pipeline.load(PRETRAINED / "end2end_phantom_small.npz")
    stride, window = heatmap_geometry(patch, 48)
    for shape in ((368, 240), (736, 480)):
        image = make_mammogram(7, "CC", "L", shape, lesions=("malignant_mass",), lesion_contrast=3.0).image
        x = model_input(image[None], PHANTOM_BITS, card["intensity"]["featurewise_mean"])
        dense_heatmap(patch, x, 48)  # warm-up: graph tracing
        patch_loop_heatmap(patch, x[0], 48, stride)
        fast_s, fast = best_of(lambda: dense_heatmap(patch, x, 48)[0], repeats)
        slow_s, slow = best_of(lambda: patch_loop_heatmap(patch, x[0], 48, stride), repeats)
        print(f"heatmap {shape[0]}x{shape[1]} ({slow.shape[0]}x{slow.shape[1]} patches of {window}, stride {stride}): "
              f"one pass {fast_s * 1e3:.0f} ms, patch loop {slow_s * 1e3:.0f} ms, ratio {slow_s / fast_s:.0f}x, "
              f"max |difference| {np.abs(fast - slow).max():.1e}")


def bench_sampling(n_patients, repeats):
    from course_lib.end2end.data import write_phantom_cases
    from course_lib.end2end.patches import SamplingSettings, sample_patches

    work = Path(tempfile.mkdtemp(prefix="bench_end2end_"))
    try:
        write_phantom_cases(work / "cases", n_patients=n_patients, seed=0)
        for processes in (1, 2):
            def run():
                shutil.rmtree(work / "patches", ignore_errors=True)  # no resume: sample every view
                return sample_patches(work / "cases", work / "patches", SamplingSettings(), processes=processes)

            seconds, report = best_of(run, repeats)
            views = report.index.groupby(["patient_id", "side", "view"]).ngroups
            print(f"patch sampling, {processes} process(es): {views / seconds:.1f} views/s "
                  f"({views} views with lesions, {len(report.index)} patches, {seconds:.1f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from course_lib.end2end.train import make_deterministic

    make_deterministic(0, threads=2)
    bench_heatmap(args.repeats)
    bench_sampling(args.patients, args.repeats)


if __name__ == "__main__":
    main()
