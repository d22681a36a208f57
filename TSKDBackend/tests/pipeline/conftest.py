"""Phantom datasets shared by the pipeline tests (made once per session)."""

from __future__ import annotations

import pytest

from tskd.data.phantom import write_phantom_dataset


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory):
    """8 labelled + 2 unlabelled 64x64x32 phantom volumes (3 foreground classes)."""
    return write_phantom_dataset(tmp_path_factory.mktemp("phantom") / "data", cases=8, seed=1, unlabelled=2)
