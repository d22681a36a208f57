"""The training methods the benchmark compares: TS-KD, its ablation and the paper's baselines.

Each method is a :class:`~tskd.pipeline.comparison.methods.base.Method` in :data:`METHODS`; it reuses the
pipeline's stages and the engine's training loop and ends with the export stage. See
``docs/benchmarks.md`` for what each one does and its training budget.
"""

from __future__ import annotations

from tskd.errors import ConfigError
from tskd.pipeline.comparison.methods.base import Method
from tskd.pipeline.comparison.methods.labelled_only import LABELLED_ONLY
from tskd.pipeline.comparison.methods.mae import MAE
from tskd.pipeline.comparison.methods.task_agnostic_kd import TASK_AGNOSTIC_KD
from tskd.pipeline.comparison.methods.tskd_methods import TSKD, TSKD_NO_SYNTH
from tskd.pipeline.comparison.methods.tskd_train import TSKD_TRAIN

__all__ = ["Method", "METHODS", "available_methods", "get_method", "parse_methods"]

#: Every method, in the order tables show them.
METHODS: dict[str, Method] = {m.name: m for m in (TSKD_TRAIN, TSKD, TSKD_NO_SYNTH, LABELLED_ONLY, TASK_AGNOSTIC_KD, MAE)}


def available_methods() -> list[str]:
    """Method names in table order."""
    return list(METHODS)


def get_method(name: str) -> Method:
    """The method called ``name``.

    Raises:
        ConfigError: no such method (the message lists them).
    """
    if name not in METHODS:
        raise ConfigError(f"unknown benchmark method '{name}'; available: {', '.join(METHODS)}")
    return METHODS[name]


def parse_methods(text: str) -> list[str]:
    """``"tskd,mae"`` -> ``["tskd", "mae"]``, checked, duplicates removed, in the order given.

    Raises:
        ConfigError: an unknown name, or none at all.
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--methods names no method; available: {', '.join(METHODS)}")
    for name in names:
        get_method(name)
    return list(dict.fromkeys(names))
