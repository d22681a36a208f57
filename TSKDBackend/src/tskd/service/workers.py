"""Worker processes: the scheduler thread that starts ``tskd train`` for queued jobs and watches them.

Jobs never run in the server's process. The scheduler (a thread of the server) starts each one
as ``python runner.py --exit-file ... -- <train command> --data ... --out ...`` in a new process
session, with its output going to the job's ``output.txt``; it records the runner's pid and
start time. Every tick it reaps finished workers, kills the process tree of a cancelled worker
that has not stopped within the grace period, and starts queued jobs while slots are free.

Workers outlive the server: a restarted server adopts the ones still running (same pid *and*
start time, so a reused pid is never mistaken for a worker), takes the exit code of the ones that
ended meanwhile from their ``exit.json``, and marks the others ``interrupted``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tskd.processes import is_same_process, kill_process_tree, process_start_time
from tskd.service import runner
from tskd.service.db import Database
from tskd.service.checkpoints import Checkpoints
from tskd.service.info import gpu_count
from tskd.service.jobfiles import JobFiles, read_exit_file, tail_lines
from tskd.service.registry import Models
from tskd.service.settings import ServiceSettings
from tskd.service.storage import Workspace
from tskd.service.timeutil import iso

__all__ = ["Scheduler", "WorkerProcess"]

logger = logging.getLogger(__name__)

CANCELLED_EXIT_CODE = 130
USER_ERROR_EXIT_CODE = 2


class WorkerProcess:
    """A running worker: started by this server (a ``Popen``) or adopted after a restart (a pid).

    Args:
        pid: the runner's pid.
        started: its start time (``psutil`` ``create_time``).
        popen: the ``Popen`` when this server started it.
    """

    def __init__(self, pid: int, started: float, popen: subprocess.Popen | None = None) -> None:
        self.pid = pid
        self.started = started
        self.popen = popen

    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return is_same_process(self.pid, self.started)

    def returncode(self) -> int | None:
        """The runner's own exit status when this server started it (reaped), else None."""
        return self.popen.poll() if self.popen is not None else None


