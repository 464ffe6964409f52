"""Benchmark the GMIC forward pass: full window vs the constant-padding fast path.

Runs on the four views of the official conformance fixture ($COURSE_FIXTURES/gmic_official)
with the fixture's random weights (model index 1). For each view it times both paths in
the same process (1 warm-up, then the median of 3, the paths interleaved so that machine
load hits both alike), reports their ratio next to the official timings, how far apart
their outputs are, and the peak RSS of each path, each measured in a fresh subprocess.
On CUDA it also reports images/s in fp32, bf16 and fp16 autocast, with their error
against fp32 on the CPU.

Usage::

    COURSE_FIXTURES=/path/to/fixtures python benchmarks/bench_gmic_forward.py [--device auto|cpu|cuda]
"""

import argparse
import contextlib
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from course_lib.exam_list import VIEWS

# torch is imported inside the functions: the peak-RSS subprocesses must start from a
# small parent, because on Linux a child's getrusage peak starts at its parent's RSS.

PATHS = {"full": True, "fast": False}  # name -> exact_full_forward


def fixture_dir() -> Path:
    """$COURSE_FIXTURES/gmic_official, or exit saying what is missing."""
    root = os.environ.get("COURSE_FIXTURES")
    folder = Path(root or "") / "gmic_official"
    if not root or not folder.is_dir():
        sys.exit("set COURSE_FIXTURES to the folder that holds gmic_official/")
    return folder


def load_view(folder: Path, view: str):
    """The exact model input of one fixture view, a (1, 1, 2944, 1920) float32 tensor."""
    import torch

    return torch.from_numpy(np.load(folder / f"exam0_{view}.npz")["input"])


def load_model(folder: Path, device: str):
    from course_lib.gmic.model import load_gmic_checkpoint

    return load_gmic_checkpoint(folder / "gmic_random_state_dict.pt", 1, device=device)


# --------------------------------------------------------------------------------------
# Peak memory, one subprocess per view and path
# --------------------------------------------------------------------------------------


def _status_mb(field: str):
    """A field of /proc/self/status (VmRSS, VmHWM) in MB, or None off Linux."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith(field + ":")), None)


def rss_worker(view: str, path: str, threads: int) -> None:
    """Body of the peak-RSS subprocess: load, run one forward on the CPU, print JSON (MB)."""
    import torch

    torch.set_num_threads(threads)
    folder = fixture_dir()
    model = load_model(folder, "cpu")
    image = load_view(folder, view)
    before = _status_mb("VmRSS")
    with contextlib.suppress(OSError):  # Linux: restart VmHWM so loading cannot mask the forward
        Path("/proc/self/clear_refs").write_text("5")
    with torch.no_grad():
        model(image, exact_full_forward=PATHS[path])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"before_mb": before, "process_peak_mb": peak, "forward_peak_mb": _status_mb("VmHWM")}))


def peak_rss(view: str, path: str, threads: int) -> dict:
    """Run :func:`rss_worker` in a fresh interpreter and return what it printed."""
    command = [sys.executable, __file__, "--rss-worker", view, path, "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# Timings
# --------------------------------------------------------------------------------------


def timed(function) -> float:
    """Wall-clock seconds of one call, waiting for the GPU when there is one."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_paths(model, image, repeats: int) -> dict:
    """Median seconds per path after one warm-up each, the paths interleaved."""
    import torch

    times = {name: [] for name in PATHS}
    with torch.no_grad():
        for exact in PATHS.values():
            model(image, exact_full_forward=exact)
        for _ in range(repeats):
            for name, exact in PATHS.items():
                times[name].append(timed(functools.partial(model, image, exact_full_forward=exact)))
    return {name: statistics.median(values) for name, values in times.items()}


def official_seconds(folder: Path, view: str, threads: int) -> float:
    """The official implementation's median forward time (NaN if the fixture lacks it)."""
    timings = json.loads((folder / "timings.json").read_text())
    return timings.get(f"{view}_threads{threads}", {}).get("forward_median_s", float("nan"))


