"""tskd.processes: the one process-tree killer (service workers, torchrun, batch tasks)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from tskd.processes import is_same_process, kill_process_tree, process_start_time

_PARENT = ("import subprocess, sys, time; "
           "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
           "print(c.pid, flush=True); time.sleep(60)")


def _tree():
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    return parent, child


def test_a_tree_is_killed_only_with_its_own_start_time():
    parent, child = _tree()
    try:
        started = process_start_time(parent.pid)
        assert is_same_process(parent.pid, started)
        # another start time: the pid may belong to another program now; nothing is killed
        assert kill_process_tree(parent.pid, started - 100.0, timeout=1) == 0
        assert psutil.pid_exists(child) and parent.poll() is None
        assert kill_process_tree(parent.pid, started) == 2
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the grandchild survived"
            time.sleep(0.05)
        assert not is_same_process(parent.pid, started)
    finally:
        for pid in (parent.pid, child):
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


def test_without_a_start_time_the_live_process_is_killed_and_a_missing_one_is_nothing():
    parent, child = _tree()
    assert kill_process_tree(parent.pid) == 2
    parent.wait(timeout=10)  # psutil may have reaped it already (returncode then reads 0)
    assert not psutil.pid_exists(parent.pid) or psutil.Process(parent.pid).status() == psutil.STATUS_ZOMBIE
    assert kill_process_tree(parent.pid) == 0  # reaped: no such process
    assert process_start_time(2**22 + 12345) is None
