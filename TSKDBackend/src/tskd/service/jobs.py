"""Training jobs: creation (with a dataset snapshot), the views clients poll, cancel and resume.

The worker processes themselves are started and watched by :mod:`tskd.service.workers`; this
module only changes job rows and files, and wakes the scheduler when there is something to do.

States: ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled`` | ``interrupted``.
``interrupted`` means the worker went away without finishing (server machine restarted, worker
killed from outside); ``failed``, ``cancelled`` and ``interrupted`` jobs can be resumed: the same
``tskd train`` command runs again on the same run folder and continues from its last checkpoint.
"""

from __future__ import annotations

import filecmp
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from tskd.config.base import deep_merge, save_yaml
from tskd.errors import ConfigError
from tskd.runconfig import DEFAULT_PRESET, check_settings
from tskd.service.db import Database
from tskd.service.errors import Conflict, NotFound, Unprocessable
from tskd.service.checkpoints import Checkpoints
from tskd.service.info import list_presets
from tskd.service.registry import package_comparison
from tskd.service.jobfiles import (
    FileCache,
    JobFiles,
    parse_status,
    progress_record,
    tail_lines,
)
from tskd.service.storage import Workspace, is_id, new_id, remove_path, snapshot_tree
from tskd.service.timeutil import iso

__all__ = ["Jobs", "DEFAULT_PRESET", "RESUMABLE_STATES"]

logger = logging.getLogger(__name__)

RESUMABLE_STATES = ("failed", "cancelled", "interrupted")


