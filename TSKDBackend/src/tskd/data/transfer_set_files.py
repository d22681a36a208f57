"""Files of a transfer set folder and the crash-safe helpers that write them.

The layout and its guarantees are described in :mod:`tskd.data.transfer_set`; the writer
(:mod:`tskd.data.transfer_set_writer`) and the reader share these helpers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from tskd.atomic import write_text
from tskd.errors import DataError

__all__ = [
    "SOURCES",
    "NO_LABEL",
    "FORMAT",
    "VERSION",
    "SOFT_DTYPES",
    "read_meta",
    "shard_dirs",
    "read_jsonl",
    "append_jsonl",
    "write_atomic",
    "recover",
]

logger = logging.getLogger(__name__)

#: Where an item came from.
SOURCES = ("real_labelled", "real_unlabelled", "synthetic")
#: Stored hard label value meaning "no hard label".
NO_LABEL = 255
FORMAT = "tskd-transfer-set"
VERSION = 1
SOFT_DTYPES = ("float16", "uint8")


def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / "meta.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; {folder} is not a transfer set (build it with the synthesis stage)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); delete {folder} to rebuild it") from exc
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
        raise DataError(f"{path}: not a transfer set this tskd reads ({meta.get('format')!r} v{meta.get('version')!r})")
    return meta


def shard_dirs(folder: Path) -> list[Path]:
    shards = folder / "shards"
    if not shards.is_dir():
        return []
    return sorted(p for p in shards.iterdir() if p.is_dir() and p.name.isdigit())


def read_jsonl(path: Path, *, repair: bool) -> list[dict[str, Any]]:
    """Complete lines of a JSON-lines file; a torn last line is ignored (and cut off when ``repair``)."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:
        logger.warning("%s: dropping a torn last line left by an interrupted run", path)
        with open(path, "r+b") as handle:
            handle.truncate(end)
    rows = []
    for number, raw in enumerate(data[:end].splitlines(), start=1):
        if raw.strip():
            try:
                rows.append(json.loads(raw))
            except ValueError as exc:
                raise DataError(f"{path}: line {number} is not valid JSON ({exc})") from exc
    return rows


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_atomic(path: Path, text: str) -> None:
    write_text(path, text, durable=True)


def recover(folder: Path) -> list[dict[str, Any]]:
    """Finishes what an interrupted writer left; returns the index lines."""
    shards = folder / "shards"
    if shards.is_dir():
        for stale in shards.glob("*.tmp"):
            logger.warning("%s: removing a shard an interrupted run did not finish", stale)
            shutil.rmtree(stale, ignore_errors=True)
    lines = read_jsonl(folder / "index.jsonl", repair=True)
    indexed = Counter(int(line["shard"]) for line in lines)
    for shard_dir in shard_dirs(folder):
        shard = int(shard_dir.name)
        try:
            items = json.loads((shard_dir / "items.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{shard_dir}: shard without a readable items.json ({exc}); delete {folder} to rebuild it") from exc
        missing = items[indexed.get(shard, 0):]
        if missing:
            logger.warning("%s: indexing %d items an interrupted run had written", shard_dir, len(missing))
            append_jsonl(folder / "index.jsonl", missing)
            lines.extend(missing)
    return lines