class Scheduler:
    """Starts queued jobs and watches running ones, in a background thread.

    Args:
        settings: the service settings (train command, concurrency, cancel grace period).
        db: the service database.
        workspace: the workspace folders.
        models: the model registry (finished jobs register their package).
        checkpoints: the foundation weights (a job's base is found there when it starts).
    """

    def __init__(self, settings: ServiceSettings, db: Database, workspace: Workspace, models: Models,
                 checkpoints: Checkpoints) -> None:
        self.settings = settings
        self.db = db
        self.ws = workspace
        self.models = models
        self.checkpoints = checkpoints
        self._workers: dict[str, WorkerProcess] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the jobs a previous server left, then start the scheduling thread."""
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="tskd-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling. Running workers keep running; the next server adopts them."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def wake(self) -> None:
        """Look at the queue now rather than at the next tick."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the scheduler must survive anything a single job does
                logger.exception("scheduler tick failed")
            self._wake.wait(self.settings.scheduler_interval_s)
            self._wake.clear()

    def recover(self) -> None:
        """Adopt live workers of running jobs; settle the others; requeue with ``auto_resume``."""
        for job in self.db.query("SELECT * FROM jobs WHERE state = 'running'"):
            if is_same_process(job["pid"], job["pid_started"]):
                logger.info("job %s: adopted its running worker (pid %s)", job["id"], job["pid"])
                self._workers[job["id"]] = WorkerProcess(job["pid"], job["pid_started"])
                continue
            code = read_exit_file(self._files(job).exit)
            self._finish(job, code, reason="the server was not running when the worker ended")
        if self.settings.auto_resume:
            interrupted = self.db.query("SELECT * FROM jobs WHERE state = 'interrupted'")
            for job in interrupted:
                files = self._files(job)
                for path in (files.cancel, files.exit):
                    path.unlink(missing_ok=True)
                self.db.execute(
                    "UPDATE jobs SET state = 'queued', finished = NULL, pid = NULL, pid_started = NULL, "
                    "exit_code = NULL, error = NULL, cancel_requested = NULL, slot = NULL "
                    "WHERE id = ? AND state = 'interrupted'",
                    (job["id"],),
                )
            if interrupted:
                logger.info("--auto-resume: %d interrupted jobs queued again", len(interrupted))

    # -- one round ----------------------------------------------------------------------------
    def tick(self) -> None:
        """Reap finished workers, enforce cancel grace periods, start queued jobs."""
        with self._tick_lock:
            self._reap()
            self._enforce_cancels()
            self._launch()

    def _files(self, job: dict[str, Any]) -> JobFiles:
        return JobFiles(self.ws.resolve(job["job_dir"]))

    def _reap(self) -> None:
        for job_id, worker in list(self._workers.items()):
            if worker.running():
                continue
            del self._workers[job_id]
            job = self.db.query_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
            if job is None or job["state"] != "running":
                continue
            code = read_exit_file(self._files(job).exit)
            if code is None:
                code = worker.returncode()
            self._finish(job, code)
        # a running row without a worker (its process vanished unnoticed) is settled too
        for job in self.db.query("SELECT * FROM jobs WHERE state = 'running'"):
            orphaned = job["id"] not in self._workers and job["pid"] is not None
            if orphaned and not is_same_process(job["pid"], job["pid_started"]):
                self._finish(job, read_exit_file(self._files(job).exit))

    def _enforce_cancels(self) -> None:
        now = time.time()
        for job in self.db.query("SELECT * FROM jobs WHERE state = 'running' AND cancel_requested IS NOT NULL"):
            worker = self._workers.get(job["id"])
            if worker is None or now - job["cancel_requested"] < self.settings.cancel_grace_s:
                continue
            killed = kill_process_tree(worker.pid, worker.started)
            logger.warning("job %s: the worker did not stop within %.0f s of the cancel request; killed %d processes",
                           job["id"], self.settings.cancel_grace_s, killed)
            if worker.popen is not None:
                worker.popen.wait(timeout=10)
            del self._workers[job["id"]]
            self._finish(job, read_exit_file(self._files(job).exit))

    def _launch(self) -> None:
        running = self.db.query("SELECT slot FROM jobs WHERE state = 'running'")
        free = [s for s in range(self.settings.max_concurrent_jobs) if s not in {r["slot"] for r in running}]
        free = free[: max(0, self.settings.max_concurrent_jobs - len(running))]
        if not free:
            return
        queued = self.db.query("SELECT * FROM jobs WHERE state = 'queued' ORDER BY created LIMIT ?", (len(free),))
        for job, slot in zip(queued, free):
            self._start(job, slot)

    def _command(self, job: dict[str, Any], files: JobFiles) -> list[str]:
        command = list(self.settings.train_command) + [
            "--data", str(files.dataset), "--out", str(files.run), "--preset", job["preset"],
            "--cancel-file", str(files.cancel),
        ]
        if job["settings"] not in (None, "", "{}") or job.get("update_from"):  # an update's file names the run
            command += ["--config", str(files.settings)]
        if job["base"]:
            choice = self.checkpoints.resolve(job["base"])
            if job.get("base_sha256") and choice.sha256 and choice.sha256 != job["base_sha256"]:
                raise ValueError(f"the foundation weights {job['base']} changed since the job was created (SHA-256 "
                                 f"{choice.sha256[:12]}... instead of {job['base_sha256'][:12]}...); start a new job")
            command += ["--base", str(choice.path)]
        return command

    def _start(self, job: dict[str, Any], slot: int) -> None:
        now = time.time()
        claimed = self.db.execute(
            "UPDATE jobs SET state = 'running', started = ?, attempts = attempts + 1, slot = ? "
            "WHERE id = ? AND state = 'queued'",
            (now, slot, job["id"]),
        )
        if not claimed:
            return  # cancelled meanwhile
        files = self._files(job)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.settings.max_concurrent_jobs > 1 and gpu_count() > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % gpu_count())
        files.exit.unlink(missing_ok=True)  # a previous attempt's exit code must not be read for this one
        try:
            command = self._command(job, files)
            with open(files.output, "ab") as output:
                output.write(f"=== {iso(now)} attempt {job['attempts'] + 1}: {' '.join(command)}\n".encode())
                output.flush()
                popen = subprocess.Popen(
                    [sys.executable, runner.__file__, "--exit-file", str(files.exit), "--", *command],
                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd=files.folder,
                    env=env, **_new_session(),
                )
        except Exception as exc:  # an unusable train command or base checkpoint fails the job, not the server
            logger.exception("job %s: cannot start the worker", job["id"])
            self.db.execute(
                "UPDATE jobs SET state = 'failed', finished = ?, error = ? WHERE id = ? AND state = 'running'",
                (time.time(), f"cannot start the training process: {exc}", job["id"]),
            )
            return
        started = process_start_time(popen.pid) or now
        self._workers[job["id"]] = WorkerProcess(popen.pid, started, popen)
        self.db.execute("UPDATE jobs SET pid = ?, pid_started = ? WHERE id = ?", (popen.pid, started, job["id"]))
        logger.info("job %s: started worker pid %d (attempt %d)", job["id"], popen.pid, job["attempts"] + 1)

    # -- outcomes -----------------------------------------------------------------------------
    def _finish(self, job: dict[str, Any], code: int | None, reason: str = "") -> None:
        """Settle a job whose worker has ended with exit code ``code`` (None: unknown)."""
        files = self._files(job)
        state, error = "failed", None
        if job["cancel_requested"] is not None and code != 0:
            state = "cancelled"
        elif code == 0:
            try:
                self.models.register(job, files.package)
                state = "done"
            except (OSError, ValueError) as exc:
                error = f"training ended without a usable student package: {exc}"
        elif code is None:
            state = "interrupted"
            error = (f"the worker stopped without finishing ({reason or 'its process is gone'}); "
                     "resume the job to continue")
        elif code == CANCELLED_EXIT_CODE:
            state = "interrupted"
            error = "the worker was stopped from outside the service; resume the job to continue"
        elif code == USER_ERROR_EXIT_CODE:
            error = _user_error(files.output) or "training refused its input (exit code 2); see the job's log"
        else:
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            error = f"the training process crashed ({how}); see the job's log, then resume or start a new job"
        self.db.execute(
            "UPDATE jobs SET state = ?, finished = ?, exit_code = ?, error = ? WHERE id = ? AND state = 'running'",
            (state, time.time(), code, error, job["id"]),
        )
        logger.info("job %s: %s (exit code %s)", job["id"], state, code)


def _user_error(output: Path) -> str | None:
    """The worker's ``tskd: error: ...`` line, without the prefix."""
    for line in reversed(tail_lines(output, lines=200)):
        if line.startswith("tskd: error:"):
            return line[len("tskd: error:"):].strip()
    return None


def _new_session() -> dict[str, Any]:
    if sys.platform == "win32":  # pragma: no cover - POSIX is what the tests run on
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}
