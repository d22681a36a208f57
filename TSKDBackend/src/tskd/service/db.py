"""The service's state in SQLite: projects, cases, jobs, models and foundation-weight downloads.

One database file inside the workspace (``tskd.db``), in WAL mode so that status polls (reads)
never wait for a writer, with foreign keys on and a ``schema_version`` table for migrations.
Every thread gets its own connection (uvicorn's worker threads, the scheduler thread); writes are
short ``BEGIN IMMEDIATE`` transactions. Everything bulky (images, runs, packages) lives in files
under the workspace; the rows hold their paths relative to it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from tskd.errors import TSKDError

__all__ = ["Database", "SCHEMA_VERSION", "JOB_STATES", "ACTIVE_STATES"]

logger = logging.getLogger(__name__)

#: Job states; ``queued`` and ``running`` are active, the others are final (resumable except ``done``).
JOB_STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE_STATES = ("queued", "running")

_MIGRATIONS: tuple[str, ...] = (
    # version 1
    f"""
    CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        labels TEXT NOT NULL,
        settings TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE cases (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        image_file TEXT NOT NULL,
        label_file TEXT,
        source_format TEXT NOT NULL,
        geometry TEXT NOT NULL,
        pixel_type TEXT NOT NULL,
        label_values TEXT,
        image_bytes INTEGER NOT NULL,
        label_bytes INTEGER,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (project_id, name)
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        state TEXT NOT NULL CHECK (state IN ({", ".join(repr(s) for s in JOB_STATES)})),
        preset TEXT NOT NULL,
        settings TEXT NOT NULL,
        base TEXT,
        job_dir TEXT NOT NULL,
        cases INTEGER NOT NULL,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        pid INTEGER,
        pid_started REAL,
        exit_code INTEGER,
        error TEXT,
        cancel_requested REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        slot INTEGER
    );
    CREATE INDEX jobs_by_state ON jobs(state, created);
    CREATE INDEX jobs_by_project ON jobs(project_id, created);
    CREATE TABLE models (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        job_id TEXT NOT NULL UNIQUE REFERENCES jobs(id) ON DELETE CASCADE,
        package_dir TEXT NOT NULL,
        metrics TEXT NOT NULL,
        metadata TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX models_by_project ON models(project_id, created);
    """,
    # version 2: the foundation model a job used, and server-side downloads of foundation weights
    """
    ALTER TABLE jobs ADD COLUMN base_sha256 TEXT;
    ALTER TABLE jobs ADD COLUMN base_path TEXT;
    CREATE TABLE fetches (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        error_status INTEGER,
        cancel_requested REAL
    );
    """,
    # version 3: a job that updates the model of an earlier job of its project (tskd train --update-from)
    """
    ALTER TABLE jobs ADD COLUMN update_from TEXT;
    """,
)

#: The schema version this code writes.
SCHEMA_VERSION = len(_MIGRATIONS)


class Database:
    """Thread-safe access to the workspace's SQLite file.

    Args:
        path: the database file (created with the current schema when missing).
        busy_timeout_ms: how long a writer waits for another writer before failing.

    Raises:
        TSKDError: the file was written by a newer tskd (unknown schema version) or is not a database.
    """

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._migrate()

    # -- connections --------------------------------------------------------------------------
    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("the database is closed")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout_ms / 1000)
            conn.row_factory = sqlite3.Row
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise TSKDError(
                    f"{self.path}: is not a tskd database ({exc}); point --workspace at another folder"
                ) from None
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection (at shutdown, when no request is in flight)."""
        with self._lock:
            self._closed = True
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover - closing twice or from a dead thread
                    pass
            self._all.clear()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on success, rolled back on error."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- reading ------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """All rows of a SELECT as plain dicts."""
        return [dict(row) for row in self.connection().execute(sql, params).fetchall()]

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """The first row of a SELECT as a dict, or None."""
        row = self.connection().execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement in its own transaction; returns the number of rows changed."""
        with self.transaction() as conn:
            return conn.execute(sql, params).rowcount

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``"ok"`` when the file is sound)."""
        return str(self.connection().execute("PRAGMA integrity_check").fetchone()[0])

    # -- schema -------------------------------------------------------------------------------
    def schema_version(self) -> int:
        row = self.connection().execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied REAL NOT NULL)")
            current = int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
            if current > SCHEMA_VERSION:
                raise TSKDError(
                    f"{self.path}: the workspace was written by a newer tskd (database schema {current}, this "
                    f"version knows up to {SCHEMA_VERSION}); upgrade tskd or use another workspace"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                logger.info("database %s: applying schema version %d", self.path, version)
                for statement in _MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version, applied) VALUES (?, julianday('now'))", (version,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
