"""QProcessRunner against a recorded fake of the few Qt calls it makes (issue 14, item 1).

The fake follows what Qt and PythonQt do where it matters:

- ``QProcess.start`` of a missing program emits ``errorOccurred(FailedToStart)`` synchronously and
  then still uses the process (Qt 5.15 ``qprocess.cpp``: ``setErrorAndEmit`` is followed by more
  work on the same object).
- PythonQt deletes an unparented QObject made from Python as soon as its wrapper is freed
  (``PythonQtInstanceWrapper.cpp``, ``PythonQtInstanceWrapper_deleteObject``: ``if (force ||
  self->_ownedByPythonQt) { if (force || !self->_obj->parent()) delete self->_obj; }``). The fake
  records its "C++ object" as deleted when its wrapper is garbage-collected.
- ``QTimer.singleShot(0, f)`` runs ``f`` later, from the event loop (here: :func:`runEventLoop`).
"""

from __future__ import annotations

import gc
import sys
import types
from typing import Any, Callable, List

import pytest

from SlicerTSKDLib.processRunner import EXITED, FAILED_TO_START, QProcessRunner
from SlicerTSKDLib.install.stepSequence import SUCCEEDED, StepSequence
from SlicerTSKDLib.install.environment import Step

EVENTS: List[Callable[[], None]] = []
LOG: List[str] = []


class FakeQProcess:
    MergedChannels = 1
    FailedToStart = 0
    Crashed = 1
    NormalExit = 0
    CrashExit = 1
    alive = 0  # "C++ objects" not deleted yet
    serial = 0

    def __init__(self) -> None:
        FakeQProcess.serial += 1
        self.name = "p{}".format(FakeQProcess.serial)
        self.slots = {}
        self.insideOwnCode = False
        self.deleted = False
        self._program = ""
        FakeQProcess.alive += 1

    def __del__(self) -> None:  # PythonQt: wrapper freed -> unparented C++ object deleted
        if self.insideOwnCode:
            LOG.append("USE-AFTER-FREE " + self.name)
        LOG.append("deleted " + self.name)
        FakeQProcess.alive -= 1

    def setProcessChannelMode(self, mode: int) -> None:
        pass

    def setProcessEnvironment(self, environment: Any) -> None:
        pass

    def setWorkingDirectory(self, folder: str) -> None:
        pass

    def connect(self, signature: str, slot: Callable) -> None:
        self.slots[signature] = slot

    def program(self) -> str:
        return self._program

    def errorString(self) -> str:
        return "No such file or directory"

    def processId(self) -> int:
        return 0

    def deleteLater(self) -> None:
        LOG.append("deleteLater " + self.name)

    def start(self, program: str, arguments: List[str]) -> None:
        self._program = program
        LOG.append("start {} {}".format(self.name, program))
        self.insideOwnCode = True
        if program == "missing":
            self.slots["errorOccurred(QProcess::ProcessError)"](FakeQProcess.FailedToStart)
            # qprocess.cpp goes on using `this` after the emission (startupNotification, cleanup)
            gc.collect()
            if sys.getrefcount(self) <= 2:  # only this frame holds it: PythonQt would have deleted it
                LOG.append("USE-AFTER-FREE " + self.name)
        else:
            EVENTS.append(lambda: self._exit(0))
        self.insideOwnCode = False

    def _exit(self, code: int) -> None:
        self.insideOwnCode = True
        self.slots["finished(int,QProcess::ExitStatus)"](code, FakeQProcess.NormalExit)
        self.insideOwnCode = False

    def readAllStandardOutput(self) -> bytes:
        return b""


class FakeQProcessEnvironment:
    def insert(self, name: str, value: str) -> None:
        pass


class FakeQTimer:
    @staticmethod
    def singleShot(msec: int, function: Callable[[], None]) -> None:
        LOG.append("singleShot {}".format(msec))
        EVENTS.append(function)


def runEventLoop() -> None:
    while EVENTS:
        EVENTS.pop(0)()
        gc.collect()


@pytest.fixture
def fakeQt(monkeypatch):
    module = types.ModuleType("qt")
    module.QProcess = FakeQProcess
    module.QProcessEnvironment = FakeQProcessEnvironment
    module.QTimer = FakeQTimer
    monkeypatch.setitem(sys.modules, "qt", module)
    EVENTS.clear()
    LOG.clear()
    yield module
    EVENTS.clear()


class TwoCandidates(StepSequence):
    """Like environmentSetup: the first candidate cannot start, the next one is tried from the slot."""

    def _begin(self) -> None:
        self._run(Step("first", "first candidate", ("missing",)))

    def _stepFinished(self, step, exitCode, output):
        if step.key == "first":
            assert exitCode == -1 and "Could not start missing" in output
            self._run(Step("second", "second candidate", ("python",)))
        else:
            self._finish(SUCCEEDED, "")


def test_failed_start_is_reported_after_qt_returns_and_the_retired_process_outlives_its_signals(fakeQt, tmp_path):
    runner = QProcessRunner()
    sequence = TwoCandidates(runner, {}, str(tmp_path), str(tmp_path / "log.txt"))
    results = []
    sequence.finished.connect(lambda ok, message: results.append(ok))
    sequence.start()
    # nothing was reported from inside errorOccurred: the next step waits for the event loop
    assert [line for line in LOG if line.startswith("start")] == ["start p1 missing"]
    assert runner.isRunning() is False and results == []
    runEventLoop()
    assert results == [True]
    assert [line for line in LOG if line.startswith("start")] == ["start p1 missing", "start p2 python"]
    assert not [line for line in LOG if "USE-AFTER-FREE" in line], LOG
    # the first process was released from a timer, after the second had started, and was deleted
    assert LOG.index("deleted p1") > LOG.index("start p2 python")
    assert runner._retired == []


def test_finished_after_a_normal_exit_still_arrives_once(fakeQt):
    runner = QProcessRunner()
    seen = []
    runner.finished.connect(lambda code, status: seen.append((code, status)))
    runner.start(["python", "-c", "pass"], {})
    runEventLoop()
    assert seen == [(0, EXITED)]
    runner.start(["missing"], {})
    assert seen == [(0, EXITED)]  # not yet: Qt is still inside start()
    runEventLoop()
    assert seen == [(0, EXITED), (-1, FAILED_TO_START)]
    assert "Could not start missing: No such file or directory" in runner.readOutput()
    assert not [line for line in LOG if "USE-AFTER-FREE" in line], LOG
