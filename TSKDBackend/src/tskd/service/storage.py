"""The workspace folder: where each kind of file lives, safe names, atomic file operations.

::

    WORKSPACE/
      tskd.db                     the state (SQLite, see tskd.service.db)
      server.lock                 held by the running server (one server per workspace)
      checkpoints/                foundation weights users place here (SAM / MedSAM)
      projects/<id>/dataset/      images/<case>.nii.gz, labels/<case>.nii.gz, labels.json
      jobs/<id>/                  dataset/ (snapshot), run/ (tskd train --out), settings.yaml,
                                  output.txt (the worker's console), cancel, exit.json
      tmp/                        uploads being received and checked (emptied at start-up)

Names that come from clients (case names, file names) are checked against a short whitelist
before they touch a path; identifiers are generated here.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Any, TextIO

from tskd.atomic import write_json
from tskd.errors import TSKDError
from tskd.service.errors import BadRequest

__all__ = [
    "Workspace",
    "new_id",
    "is_id",
    "check_case_name",
    "CASE_NAME_PATTERN",
    "check_file_name",
    "atomic_write_json",
    "snapshot_tree",
    "zip_folder",
    "remove_path",
]

logger = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{12}$")
#: A case name, as /openapi.json states it (the path parameter and the upload's ``name`` field).
CASE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_CASE_NAME = re.compile(CASE_NAME_PATTERN.replace("$", r"\Z"))  # no trailing newline either
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+()-]{0,199}$")


def new_id() -> str:
    """A fresh 12-hex-digit identifier (projects, jobs, models)."""
    return uuid.uuid4().hex[:12]


def is_id(text: str) -> bool:
    """True when ``text`` has the shape of an identifier made by :func:`new_id`."""
    return bool(_ID.match(text or ""))


def check_case_name(name: str) -> str:
    """``name`` when it is a safe case name, else :class:`BadRequest` saying what is allowed."""
    if not isinstance(name, str) or not name:
        raise BadRequest("the case name is empty; send a 'name' such as 'patient_001'")
    # '..' inside a name ('a..b') is harmless: no separator can occur, and a name never starts with '.'
    if "/" in name or "\\" in name or name.startswith(("~", ".")) or os.path.isabs(name):
        raise BadRequest(
            f"case name {name!r} is not allowed: it must not contain '/' or '\\' or be a path; "
            "use letters, digits, '_', '-' and '.' (e.g. 'patient_001')"
        )
    if not _CASE_NAME.match(name):
        raise BadRequest(
            f"case name {name!r} is not allowed: use 1-64 letters, digits, '_', '-' and '.', starting with a "
            "letter or digit (e.g. 'patient_001')"
        )
    return name


def check_file_name(name: str | None, field: str) -> str:
    """The client's file name for form field ``field`` when safe, else :class:`BadRequest`.

    Only its ending is used (to know the format); it never becomes part of a stored path.
    """
    if not name:
        raise BadRequest(f"'{field}' has no file name; send it as a file with a name like 'case.nii.gz'")
    if "/" in name or "\\" in name or ".." in name or os.path.isabs(name) or "\x00" in name:
        raise BadRequest(
            f"file name {name!r} of '{field}' is not allowed: send the bare file name (no folders, no '..')"
        )
    if not _FILE_NAME.match(name):
        raise BadRequest(
            f"file name {name!r} of '{field}' has unsupported characters; use letters, digits, ' ', '_', '-', "
            "'+', '(', ')' and '.'"
        )
    return name


class Workspace:
    """Paths inside the workspace folder, created on first use.

    Args:
        root: the workspace folder (created when missing).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        for folder in (self.root, self.checkpoints_dir, self.projects_dir, self.jobs_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock_file: TextIO | None = None

    @property
    def db_path(self) -> Path:
        return self.root / "tskd.db"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def projects_dir(self) -> Path:
        return self.root / "projects"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def box_models_dir(self) -> Path:
        """Foundation weights exported as ONNX box models (``<name>-<sha256[:12]>/`` and its zip; made
        on first use by :class:`tskd.service.boxmodels.BoxModels`)."""
        return self.root / "box_models"

    def project_dir(self, project_id: str) -> Path:
        return self.projects_dir / _checked_id(project_id)

    def dataset_dir(self, project_id: str) -> Path:
        return self.project_dir(project_id) / "dataset"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / _checked_id(job_id)

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the workspace, with forward slashes (as stored in the database)."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def resolve(self, relative: str) -> Path:
        """The absolute path of a stored relative path; refuses anything that leaves the workspace."""
        path = (self.root / relative).resolve()
        if path != self.root and self.root not in path.parents:
            raise ValueError(f"stored path {relative!r} points outside the workspace")
        return path

    def new_tmp_dir(self, prefix: str) -> Path:
        """A fresh folder under ``tmp/`` (same file system as the data, so renames are atomic)."""
        path = self.tmp_dir / f"{prefix}-{uuid.uuid4().hex[:12]}"
        path.mkdir()
        return path

    def clean_tmp(self) -> int:
        """Remove what interrupted uploads left in ``tmp/``; returns the number of entries removed."""
        count = 0
        for entry in self.tmp_dir.iterdir():
            remove_path(entry)
            count += 1
        return count

    # -- one server per workspace -------------------------------------------------------------
    def acquire(self) -> None:
        """Hold ``server.lock`` while the server runs; a second server on the workspace is refused.

        Raises:
            TSKDError: another live process holds the lock.
        """
        path = self.root / "server.lock"
        handle = open(path, "a+", encoding="utf-8")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks, rely on the user
            self._lock_file = handle
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise TSKDError(
                f"{self.root}: another 'tskd serve' is using this workspace (pid {owner}); stop it or "
                "choose another --workspace"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _checked_id(identifier: str) -> str:
    if not is_id(identifier):
        raise ValueError(f"not an identifier: {identifier!r}")
    return identifier


def remove_path(path: Path) -> None:
    """Delete a file or folder tree; missing paths are fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename (:mod:`tskd.atomic`)."""
    return write_json(path, data, indent=1)


def snapshot_tree(source: str | Path, target: str | Path) -> int:
    """Copy the folder ``source`` to ``target`` with hard links (plain copies where links fail).

    Stored dataset files are never modified in place (replacements are renames), so a hard link
    is a frozen snapshot. Returns the number of files.
    """
    source, target = Path(source), Path(target)
    count = 0
    for folder, _, files in os.walk(source):
        out = target / Path(folder).relative_to(source)
        out.mkdir(parents=True, exist_ok=True)
        for name in files:
            if name.startswith("."):
                continue  # temporary files of an atomic write in progress
            src, dst = Path(folder) / name, out / name
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            count += 1
    return count


def zip_folder(folder: str | Path, target: str | Path, *, skip: tuple[str, ...] = (),
               compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Zip the files of ``folder`` (at the archive's root) into ``target``, atomically.

    Args:
        skip: names of entries at the top of ``folder`` left out (with everything inside them).
        compression: ``zipfile.ZIP_DEFLATED``, or ``ZIP_STORED`` for files that hardly compress
            (ONNX weights: deflating them costs seconds and saves a few per cent).
    """
    folder, target = Path(folder), Path(target)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=compression) as archive:
            for path in sorted(folder.rglob("*")):
                relative = path.relative_to(folder)
                if relative.parts[0] in skip:
                    continue
                if path.is_file() and not path.name.startswith("."):
                    archive.write(path, relative.as_posix())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
