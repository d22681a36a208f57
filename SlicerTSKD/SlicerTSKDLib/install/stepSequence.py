"""Running :class:`~SlicerTSKDLib.install.environment.Step` commands one at a time, driven by events.

:class:`StepSequence` owns the plumbing every multi-command job needs: it starts a step through
a :class:`~SlicerTSKDLib.processRunner.ProcessRunner`, splits the output into lines for the log
view and a log file, estimates progress (pip lines for pip steps), handles cancel (kills the
process tree) and ends with one ``finished`` signal. What follows each step is decided by the
subclass in :meth:`StepSequence._stepFinished`, which may start the next step, end the sequence,
or raise :class:`~SlicerTSKDLib.install.environment.SetupError` to fail it. Nothing here waits.
"""

from __future__ import annotations

import datetime
import os
from typing import Callable, List, Mapping, Optional

from .environment import SetupError, Step, failureHint
from .pipProgress import PipProgress
from ..processRunner import KILLED, ProcessRunner
from ..signal import Signal

__all__ = ["StepSequence", "IDLE", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]

IDLE = "idle"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

_PRELUDE_SHARE = 0.05  # of the progress bar, for steps run before the plan is known
_OUTPUT_LIMIT = 2_000_000  # characters of one step's output kept for parsing and messages


