"""Benchmark the end2end pipeline: one-pass heatmap vs patch loop; patch sampling speed.

Prints
1. the dense heatmap of the kit's patch classifier on SYNTHETIC phantoms, computed in ONE
   fully convolutional pass, by classifying every patch one at a time (the naive loop), and
   by classifying all patches as one batch (same weights, same image): times, ratios
   (target >= 20x against the loop) and the largest difference (target <= 1e-5);
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
    from course_lib.end2end.model import heatmap_model
    from course_lib.end2end.predict import heatmap_geometry, model_input
    from course_lib.paths import PRETRAINED
    from course_lib.phantoms.mammogram import make_mammogram

    patch, _, card = pipeline.load(PRETRAINED / "end2end_phantom_small.npz")
    stride, window = heatmap_geometry(patch, 48)
    dense = heatmap_model(patch, 48)
    for shape in ((368, 240), (736, 480)):
        image = make_mammogram(7, "CC", "L", shape, lesions=("malignant_mass",), lesion_contrast=3.0).image
        x = model_input(image[None], PHANTOM_BITS, card["intensity"]["featurewise_mean"])
        rows, cols = (shape[0] - window) // stride + 1, (shape[1] - window) // stride + 1
        patches = np.stack([x[0, i * stride:i * stride + window, j * stride:j * stride + window]
                            for i in range(rows) for j in range(cols)])

        def one_pass():
            return dense.predict_on_batch(x)[0]

        def batched_patches():
            return patch.predict_on_batch(patches).reshape(rows, cols, -1)

        def patch_by_patch():
            return np.stack([patch.predict_on_batch(p[None])[0] for p in patches]).reshape(rows, cols, -1)

        for function in (one_pass, batched_patches, patch_by_patch):
            function()  # warm-up: graph tracing
        fast_s, fast = best_of(one_pass, repeats)
        batch_s, batched = best_of(batched_patches, repeats)
        slow_s, slow = best_of(patch_by_patch, 1)
        print(f"heatmap {shape[0]}x{shape[1]} ({rows}x{cols} patches of {window}, stride {stride}): one pass "
              f"{fast_s * 1e3:.0f} ms; patch-by-patch loop {slow_s * 1e3:.0f} ms ({slow_s / fast_s:.0f}x); all patches "
              f"as one batch {batch_s * 1e3:.0f} ms ({batch_s / fast_s:.1f}x, {window ** 2 // stride ** 2}x the "
              f"pixels); max |difference| {max(np.abs(fast - slow).max(), np.abs(fast - batched).max()):.1e}")


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
