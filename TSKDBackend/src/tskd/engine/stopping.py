"""Graceful stop: SIGINT/SIGTERM or a cancel file make training save a checkpoint and stop."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Iterator

from tskd.log import warn_from_signal_handler

__all__ = ["StopFlag", "stop_on_signals"]

logger = logging.getLogger(__name__)


class StopFlag:
    """Set when the run should stop at the next step boundary.

    Args:
        cancel_file: optional path; when the file appears the flag is set (the service uses this
            to cancel cleanly before it resorts to killing the process tree).
    """

    def __init__(self, cancel_file: str | Path | None = None) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.cancel_file = Path(cancel_file) if cancel_file else None

    def set(self, reason: str = "stop requested") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        if not self._event.is_set() and self.cancel_file is not None and self.cancel_file.exists():
            self.set(f"cancel file {self.cancel_file} found")
        return self._event.is_set()


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Within the block, the first SIGINT/SIGTERM sets ``flag``; a second SIGINT interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        if flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.set(signal.Signals(signum).name)
        warn_from_signal_handler(logger, "%s received: saving a checkpoint at the end of this step, then stopping",
                                 signal.Signals(signum).name)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
