"""The pure-Python signal used by the logic classes."""

from __future__ import annotations

import pytest

from SlicerTSKDLib.signal import Signal


def test_emit_calls_slots_in_order_and_disconnect_stops_them():
    calls = []
    signal = Signal("value")
    first = signal.connect(lambda v: calls.append(("a", v)))
    signal.connect(lambda v: calls.append(("b", v)))
    signal.emit(1)
    assert signal.disconnect(first) is True
    assert signal.disconnect(first) is False
    signal(2)
    assert calls == [("a", 1), ("b", 1), ("b", 2)]


def test_blocked_signal_and_disconnect_all():
    calls = []
    signal = Signal()
    signal.connect(lambda: calls.append(1))
    signal.blockSignals(True)
    signal.emit()
    signal.blockSignals(False)
    signal.emit()
    signal.disconnectAll()
    signal.emit()
    assert calls == [1]


def test_slot_may_disconnect_itself_during_emit():
    calls = []
    signal = Signal()
    ids = {}

    def once():
        calls.append("once")
        signal.disconnect(ids["once"])

    ids["once"] = signal.connect(once)
    signal.connect(lambda: calls.append("always"))
    signal.emit()
    signal.emit()
    assert calls == ["once", "always", "always"]


def test_connect_rejects_non_callable():
    with pytest.raises(ValueError, match="callable"):
        Signal().connect("not a function")
