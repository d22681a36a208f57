"""Trained students: registered when a job finishes, listed per project, downloaded as ``.tskd.zip``.

A model row points at its job's ``run/package/`` folder (``model.onnx`` + ``tskd-model.json``,
see ``docs/student-package.md``) and copies the package's metadata and metrics for listing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tskd.runtime.box_model import BOX_MODEL_FOLDER
from tskd.service.boxmodels import box_model_summary
from tskd.service.db import Database
from tskd.service.errors import NotFound
from tskd.service.storage import Workspace, is_id, new_id, zip_folder
from tskd.service.timeutil import iso

__all__ = ["Models", "PACKAGE_FILES", "LINEAGE_JSON", "read_package_metadata", "package_comparison"]

logger = logging.getLogger(__name__)

#: The run's record of the model it was updated from (tskd.pipeline.update writes it; the service
#: never imports the pipeline).
LINEAGE_JSON = "lineage.json"
#: Files a student package must hold.
PACKAGE_FILES = ("model.onnx", "tskd-model.json")


def read_package_metadata(package: Path) -> dict[str, Any]:
    """``tskd-model.json`` of a package folder.

    Raises:
        ValueError: a required file is missing or the metadata is not a JSON object.
    """
    missing = [name for name in PACKAGE_FILES if not (package / name).is_file()]
    if missing:
        raise ValueError(f"{package}: the student package lacks {', '.join(missing)}")
    data = json.loads((package / "tskd-model.json").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{package / 'tskd-model.json'}: is not a JSON object")
    return data


_COMPARISON_KEYS = ("distilled", "reference", "chosen", "decided_on", "val_subjects", "warning", "verdict")


def package_comparison(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The run's comparison of its two students from a package's metadata (see
    ``docs/student-package.md``), or None when the package does not carry a usable one."""
    comparison = metadata.get("comparison")
    if not isinstance(comparison, dict) or comparison.get("chosen") not in ("distilled", "reference") \
            or not isinstance(comparison.get("verdict"), str) or not isinstance(comparison.get("distilled"), dict):
        return None
    return {key: comparison.get(key) for key in _COMPARISON_KEYS}


class Models:
    """The model registry.

    Args:
        db: the service database.
        workspace: the workspace folders.
    """

    def __init__(self, db: Database, workspace: Workspace) -> None:
        self.db = db
        self.ws = workspace
        self._zip_lock = threading.Lock()

    def register(self, job: dict[str, Any], package: Path) -> str:
        """Record the package of a finished job; returns the model id (the same when called again).

        Raises:
            ValueError: the package is incomplete.
        """
        metadata = read_package_metadata(package)
        metrics = metadata.get("metrics") if isinstance(metadata.get("metrics"), dict) else {}
        model_id = new_id()
        try:
            self.db.execute(
                "INSERT INTO models (id, project_id, job_id, package_dir, metrics, metadata, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model_id, job["project_id"], job["id"], self.ws.relative(package), json.dumps(metrics),
                 json.dumps(metadata), time.time()),
            )
        except sqlite3.IntegrityError:
            existing = self.db.query_one("SELECT id FROM models WHERE job_id = ?", (job["id"],))
            if existing is None:
                raise
            return existing["id"]
        logger.info("job %s produced model %s", job["id"], model_id)
        return model_id

    def row(self, model_id: str) -> dict[str, Any]:
        row = self.db.query_one("SELECT * FROM models WHERE id = ?", (model_id,)) if is_id(model_id) else None
        if row is None:
            raise NotFound(f"no model with id {model_id!r}")
        return row

    def package_dir(self, model_id: str) -> Path:
        """The model's package folder; 404 when its files have gone."""
        path = self.ws.resolve(self.row(model_id)["package_dir"])
        if not (path / "model.onnx").is_file():
            raise NotFound(f"the files of model {model_id} are missing from the server's workspace")
        return path

    def get(self, model_id: str) -> dict[str, Any]:
        return self._out(self.row(model_id), full=True)

    def list(self, project_id: str) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM models WHERE project_id = ? ORDER BY created", (project_id,))
        return [self._out(row, full=False) for row in rows]

    def archive(self, model_id: str) -> Path:
        """The package zipped (made once, next to the package folder), without its ``box_model/`` (the
        teacher's graphs, tens of MB: served apart, :mod:`tskd.service.boxmodels`)."""
        package = self.package_dir(model_id)
        target = package.parent / "package.tskd.zip"
        with self._zip_lock:
            if not target.is_file() or target.stat().st_mtime < max(p.stat().st_mtime for p in package.iterdir()):
                zip_folder(package, target, skip=(BOX_MODEL_FOLDER,))
        return target

    def _out(self, row: dict[str, Any], *, full: bool) -> dict[str, Any]:
        metadata = json.loads(row["metadata"])
        package = self.ws.resolve(row["package_dir"])
        files = [{"name": p.name, "size_bytes": p.stat().st_size}
                 for p in sorted(package.iterdir()) if p.is_file()] if package.is_dir() else []
        teacher = metadata.get("teacher") if isinstance(metadata.get("teacher"), dict) else {}
        job = self.db.query_one("SELECT base, base_sha256, update_from FROM jobs WHERE id = ?", (row["job_id"],)) or {}
        lineage = self._lineage(job.get("update_from"), package)
        kind = metadata.get("kind") if metadata.get("kind") in ("distilled", "reference") else None
        if kind == "reference":  # trained on the labels alone: no foundation model went into it
            job = {}
        return {
            "id": row["id"],
            "project_id": row["project_id"],
            "job_id": row["job_id"],
            "created": iso(row["created"]),
            "metrics": json.loads(row["metrics"]),
            "labels": metadata.get("labels") if isinstance(metadata.get("labels"), list) else [],
            "input": metadata.get("input") if isinstance(metadata.get("input"), dict) else {},
            "student": metadata.get("student") if isinstance(metadata.get("student"), dict) else {},
            "teacher": teacher,
            # which foundation model the student was distilled from: the job's name for it, the package's hash
            "base": job.get("base") or teacher.get("base"),
            "base_sha256": teacher.get("base_sha256") or job.get("base_sha256"),
            "kind": kind,
            "comparison": package_comparison(metadata),
            "lineage": lineage,
            "box_model": box_model_summary(package) if package.is_dir() else None,
            "files": files,
            "metadata": metadata if full else None,
        }

    def _lineage(self, previous_job: str | None, package: Path) -> dict[str, Any] | None:
        """Which model a model was updated from: the job (and its model) it continued, and the run's
        ``lineage.json`` next to the package (the cases added; None where the run did not record it)."""
        if not previous_job:
            return None
        previous = self.db.query_one("SELECT id FROM models WHERE job_id = ?", (previous_job,))
        record: dict[str, Any] = {}
        path = package.parent / LINEAGE_JSON
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                record = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                logger.warning("%s: unreadable; the model's lineage lists no cases", path)
        cases = {key: record.get(key) if isinstance(record.get(key), list) else None
                 for key in ("added_cases", "removed_cases")}
        counts = {key: record.get(key) if isinstance(record.get(key), int) else None
                  for key in ("labelled_before", "labelled_now")}
        return {"updated_from_job": previous_job, "updated_from_model": previous["id"] if previous else None,
                **cases, **counts}