class StepSequence:
    """Base class: runs steps through ``runner``; subclasses implement ``_begin`` and ``_stepFinished``.

    Args:
        runner: runs the commands; the sequence connects to its signals.
        environment: the child processes' environment (already cleaned by the caller).
        workingDir: the child processes' working folder; created on start.
        logPath: file every line is appended to (created on start).
        now: clock for the log's time stamps.

    Signals:
        progress(fraction: float, label: str): overall progress 0..1 and the current step's label.
        logMessage(text: str): one line of output or status.
        finished(succeeded: bool, message: str): the sequence ended; ``message`` explains failures.
    """

    def __init__(
        self,
        runner: ProcessRunner,
        environment: Mapping[str, str],
        workingDir: str,
        logPath: str,
        now: Callable[[], datetime.datetime] = datetime.datetime.now,
    ) -> None:
        self.runner = runner
        self.environment = dict(environment)
        self.workingDir = workingDir
        self.logPath = logPath
        self.now = now
        self.progress = Signal("fraction", "label")
        self.logMessage = Signal("text")
        self.finished = Signal("succeeded", "message")
        self.state = IDLE
        self.message = ""
        self.stepsRun: List[Step] = []
        self._log = None
        runner.outputReady.connect(self._onOutput)
        runner.finished.connect(self._onProcessFinished)
        self._resetRun()

    # ------------------------------------------------------------ interface
    def isRunning(self) -> bool:
        return self.state == RUNNING

    def start(self) -> None:
        """Start (or retry); returns at once. Does nothing while running."""
        if self.state == RUNNING:
            return
        self._resetRun()
        self.state = RUNNING
        self.message = ""
        self.stepsRun = []
        try:
            os.makedirs(self.workingDir, exist_ok=True)
            self._log = open(self.logPath, "a", encoding="utf-8")
            self._say("===== {} =====".format(self.now().isoformat(timespec="seconds")))
            self._begin()
        except SetupError as exc:
            self._finish(FAILED, str(exc))
        except OSError as exc:
            self._finish(FAILED, self._diskMessage(exc))

    def cancel(self) -> None:
        """Kill the running step's process tree; ``finished`` follows with a "cancelled" message."""
        if self.state != RUNNING:
            return
        self._cancelRequested = True
        if self.runner.isRunning():
            self.runner.kill()
        else:
            self._finish(CANCELLED, "Cancelled.")

    # ----------------------------------------------------- for subclasses
    def _begin(self) -> None:
        """Start the first step (or raise SetupError)."""
        raise SetupError("{} does not define its first step".format(type(self).__name__))

    def _stepFinished(self, step: Step, exitCode: int, output: str) -> None:
        """Decide what follows ``step`` (its whole ``output`` is given); raise SetupError to fail."""
        raise SetupError("{} does not handle step '{}'".format(type(self).__name__, step.key))

    def _resetRun(self) -> None:
        """Forget the previous run's state (subclasses extend it)."""
        self._cancelRequested = False
        self._step: Optional[Step] = None
        self._output: List[str] = []
        self._outputSize = 0
        self._lineRest = ""
        self._pip: Optional[PipProgress] = None
        self._plan: List[Step] = []
        self._planIndex = 0

    def _setPlan(self, steps: List[Step]) -> None:
        """Run ``steps`` from the first; progress is then shared between them by weight."""
        if not steps:
            raise SetupError("Nothing to run.")
        self._plan = list(steps)
        self._planIndex = 0
        self._run(self._plan[0])

    def _runNextPlanned(self) -> bool:
        """Run the plan's next step; False when the plan is done."""
        if self._planIndex + 1 >= len(self._plan):
            return False
        self._planIndex += 1
        self._run(self._plan[self._planIndex])
        return True

    def _run(self, step: Step) -> None:
        self._step = step
        self._output = []
        self._outputSize = 0
        self._lineRest = ""
        self._pip = PipProgress(step.expectedPackages) if step.expectedPackages else None
        self.stepsRun.append(step)
        self._say("--- {}".format(step.label))
        self._say("$ " + " ".join(step.command))
        self._reportProgress(0.0)
        environment = self.environment
        if step.extraEnvironment:
            environment = dict(environment)
            environment.update(dict(step.extraEnvironment))
        self.runner.start(list(step.command), environment, self.workingDir)

    def _say(self, text: str) -> None:
        if self._log is not None:
            self._log.write(text + "\n")
            self._log.flush()
        self.logMessage.emit(text)

    def _finish(self, state: str, message: str) -> None:
        self.state = state
        self.message = message
        self._step = None
        if message:
            self._say(message)
        if self._log is not None:
            self._log.close()
            self._log = None
        if state == SUCCEEDED:
            self.progress.emit(1.0, "Done")
        self.finished.emit(state == SUCCEEDED, message)

    def _failure(self, step: Step, exitCode: int, output: str, advice: str = "") -> SetupError:
        """The error for a failed step: what failed, what to do, where the log is, the last lines."""
        lines = [line for line in output.splitlines() if line.strip()][-15:]
        parts = ["'{}' failed (exit code {}).".format(step.label, exitCode)]
        hint = advice or failureHint(output)
        if hint:
            parts.append(hint)
        parts.append("The full log is in {}. Click Retry to try again.".format(self.logPath))
        if lines:
            parts.append("Last output:\n" + "\n".join(lines))
        return SetupError("\n".join(parts))

    def _diskMessage(self, exc: OSError) -> str:
        return "Could not write in '{}': {}. Free some disk space or choose another folder under Advanced, then click Retry.".format(
            self.workingDir, exc)

    # --------------------------------------------------------------- events
    def _reportProgress(self, stepFraction: float) -> None:
        step = self._step
        if step is None:
            return
        if self._plan:
            total = sum(s.weight for s in self._plan)
            done = sum(s.weight for s in self._plan[: self._planIndex])
            value = _PRELUDE_SHARE + (1 - _PRELUDE_SHARE) * (done + stepFraction * step.weight) / total
        else:
            value = min(_PRELUDE_SHARE, 0.005 * len(self.stepsRun))
        self.progress.emit(min(1.0, value), step.label)

    def _onOutput(self) -> None:
        text = self.runner.readOutput()
        if not text or self._step is None:
            return
        if self._outputSize < _OUTPUT_LIMIT:
            self._output.append(text)
            self._outputSize += len(text)
        lines = (self._lineRest + text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._lineRest = lines.pop()
        for line in lines:
            self._onLine(line)

    def _onLine(self, line: str) -> None:
        self._say(line)
        if self._pip is not None:
            fraction = self._pip.feed(line)
            if fraction is not None:
                self._reportProgress(fraction)

    def _onProcessFinished(self, exitCode: int, status: str) -> None:
        if self.state != RUNNING or self._step is None:
            return
        self._onOutput()
        if self._lineRest:
            self._onLine(self._lineRest)
            self._lineRest = ""
        step, output = self._step, "".join(self._output)
        if self._cancelRequested or status == KILLED:
            self._finish(CANCELLED, "Cancelled during '{}'. Click Retry to continue; finished steps are kept.".format(step.label))
            return
        try:
            self._stepFinished(step, exitCode, output)
        except SetupError as exc:
            self._finish(FAILED, str(exc))
        except OSError as exc:
            self._finish(FAILED, self._diskMessage(exc))
