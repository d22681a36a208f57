"""Shared test fixtures: where the real datasets are, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("TSKD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ``../shared/data``; skips the test with a clear reason when absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset '{name}' not found at {path} (set TSKD_SHARED_DATA to its parent folder)")
    return path
