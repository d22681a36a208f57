"""Processes by pid: their start time, and killing a whole process tree.

One implementation for everything that has to stop a tree of processes: the service killing a
cancelled worker (``tskd train`` and the torchrun workers under it), ``tskd train --nproc``
stopping torchrun, a batch run stopping its task. A pid is trusted only together with its start
time, so a pid the system has reused for another program is never killed.
"""

from __future__ import annotations

import os
from typing import Optional

import psutil

__all__ = ["process_start_time", "is_same_process", "kill_process_tree"]

#: Two start times within this many seconds are the same process (psutil rounds them).
START_TIME_TOLERANCE_S = 0.05


def process_start_time(pid: int) -> Optional[float]:
    """The start time of process ``pid`` (psutil's ``create_time``), or None when there is none."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ValueError):
        return None


def is_same_process(pid: Optional[int], started: Optional[float]) -> bool:
    """True when ``pid`` is alive (not a zombie) and still the process that started at ``started``."""
    if not pid or started is None:
        return False
    actual = process_start_time(pid)
    if actual is None or abs(actual - started) > START_TIME_TOLERANCE_S:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_process_tree(pid: int, started: Optional[float] = None, *, timeout: float = 10.0) -> int:
    """SIGKILL a process and everything it started; returns the number of processes killed.

    The tree is the process (when its pid still has the start time ``started``; None: whatever
    process has the pid now, for a child the caller has just been waiting on), its descendants
    (torchrun's workers run in sessions of their own, so the process group does not reach them),
    and every process left in its process group (grandchildren whose parent already exited).
    Waits up to ``timeout`` seconds for them to be gone.
    """
    if started is None:
        started = process_start_time(pid)
        if started is None:
            return 0
    victims: dict[int, psutil.Process] = {}
    if is_same_process(pid, started):
        root = psutil.Process(pid)
        victims[root.pid] = root
        try:
            for child in root.children(recursive=True):
                victims[child.pid] = child
        except psutil.Error:
            pass
    if hasattr(os, "getpgid"):
        for proc in psutil.process_iter(["create_time"]):
            try:
                if os.getpgid(proc.pid) == pid and proc.info["create_time"] >= started - START_TIME_TOLERANCE_S:
                    victims.setdefault(proc.pid, proc)
            except (OSError, psutil.Error, TypeError):
                continue
    for proc in victims.values():
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(victims.values()), timeout=timeout)
    return len(victims)
