"""Data: the download registry (real files, pinned and hash-checked).

>>> from course_lib.data import fetch
>>> path = fetch("gmic/sample_data/images/0_L-CC.png")  # doctest: +SKIP
"""

from course_lib.data.registry import (
    CACHE_ENV_VAR,
    MIRROR_ENV_VAR,
    DataUnavailableError,
    HashMismatchError,
    RegistryEntry,
    UnknownKeyError,
    cache_dir,
    cached_path,
    fetch,
    file_hash,
    get_entry,
    load_registry,
    locate,
    mirror_dir,
    try_fetch,
)

__all__ = [
    "CACHE_ENV_VAR",
    "MIRROR_ENV_VAR",
    "DataUnavailableError",
    "HashMismatchError",
    "RegistryEntry",
    "UnknownKeyError",
    "cache_dir",
    "cached_path",
    "fetch",
    "file_hash",
    "get_entry",
    "load_registry",
    "locate",
    "mirror_dir",
    "try_fetch",
]