class Jobs:
    """Job rows and the files clients see.

    Args:
        db: the service database.
        workspace: the workspace folders.
        checkpoints: the server's foundation weights (a job's base is resolved there).
        wake: called after a change the scheduler should act on at once.
        log_tail_lines: lines of worker output in a job's view.
        check_settings: check a job's settings against the pipeline config when it is created.
    """

    def __init__(self, db: Database, workspace: Workspace, checkpoints: Checkpoints, *, wake: Callable[[], None] = lambda: None,
                 log_tail_lines: int = 20, check_settings: bool = True) -> None:
        self.db = db
        self.ws = workspace
        self.checkpoints = checkpoints
        self.wake = wake
        self.log_tail_lines = log_tail_lines
        self.check_settings = check_settings
        self._status = FileCache(parse_status)
        self._tails = FileCache(lambda path: tail_lines(path, lines=max(log_tail_lines, 1)))

    def files(self, job_id: str) -> JobFiles:
        return JobFiles(self.ws.job_dir(job_id))

    # -- reading ------------------------------------------------------------------------------
    def row(self, job_id: str) -> dict[str, Any]:
        """The job's row; 404 when unknown."""
        row = self.db.query_one("SELECT * FROM jobs WHERE id = ?", (job_id,)) if is_id(job_id) else None
        if row is None:
            raise NotFound(f"no job with id {job_id!r}")
        return row

    def get(self, job_id: str) -> dict[str, Any]:
        """The job as clients see it: state, progress from ``status.json``, the end of its output."""
        return self._out(self.row(job_id))

    def list(self, project_id: str) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM jobs WHERE project_id = ? ORDER BY created", (project_id,))
        return [self._out(row) for row in rows]

    def log_file(self, job_id: str, which: str = "output") -> Path:
        """The worker's console output (``output``) or the pipeline's own log (``run``)."""
        self.row(job_id)
        files = self.files(job_id)
        path = files.output if which == "output" else files.run_log
        if not path.is_file():
            raise NotFound(f"job {job_id} has no {which} log yet")
        return path

    def _out(self, row: dict[str, Any]) -> dict[str, Any]:
        files = self.files(row["id"])
        status = self._status.get(files.status) or {}
        stages = {}
        for name, record in (status.get("stages") or {}).items() if isinstance(status.get("stages"), dict) else ():
            converted = progress_record(record)
            if converted is not None:
                stages[str(name)] = converted
        model, comparison = None, None
        if row["state"] == "done":
            found = self.db.query_one("SELECT id, metadata FROM models WHERE job_id = ?", (row["id"],))
            if found:
                model = found["id"]
                comparison = package_comparison(json.loads(found["metadata"]))
        tail = self._tails.get(files.output) or []
        return {
            "id": row["id"],
            "project_id": row["project_id"],
            "state": row["state"],
            "preset": row["preset"],
            "settings": json.loads(row["settings"]),
            "base": row["base"],
            "base_sha256": row.get("base_sha256"),
            "cases": row["cases"],
            "created": iso(row["created"]),
            "started": iso(row["started"]),
            "finished": iso(row["finished"]),
            "attempts": row["attempts"],
            "exit_code": row["exit_code"],
            "error": row["error"],
            "cancel_requested": row["cancel_requested"] is not None,
            "progress": progress_record(_this_attempt(row, status.get("latest"))),
            "stages": stages,
            "log_tail": tail[-self.log_tail_lines:] if self.log_tail_lines else [],
            "model_id": model,
            "comparison": comparison,
            "update_from": row.get("update_from"),
        }

    # -- changes ------------------------------------------------------------------------------
    def create(self, project: dict[str, Any], *, preset: str | None, settings: dict[str, Any],
               base: str | None, update_from: str | None = None, force: bool = False) -> dict[str, Any]:
        """Queue a training job on a snapshot of the project's dataset.

        ``base`` (default: the project's ``base`` setting, else ``none``) is resolved now: the job
        records the name of the foundation model (``auto`` becomes the one it picked) and its SHA-256.
        ``update_from`` (a model id, or the id of the finished job that made it, of the same project)
        makes the job an update of that job's run (``tskd train --update-from``); the worker's
        config file gets ``update.from_run``, the job's ``settings`` stay what the client sent.

        A project trains one job at a time: while one of its jobs is queued or running, another is
        refused (409, a double click must not queue two multi-hour jobs), and so is an update whose
        project has no new or changed case since the model it updates was trained. ``force``
        accepts both.

        Raises:
            ServiceError: 422 unknown preset, settings the pipeline's config refuses (the field
                named), ``settings.update.from_run`` given; 404 ``update_from`` unknown; 409 no
                labelled case yet, base checkpoint not on the server, ``update_from`` of another
                project, not finished or without its run folder; another job of the project queued
                or running, an update with nothing new (both unless ``force``).
        """
        if isinstance((settings.get("update") or {}), dict) and (settings.get("update") or {}).get("from_run"):
            raise Unprocessable("settings.update.from_run: the service sets it; give update_from (a model or "
                                "job id of this project) instead")
        previous = self._previous_job(project, update_from) if update_from else None
        if previous is not None and not force and _same_tree(self.files(previous["id"]).dataset,
                                                             self.ws.dataset_dir(project["id"])):
            raise Conflict(f"update_from: the project has no new or changed case since job {previous['id']} trained "
                           "that model, so an update would learn nothing new; add or correct cases first (or send "
                           "force: true to train again anyway)")
        preset = preset or str(project["settings"].get("preset") or DEFAULT_PRESET)
        presets = list_presets()
        if presets and preset not in presets:
            raise Unprocessable(f"preset: unknown preset {preset!r}; available presets: {', '.join(presets)}")
        if self.check_settings:
            try:  # now, not minutes later in the worker
                check_settings(preset, settings)
            except ConfigError as exc:
                raise Unprocessable(f"{exc}; fix the job's settings (they are a --config YAML's content)") from None
        if base is None:
            stored = project["settings"].get("base")
            base = stored if isinstance(stored, str) and stored.strip() else None
        choice = self.checkpoints.resolve(base)
        counts = self.db.query_one(
            "SELECT COUNT(*) AS cases, COUNT(label_file) AS labelled FROM cases WHERE project_id = ?", (project["id"],)
        )
        if not counts or not counts["labelled"]:
            raise Conflict("the project has no labelled case yet; upload at least one image with its label")
        job_id = new_id()
        files = self.files(job_id)
        try:
            with self.db.transaction() as conn:
                if not force:  # inside the write transaction: of two requests at once, the second sees the first
                    active = conn.execute("SELECT id, state FROM jobs WHERE project_id = ? AND state IN "
                                          "('queued', 'running') ORDER BY created LIMIT 1", (project["id"],)).fetchone()
                    if active is not None:
                        raise Conflict(f"job {active['id']} of this project is {active['state']}; a project trains one "
                                       "job at a time. Wait for it, cancel it, or send force: true to queue this one too")
                # the snapshot is taken inside the transaction: no case can be added or removed meanwhile
                files.folder.mkdir(parents=True)
                snapshot_tree(self.ws.dataset_dir(project["id"]), files.dataset)
                files.run.mkdir()
                worker_settings = settings
                if previous is not None:  # the worker's --config names the previous run folder
                    worker_settings = deep_merge(settings, {"update": {"from_run": str(self.files(previous["id"]).run)}})
                save_yaml(worker_settings, files.settings)
                conn.execute(
                    "INSERT INTO jobs (id, project_id, state, preset, settings, base, base_sha256, base_path, job_dir, "
                    "cases, created, update_from) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (job_id, project["id"], preset, json.dumps(settings), choice.name, choice.sha256,
                     str(choice.path) if choice.path else None, self.ws.relative(files.folder), counts["cases"],
                     time.time(), previous["id"] if previous is not None else None),
                )
        except BaseException:
            remove_path(files.folder)
            raise
        logger.info("queued job %s for project %s (preset %s, base %s, %d cases)", job_id, project["id"], preset,
                    choice.name or "none", counts["cases"])
        self.wake()
        return self.get(job_id)

    def _previous_job(self, project: dict[str, Any], update_from: str) -> dict[str, Any]:
        """The finished job of ``project`` that ``update_from`` (a model id or a job id) names."""
        model = self.db.query_one("SELECT job_id FROM models WHERE id = ?", (update_from,)) if is_id(update_from) else None
        job_id = model["job_id"] if model else update_from
        row = self.db.query_one("SELECT * FROM jobs WHERE id = ?", (job_id,)) if is_id(job_id) else None
        if row is None:
            raise NotFound(f"update_from: no model or job with id {update_from!r}; GET /projects/{project['id']}/models "
                           "lists the models to update")
        if row["project_id"] != project["id"]:
            raise Conflict(f"update_from: {update_from} belongs to another project; an update continues a model "
                           "of the same project (same labels)")
        if row["state"] != "done" or not (self.files(row["id"]).run / "package").is_dir():
            what = "its run folder is gone" if row["state"] == "done" else f"it is {row['state']}"
            raise Conflict(f"update_from: job {row['id']} has no finished run ({what}); update a finished job's "
                           "model, or train from scratch")
        return row

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: a queued one at once, a running one by asking its worker to stop.

        A running worker sees the cancel file, saves a checkpoint and exits; the scheduler kills
        its process tree when it has not stopped after the grace period.
        """
        row = self.row(job_id)
        now = time.time()
        if row["state"] == "queued":
            changed = self.db.execute(
                "UPDATE jobs SET state = 'cancelled', finished = ?, cancel_requested = ? "
                "WHERE id = ? AND state = 'queued'",
                (now, now, job_id),
            )
            if changed:
                return self.get(job_id)
            row = self.row(job_id)  # the scheduler started it meanwhile
        if row["state"] != "running":
            raise Conflict(f"job {job_id} is {row['state']}; only queued or running jobs can be cancelled")
        self.files(job_id).cancel.write_text(f"cancel requested at {iso(now)}\n", encoding="utf-8")
        self.db.execute(
            "UPDATE jobs SET cancel_requested = COALESCE(cancel_requested, ?) WHERE id = ? AND state = 'running'",
            (now, job_id),
        )
        self.wake()
        return self.get(job_id)

    def resume(self, job_id: str) -> dict[str, Any]:
        """Queue a failed, cancelled or interrupted job again; it continues from its last checkpoint."""
        row = self.row(job_id)
        if row["state"] not in RESUMABLE_STATES:
            hint = "it has finished" if row["state"] == "done" else "it is still active"
            raise Conflict(f"job {job_id} is {row['state']}; {hint}, so there is nothing to resume")
        files = self.files(job_id)
        for path in (files.cancel, files.exit):
            remove_path(path)
        changed = self.db.execute(
            "UPDATE jobs SET state = 'queued', finished = NULL, pid = NULL, pid_started = NULL, exit_code = NULL, "
            "error = NULL, cancel_requested = NULL, slot = NULL WHERE id = ? AND state = ?",
            (job_id, row["state"]),
        )
        if not changed:
            raise Conflict(f"job {job_id} changed state meanwhile; look at it again")
        logger.info("job %s queued again (was %s)", job_id, row["state"])
        self.wake()
        return self.get(job_id)


def _same_tree(first: Path, second: Path) -> bool:
    """True when two dataset folders hold the same files with the same content (a job's snapshot is
    hard links to the dataset's files, so an unchanged file is usually the same file)."""
    def files(root: Path) -> dict[str, Path]:
        return {p.relative_to(root).as_posix(): p for p in root.rglob("*")
                if p.is_file() and not p.name.startswith(".")} if root.is_dir() else {}

    left, right = files(first), files(second)
    if left.keys() != right.keys():
        return False
    for name, path in left.items():
        other = right[name]
        try:
            if os.path.samefile(path, other):
                continue
            if path.stat().st_size != other.stat().st_size or not filecmp.cmp(path, other, shallow=False):
                return False
        except OSError:
            return False
    return True


def _this_attempt(row: dict[str, Any], record: Any) -> Any:
    """The status file's latest record when the job's current attempt wrote it, else None.

    A resumed job keeps its ``status.json`` (the worker carries its stages on), so until the new
    attempt reports, the file's latest record is the previous attempt's: not shown while the job
    is queued again, nor once it runs, for a record older than the attempt's start.
    """
    if row["state"] == "queued":
        return None
    written = record.get("time") if isinstance(record, dict) else None
    if row["started"] is not None and isinstance(written, (int, float)) and written < row["started"]:
        return None
    return record
