"""Running one child process at a time without blocking the caller.

:class:`ProcessRunner` is the interface the set-up logic drives: ``start(cmd, env, cwd)``, then
``outputReady`` fires whenever output is waiting (read it with :meth:`ProcessRunner.readOutput`)
and ``finished(exitCode, status)`` fires once when the process ends. Two implementations:

- :class:`QProcessRunner` on ``qt.QProcess``, for Slicer: events arrive through Qt's event loop,
  so the GUI never waits.
- :class:`SubprocessRunner` on ``subprocess.Popen`` with a reader thread, for tests and headless
  use: events are queued by the thread and delivered on the caller's thread by
  :meth:`SubprocessRunner.processEvents`, so slots never run concurrently.

Both take the child's environment as an explicit mapping (in Slicer: the start-up environment,
without Slicer's own Python variables); neither touches ``os.environ``. Both merge stderr into
stdout and :meth:`ProcessRunner.kill` ends the whole process tree (pip starts build
sub-processes), not only the direct child.
"""

from __future__ import annotations

import abc
import codecs
import logging
import queue
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .processTree import WINDOWS_NEW_GROUP, WINDOWS_NO_WINDOW, killProcessTree
from .signal import Signal

__all__ = [
    "EXITED",
    "CRASHED",
    "KILLED",
    "FAILED_TO_START",
    "ProcessRunner",
    "SubprocessRunner",
    "QProcessRunner",
]

logger = logging.getLogger(__name__)

#: ``finished`` status values.
EXITED = "exited"  # the process ended by itself; exitCode is its exit status
CRASHED = "crashed"  # ended by a signal or crash the runner did not send
KILLED = "killed"  # ended by ProcessRunner.kill()
FAILED_TO_START = "failedToStart"  # the program could not be started (exitCode is -1)


class ProcessRunner(abc.ABC):
    """Interface: runs one child process at a time and reports through signals.

    Signals:
        outputReady(): output is waiting; call :meth:`readOutput`.
        finished(exitCode: int, status: str): the process ended; ``status`` is one of
            :data:`EXITED`, :data:`CRASHED`, :data:`KILLED`, :data:`FAILED_TO_START`.
            Output still unread when ``finished`` fires can be read in the slot.
    """

    def __init__(self) -> None:
        self.outputReady = Signal()
        self.finished = Signal("exitCode", "status")

    @abc.abstractmethod
    def start(self, cmd: Sequence[str], env: Mapping[str, str], cwd: Optional[str] = None,
              stdinPipe: bool = False) -> None:
        """Start ``cmd`` (program and arguments, no shell) with exactly the environment ``env``.

        ``stdinPipe``: the child's stdin is a pipe from this process that stays open while the child
        runs, so the child reads end-of-file when this process dies (the OS closes the pipe): the local
        server's ``--exit-with-parent`` (issue 32, item 8). Otherwise stdin is empty (``SubprocessRunner``)
        or Qt's managed pipe (``QProcessRunner``: ``QProcess::ManagedInputChannel``, Qt's default).

        Raises:
            ValueError: when ``cmd`` is empty.
            RuntimeError: when a process is still running.
        """

    @abc.abstractmethod
    def readOutput(self) -> str:
        """Return the output (stdout and stderr merged, decoded as UTF-8) received since the last call."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Kill the running process and all its descendants; ``finished`` follows with :data:`KILLED`."""

    def terminate(self) -> None:
        """Ask the process (only the direct child) to end: SIGTERM on POSIX, so a server can shut down
        cleanly and leave its own children (e.g. training workers) running. ``finished`` follows with
        :data:`KILLED`. Where a polite request is impossible (Windows) this is :meth:`killDirectChild`:
        never the whole tree, whose training workers must outlive the server."""
        self.killDirectChild()

    def killDirectChild(self) -> None:
        """Kill only the direct child (SIGKILL on POSIX, TerminateProcess on Windows), never its
        descendants: a server's workers (their own session / process group) keep running.
        ``finished`` follows with :data:`KILLED`. Default: :meth:`kill` (runners without a tree)."""
        self.kill()

    @abc.abstractmethod
    def isRunning(self) -> bool:
        """True from :meth:`start` until ``finished`` has been emitted."""

    @abc.abstractmethod
    def processId(self) -> Optional[int]:
        """Operating-system id of the current (or last) child process, None before the first start."""


def _checkCommand(cmd: Sequence[str]) -> List[str]:
    if isinstance(cmd, str) or not cmd or not all(isinstance(part, str) for part in cmd):
        raise ValueError("cmd must be a non-empty list of strings (program, then arguments), got {!r}".format(cmd))
    return list(cmd)


