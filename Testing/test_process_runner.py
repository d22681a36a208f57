"""SubprocessRunner: output, exit status, explicit environment, and killing a whole process tree."""

from __future__ import annotations

import os
import sys
import time

import pytest

from fakeTools import alive
from SlicerTSKDLib.processRunner import EXITED, FAILED_TO_START, KILLED, SubprocessRunner
from SlicerTSKDLib.processTree import killProcessTree, processTree

posixOnly = pytest.mark.skipif(sys.platform == "win32", reason="process-tree listing via /proc or ps")


class Recorder:
    """Collects a runner's events like a slot would."""

    def __init__(self, runner: SubprocessRunner) -> None:
        self.runner = runner
        self.output = ""
        self.finished = []
        runner.outputReady.connect(self.onOutput)
        runner.finished.connect(self.onFinished)

    def onOutput(self) -> None:
        self.output += self.runner.readOutput()

    def onFinished(self, exitCode: int, status: str) -> None:
        self.output += self.runner.readOutput()
        self.finished.append((exitCode, status))


def run(cmd, env=None, timeout=30.0):
    runner = SubprocessRunner()
    recorder = Recorder(runner)
    runner.start(cmd, env if env is not None else {"PATH": os.environ.get("PATH", "")})
    assert runner.waitUntil(lambda: bool(recorder.finished), timeout)
    return runner, recorder


def test_output_and_exit_code_are_reported():
    code = "import sys; print('line one'); print('to stderr', file=sys.stderr); sys.exit(3)"
    runner, recorder = run([sys.executable, "-c", code])
    assert recorder.finished == [(3, EXITED)]
    assert "line one" in recorder.output and "to stderr" in recorder.output
    assert not runner.isRunning()


def test_child_gets_exactly_the_given_environment_and_os_environ_is_untouched():
    before = dict(os.environ)
    code = "import os; print(sorted(k for k in os.environ if k.startswith('TSKD_TEST')), os.environ.get('HOME'))"
    env = {"TSKD_TEST_ONLY": "1", "PATH": os.environ.get("PATH", "")}
    _, recorder = run([sys.executable, "-c", code], env=env)
    assert "['TSKD_TEST_ONLY'] None" in recorder.output
    assert dict(os.environ) == before


def test_working_directory_is_used(tmp_path):
    runner = SubprocessRunner()
    recorder = Recorder(runner)
    runner.start([sys.executable, "-c", "import os; print(os.getcwd())"], {}, cwd=str(tmp_path))
    assert runner.waitUntil(lambda: bool(recorder.finished), 30)
    assert recorder.output.strip() == str(tmp_path)


def test_utf8_split_across_reads_is_decoded():
    # the child's source names the characters by escape, so its command line stays ASCII under any locale
    code = "import sys, time; b = '\\u00e9\\u2713'.encode('utf-8'); sys.stdout.buffer.write(b[:1]); sys.stdout.flush(); time.sleep(0.2); sys.stdout.buffer.write(b[1:]); sys.stdout.flush()"
    _, recorder = run([sys.executable, "-c", code])
    assert recorder.output == "é✓"


def test_missing_program_reports_failed_to_start(tmp_path):
    _, recorder = run([str(tmp_path / "no-such-program")])
    assert recorder.finished == [(-1, FAILED_TO_START)]
    assert "Could not start" in recorder.output


def test_start_rejects_bad_commands_and_a_second_process():
    runner = SubprocessRunner()
    with pytest.raises(ValueError):
        runner.start([], {})
    with pytest.raises(ValueError):
        runner.start("python -c pass", {})
    runner.start([sys.executable, "-c", "import time; time.sleep(30)"], {})
    try:
        with pytest.raises(RuntimeError, match="still running"):
            runner.start([sys.executable, "-c", "pass"], {})
    finally:
        runner.kill()
        runner.waitUntil(lambda: not runner.isRunning(), 30)


def test_events_are_delivered_on_the_calling_thread_only_by_process_events():
    runner = SubprocessRunner()
    recorder = Recorder(runner)
    runner.start([sys.executable, "-c", "print('x')"], {})
    time.sleep(1.0)
    assert recorder.finished == []  # nothing emitted behind the owner's back
    assert runner.waitUntil(lambda: bool(recorder.finished), 30)
    assert recorder.finished == [(0, EXITED)]


@posixOnly
def test_kill_ends_the_whole_process_tree():
    """A real child that starts a grandchild and sleeps: kill() must end both."""
    code = (
        "import subprocess, sys, time; "
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "print('grandchild', g.pid, flush=True); time.sleep(120)"
    )
    runner = SubprocessRunner()
    recorder = Recorder(runner)
    runner.start([sys.executable, "-c", code], {"PATH": os.environ.get("PATH", "")})
    assert runner.waitUntil(lambda: "grandchild" in recorder.output, 30)
    child = runner.processId()
    grandchild = int(recorder.output.split()[1])
    assert processTree(child) == [child, grandchild]
    started = time.monotonic()
    runner.kill()
    assert runner.waitUntil(lambda: bool(recorder.finished), 30)
    assert time.monotonic() - started < 10
    assert recorder.finished[0][1] == KILLED
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    assert not alive(grandchild)


@posixOnly
def test_kill_process_tree_reaches_a_grandchild_of_a_plain_popen():
    import subprocess

    code = (
        "import subprocess, sys, time; "
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "print(g.pid, flush=True); time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(parent.stdout.readline())
        killProcessTree(parent.pid)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(grandchild)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_kill_process_tree_rejects_bad_pids():
    with pytest.raises(ValueError):
        killProcessTree(0)


@posixOnly
def test_terminate_lets_a_server_stop_cleanly_and_leaves_its_detached_workers_running():
    import signal

    code = (
        "import os, signal, subprocess, sys, time\n"
        "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True,\n"
        "                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # like tskd serve's workers\n"
        "def stop(*args):  # os.write: the signal may interrupt the print below while it flushes\n"
        "    os.write(1, b'stopping cleanly\\n'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('worker', worker.pid, flush=True)  # ready: the handler is in place\n"
        "time.sleep(60)\n"
    )
    runner = SubprocessRunner()
    recorder = Recorder(runner)
    runner.start([sys.executable, "-c", code], {"PATH": os.environ.get("PATH", "")})
    assert runner.waitUntil(lambda: "worker" in recorder.output, 30)
    worker = int(recorder.output.split()[1])
    try:
        runner.terminate()
        assert runner.waitUntil(lambda: bool(recorder.finished), 30)
        assert recorder.finished == [(0, KILLED)] and "stopping cleanly" in recorder.output
        assert alive(worker)
    finally:
        os.kill(worker, signal.SIGKILL)
