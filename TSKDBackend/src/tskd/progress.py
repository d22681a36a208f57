"""Progress reporting shared by every long-running stage.

Training code emits :class:`ProgressEvent` objects to a :class:`ProgressReporter`; what happens to
them (a console line, a JSON status file read by the service, a Slicer progress bar) is up to the
reporter. Reporters never raise into the training loop.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tskd.atomic import write_text

__all__ = [
    "ProgressEvent",
    "ProgressReporter",
    "ConsoleProgress",
    "StatusFileProgress",
    "MultiProgress",
    "NullProgress",
    "read_status_file",
]

logger = logging.getLogger(__name__)


@dataclass
class ProgressEvent:
    """One progress update.

    Args:
        stage: name of the stage (``teacher``, ``synthesis``, ``distill``, ``finetune``...).
        step: steps done so far within the stage.
        total: total steps of the stage (0 when unknown).
        metrics: latest numbers worth showing (``loss``, ``val_dice``...).
        message: free text (``"saved checkpoint"``); empty for plain step updates.
        state: ``running``, ``done``, ``failed`` or ``cancelled``.
        stage_index / stage_count: position of the stage in the pipeline (1-based).
        eta_s: estimated seconds left in the stage, computed by the reporter when not given.
    """

    stage: str
    step: int = 0
    total: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    state: str = "running"
    stage_index: int = 1
    stage_count: int = 1
    eta_s: float | None = None


class ProgressReporter:
    """Base reporter: tracks stage start times to estimate ETA; subclasses render events."""

    def __init__(self) -> None:
        self._stage_start: dict[str, tuple[float, int]] = {}

    def __call__(self, event: ProgressEvent) -> None:
        try:
            if event.eta_s is None:
                event.eta_s = self._estimate_eta(event)
            self.render(event)
        except Exception:  # a broken display must never stop training
            logger.debug("progress reporter failed", exc_info=True)

    def _estimate_eta(self, event: ProgressEvent) -> float | None:
        now = time.monotonic()
        start = self._stage_start.setdefault(event.stage, (now, event.step))
        done = event.step - start[1]
        if event.total <= 0 or done <= 0:
            return None
        rate = (now - start[0]) / done
        return max(0.0, rate * (event.total - event.step))

    def render(self, event: ProgressEvent) -> None:  # pragma: no cover - overridden
        pass


class NullProgress(ProgressReporter):
    """Discards events."""


class MultiProgress(ProgressReporter):
    """Forwards each event to several reporters."""

    def __init__(self, reporters: Iterable[ProgressReporter]) -> None:
        super().__init__()
        self.reporters = list(reporters)

    def render(self, event: ProgressEvent) -> None:
        for reporter in self.reporters:
            reporter(event)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ConsoleProgress(ProgressReporter):
    """One status line on stderr: rewritten in place on a terminal, printed every few seconds otherwise."""

    def __init__(self, stream: Any = None, min_interval_s: float = 0.2, log_interval_s: float = 10.0) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval_s = min_interval_s if self.is_tty else log_interval_s
        self._last = 0.0
        self._open_line = False

    def render(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        final = event.state != "running" or event.message or (event.total and event.step >= event.total)
        if not final and now - self._last < self.min_interval_s:
            return
        self._last = now
        line = self.format(event)
        if self.is_tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
            self._open_line = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    @staticmethod
    def format(event: ProgressEvent) -> str:
        head = f"[{event.stage_index}/{event.stage_count} {event.stage}]"
        if event.total:
            width = 20
            filled = int(width * min(event.step, event.total) / event.total)
            bar = "#" * filled + "." * (width - filled)
            head += f" {bar} {event.step}/{event.total} ETA {format_seconds(event.eta_s)}"
        metrics = " ".join(f"{k}={v:.4g}" for k, v in event.metrics.items() if isinstance(v, (int, float)))
        parts = [head, metrics, event.message if event.message else ""]
        if event.state not in ("running",):
            parts.append(event.state.upper())
        return "  ".join(p for p in parts if p)


class StatusFileProgress(ProgressReporter):
    """Keeps ``status.json`` up to date (atomically) for other processes, e.g. the service.

    The file holds the latest event of each stage and the overall latest event, plus the metrics
    history of validation numbers, so a client polling it sees stage, step/total, ETA and metrics.
    """

    def __init__(self, path: str | Path, min_interval_s: float = 1.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._status: dict[str, Any] = read_status_file(self.path) or {"stages": {}, "latest": None}
        self._status.setdefault("stages", {})

    def render(self, event: ProgressEvent) -> None:
        record = asdict(event)
        record["time"] = time.time()
        self._status["latest"] = record
        self._status["stages"][event.stage] = record
        now = time.monotonic()
        important = event.state != "running" or bool(event.message)
        if important or now - self._last >= self.min_interval_s:
            self._last = now
            self._write()

    def _write(self) -> None:
        write_text(self.path, json.dumps(self._status, indent=1))


def read_status_file(path: str | Path) -> dict[str, Any] | None:
    """The content of a status file, or None when it does not exist yet or is being replaced."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
