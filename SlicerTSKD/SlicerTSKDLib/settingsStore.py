"""Application settings as the panels' logic sees them: the two calls of ``qt.QSettings`` it needs.

In Slicer the logic objects get a ``qt.QSettings()`` (kept by Qt across sessions); outside Slicer
(tests, scripts) they get a :class:`MemorySettings`, which has the same ``value`` / ``setValue``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = ["MemorySettings"]


class MemorySettings:
    """``value(key, default)`` and ``setValue(key, value)`` on a dictionary, as ``qt.QSettings`` has them."""

    def __init__(self, values: Optional[Dict[str, Any]] = None) -> None:
        self.values: Dict[str, Any] = dict(values or {})

    def value(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def setValue(self, key: str, value: Any) -> None:
        self.values[key] = value
