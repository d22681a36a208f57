"""Logging set-up. Library modules use ``logging.getLogger(__name__)``; only the CLI configures."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["configure_logging", "add_file_handler", "warn_from_signal_handler"]

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(verbosity: int = 0) -> None:
    """Send the package's log records to stderr.

    Args:
        verbosity: 0 shows warnings and the package's INFO records, 1 adds DEBUG records of the
            package, 2 adds DEBUG records of every library. Under ``torchrun`` only global rank 0
            does so; the other ranks show warnings and errors, prefixed with their rank.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_tskd_console", False):
            root.removeHandler(handler)
    rank = _launcher_rank()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT if rank == 0 else f"[rank {rank}] {_FORMAT}", datefmt="%H:%M:%S"))
    handler._tskd_console = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    if rank == 0:
        logging.getLogger("tskd").setLevel(logging.DEBUG if verbosity >= 1 else logging.INFO)
    else:  # under torchrun the main process speaks for all; the others report only problems
        logging.getLogger("tskd").setLevel(logging.WARNING)


def _launcher_rank() -> int:
    """Global rank given by ``torchrun`` / ``accelerate launch`` (0 when not launched by one)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def add_file_handler(path: str | Path) -> logging.Handler:
    """Also write the package's records (INFO and above) to ``path``; returns the handler.

    When nothing configured the package's logger (a program calling the pipeline from Python, a
    test), its level is lowered to INFO so that the file gets the INFO records; the console shows
    nothing more (Python's last-resort handler prints warnings only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(logging.INFO)
    package = logging.getLogger("tskd")
    if package.getEffectiveLevel() > logging.INFO and package.level == logging.NOTSET:
        package.setLevel(logging.INFO)
    package.addHandler(handler)
    return handler


def warn_from_signal_handler(logger: logging.Logger, message: str, *args: object) -> None:
    """Log a warning from inside a signal handler.

    The signal may have interrupted a write to the same stream (a progress line, a log record);
    writing again from the handler then raises ``RuntimeError: reentrant call``. The message is
    dropped in that case rather than letting the error escape into the interrupted code.
    """
    try:
        logger.warning(message, *args)
    except Exception:  # noqa: BLE001 - nothing useful can be done inside a signal handler
        pass
