"""SHA-256 of files, streamed and remembered per process.

Kept apart from the model code (``tskd.teacher.checkpoints`` re-exports it) so that what only needs a
file's hash, such as finding an existing export of the zero-shot box model, does not import torch and
transformers to get it.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

__all__ = ["file_sha256"]

_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed; cached per (path, size, modification time) for the process."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[key] = value
    return value
