"""Histology phantom speed: images per second at each magnification (700x460 RGB).

Reference in the same run: the time to write the same image as PNG, the step that any
dataset builder pays anyway.
"""

import io

from PIL import Image
from timing import median_seconds

from course_lib.datasets.breakhis import MAGNIFICATIONS
from course_lib.phantoms.histology import make_histology


if __name__ == "__main__":
    print(f"{'magnification':>13} {'label':>10} {'s/image':>8} {'images/s':>9} {'x PNG write':>12}")
    for magnification in MAGNIFICATIONS:
        for label in ("benign", "malignant"):
            image = make_histology(0, label, magnification=magnification).image
            png = median_seconds(lambda: Image.fromarray(image).save(io.BytesIO(), format="PNG"))
            seconds = median_seconds(lambda: make_histology(1, label, magnification=magnification))
            print(f"{magnification:>12}X {label:>10} {seconds:8.3f} {1 / seconds:9.1f} {seconds / png:12.1f}")
