"""What the module's panels share: the backend connection, the current project, background tasks.

The panels (backend, project, training, segmentation) never talk to each other directly: they
read :class:`SessionState` and react to its signals. Long calls go through
:meth:`SessionState.submit`, which runs them in a worker thread (:class:`TaskRunner`) and tells the
widget, through ``busyChanged``, to poll for their results from a ``qt.QTimer``.

:func:`userMessage` turns any exception a panel catches into the sentence shown with
``slicer.util.errorDisplay``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

from .backend.backendLogic import BackendInfo, BackendProblem, describeConnectionError, plainBackendMessage
from .backgroundTasks import Task, TaskRunner
from .backend.client import TSKDClient, TSKDClientError
from .train.projectLogic import ProjectProblem
from .install.runtimeSetup import RuntimeSetupError
from .sceneData import SceneError
from .segment.segmentationLogic import SegmentationProblem
from .signal import Signal
from .train.presetLogic import TrainingProblem

__all__ = ["SessionState", "ErrorReporter", "userMessage", "showError"]

logger = logging.getLogger(__name__)


def userMessage(exc: BaseException, url: str = "") -> str:
    """A sentence for the user about ``exc``.

    Client errors keep the server's explanation (which names the file or field at fault); a
    backend that cannot be reached or refuses the token gets :func:`describeConnectionError`'s
    wording; the module's own problems (``ProjectProblem``, ``SceneError``...) carry their message.
    """
    if isinstance(exc, TSKDClientError):
        if exc.status is None or exc.status == 401:
            return describeConnectionError(exc, url or "the backend")
        return plainBackendMessage(exc.status, exc.message)  # no server options or request fields (issue 32, item 12)
    text = str(exc).strip()
    userFacing = (BackendProblem, ProjectProblem, SceneError, SegmentationProblem, TrainingProblem, RuntimeSetupError)
    if text and (isinstance(exc, userFacing) or any(cls.__name__ == "TSKDError" for cls in type(exc).__mro__)):
        return text  # tskd.errors.* (e.g. a damaged student package) name the file and what to do
    return "Unexpected error ({}): {}".format(type(exc).__name__, text or "no details")


def showError(exc: BaseException, session: Optional["SessionState"] = None, title: str = "SlicerTSKD") -> None:
    """Show :func:`userMessage` of ``exc`` once (details go to the log).

    With a session the message goes through its :class:`ErrorReporter`, so failures that arrive
    together (three requests on a project change) make one box; without one, Slicer's error box.
    """
    logger.info("%s", exc, exc_info=exc)
    message = userMessage(exc, session.url if session is not None else "")
    if session is not None:
        session.errors.report(message)
        return
    import slicer

    slicer.util.errorDisplay(message, windowTitle=title)


class ErrorReporter:
    """Shows error messages one box at a time, never stacked (issue 14, item 10).

    ``slicer.util.errorDisplay`` is modal: while it is open Qt runs a nested event loop, the
    session's poll timer keeps delivering results, and every failure used to open one more box on
    top. Here, messages reported while a box is open or while :meth:`holding` (one poll's batch) are
    collected; identical ones are dropped; the rest are shown together in one box afterwards.

    Args:
        display: ``display(text)`` shows one message (blocking while a modal box is open); default: the log.
    """

    def __init__(self, display: Optional[Callable[[str], None]] = None) -> None:
        self.display = display or (lambda text: logger.error("%s", text))
        self._queued: List[str] = []
        self._shown: Set[str] = set()
        self._showing = False
        self._holds = 0

    def report(self, message: str) -> None:
        if message in self._shown or message in self._queued:
            return
        self._queued.append(message)
        if not self._holds and not self._showing:
            self.flush()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Collect the messages reported inside the block; show them as one at its end."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if not self._holds and not self._showing:
                self.flush()

    def flush(self) -> None:
        while self._queued and not self._showing:
            batch, self._queued = self._queued, []
            self._shown.update(batch)
            self._showing = True
            try:
                self.display("\n\n".join(batch))
            finally:
                self._showing = False
        if not self._showing:
            self._shown = set()


class SessionState:
    """The connection, project and background tasks of one module instance.

    Args:
        tasks: the worker-thread runner (default: a new :class:`TaskRunner`).

    Signals:
        connectionChanged(client, info): a backend was connected (or disconnected: both None).
        projectChanged(project): another project was chosen (None: none).
        casesChanged(): a case was added or deleted.
        modelReady(modelId): training produced a model.
        busyChanged(busy: bool): tasks became pending (start polling) or none is left.
    """

    def __init__(self, tasks: Optional[TaskRunner] = None) -> None:
        self.tasks = tasks or TaskRunner()
        self.client: Optional[TSKDClient] = None
        self.backendInfo: Optional[BackendInfo] = None
        self.project: Optional[Dict[str, Any]] = None
        self.connectionChanged = Signal("client", "info")
        self.projectChanged = Signal("project")
        self.casesChanged = Signal()
        self.modelReady = Signal("modelId")
        self.busyChanged = Signal("busy")
        self.errors = ErrorReporter()
        self._busy = False

    @property
    def url(self) -> str:
        return self.client.server_url if self.client is not None else ""

    @property
    def projectId(self) -> Optional[str]:
        return str(self.project["id"]) if self.project else None

    def setConnection(self, client: Optional[TSKDClient], info: Optional[BackendInfo]) -> None:
        """Use ``client`` from now on (None: disconnected); the project is forgotten."""
        self.client, self.backendInfo = client, info
        self.project = None
        self.connectionChanged.emit(client, info)
        self.projectChanged.emit(None)

    def setProject(self, project: Optional[Dict[str, Any]]) -> None:
        self.project = project
        self.projectChanged.emit(project)

    def submit(self, name: str, function: Callable[..., Any], *args: Any,
               onSuccess: Optional[Callable[[Any], None]] = None,
               onError: Optional[Callable[[BaseException], None]] = None, passTask: bool = False) -> Task:
        """:meth:`TaskRunner.submit`, and ``busyChanged(True)`` so the widget starts polling."""
        task = self.tasks.submit(name, function, *args, onSuccess=onSuccess, onError=onError, passTask=passTask)
        if not self._busy:
            self._busy = True
            self.busyChanged.emit(True)
        return task

    def poll(self) -> None:
        """Deliver finished tasks' callbacks (called by the widget's timer); ``busyChanged(False)`` when idle."""
        with self.errors.holding():
            self.tasks.poll()
        if self._busy and not self.tasks.pending():
            self._busy = False
            self.busyChanged.emit(False)

    def requireClient(self) -> TSKDClient:
        """The connected client.

        Raises:
            BackendProblem: no backend is connected.
        """
        if self.client is None:
            raise BackendProblem("No backend is connected: start the local backend or connect to a server first.")
        return self.client

    def requireProject(self) -> Dict[str, Any]:
        """The chosen project.

        Raises:
            BackendProblem: none is chosen.
        """
        if self.project is None:
            raise BackendProblem("Choose or create a project first.")
        return self.project

    def shutdown(self) -> None:
        """Module closing: abort the client's transfers, drop queued tasks, never wait (issue 14, item 2)."""
        if self.client is not None:
            self.client.abort()
        self.tasks.shutdown()
