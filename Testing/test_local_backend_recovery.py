"""Issue 32, item 8: the local server after a Slicer crash, against fake ``tskd serve`` processes (real child
processes that keep the command-line contract: ``--exit-with-parent``, ``/health`` and ``/info`` with the
token). The backend's own ``--exit-with-parent`` is on the ``service-bounds`` branch; these tests do not need it.

- the server is started with ``--exit-with-parent`` and a stdin pipe: when the Slicer process is killed
  (SIGKILL: a crash), the pipe closes and the server exits;
- ``{pid, port, token}`` are kept in a user-only file; the next session reconnects to a server still
  running (and can stop it) instead of failing on the workspace;
- a backend environment that does not know the flag is started without it;
- one Slicer session per workspace (the module's lock, taken on every system).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from SlicerTSKDLib.backend import serverState
from SlicerTSKDLib.backend.backendLogic import FAILED, RUNNING, STOPPED, LocalBackend, freeLocalPort
from SlicerTSKDLib.processRunner import SubprocessRunner

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals in the crash simulation")

FAKE_SERVE = textwrap.dedent('''
    import argparse, http.server, json, os, sys, threading
    parser = argparse.ArgumentParser(prog="tskd serve")
    parser.add_argument("command")
    for option in ("--workspace", "--host", "--max-upload-mb", "--max-image-mb"):
        parser.add_argument(option)
    parser.add_argument("--port", type=int)
    if os.environ.get("FAKE_KNOWS_EXIT", "1") == "1":
        parser.add_argument("--exit-with-parent", action="store_true")
    args = parser.parse_args()
    token = os.environ["TSKD_TOKEN"]
    with open(os.path.join(args.workspace, "argv-%d.json" % os.getpid()), "w") as stream:
        json.dump(sys.argv[1:], stream)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.endswith("/info") and self.headers.get("Authorization") != "Bearer " + token:
                self.send_response(401); self.end_headers(); return
            body = json.dumps({"status": "ok", "version": "9.9"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("tskd serve: listening on http://127.0.0.1:%d" % args.port, flush=True)
    if getattr(args, "exit_with_parent", False):
        def watch():
            sys.stdin.read()  # EOF: the parent is gone
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
    server.serve_forever()
''')


@pytest.fixture
def fakeServe(tmp_path):
    path = tmp_path / "fake_serve.py"
    path.write_text(FAKE_SERVE)
    return [sys.executable, str(path)]


def run(backend, runner, until, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, (backend.state, backend._outputTail)
        runner.processEvents(timeout=0.05)
        backend.poll()


def argvs(workspace):
    return [json.load(open(os.path.join(workspace, name))) for name in sorted(os.listdir(workspace))
            if name.startswith("argv-")]


def test_the_server_gets_the_flag_and_a_pipe_and_is_recorded_user_only(fakeServe, tmp_path):
    workspace = str(tmp_path / "ws")
    runner = SubprocessRunner()
    backend = LocalBackend(runner, startTimeout=30, stopGrace=10)
    backend.start(fakeServe, workspace, dict(os.environ))
    run(backend, runner, lambda: backend.state == RUNNING)
    assert "--exit-with-parent" in argvs(workspace)[0]
    state = serverState.readState(workspace)
    assert state == {"pid": runner.processId(), "port": int(backend.url.rsplit(":", 1)[1]), "token": backend.token}
    mode = stat.S_IMODE(os.stat(os.path.join(workspace, serverState.STATE_NAME)).st_mode)
    assert mode == 0o600  # this user only
    other = LocalBackend(SubprocessRunner())  # a second Slicer session on the same workspace reconnects
    other.start(fakeServe, workspace, dict(os.environ))
    run(other, runner, lambda: other.state == RUNNING)
    assert other.adopted and other.token == backend.token and len(argvs(workspace)) == 1  # no second server
    backend.stop()
    run(backend, runner, lambda: backend.state == STOPPED)
    assert serverState.readState(workspace) is None


SLICER = textwrap.dedent('''
    import os, sys, time
    sys.path.insert(0, {module!r})
    from SlicerTSKDLib.backend.backendLogic import RUNNING, LocalBackend
    from SlicerTSKDLib.processRunner import SubprocessRunner
    runner = SubprocessRunner()
    backend = LocalBackend(runner, startTimeout=30)
    backend.start({command!r}, {workspace!r}, dict(os.environ))
    while backend.state != RUNNING:
        runner.processEvents(timeout=0.05)
        backend.poll()
    print("running", runner.processId(), flush=True)
    time.sleep(600)
''')


def test_a_crashed_slicer_leaves_no_server_behind(fakeServe, tmp_path):
    from conftest import MODULE_DIR

    workspace = str(tmp_path / "ws")
    slicer = subprocess.Popen([sys.executable, "-c", SLICER.format(module=str(MODULE_DIR), command=fakeServe,
                                                                  workspace=workspace)],
                              stdout=subprocess.PIPE, text=True)
    line = slicer.stdout.readline().split()
    assert line[0] == "running"
    server = int(line[1])
    assert serverState.processAlive(server)
    slicer.send_signal(signal.SIGKILL)  # Slicer crashes: no clean-up runs
    slicer.wait(10)
    deadline = time.monotonic() + 10
    while serverState.processAlive(server):
        assert time.monotonic() < deadline, "the server outlived Slicer"
        time.sleep(0.05)
    # the next session finds the record of a dead server, drops it and starts its own
    runner = SubprocessRunner()
    backend = LocalBackend(runner, startTimeout=30, stopGrace=10)
    backend.start(fakeServe, workspace, dict(os.environ))
    run(backend, runner, lambda: backend.state == RUNNING)
    assert not backend.adopted and serverState.readState(workspace)["pid"] == runner.processId()
    backend.stop()
    run(backend, runner, lambda: backend.state == STOPPED)


def test_an_orphan_without_the_flag_is_reconnected_to_and_stopped(fakeServe, tmp_path):
    """A server that outlived its Slicer (an older backend without --exit-with-parent): the next session
    reconnects with the recorded token, and Stop ends it by its recorded pid."""
    workspace = str(tmp_path / "ws")
    os.makedirs(workspace)
    port = freeLocalPort()
    env = dict(os.environ, TSKD_TOKEN="left-behind", FAKE_KNOWS_EXIT="0")
    orphan = subprocess.Popen(fakeServe + ["serve", "--workspace", workspace, "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert orphan.stdout.readline().startswith(b"tskd serve: listening")
        serverState.writeState(workspace, orphan.pid, port, "left-behind")
        runner = SubprocessRunner()
        backend = LocalBackend(runner, startTimeout=30, stopGrace=10)
        backend.start(fakeServe, workspace, dict(os.environ))
        run(backend, runner, lambda: backend.state == RUNNING)
        assert backend.adopted and backend.token == "left-behind" and backend.url.endswith(":{}".format(port))
        assert not runner.isRunning() and backend.canStop()
        backend.stop()
        run(backend, runner, lambda: backend.state == STOPPED)
        assert orphan.wait(10) is not None and serverState.readState(workspace) is None
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_a_backend_without_the_flag_is_started_without_it(fakeServe, tmp_path):
    workspace = str(tmp_path / "ws")
    runner = SubprocessRunner()
    backend = LocalBackend(runner, startTimeout=30, stopGrace=10)
    backend.start(fakeServe, workspace, dict(os.environ, FAKE_KNOWS_EXIT="0"))
    run(backend, runner, lambda: backend.state in (RUNNING, FAILED))
    assert backend.state == RUNNING, backend._outputTail
    assert argvs(workspace) and "--exit-with-parent" not in argvs(workspace)[-1]
    backend.stop()
    run(backend, runner, lambda: backend.state == STOPPED)


LOCKER = "import sys, time; sys.path.insert(0, {module!r}); from SlicerTSKDLib.backend.serverState import WorkspaceLock; " \
         "lock = WorkspaceLock({workspace!r}); print(lock.acquire(), flush=True); time.sleep(30)"


def test_one_slicer_session_per_workspace(tmp_path):
    from conftest import MODULE_DIR

    workspace = str(tmp_path / "ws")
    mine = serverState.WorkspaceLock(workspace)
    assert mine.acquire()
    other = subprocess.Popen([sys.executable, "-c", LOCKER.format(module=str(MODULE_DIR), workspace=workspace)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "False"  # held here
    finally:
        other.kill()
        other.wait()
    mine.release()
    other = subprocess.Popen([sys.executable, "-c", LOCKER.format(module=str(MODULE_DIR), workspace=workspace)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "True"
        # held by the other process: a start here neither starts a server nor touches the workspace's record
        runner = SubprocessRunner()
        backend = LocalBackend(runner)
        messages = []
        backend.stateChanged.connect(lambda state, message: messages.append((state, message)))
        backend.start([sys.executable, "-c", "pass"], workspace, dict(os.environ))
        assert messages[-1][0] == FAILED and messages[-1][1].startswith("Another Slicer is starting a local backend")
        assert not runner.isRunning()
    finally:
        other.kill()
        other.wait()
