"""The cases of a project: uploaded, checked, stored in the project's dataset folder, listed.

A case is stored as ``dataset/images/<name>.nii.gz`` (and ``dataset/labels/<name>.nii.gz``) by
renaming checked files from the upload folder, inside the database transaction that records it,
so a case is either wholly there or not at all (files a crash leaves without a row are removed at
the next start, see :meth:`tskd.service.projects.Projects.remove_orphans`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from tskd.service.casefiles import STORED_SUFFIX, CheckedCase
from tskd.service.db import Database
from tskd.service.errors import Conflict, NotFound
from tskd.service.storage import Workspace, check_case_name, remove_path
from tskd.service.timeutil import iso

__all__ = ["Cases"]

logger = logging.getLogger(__name__)


class Cases:
    """Store, list, read and delete a project's cases.

    Args:
        db: the service database.
        workspace: the workspace folders.
    """

    def __init__(self, db: Database, workspace: Workspace) -> None:
        self.db = db
        self.ws = workspace

    def row(self, project_id: str, name: str) -> dict[str, Any]:
        """The case's row; 404 when the project has no such case."""
        check_case_name(name)
        row = self.db.query_one("SELECT * FROM cases WHERE project_id = ? AND name = ?", (project_id, name))
        if row is None:
            raise NotFound(f"the project has no case named {name!r}")
        return row

    def get(self, project_id: str, name: str) -> dict[str, Any]:
        return self._out(self.row(project_id, name))

    def list(self, project_id: str) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM cases WHERE project_id = ? ORDER BY name", (project_id,))
        return [self._out(row) for row in rows]

    def file(self, project_id: str, name: str, which: str) -> Path:
        """The stored image or label file of a case; 404 for a label of an unlabelled case."""
        row = self.row(project_id, name)
        relative = row["image_file"] if which == "image" else row["label_file"]
        if relative is None:
            raise NotFound(f"case {name!r} has no label")
        return self.ws.resolve(relative)

    def add(self, project_id: str, name: str, checked: CheckedCase, *, replace: bool = False) -> dict[str, Any]:
        """Move a checked case into the dataset and record it.

        Args:
            project_id: the project (must exist).
            name: the case name (already checked).
            checked: the files and facts from :func:`tskd.service.casefiles.check_case`.
            replace: replace an existing case of that name (else 409).
        """
        dataset = self.ws.dataset_dir(project_id)
        image_target = dataset / "images" / f"{name}{STORED_SUFFIX}"
        label_target = dataset / "labels" / f"{name}{STORED_SUFFIX}"
        now = time.time()
        image_bytes = checked.image_path.stat().st_size
        label_bytes = checked.label_path.stat().st_size if checked.label_path else None
        with self.db.transaction() as conn:
            old = conn.execute("SELECT created FROM cases WHERE project_id = ? AND name = ?",
                               (project_id, name)).fetchone()
            other = conn.execute("SELECT geometry FROM cases WHERE project_id = ? AND name != ? LIMIT 1",
                                 (project_id, name)).fetchone()
            if other is not None and len(json.loads(other["geometry"])["size"]) != checked.geometry.dimension:
                raise Conflict(f"case {name!r} is {checked.geometry.dimension}D but the project's other cases are not; "
                               "a project holds either 2D or 3D images")
            if old is not None and not replace:
                raise Conflict(f"the project has a case named {name!r} already; send replace=true to replace it")
            created = old["created"] if old is not None else now
            conn.execute("DELETE FROM cases WHERE project_id = ? AND name = ?", (project_id, name))
            conn.execute(
                "INSERT INTO cases (project_id, name, image_file, label_file, source_format, geometry, pixel_type, "
                "label_values, image_bytes, label_bytes, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    project_id, name, self.ws.relative(image_target),
                    self.ws.relative(label_target) if checked.label_path else None,
                    checked.source_format, json.dumps(checked.geometry.to_dict()), checked.pixel_type,
                    json.dumps(checked.label_values) if checked.label_values is not None else None,
                    image_bytes, label_bytes, created, now,
                ),
            )
            image_target.parent.mkdir(parents=True, exist_ok=True)
            label_target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(checked.image_path, image_target)
            if checked.label_path is not None:
                os.replace(checked.label_path, label_target)
            elif label_target.exists():
                label_target.unlink()  # a replaced case without a label loses its old label
        logger.info("project %s: %s case %s", project_id, "replaced" if old is not None else "added", name)
        return self.get(project_id, name)

    def delete(self, project_id: str, name: str) -> None:
        row = self.row(project_id, name)
        self.db.execute("DELETE FROM cases WHERE project_id = ? AND name = ?", (project_id, name))
        for relative in (row["image_file"], row["label_file"]):
            if relative:
                remove_path(self.ws.resolve(relative))

    @staticmethod
    def _out(row: dict[str, Any]) -> dict[str, Any]:
        geometry = json.loads(row["geometry"])
        return {
            "name": row["name"],
            "labelled": row["label_file"] is not None,
            "size": geometry["size"],
            "spacing": geometry["spacing"],
            "origin": geometry["origin"],
            "direction": geometry["direction"],
            "pixel_type": row["pixel_type"],
            "label_values": json.loads(row["label_values"]) if row["label_values"] else None,
            "source_format": row["source_format"],
            "image_bytes": row["image_bytes"],
            "label_bytes": row["label_bytes"],
            "created": iso(row["created"]),
            "updated": iso(row["updated"]),
        }
