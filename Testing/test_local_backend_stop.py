"""Stopping the local backend stops the server only: a training worker survives (issue 14, item 3).

A real ``tskd serve`` is started by :class:`LocalBackend` through :class:`SubprocessRunner`, with
the backend tests' fake trainer (``TSKDBackend/tests/service/fake_train.py``, the real ``tskd
train`` contract in a fraction of a second) as its train command. The server is stopped the hard
way (grace 0: SIGKILL after the SIGTERM, the path that used to kill the whole process tree), the
worker must still be alive, and a restarted backend on the same workspace must show the job
running, then done, with its model.
"""

from __future__ import annotations

import shlex
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, backendEnvironment
from fakeTools import alive

FAKE_TRAIN = REPO_ROOT / "TSKDBackend" / "tests" / "service" / "fake_train.py"

_WRAPPER = """import sys
sys.argv = ["tskd"] + sys.argv[1:] + ["--train-command", {command!r}, "--no-settings-check",
                              "--cancel-grace-s", "2"]
from tskd.cli.main import main
sys.exit(main())
"""


def _startBackend(backendCommand, workspace: Path):
    from SlicerTSKDLib.backend.backendLogic import RUNNING, LocalBackend
    from SlicerTSKDLib.processRunner import SubprocessRunner

    runner = SubprocessRunner()
    backend = LocalBackend(runner, startTimeout=120.0, stopGrace=0.0)
    backend.start(backendCommand, str(workspace), backendEnvironment())
    deadline = time.monotonic() + 150
    while backend.state != RUNNING and time.monotonic() < deadline:
        runner.processEvents(timeout=0.2)
        backend.poll()
        assert backend.state != "failed", backend._outputTail
    assert backend.state == RUNNING, backend._outputTail
    return backend, runner


def _waitJob(client, jobId: str, states, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while True:
        status = client.job_status(jobId)
        if status["state"] in states:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals; Windows uses TerminateProcess on the pid only")
def test_a_training_worker_survives_stop_and_the_restarted_backend_finishes_the_job(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("onnx")
    from tskd.data.image import write_image
    from tskd.data.phantom import PhantomConfig, make_phantom, phantom_labels

    from SlicerTSKDLib.backend.backendLogic import STOPPED

    wrapper = tmp_path / "serve_fake_train.py"
    wrapper.write_text(_WRAPPER.format(command=shlex.join([sys.executable, str(FAKE_TRAIN)])), encoding="utf-8")
    command = [sys.executable, str(wrapper)]
    workspace = tmp_path / "workspace"
    config = PhantomConfig(size=(32, 32, 8), spacing=(1.0, 1.0, 2.5), structures=2)
    image, label = make_phantom(config, 0)
    imagePath = write_image(image, tmp_path / "case.nii.gz")
    labelPath = write_image(label, tmp_path / "case-label.nii.gz")

    backend, runner = _startBackend(command, workspace)
    client = backend.client()
    labels = [dict({"value": item["value"], "name": item["name"]},
                   **({"color": [c / 255.0 for c in item["color"]]} if item.get("color") else {}))
              for item in phantom_labels(config)]
    project = client.create_project("stop", labels)
    client.upload_case(project["id"], "case_000", str(imagePath), str(labelPath))
    job = client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 40, "step_s": 0.1}})
    status = _waitJob(client, job["id"], ("running",))
    while (status["progress"] or {}).get("step", 0) < 3:
        time.sleep(0.02)  # not a busy loop: the server and the worker share the machine's cores with it
        status = client.job_status(job["id"])
    with sqlite3.connect(str(workspace / "tskd.db")) as conn:
        workerPid = int(conn.execute("SELECT pid FROM jobs WHERE id = ?", (job["id"],)).fetchone()[0])
    serverPid = runner.processId()
    assert workerPid != serverPid and alive(workerPid)

    backend.stop()
    backend.poll()  # grace 0: the server is killed now (SIGKILL) - the server only
    assert runner.waitUntil(lambda: not runner.isRunning(), 30)
    runner.processEvents(timeout=0.2)
    assert backend.state == STOPPED
    assert not alive(serverPid)
    assert alive(workerPid), "Stop killed the training worker"

    second, secondRunner = _startBackend(command, workspace)
    try:
        client = second.client()
        # adopted: still training, or (a loaded machine takes longer to start a server than the rest of
        # the job takes) finished by the surviving worker and recorded by the new server: never restarted
        assert client.job_status(job["id"])["state"] in ("running", "done")
        done = _waitJob(client, job["id"], ("done", "failed", "interrupted", "cancelled"))
        assert done["state"] == "done" and done["exit_code"] == 0 and done["attempts"] == 1
        assert [m["job_id"] for m in client.list_models(project["id"])] == [job["id"]]
    finally:
        second.stop()
        second.poll()
        secondRunner.waitUntil(lambda: not secondRunner.isRunning(), 30)
