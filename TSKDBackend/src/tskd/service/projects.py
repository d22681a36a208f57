"""Projects: a name, the labels their cases use, free-form settings, and a dataset folder.

Each project's dataset lives in ``WORKSPACE/projects/<id>/dataset/`` in the standard layout
(``images/``, ``labels/``, ``labels.json``) so that a job can train on a snapshot of it as is.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from tskd.data.labels import Label, LabelTable
from tskd.service.db import ACTIVE_STATES, Database
from tskd.service.errors import Conflict, NotFound, Unprocessable
from tskd.service.storage import (
    Workspace,
    atomic_write_json,
    is_id,
    new_id,
    remove_path,
)
from tskd.service.timeutil import iso

__all__ = ["Projects", "label_table"]

logger = logging.getLogger(__name__)


def label_table(labels: list[dict[str, Any]]) -> LabelTable:
    """The :class:`LabelTable` of a project's stored labels."""
    return LabelTable(
        [Label(int(item["value"]), str(item["name"]), tuple(item["color"]) if item.get("color") else None)
         for item in labels],
        source="project labels",
    )


def _normalise_labels(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sorted labels with the background added; refuses repeated values or names."""
    seen_values: dict[int, str] = {}
    seen_names: dict[str, int] = {}
    for item in labels:
        value, name = int(item["value"]), str(item["name"])
        if value in seen_values:
            raise Unprocessable(f"labels: value {value} is given twice ({seen_values[value]!r} and {name!r})")
        if name.lower() in seen_names:
            raise Unprocessable(f"labels: name {name!r} is given twice (values {seen_names[name.lower()]} and {value})")
        seen_values[value] = name
        seen_names[name.lower()] = value
    out = [dict(item) for item in labels]
    if 0 not in seen_values:
        out.append({"value": 0, "name": "background", "color": [0.0, 0.0, 0.0]})
    for item in out:
        item["color"] = [float(c) for c in item["color"]] if item.get("color") else None
    return sorted(out, key=lambda item: item["value"])


def _labels_json(labels: list[dict[str, Any]]) -> dict[str, Any]:
    return {"labels": [{k: v for k, v in item.items() if v is not None} for item in labels]}


class Projects:
    """Create, read, change and delete projects.

    Args:
        db: the service database.
        workspace: the workspace folders.
    """

    def __init__(self, db: Database, workspace: Workspace) -> None:
        self.db = db
        self.ws = workspace

    # -- reading ------------------------------------------------------------------------------
    def row(self, project_id: str) -> dict[str, Any]:
        """The project's database row with labels and settings decoded; 404 when unknown."""
        row = self.db.query_one("SELECT * FROM projects WHERE id = ?", (project_id,)) if is_id(project_id) else None
        if row is None:
            raise NotFound(f"no project with id {project_id!r}")
        row["labels"] = json.loads(row["labels"])
        row["settings"] = json.loads(row["settings"])
        return row

    def get(self, project_id: str) -> dict[str, Any]:
        """The project as the API shows it."""
        return self._out(self.row(project_id))

    def list(self) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM projects ORDER BY created")
        for row in rows:
            row["labels"] = json.loads(row["labels"])
            row["settings"] = json.loads(row["settings"])
        return [self._out(row) for row in rows]

    def dimension(self, project_id: str) -> int | None:
        """2 or 3 when the project holds cases, else None."""
        row = self.db.query_one("SELECT geometry FROM cases WHERE project_id = ? LIMIT 1", (project_id,))
        return len(json.loads(row["geometry"])["size"]) if row else None

    def _out(self, row: dict[str, Any]) -> dict[str, Any]:
        counts = self.db.query_one(
            "SELECT COUNT(*) AS cases, COUNT(label_file) AS labelled FROM cases WHERE project_id = ?", (row["id"],)
        ) or {"cases": 0, "labelled": 0}
        return {
            "id": row["id"],
            "name": row["name"],
            "labels": row["labels"],
            "settings": row["settings"],
            "created": iso(row["created"]),
            "updated": iso(row["updated"]),
            "cases": counts["cases"],
            "labelled_cases": counts["labelled"],
            "dimension": self.dimension(row["id"]),
        }

    # -- writing ------------------------------------------------------------------------------
    def create(self, name: str, labels: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
        """A new project with an empty dataset folder; 409 when the name is taken."""
        name = name.strip()
        labels = _normalise_labels(labels)
        project_id = new_id()
        now = time.time()
        dataset = self.ws.dataset_dir(project_id)
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO projects (id, name, labels, settings, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
                    (project_id, name, json.dumps(labels), json.dumps(settings), now, now),
                )
                for sub in ("images", "labels"):
                    (dataset / sub).mkdir(parents=True, exist_ok=True)
                atomic_write_json(dataset / "labels.json", _labels_json(labels))
        except sqlite3.IntegrityError:
            remove_path(self.ws.project_dir(project_id))
            raise Conflict(f"a project named {name!r} exists already; choose another name") from None
        except BaseException:
            remove_path(self.ws.project_dir(project_id))
            raise
        logger.info("created project %s (%s)", project_id, name)
        return self.get(project_id)

    def update(self, project_id: str, *, name: str | None = None, labels: list[dict[str, Any]] | None = None,
               settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """Rename, change labels or settings. Labels still used by a case cannot be removed (409)."""
        row = self.row(project_id)
        new_labels = _normalise_labels(labels) if labels is not None else row["labels"]
        try:
            with self.db.transaction() as conn:
                if labels is not None:
                    values = {item["value"] for item in new_labels}
                    for case in conn.execute(
                        "SELECT name, label_values FROM cases WHERE project_id = ? AND label_values IS NOT NULL",
                        (project_id,),
                    ).fetchall():
                        missing = sorted(set(json.loads(case["label_values"])) - values)
                        if missing:
                            raise Conflict(
                                f"labels: values {missing} are used by case {case['name']!r}; keep them, or delete "
                                "or re-upload the cases that use them first"
                            )
                conn.execute(
                    "UPDATE projects SET name = ?, labels = ?, settings = ?, updated = ? WHERE id = ?",
                    (name.strip() if name is not None else row["name"], json.dumps(new_labels),
                     json.dumps(settings if settings is not None else row["settings"]), time.time(), project_id),
                )
                if labels is not None:
                    atomic_write_json(self.ws.dataset_dir(project_id) / "labels.json", _labels_json(new_labels))
        except sqlite3.IntegrityError:
            raise Conflict(f"a project named {name!r} exists already; choose another name") from None
        return self.get(project_id)

    def delete(self, project_id: str) -> None:
        """Delete the project, its cases, jobs and models; 409 while one of its jobs is active."""
        self.row(project_id)
        with self.db.transaction() as conn:
            active = conn.execute(
                f"SELECT id FROM jobs WHERE project_id = ? AND state IN ({','.join('?' * len(ACTIVE_STATES))})",
                (project_id, *ACTIVE_STATES),
            ).fetchall()
            if active:
                raise Conflict(
                    f"the project has active jobs ({', '.join(r['id'] for r in active)}); cancel them first"
                )
            jobs = [r["id"] for r in conn.execute("SELECT id FROM jobs WHERE project_id = ?", (project_id,))]
            conn.execute("DELETE FROM projects WHERE id = ?", (project_id,))
        for job_id in jobs:
            remove_path(self.ws.job_dir(job_id))
        remove_path(self.ws.project_dir(project_id))
        logger.info("deleted project %s", project_id)

    # -- start-up -----------------------------------------------------------------------------
    def remove_orphans(self) -> int:
        """Delete files an interrupted write left without a database row; returns how many."""
        removed = 0
        projects = {r["id"] for r in self.db.query("SELECT id FROM projects")}
        stored = {r["f"] for r in self.db.query(
            "SELECT image_file AS f FROM cases UNION SELECT label_file FROM cases WHERE label_file IS NOT NULL")}
        for folder in self.ws.projects_dir.iterdir():
            if folder.name not in projects:
                remove_path(folder)
                removed += 1
                continue
            dataset = folder / "dataset"
            for sub in ("images", "labels"):
                for path in (dataset / sub).glob("*") if (dataset / sub).is_dir() else ():
                    if self.ws.relative(path) not in stored:
                        remove_path(path)
                        removed += 1
        jobs = {r["id"] for r in self.db.query("SELECT id FROM jobs")}
        for folder in self.ws.jobs_dir.iterdir():
            if folder.name not in jobs:
                remove_path(folder)
                removed += 1
        if removed:
            logger.warning("removed %d files or folders left by interrupted writes", removed)
        return removed
