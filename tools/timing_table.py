"""Print the per-notebook timing table of the last `make test` (smoke run and nbval)."""

import json
from pathlib import Path

from course_lib.paths import BUILD as build
smoke_file, nbval_file = build / "smoke" / "timings.json", build / "nbval_timings.json"
smoke = json.loads(smoke_file.read_text()) if smoke_file.exists() else {}
nbval = json.loads(nbval_file.read_text()) if nbval_file.exists() else {}
names = sorted(set(smoke) | {Path(n).stem for n in nbval})
print(f"\n{'notebook':<36} {'smoke (papermill)':>18} {'default (nbval)':>16}")
for name in names:
    s = smoke.get(name)
    smoke_cell = f"{s['seconds']:.1f} s {s['status']}" if s else "-"
    n = nbval.get(f"{name}.ipynb")
    print(f"{name:<36} {smoke_cell:>18} {f'{n:.1f} s' if n is not None else '-':>16}")
