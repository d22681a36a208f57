"""One error message, never a stack of modal boxes (issue 14, item 10)."""

from __future__ import annotations

import threading
import time

from SlicerTSKDLib.backend.client import TSKDConnectionError, TSKDClientError
from SlicerTSKDLib.session import SessionState, showError, userMessage


class ModalBox:
    """Records ``display`` calls like a modal box: ``whileOpen`` runs inside (Qt's nested event loop)."""

    def __init__(self) -> None:
        self.shown = []
        self.depth = self.maxDepth = 0
        self.whileOpen = None

    def __call__(self, text: str) -> None:
        self.depth += 1
        self.maxDepth = max(self.maxDepth, self.depth)
        self.shown.append(text)
        try:
            if self.whileOpen is not None:
                action, self.whileOpen = self.whileOpen, None
                action()
        finally:
            self.depth -= 1


def _fail(exc):
    def call():
        raise exc
    return call


def _waitFinished(session, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while session.tasks._finished.qsize() < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert session.tasks._finished.qsize() == count


def test_three_failures_of_a_project_change_make_one_box():
    session = SessionState()
    box = ModalBox()
    session.errors.display = box
    refused = TSKDConnectionError("cannot reach the backend at http://127.0.0.1:1: [Errno 111] Connection refused")
    for name in ("Listing cases", "Listing jobs", "Listing models"):
        session.submit(name, _fail(refused), onError=lambda exc: showError(exc, session))
    _waitFinished(session, 3)
    session.poll()
    assert box.shown == [userMessage(refused, "")] and box.maxDepth == 1
    session.shutdown()


def test_failures_during_an_open_box_wait_and_duplicates_are_dropped():
    session = SessionState()
    box = ModalBox()
    session.errors.display = box
    gate = threading.Event()
    session.submit("first", _fail(TSKDClientError(404, "project p1 does not exist")),
                   onError=lambda exc: showError(exc, session))
    for message in ("project p1 does not exist", "case c1 has no label"):
        session.submit("later", lambda m=message: gate.wait(10) and (_ for _ in ()).throw(TSKDClientError(422, m)),
                       onError=lambda exc: showError(exc, session))
    _waitFinished(session, 1)

    def nestedEventLoop():  # the box is open: results keep arriving through the poll timer
        gate.set()
        _waitFinished(session, 2)
        session.poll()
        assert box.shown == ["project p1 does not exist"]  # nothing stacked on the open box

    box.whileOpen = nestedEventLoop
    session.poll()
    assert box.maxDepth == 1
    assert box.shown == ["project p1 does not exist", "case c1 has no label"]
    session.shutdown()
