"""A small recorded fake of the few Qt (and CTK) calls the Segment panel makes, for widget tests.

Widgets are plain attribute bags (``text``, ``enabled``, ``checked``, ``visible``, ``value``...),
``connect(signature, slot)`` records the slot, :meth:`FakeObject.trigger` calls it as Qt would.
``blockSignals`` is honoured by ``trigger``. Timers only record ``start``/``stop``.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable, Dict, List


class FakeObject:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.slots: Dict[str, List[Callable]] = {}
        self.blocked = False
        self.text = args[0] if args and isinstance(args[0], str) else ""
        self.enabled = True
        self.visible = True
        self.checked = False
        self.value = 0
        self.toolTip = ""
        self.wordWrap = False
        self.items: List[Any] = []
        self.currentIndex = -1
        self.active = False

    def connect(self, signature: str, slot: Callable) -> None:
        self.slots.setdefault(signature, []).append(slot)

    def trigger(self, signature: str, *args: Any) -> None:
        if not self.blocked:
            for slot in list(self.slots.get(signature, [])):
                slot(*args)

    def blockSignals(self, blocked: bool) -> bool:
        previous, self.blocked = self.blocked, blocked
        return previous

    # layouts
    def addWidget(self, *args: Any) -> None:
        pass

    def addRow(self, *args: Any) -> None:
        pass

    # combo box
    def addItem(self, text: str, data: Any = None) -> None:
        self.items.append((text, data))

    def clear(self) -> None:
        self.items, self.currentIndex = [], -1

    # progress bar
    def setRange(self, low: int, high: int) -> None:
        pass

    # timers
    def setSingleShot(self, value: bool) -> None:
        pass

    def setInterval(self, ms: int) -> None:
        pass

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


def installFakeQt(monkeypatch) -> None:
    """Put fake ``qt`` and ``ctk`` modules into ``sys.modules`` (for this test) and forget widget modules."""
    qt = types.ModuleType("qt")
    for name in ("QFormLayout", "QHBoxLayout", "QComboBox", "QPushButton", "QProgressBar", "QCheckBox", "QLabel",
                 "QTimer", "QWidget", "QLineEdit"):
        setattr(qt, name, type(name, (FakeObject,), {}))
    ctk = types.ModuleType("ctk")
    ctk.ctkCollapsibleButton = type("ctkCollapsibleButton", (FakeObject,), {})
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "ctk", ctk)
    for name in list(sys.modules):
        if name.endswith("Widget") and name.startswith("SlicerTSKDLib."):
            monkeypatch.delitem(sys.modules, name)
