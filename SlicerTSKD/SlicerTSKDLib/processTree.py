"""Ending a process together with everything it started.

pip runs build back-ends and compilers as sub-processes; killing only pip would leave them
running. :func:`killProcessTree` stops the whole tree first (so nothing forks meanwhile), lists it
again, then kills every process; on Windows ``taskkill /T`` does this. Standard library only.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import Dict, List, Mapping, Sequence

__all__ = ["killProcessTree", "processTree", "WINDOWS_NO_WINDOW", "WINDOWS_NEW_GROUP"]

logger = logging.getLogger(__name__)

WINDOWS_NO_WINDOW = 0x08000000  # CREATE_NO_WINDOW: no console window for the child
WINDOWS_NEW_GROUP = 0x00000200  # CREATE_NEW_PROCESS_GROUP


def _parentMap() -> Dict[int, List[int]]:
    """Children of every process, by parent id (POSIX)."""
    children: Dict[int, List[int]] = {}
    if sys.platform.startswith("linux") and os.path.isdir("/proc"):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/{}/stat".format(entry), "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended meanwhile
            children.setdefault(int(fields[1]), []).append(int(entry))
        return children
    listing = subprocess.run(
        ["ps", "-A", "-o", "pid=", "-o", "ppid="], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10
    ).stdout.decode("ascii", errors="replace")
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
    return children


def _withDescendants(roots: Sequence[int], children: Mapping[int, List[int]]) -> List[int]:
    tree = list(roots)
    index = 0
    while index < len(tree):
        tree.extend(child for child in children.get(tree[index], []) if child not in tree)
        index += 1
    return tree


def processTree(pid: int) -> List[int]:
    """``pid`` followed by all its descendants (POSIX), parents before children."""
    return _withDescendants([pid], _parentMap())


def _sendAll(pids: Sequence[int], signalNumber: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signalNumber)
        except (ProcessLookupError, PermissionError):
            pass


def killProcessTree(pid: int, killGroup: bool = False) -> None:
    """Kill process ``pid`` and all its descendants.

    On POSIX the tree is first stopped (so nothing forks meanwhile), listed again, then killed;
    with ``killGroup`` the process group ``pid`` leads is killed too, which also reaches
    descendants that were re-parented. On Windows ``taskkill /T`` does the same.

    Args:
        pid: operating-system id of the root process.
        killGroup: also kill the process group whose id is ``pid`` (POSIX only).

    Raises:
        ValueError: when ``pid`` is not a positive integer.
    """
    if not isinstance(pid, int) or pid <= 0:
        raise ValueError("pid must be a positive integer, got {!r}".format(pid))
    if sys.platform == "win32":
        subprocess.run(
            ["taskkill", "/F", "/T", "/PID", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            creationflags=WINDOWS_NO_WINDOW,
        )
        return
    victims = processTree(pid)
    _sendAll(victims, signal.SIGSTOP)
    victims = _withDescendants(victims, _parentMap())  # children forked before the stop arrived
    _sendAll(victims, signal.SIGKILL)
    if killGroup:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    logger.debug("killed process tree %s", victims)
