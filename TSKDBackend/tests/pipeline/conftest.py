"""Phantom datasets shared by the pipeline tests (made once per session)."""

from __future__ import annotations

import pytest

from tskd.data.phantom import write_phantom_dataset


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory):
    """8 labelled + 2 unlabelled 64x64x32 phantom volumes (3 foreground classes)."""
    return write_phantom_dataset(tmp_path_factory.mktemp("phantom") / "data", cases=8, seed=1, unlabelled=2)


@pytest.fixture(scope="session")
def two_rank_run(phantom_dataset, tmp_path_factory):
    """The one ``tskd train --nproc 2`` run, stopped and resumed, that several tests read (two_ranks.py)."""
    from tests.pipeline.two_ranks import run_two_ranks

    return run_two_ranks(phantom_dataset, tmp_path_factory.mktemp("two_ranks"))
