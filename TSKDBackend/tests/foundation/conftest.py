"""Fixtures of the foundation-weights tests (see :mod:`tests.foundation.loopback`): tiny SAM files, a
loopback HTTP server, a test catalog.

No test here reaches the internet: every ``urlopen`` is checked to go to 127.0.0.1, and the package
catalog's URLs are only read.
"""

from __future__ import annotations

import pytest

from tests.foundation.loopback import (  # noqa: F401 - re-exported for the tests
    FileServer as Server,
    TinyFiles,
    catalog_data,
    guard_urlopen,
    make_tiny_files,
    patch_catalog,
    serve_files,
    wait_until,
)


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> TinyFiles:
    return make_tiny_files(tmp_path_factory.mktemp("tiny_sam"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Own TSKD_HOME, no mirror from the environment, and urlopen only to the loopback interface."""
    monkeypatch.setenv("TSKD_HOME", str(tmp_path / "tskd_home"))
    monkeypatch.delenv("TSKD_FOUNDATION_MIRROR", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    guard_urlopen(monkeypatch)


@pytest.fixture()
def server():
    with serve_files() as state:
        yield state


@pytest.fixture()
def test_catalog(monkeypatch, tiny_files):
    """The package catalog with one extra entry: the tiny official file 'published' at Meta's address."""
    return patch_catalog(monkeypatch, catalog_data(tiny_files))
