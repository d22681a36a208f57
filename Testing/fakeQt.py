"""A small recorded fake of the few Qt (and CTK) calls the module's panels make, for widget tests.

Widgets are plain attribute bags (``text``, ``enabled``, ``checked``, ``visible``, ``value``...),
``connect(signature, slot)`` records the slot, :meth:`FakeObject.trigger` calls it as Qt would.
``blockSignals`` is honoured by ``trigger``. Timers only record ``start``/``stop``.

Where Qt emits a signal for a programmatic change, so does the fake: setting ``checked`` to a new
value emits ``toggled(bool)``, setting ``currentIndex`` to a new value emits
``currentIndexChanged(int)`` (adding the first item of a combo box makes it current, ``clear()``
makes the index -1; ``activated(int)`` is never emitted: only a user's choice sends it).

Modal dialogs (``QInputDialog.getText``, ``QMessageBox.question``, ``QFileDialog.getOpenFileName``)
answer from the class's ``replies`` list and record what they were asked in ``asked``.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable, Dict, List

_EMITTING = {"checked": "toggled(bool)", "currentIndex": "currentIndexChanged(int)"}


class FakeObject:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        object.__setattr__(self, "slots", {})
        self.blocked = False
        self.text = args[0] if args and isinstance(args[0], str) else ""
        self.enabled = True
        self.visible = True
        self.checked = False
        self.value = 0
        self.toolTip = ""
        self.wordWrap = False
        self.items: List[Any] = []
        self.itemTips: Dict[int, Any] = {}
        self.currentIndex = -1
        self.active = False
        self.rows: List[Any] = []  # form rows, or table rows ({column: item})
        self.selectedRow = -1
        self.plainText = ""
        self.format = ""
        self.maximum = 0

    def __setattr__(self, name: str, value: Any) -> None:
        signature = _EMITTING.get(name)
        previous = self.__dict__.get(name, value)
        object.__setattr__(self, name, value)
        if signature is not None and value != previous:
            self.trigger(signature, value)

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
        self.rows.append(args)

    def rowCount(self) -> int:
        return len(self.rows)

    def removeRow(self, index: int) -> None:
        del self.rows[index]

    def setContentsMargins(self, *args: Any) -> None:
        pass

    # combo box
    def addItem(self, text: str, data: Any = None) -> None:
        self.items.append((text, data))
        if self.currentIndex == -1:
            self.currentIndex = 0

    def addItems(self, texts: List[str]) -> None:
        for text in texts:
            self.addItem(text)

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def currentData(self) -> Any:
        return self.items[self.currentIndex][1] if 0 <= self.currentIndex < len(self.items) else None

    def itemData(self, index: int) -> Any:
        return self.items[index][1] if 0 <= index < len(self.items) else None

    def setItemData(self, index: int, value: Any, role: Any = None) -> None:
        self.itemTips[index] = value

    def setCurrentIndex(self, index: int) -> None:
        self.currentIndex = index

    def itemTexts(self) -> List[str]:
        return [text for text, _ in self.items]

    def clear(self) -> None:  # combo box, plain text edit
        self.items, self.itemTips, self.plainText = [], {}, ""
        self.currentIndex = -1

    # table
    def setColumnCount(self, count: int) -> None:
        pass

    def setHorizontalHeaderLabels(self, labels: List[str]) -> None:
        pass

    def horizontalHeader(self) -> "FakeObject":
        return FakeObject()

    def setStretchLastSection(self, value: bool) -> None:
        pass

    def setSelectionBehavior(self, value: Any) -> None:
        pass

    def setEditTriggers(self, value: Any) -> None:
        pass

    def setMinimumHeight(self, value: int) -> None:
        pass

    def setRowCount(self, count: int) -> None:
        self.rows = [{} for _ in range(count)]

    def setItem(self, row: int, column: int, item: Any) -> None:
        self.rows[row][column] = item

    def item(self, row: int, column: int) -> Any:
        return self.rows[row].get(column) if 0 <= row < len(self.rows) else None

    def currentRow(self) -> int:
        return self.selectedRow

    def tableTexts(self) -> List[List[str]]:
        return [[row[c].text() for c in sorted(row)] for row in self.rows]

    # labels, progress bars, text views
    def setTextInteractionFlags(self, flags: Any) -> None:
        pass

    def setRange(self, low: int, high: int) -> None:
        pass

    def setFormat(self, text: str) -> None:
        self.format = text

    def setPlainText(self, text: str) -> None:
        self.plainText = text

    def appendPlainText(self, text: str) -> None:
        self.plainText = self.plainText + ("\n" if self.plainText else "") + text

    def setMaximumBlockCount(self, count: int) -> None:
        pass

    def verticalScrollBar(self) -> "FakeObject":
        return FakeObject()

    def setValue(self, value: Any) -> None:
        self.value = value

    # timers
    def setSingleShot(self, value: bool) -> None:
        pass

    def setInterval(self, ms: int) -> None:
        pass

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


class QTableWidgetItem:
    """Not a QObject in Qt: ``text()`` is a method."""

    def __init__(self, text: str = "") -> None:
        self._text = text

    def text(self) -> str:
        return self._text


def _dialog(name: str, method: str, **constants: Any) -> type:
    """A dialog class whose static ``method`` answers from ``replies`` and records its arguments in ``asked``."""
    cls = type(name, (FakeObject,), dict(constants, replies=[], asked=[]))

    def ask(*args: Any) -> Any:
        cls.asked.append(args)
        assert cls.replies, "{}.{} was called with no reply prepared: {}".format(name, method, args)
        return cls.replies.pop(0)

    setattr(cls, method, staticmethod(ask))
    return cls


def installFakeQt(monkeypatch) -> None:
    """Put fake ``qt`` and ``ctk`` modules into ``sys.modules`` (for this test) and forget widget modules."""
    qt = types.ModuleType("qt")
    for name in ("QFormLayout", "QHBoxLayout", "QVBoxLayout", "QComboBox", "QPushButton", "QProgressBar", "QCheckBox",
                 "QRadioButton", "QLabel", "QTimer", "QWidget", "QTableWidget", "QPlainTextEdit"):
        setattr(qt, name, type(name, (FakeObject,), {}))
    qt.QLineEdit = type("QLineEdit", (FakeObject,), {"Normal": 0, "Password": 2})
    qt.QTableWidgetItem = QTableWidgetItem
    qt.QAbstractItemView = types.SimpleNamespace(SelectRows=1, NoEditTriggers=0)
    qt.Qt = types.SimpleNamespace(ToolTipRole=3, TextSelectableByMouse=1)
    qt.QInputDialog = _dialog("QInputDialog", "getText")
    qt.QMessageBox = _dialog("QMessageBox", "question", Yes=0x4000, No=0x10000)
    qt.QFileDialog = _dialog("QFileDialog", "getOpenFileName")
    ctk = types.ModuleType("ctk")
    ctk.ctkCollapsibleButton = type("ctkCollapsibleButton", (FakeObject,), {})
    ctk.ctkCollapsibleGroupBox = type("ctkCollapsibleGroupBox", (FakeObject,), {})
    ctk.ctkPathLineEdit = type("ctkPathLineEdit", (FakeObject,), {"Dirs": 1})
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "ctk", ctk)
    for name in list(sys.modules):
        if name.endswith("Widget") and name.startswith("SlicerTSKDLib."):
            monkeypatch.delitem(sys.modules, name)
            # ``from SlicerTSKDLib.train import xWidget`` would return the package's attribute, bound to the old fake
            parent, _, attribute = name.rpartition(".")
            package = sys.modules.get(parent)
            if package is not None and hasattr(package, attribute):
                monkeypatch.delattr(package, attribute)
