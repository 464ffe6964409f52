"""How long `import course_lib` takes (target: well under a second), against `import numpy`.

Each import runs in a fresh interpreter; the ratio compares them in the same run.
"""

import statistics
import subprocess
import sys
import time


def import_seconds(module, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    bare = import_seconds("sys")
    numpy = import_seconds("numpy") - bare
    kit = import_seconds("course_lib") - bare
    print(f"import numpy       {numpy * 1000:7.0f} ms")
    print(f"import course_lib  {kit * 1000:7.0f} ms  ({kit / numpy:.1f}x numpy; interpreter start-up excluded)")
