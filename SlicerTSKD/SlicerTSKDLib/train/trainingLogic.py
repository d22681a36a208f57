"""The Train panel's state and decisions, without Qt: the job it follows, what *Start*, *Update* and
*Resume* may send.

:class:`TrainingLogic` holds what the Train panel decides: the job it follows, the one *Resume*
continues, whether *Start* may send anything (a project without a labelled case gets
:data:`NO_LABELLED_CASES` and no request), one start at a time, and (as a
:class:`~SlicerTSKDLib.train.foundationState.FoundationState`) the foundation model chooser and a
weights download or import in progress. The panel (``trainingWidget.py``) gets it in its constructor.

Its parts elsewhere: quality -> preset in :mod:`.presetLogic`; what a job status and a model show in
:mod:`.jobDisplayLogic`; *Update* in :mod:`.updateLogic`; the foundation model chooser in
:mod:`.foundationLogic` and :mod:`.foundationState`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .foundationLogic import NONE, FoundationLogic
from .foundationState import FoundationState
from .jobDisplayLogic import JobDisplay, activeJob, jobDisplay, modelTitle, resumableJob
from .presetLogic import presetChoices
from .updateLogic import UPDATE_TIP, newCaseCount, startUpdate, updateButtonText, updateProblem, updateSource

__all__ = ["ALREADY_TRAINING", "NO_LABELLED_CASES", "TrainingLogic",
           "modelTitle"]  # kept importable from here: segment/segmentationWidget.py imports it from this module

#: The headline when the backend refuses a start because the project already trains (HTTP 409): the panel
#: follows that training instead (issue 32, item 5; no API names).
ALREADY_TRAINING = ("A training of this project is already queued or running: the panel now shows it. Wait for it to "
                    "finish, or cancel it, before starting another.")
NO_LABELLED_CASES = ("This project has no labelled case yet: add a volume with its segmentation as a training case "
                     "(panel above), then start training.")


class TrainingLogic(FoundationState):
    """The Train panel's state and decisions, without Qt (see the module docstring).

    Attributes:
        jobId: the job the panel follows (its status is polled), or None.
        resumeId: the job *Resume* continues, or None.
        models: the project's finished models last listed (what *Update* may continue).
        The foundation model chooser's are :class:`~.foundationState.FoundationState`'s.
    """

    def __init__(self) -> None:
        super().__init__()
        self.jobId: Optional[str] = None
        self.resumeId: Optional[str] = None
        self.models: List[Dict[str, Any]] = []
        self.cases: Optional[List[Dict[str, Any]]] = None  # the project's cases (None: not listed yet)
        self.jobs: List[Dict[str, Any]] = []
        self.starting: Optional[str] = None  # a start, update or resume is on its way (buttons disabled)
        self.notice: str = ""  # said before the followed job's headline (a refused start) until it finishes

    # ------------------------------------------------------------ choosers
    @staticmethod
    def presetEntries(info: Any) -> List[Tuple[str, str, str]]:
        """The quality chooser for a connected backend's ``BackendInfo`` (empty when disconnected)."""
        return presetChoices(info.presets, info.device) if info is not None else []

    # ---------------------------------------------------------------- jobs
    @staticmethod
    def startProblem(project: Optional[Dict[str, Any]]) -> Optional[str]:
        """Why *Start* must not send a job, or None. The counts are the project's as the Project panel
        last listed its cases; when the server does not give them, the server decides."""
        if project is not None and project.get("labelled_cases") == 0:
            return NO_LABELLED_CASES
        return None

    @staticmethod
    def startJob(client: Any, project: Dict[str, Any], preset: Optional[str], base: Optional[str]) -> Dict[str, Any]:
        """Start training (blocking: worker thread): the foundation model choice saved, then the job sent."""
        return FoundationLogic(client).startJob(project, preset or None, base or NONE)

    def updateProblem(self, connected: bool, selectedId: Optional[str] = None) -> Optional[str]:
        """Why *Update the model with the new cases* is disabled (its tooltip), or None."""
        return updateProblem(connected, self.jobId is not None, self.models, self.newCases(selectedId))

    def newCases(self, selectedId: Optional[str] = None) -> Optional[int]:
        """How many cases are new to the model *Update* continues (None: not known)."""
        return newCaseCount(self.updateModel(selectedId), self.cases, self.jobs)

    def updateText(self, selectedId: Optional[str] = None) -> str:
        return updateButtonText(self.newCases(selectedId))

    @staticmethod
    def listForUpdate(client: Any, projectId: str) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]], List[Dict[str, Any]]]:
        """The project's models, cases and jobs (blocking: worker thread): what *Update* needs."""
        return client.list_models(projectId), client.list_cases(projectId), client.list_jobs(projectId)

    def listed(self, lists: Tuple[Any, Any, Any]) -> None:
        self.models, self.cases, self.jobs = list(lists[0]), list(lists[1]), list(lists[2])

    # -- one start at a time (issue 32, item 5) --------------------------------------------------
    def beginStart(self, what: str) -> bool:
        """A start/update/resume click: False when one is already on its way (a double click sends nothing)."""
        if self.starting is not None:
            return False
        self.starting = what
        self.notice = ""
        return True

    def startEnded(self) -> None:
        self.starting = None

    @staticmethod
    def mayBeTrainingAlready(exc: BaseException) -> bool:
        """Whether a refused start may mean the project trains already (HTTP 409; the backend also answers 409
        for other conflicts, e.g. no labelled case): then the project's jobs tell (:meth:`startRefusal`)."""
        return getattr(exc, "status", None) == 409

    @staticmethod
    def startRefusal(jobs: Sequence[Dict[str, Any]]) -> Optional[str]:
        """After a 409: :data:`ALREADY_TRAINING` when the project has a queued or running job (the panel
        follows it), else None (the backend's own message is shown). Never names the API."""
        return ALREADY_TRAINING if activeJob(jobs) is not None else None

    updateTip = UPDATE_TIP

    def updateModel(self, selectedId: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """The model *Update* continues: the one chosen in the Segment panel, else the newest."""
        return updateSource(self.models, selectedId)

    @staticmethod
    def startUpdate(client: Any, project: Dict[str, Any], model: Dict[str, Any],
                    reuseSynthesis: bool = True) -> Dict[str, Any]:
        """Start the update job (blocking: worker thread); see :func:`~.updateLogic.startUpdate`."""
        return startUpdate(client, project, model, reuseSynthesis)

    def follow(self, jobId: Optional[str]) -> None:
        self.jobId = jobId

    def forgetJobs(self) -> None:
        """Another project (or none): follow nothing, resume nothing."""
        self.jobId = self.resumeId = None
        self.notice = ""
        self.models = []
        self.cases = None
        self.jobs = []

    def jobsListed(self, jobs: Sequence[Dict[str, Any]]) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
        """A project's jobs arrived: ``(job to follow, or None; status to show, or None)``.

        The newest queued or running job is followed; otherwise the newest resumable one is shown
        and *Resume* continues it.
        """
        active, resumable = activeJob(jobs), resumableJob(jobs)
        self.resumeId = str(resumable["id"]) if resumable else None
        if active is not None:
            return str(active["id"]), None
        return None, resumable

    def statusArrived(self, status: Dict[str, Any]) -> JobDisplay:
        """What to show for a job's status; a finished job is no longer followed (and may be resumed)."""
        display = jobDisplay(status)
        if self.notice:
            display.headline = self.notice + "\n" + display.headline
        if display.finished:
            self.jobId = None
            self.notice = ""
            self.resumeId = str(status.get("id")) if display.canResume else None
        return display
