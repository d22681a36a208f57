"""Restarts: a killed server (SIGKILL) loses no job. Live workers are adopted, finished ones are
settled from their exit file, vanished ones are marked interrupted and resume from their checkpoint."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.service.helpers import add_cases, project_labels, wait_state
from tskd.service.db import Database
from tskd.service.settings import ServiceSettings
from tskd.processes import kill_process_tree, process_start_time


def job_row(workspace: Path, job_id: str) -> dict:
    with sqlite3.connect(workspace / "tskd.db") as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def integrity(workspace: Path) -> str:
    db = Database(workspace / "tskd.db")
    try:
        return db.integrity_check()
    finally:
        db.close()


def start_training(proc, phantom_files, steps: int, step_s: float = 0.05, hold_until: Path | None = None):
    client = proc.client()
    project = client.create_project("p", project_labels())
    add_cases(client, project["id"], phantom_files, count=1)
    fake = {"steps": steps, "step_s": step_s}
    if hold_until is not None:
        fake["hold_until"] = str(hold_until)
    job = client.start_job(project["id"], preset="tiny", settings={"fake": fake})
    status = wait_state(client, job["id"], ("running",))
    while (status["progress"] or {}).get("step", 0) < 3:
        time.sleep(0.02)  # not a busy loop: the server and the worker share the machine's cores with it
        status = client.job_status(job["id"])
    return client, project, job


def test_killed_server_adopts_the_running_worker(server_process, phantom_files, tmp_path):
    first = server_process()
    release = tmp_path / "release"  # the worker stays running until this exists, however slow the start-up
    _, project, job = start_training(first, phantom_files, steps=10, hold_until=release)
    first.kill()
    row = job_row(tmp_path / "ws", job["id"])
    assert row["state"] == "running" and psutil.pid_exists(row["pid"])  # the worker outlived the server
    second = server_process()
    client = second.client()
    assert client.job_status(job["id"])["state"] == "running"
    release.touch()
    done = wait_state(client, job["id"], ("done", "failed", "interrupted"))
    assert done["state"] == "done" and done["exit_code"] == 0 and done["attempts"] == 1
    assert [m["job_id"] for m in client.list_models(project["id"])] == [job["id"]]
    assert second.stop() == 0
    assert integrity(tmp_path / "ws") == "ok"


def test_worker_that_ended_while_the_server_was_down(server_process, phantom_files, tmp_path):
    first = server_process()
    _, project, job = start_training(first, phantom_files, steps=8)
    first.kill()
    exit_file = tmp_path / "ws" / "jobs" / job["id"] / "exit.json"
    deadline = time.monotonic() + 30
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(exit_file.read_text(encoding="utf-8"))["exit_code"] == 0
    client = server_process().client()
    status = client.job_status(job["id"])
    assert status["state"] == "done" and status["model_id"]


def test_vanished_worker_is_interrupted_then_resumed(server_process, phantom_files, tmp_path):
    first = server_process()
    _, project, job = start_training(first, phantom_files, steps=30)
    first.kill()
    row = job_row(tmp_path / "ws", job["id"])
    assert kill_process_tree(row["pid"], row["pid_started"]) >= 2  # as if the machine had rebooted
    stopped_at = json.loads((tmp_path / "ws" / "jobs" / job["id"] / "run" / "checkpoint.json").read_text(encoding="utf-8"))["step"]

    second = server_process()
    client = second.client()
    status = client.job_status(job["id"])
    assert status["state"] == "interrupted" and "resume the job" in status["error"]
    client.resume_job(job["id"])
    done = wait_state(client, job["id"], ("done", "failed"))
    assert done["state"] == "done" and done["attempts"] == 2
    log = client.download_job_log(job["id"], str(tmp_path / "log.txt"))
    assert f"starting at step {stopped_at}" in Path(log).read_text(encoding="utf-8") and stopped_at >= 3
    assert second.stop() == 0
    assert integrity(tmp_path / "ws") == "ok"


def test_auto_resume(server_process, phantom_files, tmp_path):
    first = server_process()
    _, _, job = start_training(first, phantom_files, steps=20)
    first.kill()
    row = job_row(tmp_path / "ws", job["id"])
    kill_process_tree(row["pid"], row["pid_started"])
    client = server_process("--auto-resume").client()
    # resumed at start-up, not left "interrupted" (the short fake job may already be done by the time the
    # server answers its first request: server start-up takes seconds, the rest of the job about one)
    assert client.job_status(job["id"])["state"] in ("queued", "running", "done")
    done = wait_state(client, job["id"], ("done", "failed"))
    assert done["state"] == "done" and done["attempts"] == 2


def test_a_reused_pid_is_not_mistaken_for_the_worker(make_server, tmp_path):
    server = make_server()
    project = server.client().create_project("p", project_labels())
    server.stop()
    db = Database(tmp_path / "ws" / "tskd.db")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = process_start_time(live.pid)
        (tmp_path / "ws" / "jobs" / "0123456789ab").mkdir()
        with db.transaction() as conn:  # a job whose recorded worker pid now belongs to another process
            conn.execute(
                "INSERT INTO jobs (id, project_id, state, preset, settings, base, job_dir, cases, created, pid, "
                "pid_started) VALUES ('0123456789ab', ?, 'running', 'tiny', '{}', NULL, 'jobs/0123456789ab', 1, 0, ?, ?)",
                (project["id"], live.pid, started - 100.0),
            )
        db.close()
        restarted = make_server()
        status = restarted.client().job_status("0123456789ab")
        assert status["state"] == "interrupted"
        assert live.poll() is None  # the unrelated process was left alone
    finally:
        live.kill()
        live.wait()


def test_one_server_per_workspace(server_process, tmp_path):
    first = server_process()
    second = subprocess.run(
        [sys.executable, "-m", "tskd", "serve", "--workspace", str(tmp_path / "ws"), "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 2
    assert "another 'tskd serve' is using this workspace" in second.stderr
    assert first.client().health()["status"] == "ok"


def test_settings_refuse_nonsense():
    with pytest.raises(ValueError, match="max_concurrent_jobs"):
        ServiceSettings(workspace=Path("/tmp/x"), max_concurrent_jobs=0)
    with pytest.raises(ValueError, match="both a certificate file and a key file"):
        ServiceSettings(workspace=Path("/tmp/x"), ssl_certfile=Path("c.pem"))
