"""Benchmark synthetic mammogram phantoms; compare their texture with real images.

Prints
1. generation speed of default-size (736 x 480) phantoms on one core, and
2. the power-law exponent beta fitted with the same function
   (:func:`course_lib.phantoms.texture.fit_power_law_exponent`) on lesion-free
   phantoms and on the four views of GMIC sample exam 0 (real mammograms).

Usage::

    python benchmarks/bench_phantoms.py [--n 50] [--real-dir DIR]

The real PNGs come from ``course_lib.data.fetch`` (cache, ``$COURSE_DATA_MIRROR``
or the network), or from ``--real-dir`` holding ``0_L-CC.png`` etc.
"""

import argparse
import os
import time
from pathlib import Path

# One core, as on a student laptop or a Colab CPU runtime; set before numpy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402

from course_lib.phantoms.mammogram import make_mammogram  # noqa: E402
from course_lib.phantoms.texture import FIT_BAND, fit_power_law_exponent  # noqa: E402

REAL_VIEWS = ("L-CC", "L-MLO", "R-CC", "R-MLO")
AGREEMENT = 0.5  # required |beta_real - mean beta_phantom|


def time_generation(n):
    """Images per second for ``n`` default-size phantoms with random lesions."""
    make_mammogram(0)  # warm-up: imports and FFT plans
    start = time.perf_counter()
    for seed in range(n):
        view, side = ("CC", "MLO")[seed % 2], "LR"[seed // 2 % 2]
        make_mammogram(seed, view, side, lesions="random")
    return n / (time.perf_counter() - start)


def phantom_betas(n, view):
    """Fitted beta of ``n`` lesion-free phantoms of one view (muscle excluded)."""
    betas = []
    for seed in range(n):
        phantom = make_mammogram(seed, view, dense_fraction=0.1 + 0.8 * (seed % 9) / 8)
        tissue = phantom.breast_mask & ~phantom.pectoral_mask
        betas.append(fit_power_law_exponent(phantom.image, tissue))
    return np.array(betas)


def real_image_paths(real_dir):
    """Paths of the four exam-0 PNGs, from ``real_dir`` or the data registry."""
    if real_dir is not None:
        return {view: Path(real_dir) / f"0_{view}.png" for view in REAL_VIEWS}
    from course_lib.data import fetch

    return {view: fetch(f"gmic/sample_data/images/0_{view}.png") for view in REAL_VIEWS}


def real_betas(paths):
    """Fitted beta of each real image; the breast is every pixel above 0 (air)."""
    betas = {}
    for view, path in paths.items():
        image = iio.imread(path)
        betas[view] = fit_power_law_exponent(image, image > 0)
    return betas


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="phantoms per measurement")
    parser.add_argument("--real-dir", default=None, help="folder with 0_L-CC.png etc.")
    args = parser.parse_args()

    rate = time_generation(args.n)
    print(f"generation: {rate:.1f} default-size (736x480) phantoms/s on one core")

    print(f"beta fit band {FIT_BAND} cycles/pixel, largest inner square, Hann window")
    phantom = {view: phantom_betas(args.n, view) for view in ("CC", "MLO")}
    everything = np.concatenate(list(phantom.values()))
    for view, betas in phantom.items():
        spread = f"{betas.mean():.2f} +/- {betas.std():.2f} (n={betas.size})"
        print(f"  phantom {view:<5} beta = {spread}")
    print(f"  phantom all   beta = {everything.mean():.2f} +/- {everything.std():.2f}")

    for view, beta in real_betas(real_image_paths(args.real_dir)).items():
        difference = beta - everything.mean()
        verdict = "ok" if abs(difference) <= AGREEMENT else "DISAGREES"
        print(
            f"  real {view:<6}  beta = {beta:.2f}"
            f"  (real - phantom = {difference:+.2f}, {verdict})"
        )


if __name__ == "__main__":
    main()