class SubprocessRunner(ProcessRunner):
    """:class:`ProcessRunner` on ``subprocess.Popen``; deliver its events with :meth:`processEvents`.

    A reader thread collects the child's output; :meth:`processEvents` (called by the owner's loop,
    e.g. a test or a command-line tool) emits ``outputReady`` and ``finished`` on the calling thread.
    On POSIX the child starts a new session, so its whole process group can be killed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._events: "queue.Queue[tuple]" = queue.Queue()
        self._lock = threading.Lock()
        self._chunks: List[str] = []
        self._process: Optional[subprocess.Popen] = None
        self._generation = 0
        self._running = False
        self._killed = False

    def start(self, cmd: Sequence[str], env: Mapping[str, str], cwd: Optional[str] = None,
              stdinPipe: bool = False) -> None:
        command = _checkCommand(cmd)
        if self._running:
            raise RuntimeError("SubprocessRunner: a process is still running; kill it or wait for 'finished'")
        self._generation += 1
        generation = self._generation
        self._running = True
        self._killed = False
        with self._lock:
            self._chunks = []
        options: Dict[str, object] = {}
        if sys.platform == "win32":
            options["creationflags"] = WINDOWS_NO_WINDOW | WINDOWS_NEW_GROUP
        else:
            options["start_new_session"] = True
        try:
            process = subprocess.Popen(
                command,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.PIPE if stdinPipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                bufsize=0,
                **options,
            )
        except OSError as exc:
            self._process = None
            self._appendOutput("Could not start {}: {}\n".format(command[0], exc))
            self._events.put(("output", generation))
            self._events.put(("finished", generation, -1, FAILED_TO_START))
            return
        self._process = process
        logger.debug("started %s (pid %s)", command, process.pid)
        thread = threading.Thread(
            target=self._readUntilEnd, args=(process, generation), name="SubprocessRunner-reader", daemon=True
        )
        thread.start()

    def _appendOutput(self, text: str) -> None:
        with self._lock:
            self._chunks.append(text)

    def _readUntilEnd(self, process: subprocess.Popen, generation: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stream = process.stdout
        while True:
            try:
                data = stream.read(65536)
            except (OSError, ValueError):
                data = b""
            if not data:
                break
            self._appendOutput(decoder.decode(data))
            self._events.put(("output", generation))
        tail = decoder.decode(b"", final=True)
        if tail:
            self._appendOutput(tail)
            self._events.put(("output", generation))
        returnCode = process.wait()
        stream.close()
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        if self._killed:
            status = KILLED
        elif returnCode < 0:
            status = CRASHED
        else:
            status = EXITED
        self._events.put(("finished", generation, returnCode, status))

    def processEvents(self, timeout: float = 0.0) -> bool:
        """Emit the queued events on this thread, waiting up to ``timeout`` seconds for the first one.

        Returns:
            True when at least one event was emitted.
        """
        try:
            event = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
        except queue.Empty:
            return False
        while True:
            self._dispatch(event)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return True

    def _dispatch(self, event: tuple) -> None:
        if event[1] != self._generation:
            return  # left over from an earlier process
        if event[0] == "output":
            with self._lock:
                pending = bool(self._chunks)
            if pending:
                self.outputReady.emit()
        else:
            _, _, exitCode, status = event
            self._running = False
            self.finished.emit(exitCode, status)

    def waitUntil(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Process events until ``predicate()`` is true or ``timeout`` seconds have passed.

        Returns:
            The last value of ``predicate()``.
        """
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bool(predicate())
            self.processEvents(timeout=min(0.1, remaining))
        return True

    def readOutput(self) -> str:
        with self._lock:
            text = "".join(self._chunks)
            self._chunks = []
        return text

    def kill(self) -> None:
        process = self._process
        if not self._running or process is None or process.poll() is not None:
            return
        self._killed = True
        killProcessTree(process.pid, killGroup=(sys.platform != "win32"))

    def terminate(self) -> None:
        process = self._process
        if sys.platform == "win32":
            self.killDirectChild()  # no SIGTERM on Windows; taskkill /T would take the workers too
            return
        if not self._running or process is None or process.poll() is not None:
            return
        self._killed = True
        process.terminate()

    def killDirectChild(self) -> None:
        process = self._process
        if not self._running or process is None or process.poll() is not None:
            return
        self._killed = True
        process.kill()  # the pid only (not its group, not its tree)

    def isRunning(self) -> bool:
        return self._running

    def processId(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None


class QProcessRunner(ProcessRunner):
    """:class:`ProcessRunner` on ``qt.QProcess`` (Slicer): readyRead/finished signals, never waits."""

    def __init__(self) -> None:
        super().__init__()
        self._process = None
        self._generation = 0
        self._running = False
        self._killed = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: List[str] = []
        # Retired QProcess objects, kept referenced until a zero-delay timer releases them: PythonQt
        # deletes an unparented QObject made from Python as soon as its wrapper is freed, and Qt may
        # still be inside that process's own code (e.g. after emitting errorOccurred).
        self._retired: List[Any] = []

    def start(self, cmd: Sequence[str], env: Mapping[str, str], cwd: Optional[str] = None,
              stdinPipe: bool = False) -> None:
        import qt

        # stdin: QProcess's default ManagedInputChannel is a pipe Slicer never closes while the child runs,
        # so ``stdinPipe`` needs nothing more here (the OS closes it when Slicer dies)
        command = _checkCommand(cmd)
        if self._running:
            raise RuntimeError("QProcessRunner: a process is still running; kill it or wait for 'finished'")
        self._generation += 1
        generation = self._generation
        self._running = True
        self._killed = False
        self._pending = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if self._process is not None:
            self._retire(self._process)
        process = qt.QProcess()
        process.setProcessChannelMode(qt.QProcess.MergedChannels)
        environment = qt.QProcessEnvironment()
        for name, value in env.items():
            environment.insert(str(name), str(value))
        process.setProcessEnvironment(environment)
        if cwd:
            process.setWorkingDirectory(cwd)
        # lambdas with the signals' exact arguments: PythonQt matches a slot by its argument count
        process.connect("readyReadStandardOutput()", lambda: self._onReadyRead(generation))
        process.connect("finished(int,QProcess::ExitStatus)", lambda code, status: self._onFinished(generation, code, status))
        process.connect("errorOccurred(QProcess::ProcessError)", lambda error: self._onError(generation, error))
        self._process = process
        logger.debug("starting %s", command)
        process.start(command[0], command[1:])

    def _retire(self, process: Any) -> None:
        """Keep ``process`` alive until control is back in the event loop, then let it go."""
        import qt

        self._retired.append(process)
        qt.QTimer.singleShot(0, self._releaseRetired)

    def _releaseRetired(self) -> None:
        retired, self._retired = self._retired, []
        for process in retired:
            process.deleteLater()  # deleted by Qt's event loop, outside any of its signals

    def _readProcess(self) -> None:
        if self._process is None:
            return
        data = self._process.readAllStandardOutput()
        raw = data.data() if hasattr(data, "data") else data
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="replace")
        if raw:
            self._pending.append(self._decoder.decode(bytes(raw)))

    def _onReadyRead(self, generation: int) -> None:
        if generation != self._generation:
            return
        self._readProcess()
        if self._pending:
            self.outputReady.emit()

    def _onFinished(self, generation: int, exitCode: int, exitStatus: object = None) -> None:
        if generation != self._generation or not self._running:
            return
        import qt

        self._readProcess()
        self._running = False
        if self._killed:
            status = KILLED
        elif exitStatus == qt.QProcess.CrashExit:
            status = CRASHED
        else:
            status = EXITED
        self.finished.emit(int(exitCode), status)

    def _onError(self, generation: int, error: object) -> None:
        import qt

        if generation != self._generation or not self._running or error != qt.QProcess.FailedToStart:
            return  # other errors are followed by 'finished'
        program = self._process.program() if self._process is not None else "?"
        self._pending.append("Could not start {}: {}\n".format(program, self._process.errorString()))
        self._running = False
        # Report on a zero-delay timer, not from inside Qt's errorOccurred emission: a slot of
        # 'finished' may start the next command (StepSequence does), which retires this QProcess
        # while qprocess.cpp still uses it after the emission.
        qt.QTimer.singleShot(0, lambda: self._reportFailedStart(generation))

    def _reportFailedStart(self, generation: int) -> None:
        if generation != self._generation:
            return
        self.outputReady.emit()
        self.finished.emit(-1, FAILED_TO_START)

    def readOutput(self) -> str:
        text = "".join(self._pending)
        self._pending = []
        return text

    def kill(self) -> None:
        if not self._running or self._process is None:
            return
        self._killed = True
        pid = int(self._process.processId())
        if pid > 0:
            killProcessTree(pid)
        self._process.kill()

    def terminate(self) -> None:
        if not self._running or self._process is None:
            return
        if sys.platform == "win32":
            # QProcess::terminate posts WM_CLOSE, which a console program without a window ignores
            self.killDirectChild()
            return
        self._killed = True
        self._process.terminate()

    def killDirectChild(self) -> None:
        if not self._running or self._process is None:
            return
        self._killed = True
        self._process.kill()  # QProcess::kill: SIGKILL to the pid / TerminateProcess; not the tree

    def isRunning(self) -> bool:
        return self._running

    def processId(self) -> Optional[int]:
        if self._process is None:
            return None
        pid = int(self._process.processId())
        return pid if pid > 0 else None
