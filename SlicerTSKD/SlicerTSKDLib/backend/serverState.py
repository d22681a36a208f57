"""The local server after a Slicer crash (issue 32, item 8).

The module's local ``tskd serve`` used to live only in Slicer's memory (its token too): after a crash
the server ran on, unreachable, and its workspace lock (Linux/macOS) refused the next start; on
Windows there was no lock and a second server shared the SQLite workspace. Three things now hold:

- the server is started with ``--exit-with-parent`` and its stdin a pipe from Slicer: when Slicer
  dies the operating system closes the pipe and the server exits (the flag is the backend's);
- :func:`writeState` keeps ``{pid, port, token}`` in ``<workspace>/slicer-server.json``, readable by
  this user only (created with mode 0600 on Linux/macOS; on Windows the workspace lies in the user's
  profile, whose ACL admits only that user), so a new Slicer session reconnects to a server that
  is still running (or stops it);
- :class:`WorkspaceLock` (``<workspace>/slicer-server.lock``, ``fcntl.flock`` on Linux/macOS,
  ``msvcrt.locking`` on Windows) is held by the Slicer session whose server uses the workspace, on
  every system, so two Slicer sessions never start two servers on one workspace. The OS releases it
  when the process dies.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any, Dict, Optional

__all__ = ["STATE_NAME", "LOCK_NAME", "writeState", "readState", "removeState", "processAlive", "terminateProcess",
           "WorkspaceLock"]

logger = logging.getLogger(__name__)

STATE_NAME = "slicer-server.json"
LOCK_NAME = "slicer-server.lock"


def _statePath(workspace: str) -> str:
    return os.path.join(workspace, STATE_NAME)


def writeState(workspace: str, pid: int, port: int, token: str) -> str:
    """Write ``{pid, port, token}`` for the next Slicer session, user-only, atomically; returns the path."""
    path = _statePath(workspace)
    os.makedirs(workspace, exist_ok=True)
    part = path + ".part"
    if os.path.exists(part):
        os.remove(part)
    descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump({"pid": int(pid), "port": int(port), "token": str(token)}, stream)
    os.replace(part, path)
    return path


def readState(workspace: str) -> Optional[Dict[str, Any]]:
    """The state written by :func:`writeState` (None: none, or unreadable: it is then removed)."""
    path = _statePath(workspace)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as stream:
            state = json.load(stream)
        return {"pid": int(state["pid"]), "port": int(state["port"]), "token": str(state["token"])}
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("%s: unreadable; removed", path)
        removeState(workspace)
        return None


def removeState(workspace: str) -> None:
    try:
        os.remove(_statePath(workspace))
    except FileNotFoundError:
        pass
    except OSError:
        logger.warning("could not remove %s", _statePath(workspace), exc_info=True)


def processAlive(pid: int) -> bool:
    """Whether process ``pid`` exists (and, on Windows, has not exited)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, int(pid))  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return False
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive, not ours to stop
    if sys.platform.startswith("linux"):
        try:  # a zombie (exited, not yet reaped by its parent) is no server
            with open("/proc/{}/stat".format(int(pid)), encoding="ascii", errors="replace") as stream:
                return stream.read().rsplit(")", 1)[-1].split()[0] != "Z"
        except OSError:
            return True
    return True


def terminateProcess(pid: int, hard: bool = False) -> None:
    """Ask the server ``pid`` (not its descendants: its training workers run on) to stop: SIGTERM (SIGKILL
    when ``hard``); on Windows ``TerminateProcess``, as ``QProcess::kill`` does."""
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x0001, False, int(pid))  # PROCESS_TERMINATE
        if handle:
            try:
                kernel32.TerminateProcess(handle, 1)
            finally:
                kernel32.CloseHandle(handle)
        return
    try:
        os.kill(int(pid), signal.SIGKILL if hard else signal.SIGTERM)
    except ProcessLookupError:
        pass


class WorkspaceLock:
    """An exclusive, non-blocking lock on ``<workspace>/slicer-server.lock`` held by this process.

    ``fcntl.flock`` on Linux/macOS, ``msvcrt.locking`` (one byte, ``LK_NBLCK``) on Windows; released by
    :meth:`release` or by the OS when the process ends.
    """

    def __init__(self, workspace: str) -> None:
        self.path = os.path.join(workspace, LOCK_NAME)
        self._handle: Any = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it."""
        if self._handle is not None:
            return True
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        handle = open(self.path, "a+b")
        try:
            if sys.platform == "win32":
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            if sys.platform == "win32":
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass
        finally:
            handle.close()
