"""Package files that name their public objects without importing them (PEP 562).

``tskd.engine``, ``tskd.teacher``, ``tskd.student`` and ``tskd.synthesis`` export their main
classes at package level (``from tskd.engine import Trainer``), but importing a package must not
import torch: the configs in those packages (``tskd.engine.config``...) are read by the service,
which validates a job's settings without loading any model code. So each package file lists
which submodule holds which name, and a name's submodule is imported when the name is first used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: dict[str, list[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for the package ``package`` whose globals are ``namespace``.

    Args:
        package: the package's ``__name__``.
        namespace: its ``globals()``; a name is stored there once imported.
        exports: submodule name (relative to ``package``) -> the names it exports.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__, list(where)
