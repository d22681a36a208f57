"""The files of one job, and cheap cached reads of what its worker writes while it runs.

::

    jobs/<id>/
      dataset/       snapshot of the project's dataset at job creation (hard links)
      run/           tskd train --out: status.json, log.txt, checkpoints, package/
      settings.yaml  the job's config overrides (passed as --config)
      output.txt     the worker's console output (stdout and stderr), appended per attempt
      cancel         created to ask the worker to save a checkpoint and stop
      exit.json      the worker's exit code, written by tskd.service.runner

Status polls read ``run/status.json`` and the end of ``output.txt``; both are parsed again only
when the file's modification time or size changed.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from tskd.service.timeutil import iso

__all__ = ["JobFiles", "FileCache", "read_exit_file", "progress_record"]


class JobFiles:
    """Paths of a job's files.

    Args:
        folder: the job's folder (``WORKSPACE/jobs/<id>``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @property
    def dataset(self) -> Path:
        return self.folder / "dataset"

    @property
    def run(self) -> Path:
        return self.folder / "run"

    @property
    def settings(self) -> Path:
        return self.folder / "settings.yaml"

    @property
    def output(self) -> Path:
        return self.folder / "output.txt"

    @property
    def cancel(self) -> Path:
        return self.folder / "cancel"

    @property
    def exit(self) -> Path:
        return self.folder / "exit.json"

    @property
    def status(self) -> Path:
        return self.run / "status.json"

    @property
    def run_log(self) -> Path:
        return self.run / "log.txt"

    @property
    def package(self) -> Path:
        return self.run / "package"


def read_exit_file(path: Path) -> int | None:
    """The exit code recorded by the runner, or None when the file is missing or unreadable."""
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["exit_code"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class FileCache:
    """Parsed file contents, re-read only when a file's (inode, mtime, size) changes.

    Args:
        parse: turns a path into the cached value (called outside the lock).
        capacity: entries kept (least recently used are dropped).
    """

    def __init__(self, parse: Callable[[Path], Any], capacity: int = 256) -> None:
        self.parse = parse
        self.capacity = capacity
        self._entries: OrderedDict[Path, tuple[tuple[int, int, int], Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> Any:
        """The parsed content of ``path``, or None when it does not exist."""
        try:
            stat = os.stat(path)
        except OSError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and entry[0] == key:
                self._entries.move_to_end(path)
                return entry[1]
        value = self.parse(path)
        with self._lock:
            self._entries[path] = (key, value)
            self._entries.move_to_end(path)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return value


def parse_status(path: Path) -> dict[str, Any] | None:
    """``status.json`` as written by :class:`tskd.progress.StatusFileProgress` (None if unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def tail_lines(path: Path, lines: int = 200, max_bytes: int = 32768) -> list[str]:
    """The last ``lines`` non-empty lines of a text file (reads at most ``max_bytes``)."""
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - max_bytes))
            data = stream.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace").replace("\r", "\n")
    out = [line.rstrip() for line in text.split("\n") if line.strip()]
    if size > max_bytes and out:
        out = out[1:]  # the first line is probably cut
    return out[-lines:]


def progress_record(record: Any) -> dict[str, Any] | None:
    """A status file's event record as the API's ``JobProgress`` (None when malformed)."""
    if not isinstance(record, dict) or not isinstance(record.get("stage"), str):
        return None
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    eta = record.get("eta_s")
    return {
        "stage": record["stage"],
        "stage_index": _int(record.get("stage_index"), 1),
        "stage_count": _int(record.get("stage_count"), 1),
        "step": _int(record.get("step"), 0),
        "total": _int(record.get("total"), 0),
        "eta_s": float(eta) if isinstance(eta, (int, float)) else None,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None},
        "message": str(record.get("message") or ""),
        "state": str(record.get("state") or "running"),
        "updated": iso(record["time"]) if isinstance(record.get("time"), (int, float)) else None,
    }


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
