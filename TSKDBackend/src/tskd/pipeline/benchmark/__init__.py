"""``tskd benchmark``: the paper's comparison on a user's dataset (see :mod:`.runner`)."""

from __future__ import annotations

from tskd.pipeline.benchmark.runner import DEFAULT_TEST_FRACTION, TimingSettings, run_benchmark

__all__ = ["run_benchmark", "TimingSettings", "DEFAULT_TEST_FRACTION"]
