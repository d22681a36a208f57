"""``tskd benchmark``: the paper's comparison of methods' accuracy on a user's dataset (see :mod:`.runner`).

Named ``comparison`` (not "benchmark") so that the word keeps one meaning in the tree: the
scripts in ``TSKDBackend/benchmarks/`` measure speed, memory and the GPU check; this package
trains several methods on the same labels and compares their test Dice. The command keeps its
user-facing name, ``tskd benchmark``.
"""

from __future__ import annotations

from tskd.pipeline.comparison.runner import DEFAULT_TEST_FRACTION, TimingSettings, run_benchmark

__all__ = ["run_benchmark", "TimingSettings", "DEFAULT_TEST_FRACTION"]
