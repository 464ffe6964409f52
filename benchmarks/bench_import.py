"""Start-up cost of the kit: `import course_lib` and `course-kit --help`, against `python -c pass`.

Each command runs in a fresh interpreter, median of several runs; the ratios compare them
in the same run. `course-kit --help` builds every sub-command's parser, the pipelines'
included, and must import none of torch, tensorflow, pandas, scipy or pydicom
(tests/test_layout.py checks that; this measures what is left).
"""

import subprocess
import sys

from timing import median_seconds

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import numpy": [sys.executable, "-c", "import numpy"],
    "import course_lib": [sys.executable, "-c", "import course_lib"],
    "course-kit --help": [sys.executable, "-m", "course_lib.cli", "--help"],
}


if __name__ == "__main__":
    seconds = {name: median_seconds(lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL), repeats=7,
                                   warm_up=False) for name, command in COMMANDS.items()}
    bare = seconds["python -c pass"]
    for name, value in seconds.items():
        print(f"{name:20} {value * 1000:7.0f} ms   {value / bare:5.1f}x python -c pass   "
              f"(+{(value - bare) * 1000:.0f} ms)")
