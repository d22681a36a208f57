"""``tskd serve --exit-with-parent``: the server stops when the program that started it dies
(its stdin pipe reaches end of file), even by SIGKILL, which runs no clean-up of the parent's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

SRC = Path(__file__).resolve().parents[2] / "src"

PARENT = textwrap.dedent("""
    import subprocess, sys
    server = subprocess.Popen([sys.executable, "-m", "tskd", "serve", "--workspace", sys.argv[1], "--port", "0",
                               "--weights-cache", sys.argv[2], *sys.argv[3:]],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    print(server.pid, line.strip(), flush=True)
    import time
    time.sleep(600)
""")


def start(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "ws"), str(tmp_path / "weights"), *flags],
                              stdout=subprocess.PIPE, text=True, env=env)
    line = parent.stdout.readline() if parent.stdout else ""
    assert "listening on" in line, line
    return parent, int(line.split()[0])


def gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_the_server_exits_when_its_parent_is_killed(tmp_path):
    parent, server_pid = start(tmp_path, "--exit-with-parent")
    assert not gone(server_pid, 0.5), "the server stopped while its parent lived"
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    assert gone(server_pid, 15), "the server outlived its parent"
    assert _lock_free(tmp_path / "ws")


def test_without_the_flag_the_server_outlives_its_parent(tmp_path):
    parent, server_pid = start(tmp_path)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    try:
        assert not gone(server_pid, 2), "the server stopped without --exit-with-parent"
    finally:
        os.kill(server_pid, signal.SIGTERM)
        assert gone(server_pid, 30)


def _lock_free(workspace: Path) -> bool:
    """A new server can take the workspace (the stopped one released it)."""
    from tskd.service.storage import Workspace

    ws = Workspace(workspace)
    ws.acquire()
    ws.release()
    return True
