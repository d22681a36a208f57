"""Small helpers shared by the dataset modules."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, TypeVar

__all__ = ["parallel_map", "message_without_path"]

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on a few threads (SimpleITK and numpy release the GIL while
    decoding), results in input order.

    Args:
        fn: the function; exceptions propagate.
        items: inputs.
        workers: threads (default: up to 4, never more than the CPUs).
    """
    items = list(items)
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(items) < 4:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def message_without_path(message: str, path: Path | None) -> str:
    """``message`` without a leading ``"<path>: "`` (for problems that carry the path separately)."""
    prefix = f"{path}: "
    return message[len(prefix):] if path is not None and message.startswith(prefix) else message
