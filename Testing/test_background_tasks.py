"""TaskRunner: calls run in worker threads; results, errors and callbacks come back on the polling thread."""

from __future__ import annotations

import threading
import time

import pytest

from SlicerTSKDLib.backgroundTasks import TaskCancelled, TaskRunner
from SlicerTSKDLib.session import SessionState


def test_results_and_errors_are_delivered_on_the_polling_thread():
    runner = TaskRunner()
    seen = []
    here = threading.get_ident()

    def work(value):
        seen.append(("worker", threading.get_ident() != here))
        return value * 2

    def boom():
        raise OSError("disk full")

    runner.submit("double", work, 21, onSuccess=lambda v: seen.append(("ok", v, threading.get_ident() == here)))
    runner.submit("boom", boom, onError=lambda e: seen.append(("error", str(e), threading.get_ident() == here)))
    assert runner.waitAll(10)
    assert ("worker", True) in seen
    assert ("ok", 42, True) in seen and ("error", "disk full", True) in seen
    assert runner.pending() == 0 and not runner.busy()
    runner.shutdown()


def test_nothing_is_delivered_without_polling_and_a_failing_callback_does_not_stop_others():
    runner = TaskRunner(maxWorkers=1)
    delivered = []
    runner.submit("a", lambda: 1, onSuccess=lambda v: 1 / 0)
    runner.submit("b", lambda: 2, onSuccess=delivered.append)
    time.sleep(0.3)
    assert delivered == [] and runner.busy("b")
    assert runner.waitAll(10)
    assert delivered == [2]
    runner.shutdown()


def test_cooperative_cancel_and_progress():
    runner = TaskRunner()
    started = threading.Event()
    outcome = []

    def longJob(task):
        started.set()
        for step in range(200):
            if task.isCancelled():
                raise RuntimeError("cancelled at step {}".format(step))
            task.progress = step / 200.0
            time.sleep(0.01)
        return "finished"

    task = runner.submit("long", longJob, passTask=True, onSuccess=outcome.append, onError=lambda e: outcome.append(str(e)))
    assert started.wait(5)
    time.sleep(0.1)
    assert 0 < task.progress < 1
    task.cancel()
    assert runner.waitAll(10)
    assert outcome and outcome[0].startswith("cancelled at step") and task.done and task.error is not None
    runner.shutdown()


def test_session_tells_when_to_poll():
    session = SessionState()
    busy = []
    session.busyChanged.connect(busy.append)
    session.submit("x", lambda: 1)
    session.submit("y", lambda: 2)
    assert busy == [True]
    deadline = time.monotonic() + 10
    while session.tasks.pending() and time.monotonic() < deadline:
        session.poll()
        time.sleep(0.01)
    session.poll()
    assert busy == [True, False]
    session.shutdown()


def test_bad_arguments():
    with pytest.raises(ValueError):
        TaskRunner(maxWorkers=0)


def test_a_result_that_arrives_after_cancel_is_not_applied():
    """Issue 14, item 8: a prediction (which cannot look at the flag while the server works) is
    cancelled, then answers: onSuccess is never called, onError gets TaskCancelled."""
    runner = TaskRunner()
    release = threading.Event()
    outcome = []
    task = runner.submit("predict", lambda: release.wait(10) and "label.nrrd",
                         onSuccess=lambda v: outcome.append(("applied", v)), onError=outcome.append)
    task.cancel()
    release.set()
    assert runner.waitAll(10)
    assert len(outcome) == 1 and isinstance(outcome[0], TaskCancelled) and task.result is None
    runner.shutdown()


_EXIT_SCRIPT = """
import sys, threading, time
sys.path.insert(0, {lib!r})
from SlicerTSKDLib.backgroundTasks import TaskCancelled, TaskRunner
runner = TaskRunner(maxWorkers=1)
started = threading.Event()
runner.submit("transfer", lambda: (started.set(), time.sleep(600)))
runner.submit("queued", lambda: open({marker!r}, "w").write("ran"))
started.wait(10)
runner.shutdown()
print("shut down", flush=True)
"""


def test_exit_is_not_held_up_by_a_running_transfer_and_queued_work_never_runs(tmp_path):
    """Issue 14, item 2: the interpreter exits at once (Py_Finalize joins non-daemon threads)."""
    import subprocess
    import sys

    from conftest import MODULE_DIR

    marker = tmp_path / "queued-ran"
    script = _EXIT_SCRIPT.format(lib=str(MODULE_DIR), marker=str(marker))
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "shut down" in done.stdout and time.monotonic() - began < 30
    assert not marker.exists()


def test_no_task_is_accepted_after_shutdown():
    runner = TaskRunner()
    runner.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        runner.submit("late", lambda: 1)
