"""Files in and out: atomic writes, and PNG reading and writing for grey and RGB images.

Every file the kit writes goes through :func:`atomic_output`, so that a reader (or a
parallel worker, or the next run after a crash) never sees a half-written file.
:func:`write_png` is the kit's one PNG writer and :func:`read_png` its one greyscale
PNG reader.
"""

import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BitDepthWarning", "atomic_output", "sha256_file", "write_png", "read_png"]


class BitDepthWarning(UserWarning):
    """An image has another bit depth than the one expected (e.g. 8-bit where 16-bit is)."""


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` once written.

    Readers (and parallel workers) never see a half-written file: the rename is
    atomic, and a failed or interrupted write leaves nothing behind. Parent folders
    are created.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_output(folder / "notes.txt") as tmp:
    ...     _ = tmp.write_text("written in one piece")
    >>> (folder / "notes.txt").read_text()
    'written in one piece'
    >>> sorted(p.name for p in folder.iterdir())  # no temporary file left
    ['notes.txt']
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


def sha256_file(path):
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (no whole-file copy in memory)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_png(path, array, *, compress_level=6):
    """Write a greyscale (uint8 or uint16, 2-D) or RGB (uint8, H x W x 3) array as PNG, atomically.

    ``compress_level`` 6 is Pillow's default (with it GMIC's sample PNGs are rewritten
    byte for byte); 1 writes about twice as fast for ~5 % larger files.

    >>> import tempfile
    >>> import numpy as np
    >>> path = write_png(Path(tempfile.mkdtemp()) / "ramp.png", np.arange(4096, dtype=np.uint16).reshape(64, 64))
    >>> int(read_png(path).max())  # 12-bit values kept as they are in the 16-bit container
    4095
    """
    import numpy as np
    from PIL import Image

    array = np.asarray(array)
    grey = array.ndim == 2 and array.dtype in (np.uint8, np.uint16)
    rgb = array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8
    if not (grey or rgb):
        raise ValueError(
            f"write_png needs a 2-D uint8/uint16 or an H x W x 3 uint8 array, got {array.dtype} "
            f"{array.shape}; convert with course_lib.dicom.to_png16 or to_png8"
        )
    path = Path(path)
    with atomic_output(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=compress_level)
    return path


def read_png(path, expect_bits=16):
    """Read a greyscale PNG as stored (uint8 or uint16).

    Reading an 8-bit PNG where a 16-bit one is expected emits a
    :class:`BitDepthWarning`: the image has only 256 grey levels. GMIC's
    per-image z-scoring still works on it, but fine density detail is lost.
    """
    import numpy as np
    from PIL import Image

    if expect_bits not in (8, 16):
        raise ValueError(f"expect_bits must be 8 or 16, not {expect_bits!r}")
    with Image.open(path) as img:
        mode = img.mode
        if mode not in ("L", "I;16", "I"):
            raise ValueError(
                f"{path} is a {mode} PNG, not greyscale; convert it to an 8- or 16-bit "
                "greyscale PNG first"
            )
        array = np.asarray(img)
    if mode == "I":  # older Pillow opens 16-bit PNGs as 32-bit integers
        array = array.astype(np.uint16)
    bits = 8 if mode == "L" else 16
    if bits == 8 and expect_bits == 16:
        warnings.warn(
            f"{path} is an 8-bit PNG, 16-bit expected: it has only 256 grey levels. "
            "GMIC's z-scoring still works, but fine detail is lost; convert from the "
            "DICOM with to_png16 to keep every level.",
            BitDepthWarning,
            stacklevel=2,
        )
    elif bits == 16 and expect_bits == 8:
        warnings.warn(
            f"{path} is a 16-bit PNG, 8-bit expected: values go above 255; convert it "
            "with to_png8 first.",
            BitDepthWarning,
            stacklevel=2,
        )
    return array
