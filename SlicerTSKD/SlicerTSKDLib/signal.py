"""A minimal signal/slot object, so logic classes can report events without importing Qt.

Qt signals declared from Python are not reliable in Slicer's PythonQt, and logic that depends on
Qt cannot be tested outside Slicer. Logic classes therefore expose ``Signal`` attributes; widgets
connect their slots to them exactly as they would to a Qt signal.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

__all__ = ["Signal"]


class Signal:
    """A list of callables invoked, in connection order, by :meth:`emit`.

    Args:
        *argumentNames: names of the emitted arguments, for documentation and ``repr`` only.

    Example::

        progress = Signal("fraction", "label")
        connectionId = progress.connect(lambda fraction, label: print(fraction, label))
        progress.emit(0.5, "Installing PyTorch")
        progress.disconnect(connectionId)
    """

    def __init__(self, *argumentNames: str) -> None:
        self._argumentNames = tuple(argumentNames)
        self._slots: Dict[int, Callable[..., Any]] = {}
        self._nextId = 0
        self._blocked = False

    def __repr__(self) -> str:
        return "Signal({}) with {} slot(s)".format(", ".join(self._argumentNames), len(self._slots))

    def connect(self, slot: Callable[..., Any]) -> int:
        """Connect ``slot``; returns an id for :meth:`disconnect`.

        Raises:
            ValueError: when ``slot`` is not callable.
        """
        if not callable(slot):
            raise ValueError("Signal.connect needs a callable, got {!r}".format(slot))
        connectionId = self._nextId
        self._nextId += 1
        self._slots[connectionId] = slot
        return connectionId

    def disconnect(self, connectionId: int) -> bool:
        """Remove one connection; returns False when the id was not connected."""
        return self._slots.pop(connectionId, None) is not None

    def disconnectAll(self) -> None:
        """Remove every connection."""
        self._slots.clear()

    def blockSignals(self, blocked: bool) -> None:
        """While blocked, :meth:`emit` does nothing."""
        self._blocked = bool(blocked)

    def emit(self, *args: Any) -> None:
        """Call every connected slot with ``args``.

        Slots connected or disconnected by a slot during emission take effect at the next emission.
        """
        if self._blocked:
            return
        for slot in list(self._slots.values()):
            slot(*args)

    __call__ = emit
