"""The SQLite state: schema versions, WAL, foreign keys, refusal of unknown schemas."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from tskd.errors import TSKDError
from tskd.service.db import SCHEMA_VERSION, Database


def test_new_database_has_the_current_schema(tmp_path):
    db = Database(tmp_path / "tskd.db")
    assert db.schema_version() == SCHEMA_VERSION
    conn = db.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = {r["name"] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"schema_version", "projects", "cases", "jobs", "models"} <= tables
    assert db.integrity_check() == "ok"
    db.close()
    again = Database(tmp_path / "tskd.db")  # opening again applies nothing
    assert again.query("SELECT version FROM schema_version") == [{"version": v} for v in range(1, SCHEMA_VERSION + 1)]
    again.close()


def test_deleting_a_project_cascades(tmp_path):
    db = Database(tmp_path / "tskd.db")
    with db.transaction() as conn:
        conn.execute("INSERT INTO projects VALUES ('p', 'name', '[]', '{}', 0, 0)")
        conn.execute("INSERT INTO cases (project_id, name, image_file, source_format, geometry, pixel_type, image_bytes, "
                     "created, updated) VALUES ('p', 'c', 'f', '.nii.gz', '{}', 'float32', 1, 0, 0)")
        conn.execute("INSERT INTO jobs (id, project_id, state, preset, settings, job_dir, cases, created) "
                     "VALUES ('j', 'p', 'done', 'tiny', '{}', 'jobs/j', 1, 0)")
        conn.execute("INSERT INTO models VALUES ('m', 'p', 'j', 'jobs/j/run/package', '{}', '{}', 0)")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO jobs (id, project_id, state, preset, settings, job_dir, cases, created) "
                   "VALUES ('k', 'p', 'bogus', 'tiny', '{}', 'jobs/k', 1, 0)")
    db.execute("DELETE FROM projects WHERE id = 'p'")
    assert [db.query(f"SELECT * FROM {t}") for t in ("cases", "jobs", "models")] == [[], [], []]
    db.close()


def test_a_failed_transaction_leaves_nothing(tmp_path):
    db = Database(tmp_path / "tskd.db")
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            conn.execute("INSERT INTO projects VALUES ('p', 'name', '[]', '{}', 0, 0)")
            raise RuntimeError("boom")
    assert db.query("SELECT * FROM projects") == []
    db.close()


def test_each_thread_has_its_own_connection(tmp_path):
    db = Database(tmp_path / "tskd.db")
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(id(db.connection()))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen + [id(db.connection())])) == 5
    db.close()


def test_newer_schema_and_foreign_files_are_refused(tmp_path):
    db = Database(tmp_path / "tskd.db")
    db.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(TSKDError, match="written by a newer tskd"):
        Database(tmp_path / "tskd.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(TSKDError, match="is not a tskd database"):
        Database(junk)
