"""What to label next, per project: :func:`tskd.suggest.suggest` run in a background thread, cached on disk.

``GET /projects/{id}/suggestions`` scores the project's unlabelled cases with one of its trained
models (the latest by default). Scoring takes seconds to minutes (the teacher part more), so the
route never waits for it: the first request starts a computation in this component's worker thread
and answers ``computing``; later requests answer the cached result (``done``) or what went wrong
(``failed``). The cache is one JSON file per (model, cases fingerprint, teacher) in
``projects/<id>/suggestions/``; the fingerprint covers the unlabelled cases' names, sizes and
update times, so uploading, replacing or deleting an unlabelled case (or labelling it) gives a new
key and a new computation. The newest :data:`KEEP_FILES` files of a project are kept.

Each computation picks :data:`MAX_TOP` slices and every ``top`` is answered from it: the greedy
pick (:func:`tskd.suggest.select`) depends on ``top`` only through when it stops, so its first
``top`` slices are exactly what ``top`` alone would give, and asking for more or fewer costs
nothing.

Each computation runs in a worker process (``python -m tskd suggest``), like a training job: the
teacher it loads (hundreds of MiB of torch) never enters the server, and a stopped server kills
it. One runs at a time, from this component's queue, and the queue is bounded: while
``max_queued`` computations wait or run, a request that would add one more is answered 503 with
``Retry-After`` and nothing is started. A computation holds no state worth adopting after a
restart (an unfinished one is simply started again by the next request).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

from tskd.errors import CancelledError, TSKDError
from tskd.processes import kill_process_tree, process_start_time
from tskd.service.db import Database
from tskd.service.errors import Conflict, NotFound, ServiceError
from tskd.service.registry import Models
from tskd.service.storage import Workspace, atomic_write_json, remove_path
from tskd.service.timeutil import iso

__all__ = ["Suggestions", "SuggestionRequest", "RETRY_AFTER_S", "BUSY_RETRY_AFTER_S", "KEEP_FILES", "MAX_TOP", "run_suggest"]

logger = logging.getLogger(__name__)

#: Seconds a client is told to wait before asking again while a computation runs (``Retry-After``).
RETRY_AFTER_S = 2
#: Cache files kept per project (the newest); older ones are removed after each computation.
KEEP_FILES = 20
#: Seconds a client is told to wait when the queue is full (503).
BUSY_RETRY_AFTER_S = 10
#: The most slices a request may ask for (``top``); each computation picks this many.
MAX_TOP = 200
_FOLDER = "suggestions"


def run_suggest(model: Path, data: Path, *, top: int, use_teacher: bool,
                cancel: Callable[[], bool]) -> dict[str, Any]:
    """One computation: ``tskd suggest`` on a run folder and a folder of images, in a worker
    process, as JSON (module-level so that tests can count the calls).

    The worker's files (its output, the JSON) lie next to ``data``; ``cancel`` is polled and a true
    answer kills the worker's process tree.

    Raises:
        CancelledError: ``cancel`` answered true.
        TSKDError: the worker refused its input (its ``tskd: error:`` line is the message).
        RuntimeError: the worker failed otherwise.
    """
    folder = Path(data).parent
    out, log = folder / "suggestions.json", folder / "worker.log"
    command = [sys.executable, "-m", "tskd", "suggest", "--model", str(model), "--data", str(data),
               "--top", str(top), "--json", str(out)] + ([] if use_teacher else ["--no-teacher"])
    with open(log, "wb") as output:
        worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                  cwd=folder, start_new_session=sys.platform != "win32")
    started = process_start_time(worker.pid)
    try:
        while worker.poll() is None:
            if cancel():
                raise CancelledError("the server stopped")
            time.sleep(0.1)
    finally:
        if worker.poll() is None:
            kill_process_tree(worker.pid, started)
            worker.wait(timeout=10)
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    if worker.returncode == 0:
        return json.loads(out.read_text(encoding="utf-8"))
    refused = next((line[len("tskd: error:"):].strip() for line in reversed(lines) if line.startswith("tskd: error:")),
                   None)
    if refused is not None:
        raise TSKDError(refused.replace(str(folder) + os.sep, ""))
    raise RuntimeError(f"the scoring process ended with exit code {worker.returncode}: "
                       f"{' / '.join(lines[-3:]) or 'no output'}")


class SuggestionRequest:
    """What one request asks for, resolved: the model, the cases, the options and the cache key."""

    def __init__(self, project_id: str, model: dict[str, Any], run_dir: Path, cases: list[dict[str, Any]],
                 top: int, teacher: bool) -> None:
        self.project_id = project_id
        self.model_id = str(model["id"])
        self.run_dir = run_dir
        self.cases = cases
        self.top = int(top)
        self.teacher = bool(teacher)
        facts = [[c["name"], c["image_bytes"], c["updated"]] for c in cases]
        self.fingerprint = hashlib.sha256(json.dumps(facts).encode("utf-8")).hexdigest()[:16]
        self.key = f"{self.model_id}-{self.fingerprint}-{'teacher' if self.teacher else 'student'}"

    def record(self, status: str, **extra: Any) -> dict[str, Any]:
        """What is stored for this request's key in ``status`` (``result``: all :data:`MAX_TOP` picks)."""
        out = {
            "status": status, "project_id": self.project_id, "model_id": self.model_id,
            "teacher": self.teacher, "fingerprint": self.fingerprint,
            "case_names": [c["name"] for c in self.cases],
            "requested": None, "finished": None, "error": None, "result": None,
        }
        out.update(extra)
        return out

    def answer(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The route's answer (``SuggestionsOut``) to this request from a stored record: its ``top``
        first suggestions."""
        out = dict(stored, top=self.top)
        result = stored.get("result")
        if isinstance(result, dict):
            config = dict(result.get("config") or {}, top=self.top)
            out["result"] = dict(result, suggestions=list(result.get("suggestions") or [])[: self.top], config=config)
        return out


class Suggestions:
    """Start, cache and answer the suggestions of a project's model.

    Args:
        db: the service database.
        workspace: the workspace folders.
        models: the model registry (the latest model of a project, its package folder).
        max_queued: computations waiting or running at once (more are answered 503).
    """

    def __init__(self, db: Database, workspace: Workspace, models: Models, *, max_queued: int = 4) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, got {max_queued}")
        self.max_queued = max_queued
        self.db = db
        self.ws = workspace
        self.models = models
        self._lock = threading.Lock()
        self._running: dict[str, dict[str, Any]] = {}  # key -> its 'computing' record
        self._stop = threading.Event()
        self._executor: Optional[ThreadPoolExecutor] = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tskd-suggest")

    def stop(self) -> None:
        """Stop the computation at its next batch and drop the queued ones (no file is written for them)."""
        self._stop.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        with self._lock:
            self._running.clear()

    # -- the route ----------------------------------------------------------------------------
    def resolve(self, project_id: str, model_id: Optional[str], top: int, teacher: bool) -> SuggestionRequest:
        """The model and cases of a request.

        Raises:
            ServiceError: 404 model unknown or of another project, its files gone; 409 no trained
                model yet, or no unlabelled case to score.
        """
        if model_id is not None:
            model = self.models.row(model_id)
            if model["project_id"] != project_id:
                raise NotFound(f"model {model_id} is not a model of project {project_id}; list the project's "
                               "models (GET /projects/{id}/models)")
        else:
            model = self.db.query_one("SELECT * FROM models WHERE project_id = ? ORDER BY created DESC LIMIT 1",
                                      (project_id,))
            if model is None:
                raise Conflict("the project has no trained model yet; start a job (POST /projects/{id}/jobs) and "
                               "ask for suggestions once it is done")
        run_dir = self.models.package_dir(model["id"]).parent  # package/ lies in the job's run folder
        cases = self.db.query(
            "SELECT name, image_file, image_bytes, updated FROM cases WHERE project_id = ? AND label_file IS NULL "
            "ORDER BY name", (project_id,))
        if not cases:
            raise Conflict("the project has no unlabelled case to rank; upload the images you could label next "
                           "without a label (POST /projects/{id}/cases with only 'image')")
        return SuggestionRequest(project_id, model, run_dir, cases, top, teacher)

    def get(self, request: SuggestionRequest, *, retry: bool = False) -> dict[str, Any]:
        """The cached answer, the running computation's, or a new computation's (``computing``).

        Args:
            request: from :meth:`resolve`.
            retry: compute again when the cached answer is a failure (a result is kept: the same
                model on the same cases ranks the same).

        Raises:
            ServiceError: 503 (``Retry-After``) when ``max_queued`` computations wait or run already.
        """
        path = self._path(request)
        with self._lock:
            running = self._running.get(request.key)
            if running is not None:
                return request.answer(running)
            cached = _read(path)
            if cached is not None and not (retry and cached["status"] == "failed"):
                return request.answer(cached)
            if self._executor is None:
                raise RuntimeError("the suggestions worker is not started")
            if len(self._running) >= self.max_queued:
                raise ServiceError(
                    f"the server is already computing suggestions for {len(self._running)} requests, as many as it "
                    f"queues at once; ask again in a moment (after {BUSY_RETRY_AFTER_S} s)", status=503,
                    headers={"Retry-After": str(BUSY_RETRY_AFTER_S)})
            record = request.record("computing", requested=iso(time.time()))
            self._running[request.key] = record
            self._executor.submit(self._compute, request, path, record)
        logger.info("project %s: computing suggestions %s (%d cases)", request.project_id, request.key,
                    len(request.cases))
        return request.answer(record)

    # -- the worker ---------------------------------------------------------------------------
    def _path(self, request: SuggestionRequest) -> Path:
        return self.ws.project_dir(request.project_id) / _FOLDER / f"{request.key}.json"

    def _compute(self, request: SuggestionRequest, path: Path, record: dict[str, Any]) -> None:
        folder: Optional[Path] = None
        outcome: Optional[dict[str, Any]] = None
        try:
            folder = self.ws.new_tmp_dir("suggest")
            images = _link_images(self.ws, request.cases, folder)
            result = run_suggest(request.run_dir, images, top=MAX_TOP, use_teacher=request.teacher,
                                 cancel=self._stop.is_set)
            result["model"] = request.model_id  # not the server's paths
            teacher = result.get("teacher")
            if isinstance(teacher, dict) and isinstance(teacher.get("note"), str):
                teacher["note"] = teacher["note"].replace(str(request.run_dir), "the model's run folder")
            result["data"] = f"project {request.project_id}: {len(request.cases)} unlabelled case(s)"
            outcome = dict(record, status="done", result=result, finished=iso(time.time()))
        except CancelledError:
            logger.info("suggestions %s: stopped with the server", request.key)
        except TSKDError as exc:  # no student, no readable case...: the message says what to do
            outcome = dict(record, status="failed", error=str(exc), finished=iso(time.time()))
        except Exception as exc:  # noqa: BLE001 - a failed computation must reach the client, not vanish
            logger.exception("suggestions %s failed", request.key)
            outcome = dict(record, status="failed", finished=iso(time.time()),
                           error=f"scoring failed unexpectedly ({type(exc).__name__}: {exc}); the server's log "
                                 "('tskd serve' console) has the details; ask again with retry=true")
        finally:  # whatever happened, the key is no longer 'computing'
            if folder is not None:
                remove_path(folder)
            with self._lock:
                try:
                    if outcome is not None and self._project_exists(request.project_id):  # a deleted one gets no files
                        atomic_write_json(path, outcome)
                        _prune(path.parent)
                except Exception:  # noqa: BLE001 - a full disk, a closed database: the next request computes again
                    logger.exception("suggestions %s: the answer could not be stored", request.key)
                    outcome = None
                finally:
                    self._running.pop(request.key, None)
        if outcome is not None:
            logger.info("project %s: suggestions %s %s", request.project_id, request.key, outcome["status"])


    def _project_exists(self, project_id: str) -> bool:
        return self.db.query_one("SELECT id FROM projects WHERE id = ?", (project_id,)) is not None


def _link_images(ws: Workspace, cases: list[dict[str, Any]], folder: Path) -> Path:
    """Hard links to the cases' stored images in ``folder/images`` (stored files are replaced by
    renames, never changed in place, so the links are a snapshot)."""
    images = folder / "images"
    images.mkdir()
    for case in cases:
        source = ws.resolve(case["image_file"])
        target = images / source.name
        try:
            os.link(source, target)
        except FileNotFoundError:
            continue  # deleted meanwhile: the case is left out
        except OSError:
            shutil.copy2(source, target)
    return images


def _read(path: Path) -> Optional[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        logger.warning("%s: unreadable cached suggestions; computing them again", path)
        remove_path(path)
        return None
    return data if isinstance(data, dict) and data.get("status") in ("done", "failed") else None


def _prune(folder: Path, keep: int = KEEP_FILES) -> None:
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        remove_path(old)
