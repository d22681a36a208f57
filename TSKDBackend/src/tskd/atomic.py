"""Writing files and folders so that a reader never sees them half-written.

Every writer goes to a temporary name in the same folder (so the final rename stays on one file
system and is atomic) and renames it into place; on failure the temporary file is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "write_text", "write_json", "replace_folder", "temporary_sibling"]


def temporary_sibling(path: str | Path, suffix: str = ".tmp") -> Path:
    """A hidden, unique name beside ``path`` (``.name.<random><suffix>``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{suffix}")


def atomic_write(path: str | Path, write: Callable[[Path], Any], *, suffix: str = ".tmp",
                 durable: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it over ``path``.

    Args:
        path: the final file.
        write: writes the whole file to the path it is given.
        suffix: ending of the temporary name (some writers choose the format from it).
        durable: flush the file to the disk before the rename (``fsync``), for files whose loss
            after a power cut would lose work (the transfer set's index).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, suffix)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: str | Path, text: str, *, newline: str | None = None, durable: bool = False) -> Path:
    """Write UTF-8 text atomically (``newline=""`` writes line endings as they are, e.g. for CSV)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=newline), durable=durable)


def write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write JSON atomically (values JSON does not know are written with ``str``)."""
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def replace_folder(new: str | Path, target: str | Path) -> Path:
    """Move the finished folder ``new`` to ``target``, replacing what is there.

    The old ``target`` is moved aside first and removed only after ``new`` is in place; if the
    final rename fails, the old folder is put back.
    """
    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = temporary_sibling(target, ".old")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target
