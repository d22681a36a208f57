"""One background task at a time behind a panel's status line and progress bar (Slicer only).

The Segment panel and its box tool both run their work in a worker thread (``SessionState.submit``) and
show the same things while it runs: a progress bar a timer refreshes, then a status line that says
whether the work finished, was cancelled or failed. :class:`TaskPanel` is that behaviour, once; each
panel gives its own words. The panel provides ``session``, ``statusLabel``, ``progressBar``,
``progressTimer`` (a QTimer connected to ``_showProgress``) and ``_updateButtons``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Tuple, Type

from ..session import showError

__all__ = ["TaskPanel", "TaskTexts"]


class TaskTexts(NamedTuple):
    """What the status line says when a panel's task ends other than with success.

    ``expected``: exception types whose own message is the status line (a problem the user can fix,
    not a failure to report with the error dialog).
    """

    failed: str
    cancelled: str
    writeFailed: Optional[str] = None
    expected: Tuple[Type[BaseException], ...] = ()


class TaskPanel:
    """Mixin: ``_start`` submits work to the session's worker and follows it; ``_showProgress`` is the timer's slot."""

    task = None
    #: the session's task name (one task of that name runs at a time)
    taskName = "Task"
    taskTexts = TaskTexts(failed="The task failed.", cancelled="Cancelled.")

    def _start(self, message: str, work: Callable, onSuccess: Callable,
               onFailure: Optional[Callable[[], None]] = None) -> None:
        """Run ``work(task)`` in the worker; ``onSuccess(result)`` on the GUI thread when it returns."""
        texts = self.taskTexts
        self.statusLabel.text = message
        self.progressBar.value = 0
        self.progressBar.visible = True
        self.progressTimer.start()

        def success(result):
            self._finished()
            try:
                onSuccess(result)
            except Exception as exc:
                if texts.writeFailed:
                    self.statusLabel.text = texts.writeFailed
                showError(exc, self.session)

        def failure(exc):
            self._finished()
            if onFailure is not None:
                onFailure()
            if self.task is not None and self.task.isCancelled():
                self.statusLabel.text = texts.cancelled
            elif texts.expected and isinstance(exc, texts.expected):
                self.statusLabel.text = str(exc)
            else:
                self.statusLabel.text = texts.failed
                showError(exc, self.session)

        self.task = self.session.submit(self.taskName, work, onSuccess=success, onError=failure, passTask=True)
        self._updateButtons()

    def _finished(self) -> None:
        self.progressTimer.stop()
        self.progressBar.visible = False
        self._updateButtons()

    def _showProgress(self) -> None:
        task = self.task
        if task is None:
            return
        if task.progress is not None:
            self.progressBar.value = int(round(100 * task.progress))
        message = getattr(task, "message", None)  # set by work that says what it is doing (the box tool's)
        if message:
            self.statusLabel.text = message