def cpu_benchmark(folder: Path, args, rss: dict) -> dict:
    """Print the CPU table; return each view's fp32 full-path output for comparisons."""
    import torch

    torch.set_num_threads(args.threads)
    model = load_model(folder, "cpu")
    print(f"CPU, {torch.get_num_threads()} threads, median of {args.repeats} after 1 warm-up")
    print(
        f"{'view':6} {'full s':>7} {'fast s':>7} {'fast/full':>9} {'official s':>10} {'max|dy_fusion|':>14} "
        f"{'max|dsaliency|':>14} {'peak MB full':>12} {'peak MB fast':>12} {'fwd peak MB full/fast':>21}"
    )
    reference, ratios = {}, []
    for view in args.views:
        image = load_view(folder, view)
        seconds = time_paths(model, image, args.repeats)
        with torch.no_grad():
            full = model(image, exact_full_forward=True)
            fast = model(image, exact_full_forward=False)
        reference[view] = full
        ratios.append(seconds["fast"] / seconds["full"])
        peaks = {path: rss[view, path]["process_peak_mb"] for path in PATHS}
        forward_peaks = "/".join(f"{rss[view, path]['forward_peak_mb'] or float('nan'):.0f}" for path in PATHS)
        print(
            f"{view:6} {seconds['full']:7.3f} {seconds['fast']:7.3f} {ratios[-1]:9.2f} "
            f"{official_seconds(folder, view, args.threads):10.3f} "
            f"{(full.y_fusion - fast.y_fusion).abs().max().item():14.2e} "
            f"{(full.saliency_map - fast.saliency_map).abs().max().item():14.2e} "
            f"{peaks['full']:12.0f} {peaks['fast']:12.0f} {forward_peaks:>21}"
        )
    before = statistics.median(value["before_mb"] or float("nan") for value in rss.values())
    print(f"mean fast/full ratio: {statistics.mean(ratios):.2f}")
    print(
        f"peak MB: getrusage peak of a process that loads the model ({before:.0f} MB before the "
        "forward) and runs one forward; fwd peak: the high-water mark of the forward alone (Linux)"
    )
    return reference


def autocast_forward(model, batch, exact: bool, dtype):
    """One forward without gradients, under CUDA autocast to ``dtype`` unless it is None."""
    import torch

    precision = torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()
    with torch.no_grad(), precision:
        return model(batch, exact_full_forward=exact)


def cuda_benchmark(folder: Path, args, reference: dict) -> None:
    """Print images/s on CUDA for fp32 and autocast bf16/fp16, with errors vs fp32 on CPU."""
    import torch

    model = load_model(folder, "cuda")
    batch = torch.cat([load_view(folder, view) for view in args.views]).cuda()
    expected = torch.cat([reference[view].y_fusion for view in args.views])
    expected_saliency = torch.cat([reference[view].saliency_map for view in args.views])
    expected_rois = torch.cat([reference[view].roi_small_locations for view in args.views])
    print(f"\nCUDA ({torch.cuda.get_device_name()}), batch of {len(args.views)} views, median of {args.repeats}")
    print(f"{'precision':9} {'path':5} {'images/s':>9} {'max|dy_fusion|':>14} {'max|dsaliency|':>14} {'same ROIs':>9}")
    for label, dtype in {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}.items():
        for path, exact in PATHS.items():
            forward = functools.partial(autocast_forward, model, batch, exact, dtype)
            forward()
            seconds = statistics.median(timed(forward) for _ in range(args.repeats))
            output = forward()
            print(
                f"{label:9} {path:5} {len(args.views) / seconds:9.1f} "
                f"{(output.y_fusion.float().cpu() - expected).abs().max().item():14.2e} "
                f"{(output.saliency_map.float().cpu() - expected_saliency).abs().max().item():14.2e} "
                f"{torch.equal(output.roi_small_locations.cpu(), expected_rois)!s:>9}"
            )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--views", nargs="+", choices=VIEWS, default=list(VIEWS))
    parser.add_argument("--rss-worker", nargs=2, metavar=("VIEW", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_worker:
        rss_worker(*args.rss_worker, threads=args.threads)
        return
    folder = fixture_dir()
    rss = {(view, path): peak_rss(view, path, args.threads) for view in args.views for path in PATHS}

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available")
    reference = cpu_benchmark(folder, args, rss)
    if device == "cuda":
        cuda_benchmark(folder, args, reference)


if __name__ == "__main__":
    main()
