"""Writing files safely: every output of the kit is written atomically."""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output"]


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` once written.

    Readers (and parallel workers) never see a half-written file: the rename is
    atomic, and a failed or interrupted write leaves nothing behind. Parent folders
    are created.

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
