"""A lock that several processes respect: one download of a file at a time.

Two servers (or a server and ``tskd foundation get``) may share one weights cache. Without a lock
they would both append to the same ``.part`` file and leave a file that is neither download. The
lock is an exclusive ``flock`` (``msvcrt.locking`` on Windows) on a small file beside the
``.part`` (``.<name>.part.lock``), held while the file is downloaded, checked and renamed. The
operating system releases it when its process ends, however it ends (a SIGKILLed downloader
leaves no stale lock). The holder removes the lock file before it lets go; a waiter that then gets
the lock of a removed file sees that the name now means another file (or none) and starts over,
so two processes never both believe they hold it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import IO, Callable, Iterator

from tskd.errors import CancelledError

__all__ = ["part_lock", "lock_path"]

logger = logging.getLogger(__name__)


def lock_path(part: str | Path) -> Path:
    """The lock file of ``part``: ``<part>.lock`` beside it."""
    part = Path(part)
    return part.with_name(f"{part.name}.lock")


def _try_lock(handle: IO[bytes]) -> bool:
    if sys.platform == "win32":  # pragma: no cover - POSIX is what the tests run on
        import msvcrt

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(handle: IO[bytes]) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _acquire(path: Path, part: Path, should_stop: Callable[[], bool] | None, poll_s: float) -> tuple[IO[bytes], bool]:
    waited = False
    while True:
        handle = open(path, "a+b")
        try:
            while not _try_lock(handle):
                if not waited:
                    logger.info("another process is downloading %s; waiting for it", part.name)
                    waited = True
                if should_stop is not None and should_stop():
                    raise CancelledError(f"stopped while waiting for another process's download of {part.name}")
                time.sleep(poll_s)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(handle.fileno()).st_ino:
                return handle, waited
            _unlock(handle)  # the holder removed this lock file as it let go: lock the new one
        except BaseException:
            handle.close()
            raise
        handle.close()


@contextlib.contextmanager
def part_lock(part: str | Path, *, should_stop: Callable[[], bool] | None = None,
              poll_s: float = 0.2) -> Iterator[bool]:
    """Hold the cross-process lock of the download kept in ``part`` (waiting for it when another
    process holds it).

    Args:
        part: the ``.part`` file (or folder) of the download.
        should_stop: polled while waiting; True raises :class:`CancelledError`.
        poll_s: seconds between tries while waiting.

    Yields:
        True when another process held the lock first (it may have finished the file meanwhile).

    Raises:
        CancelledError: ``should_stop`` said so while waiting.
    """
    part = Path(part)
    path = lock_path(part)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, waited = _acquire(path, part, should_stop, poll_s)
    try:
        yield waited
    finally:
        with contextlib.suppress(OSError):  # Windows keeps an open file: the lock file stays, which is safe
            path.unlink(missing_ok=True)  # while still holding it (see the module's note)
        _unlock(handle)
        handle.close()
