"""Fixtures of the export tests."""

from __future__ import annotations

import pytest

from tests.conftest import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Small models at 64x64 run faster on one thread than on two contended ones; restored afterwards."""
    with one_torch_thread():
        yield
