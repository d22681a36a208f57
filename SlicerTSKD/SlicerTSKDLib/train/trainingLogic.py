"""Training jobs as the user sees them: a quality choice instead of preset names, and what to show.

**Quality -> preset.** The user picks *Quick*, *Standard* or *Thorough*; each maps to the first
backend preset of its list that the server offers (``/info``'s ``presets``):

========== ============================ =====================================================
quality    presets, in preference order  meant for
========== ============================ =====================================================
Quick      ``cpu-small``, ``tiny``        minutes to an hour on a laptop CPU; a first model
Standard   ``standard``, ``cpu-small``    an hour or two on a GPU (ViT-Tiny student at 256 px)
Thorough   ``gpu``, ``standard``          several hours on a recent GPU (teacher at 512 px)
========== ============================ =====================================================

Any other preset the server offers (``tiny``, for demonstrations on phantoms, or the server's own)
can be chosen by name as well (:func:`presetChoices`).

**Display.** :func:`jobDisplay` is a pure function from the job status JSON (``GET /jobs/{id}``)
to the values the widget shows: a sentence, one progress row per stage, the ETA, the latest
validation Dice, the log tail and which buttons apply. The widget polls the status with a
``qt.QTimer`` (in a worker thread) and only copies these values into its widgets.

**The panel's state.** :class:`TrainingLogic` holds what the Train panel decides: the job it
follows, the one *Resume* continues, whether *Start* may send anything (a project without a
labelled case gets :data:`NO_LABELLED_CASES` and no request), the foundation model chooser
(:func:`~SlicerTSKDLib.train.foundationLogic.foundationView`) and a weights download or import in
progress. The panel (``trainingWidget.py``) gets it in its constructor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .foundationLogic import (NONE, FoundationLogic, FoundationView, WeightsDownload, WeightsImport, downloadCandidates,
                              foundationView, savedChoice)
from .updateLogic import (UPDATE_TIP, lineageText, newCaseCount, startUpdate, updateButtonText, updateProblem,
                          updateSource)

__all__ = [
    "QUALITIES",
    "QUALITY_PRESETS",
    "TrainingProblem",
    "presetForQuality",
    "presetChoices",
    "formatDuration",
    "StageRow",
    "JobDisplay",
    "jobDisplay",
    "ACTIVE_STATES",
    "RESUMABLE_STATES",
    "activeJob",
    "resumableJob",
    "modelTitle",
    "verdictText",
    "KIND_TITLES",
    "NO_LABELLED_CASES",
    "TrainingLogic",
]

QUALITIES = ("quick", "standard", "thorough")
QUALITY_PRESETS = {
    "quick": ("cpu-small", "tiny"),
    "standard": ("standard", "cpu-small"),
    "thorough": ("gpu", "standard"),
}
_QUALITY_TITLES = {"quick": "Quick", "standard": "Standard", "thorough": "Thorough"}

ACTIVE_STATES = ("queued", "running")
RESUMABLE_STATES = ("failed", "cancelled", "interrupted")

_STAGE_TITLES = {
    "prepare": "Preparing slices",
    "data": "Preparing slices",
    "teacher": "Teacher (foundation model)",
    "synthesis": "Synthetic images",
    "transfer": "Transfer set",
    "transfer_set": "Transfer set",
    "distill": "Distillation",
    "mae": "Student pre-training",
    "finetune": "Student fine-tuning",
    "reference": "Labels-only reference",
    "export": "Export",
    "pipeline": "Finishing",
}


class TrainingProblem(Exception):
    """Training cannot start as asked; the message says why."""


def presetForQuality(quality: str, available: Sequence[str]) -> str:
    """The backend preset for a quality (see the module docstring).

    Args:
        quality: ``"quick"``, ``"standard"`` or ``"thorough"``.
        available: the server's presets (empty: unknown, the first choice is returned).

    Raises:
        ValueError: unknown quality.
        TrainingProblem: the server offers none of the quality's presets.
    """
    if quality not in QUALITY_PRESETS:
        raise ValueError("quality must be one of {}, got {!r}".format(", ".join(QUALITIES), quality))
    candidates = QUALITY_PRESETS[quality]
    if not available:
        return candidates[0]
    for name in candidates:
        if name in available:
            return name
    raise TrainingProblem("The backend offers none of the presets for '{}' ({}); it has: {}.".format(
        _QUALITY_TITLES[quality], ", ".join(candidates), ", ".join(available)))


def presetChoices(available: Sequence[str], device: str = "cpu") -> List[Tuple[str, str, str]]:
    """Entries of the preset chooser: ``(title, preset, tooltip)``, qualities first, then other presets.

    A quality whose preset is meant for a GPU says so in its tooltip when the backend has none.
    """
    out, used = [], set()
    for quality in QUALITIES:
        try:
            preset = presetForQuality(quality, available)
        except TrainingProblem:
            continue
        tip = "Backend preset '{}'.".format(preset)
        if device == "cpu" and preset in ("standard", "gpu"):
            tip += " Meant for a GPU: on this backend's CPU it takes many hours."
        out.append(("{} ({})".format(_QUALITY_TITLES[quality], preset), preset, tip))
        used.add(preset)
    for preset in available:
        if preset not in used:
            tip = "For demonstrations on phantoms only: far too small for real data." if preset == "tiny" else ""
            out.append(("Preset: {}".format(preset), preset, tip))
    return out


def formatDuration(seconds: Optional[float]) -> str:
    """``"45 s"``, ``"12 min"``, ``"2 h 05 min"``; empty for None, NaN or negative."""
    if seconds is None or not isinstance(seconds, (int, float)) or math.isnan(seconds) or seconds < 0:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return "{} s".format(seconds)
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return "{} min".format(minutes)
    return "{} h {:02d} min".format(minutes // 60, minutes % 60)


@dataclass
class StageRow:
    """One stage of the job: ``title``, ``fraction`` done (0..1, None when unknown), ``text`` (``"150/300"``)."""

    name: str
    title: str
    fraction: Optional[float]
    text: str
    current: bool = False


@dataclass
class JobDisplay:
    """What the training panel shows for one job status.

    Attributes:
        state: the job's state (``queued``, ``running``, ``done``...).
        headline: a sentence for the status line.
        stages: one row per stage seen so far, in pipeline order.
        fraction: progress of the current stage (0..1), None when unknown.
        etaText: time left in the current stage (``"12 min"``), empty when unknown.
        diceText: latest validation Dice (``"0.87"``), empty when none yet.
        logText: the end of the worker's console.
        canCancel, canResume: which buttons apply.
        finished: the job reached a final state.
        modelId: the model it produced (``done`` only).
        foundationText: which foundation model the job trains on (empty for servers that do not say).
        verdictText: once done, the backend's one line on which student was exported (the distilled
            one or the one trained on the labels alone) and what distillation added; empty when the
            server does not say.
    """

    state: str
    headline: str
    stages: List[StageRow] = field(default_factory=list)
    fraction: Optional[float] = None
    etaText: str = ""
    diceText: str = ""
    logText: str = ""
    canCancel: bool = False
    canResume: bool = False
    finished: bool = False
    modelId: Optional[str] = None
    foundationText: str = ""
    verdictText: str = ""


#: How the model list names each kind of model (``kind`` in the package's metadata).
KIND_TITLES = {"distilled": "TS-KD", "reference": "labels only"}


def verdictText(status: Dict[str, Any]) -> str:
    """The backend's line on a finished job's choice between its two students, with its warning."""
    comparison = status.get("comparison") if isinstance(status.get("comparison"), dict) else {}
    line = comparison.get("verdict")
    if not isinstance(line, str) or not line:
        return ""
    text = line[0].upper() + line[1:] + "."
    if isinstance(comparison.get("warning"), str) and comparison["warning"]:
        text += " Note: {}.".format(comparison["warning"])
    return text


def _foundation(item: Dict[str, Any]) -> str:
    if "base" not in item:
        return ""
    if not item.get("base"):
        return "none: teacher trained from scratch (much less accurate)"
    sha = item.get("base_sha256")
    return "{} (SHA-256 {}...)".format(item["base"], str(sha)[:12]) if sha else str(item["base"])


def _fraction(record: Dict[str, Any]) -> Optional[float]:
    total = record.get("total") or 0
    if not isinstance(total, (int, float)) or total <= 0:
        return 1.0 if record.get("state") == "done" else None
    return max(0.0, min(1.0, float(record.get("step") or 0) / float(total)))


def _dice(metrics: Dict[str, Any]) -> Optional[float]:
    value = metrics.get("val_dice") if isinstance(metrics, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
        return float(value)
    return None


def jobDisplay(status: Dict[str, Any]) -> JobDisplay:
    """The display values of a job status (``GET /jobs/{id}``); see :class:`JobDisplay`."""
    state = str(status.get("state") or "unknown")
    progress = status.get("progress") if isinstance(status.get("progress"), dict) else None
    stagesRaw = status.get("stages") if isinstance(status.get("stages"), dict) else {}
    ordered = sorted(stagesRaw.items(), key=lambda item: (str(item[1].get("updated") or ""), item[0]))
    current = progress.get("stage") if progress else None
    rows = []
    for name, record in ordered:
        fraction = _fraction(record)
        if state == "done":
            fraction = 1.0
        total = record.get("total") or 0
        text = "{}/{}".format(record.get("step") or 0, total) if total else ""
        rows.append(StageRow(name, _STAGE_TITLES.get(name, name.capitalize()), fraction, text, name == current))
    dice = None
    if progress:
        dice = _dice(progress.get("metrics") or {})
    for _, record in reversed(ordered):
        if dice is not None:
            break
        dice = _dice(record.get("metrics") or {})
    finalMetrics = status.get("metrics") if isinstance(status.get("metrics"), dict) else {}
    if _dice(finalMetrics) is not None:
        dice = _dice(finalMetrics)
    fraction = _fraction(progress) if progress else None
    eta = formatDuration(progress.get("eta_s")) if progress and state == "running" else ""
    title = _STAGE_TITLES.get(current, str(current).capitalize()) if current else ""
    if state == "queued":
        headline = "Waiting for the backend to start training (another job may be running)."
    elif state == "running":
        if progress:
            position = ""
            if (progress.get("stage_count") or 0) > 1:
                position = " (stage {} of {})".format(progress.get("stage_index"), progress.get("stage_count"))
            headline = "Training: {}{}.".format(title, position)
            if progress.get("message"):
                headline += " " + str(progress["message"])
        else:
            headline = "Training is starting."
        if status.get("cancel_requested"):
            headline = "Stopping: the backend saves a checkpoint first."
    elif state == "done":
        verdict = verdictText(status)
        if verdict:
            headline = "Training finished: the new model is ready. " + verdict
        else:
            headline = "Training finished: the new model is ready." + (
                " Validation Dice {:.2f}.".format(dice) if dice is not None else "")
    elif state == "failed":
        headline = "Training failed: {}".format(status.get("error") or "see the log below.")
    elif state == "cancelled":
        headline = "Training was cancelled. Resume continues from the last checkpoint."
    elif state == "interrupted":
        headline = "Training was interrupted (the backend stopped). Resume continues from the last checkpoint."
    else:
        headline = "Job state: {}.".format(state)
    tail = status.get("log_tail") or []
    return JobDisplay(
        state=state,
        headline=headline,
        stages=rows,
        fraction=1.0 if state == "done" else fraction,
        etaText=eta,
        diceText="{:.2f}".format(dice) if dice is not None else "",
        logText="\n".join(str(line) for line in tail) if isinstance(tail, list) else str(tail),
        canCancel=state in ACTIVE_STATES and not status.get("cancel_requested"),
        canResume=state in RESUMABLE_STATES,
        finished=state not in ACTIVE_STATES,
        modelId=status.get("model_id") if state == "done" else None,
        foundationText=_foundation(status),
        verdictText=verdictText(status) if state == "done" else "",
    )


def _newest(jobs: Sequence[Dict[str, Any]], states: Sequence[str]) -> Optional[Dict[str, Any]]:
    matching = [job for job in jobs if job.get("state") in states]
    return max(matching, key=lambda job: str(job.get("created") or "")) if matching else None


def activeJob(jobs: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The newest queued or running job of a project (to follow it again after a reconnect)."""
    return _newest(jobs, ACTIVE_STATES)


def resumableJob(jobs: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The newest failed, cancelled or interrupted job, when it is newer than every finished one."""
    candidate = _newest(jobs, RESUMABLE_STATES)
    done = _newest(jobs, ("done",))
    if candidate is None or (done is not None and str(done.get("created") or "") > str(candidate.get("created") or "")):
        return None
    return candidate


def _created(model: Dict[str, Any]) -> str:
    return str(model.get("created") or "")[:16].replace("T", " ")


def modelTitle(model: Dict[str, Any], models: Optional[Sequence[Dict[str, Any]]] = None) -> str:
    """``"2026-11-21 06:35 - TS-KD unet_small - Dice 0.93 - from medsam-vit-b"`` for the model chooser: the
    kind (``TS-KD`` distilled, or ``labels only`` when the run's labels-only reference was better), the
    student, and the foundation model it was distilled from, when the server says. An updated model
    ends with its lineage (``"updated from 2026-11-20 14:02, +2 cases"``: the earlier model's time as
    its title starts, found in ``models``, the project's list; its id when not listed)."""
    created = _created(model)
    student = model.get("student") if isinstance(model.get("student"), dict) else {}
    kind = KIND_TITLES.get(str(model.get("kind")), "")
    architecture = str(student.get("architecture") or "")
    parts = [created or str(model.get("id", "?")), " ".join(p for p in (kind, architecture) if p)]
    dice = _dice(model.get("metrics") or {})
    if dice is not None:
        parts.append("Dice {:.2f}".format(dice))
    if model.get("kind") == "reference":
        parts.append("no teacher")
    elif "base" in model:
        parts.append("from {}".format(model["base"]) if model.get("base") else "no foundation model")
    if isinstance(model.get("lineage"), dict):
        parentId = model["lineage"].get("updated_from_model")
        parent = next((m for m in models or () if str(m.get("id")) == str(parentId)), None)
        parts.append(lineageText(model, (_created(parent) or None) if parent is not None else None))
    return " - ".join(part for part in parts if part)


#: The headline when the backend refuses a start because the project already trains (HTTP 409): the panel
#: follows that training instead (issue 32, item 5; no API names).
ALREADY_TRAINING = ("A training of this project is already queued or running: the panel now shows it. Wait for it to "
                    "finish, or cancel it, before starting another.")
NO_LABELLED_CASES = ("This project has no labelled case yet: add a volume with its segmentation as a training case "
                     "(panel above), then start training.")


#: The names of the weights download's background tasks (see :meth:`TrainingLogic.pollDownloadNow`).
STARTING_DOWNLOAD = "Starting the download"
DOWNLOAD_STATUS = "Download status"


class TrainingLogic:
    """The Train panel's state and decisions, without Qt (see the module docstring).

    Attributes:
        jobId: the job the panel follows (its status is polled), or None.
        resumeId: the job *Resume* continues, or None.
        checkpointRows: the backend's foundation models (``GET /checkpoints``) last listed.
        download: the weights download in progress, or None.
        upload: the weights import in progress, or None.
        models: the project's finished models last listed (what *Update* may continue).
    """

    def __init__(self) -> None:
        self.jobId: Optional[str] = None
        self.resumeId: Optional[str] = None
        self.checkpointRows: List[Dict[str, Any]] = []
        self.download: Optional[WeightsDownload] = None
        self.upload: Optional[WeightsImport] = None
        self.models: List[Dict[str, Any]] = []
        self.cases: Optional[List[Dict[str, Any]]] = None  # the project's cases (None: not listed yet)
        self.jobs: List[Dict[str, Any]] = []
        self.starting: Optional[str] = None  # a start, update or resume is on its way (buttons disabled)
        self.justAdded: Optional[str] = None  # a foundation model just downloaded or imported (chosen next)
        self._saving: Optional[str] = None
        self.notice: str = ""  # said before the followed job's headline (a refused start) until it finishes

    # ------------------------------------------------------------ choosers
    @staticmethod
    def presetEntries(info: Any) -> List[Tuple[str, str, str]]:
        """The quality chooser for a connected backend's ``BackendInfo`` (empty when disconnected)."""
        return presetChoices(info.presets, info.device) if info is not None else []

    def foundation(self, rows: Optional[Sequence[Dict[str, Any]]], project: Optional[Dict[str, Any]]) -> FoundationView:
        """Keep the backend's checkpoints; the chooser they and the project's saved choice give. A foundation
        model just downloaded or imported is shown instead of the saved choice (issue 32, item 12: the saved
        "None" would otherwise stay and be sent with every job): :meth:`choiceToSave` says to save it."""
        self.checkpointRows = list(rows or [])
        view = foundationView(self.checkpointRows, project)
        values = [choice.value for choice in view.choices]
        if self.justAdded is not None and self.justAdded in values:
            view.index = values.index(self.justAdded)
        return view

    def choiceToSave(self, view: FoundationView, project: Optional[Dict[str, Any]]) -> Optional[str]:
        """The value to store as the project's choice after :meth:`foundation` showed a model just added
        (None: nothing to save, or its save is on its way). The model stays preferred until the saved
        project comes back (:meth:`choiceSaved`) or the user chooses (:meth:`userChose`), so a listing
        that arrives in between shows it too."""
        added = self.justAdded
        if added is None or project is None or not 0 <= view.index < len(view.choices):
            return None
        value = view.choices[view.index].value
        if value != added or savedChoice(project) == value or self._saving == value:
            return None
        self._saving = value
        return value

    def choiceSaved(self, project: Optional[Dict[str, Any]]) -> None:
        """The project came back from a save: a model just added and now saved is no longer special."""
        if self.justAdded is not None and savedChoice(project) == self.justAdded:
            self.justAdded = self._saving = None

    def userChose(self) -> None:
        """The user picked a foundation model: that choice wins over one just added."""
        self.justAdded = self._saving = None

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

    # ------------------------------------------------------------- weights
    @property
    def transferring(self) -> bool:
        return self.download is not None or self.upload is not None

    def startDownload(self, client: Any) -> Optional[WeightsDownload]:
        """The download *Download* starts (the backend's first choice for its device), or None when there is nothing to download."""
        candidates = downloadCandidates(self.checkpointRows)
        if not candidates or client is None:
            return None
        self.download = WeightsDownload(client, str(candidates[0]["name"]))
        return self.download

    def startImport(self, client: Any, path: str) -> Optional[WeightsImport]:
        """The import of the chosen file, or None (no file chosen, or not connected)."""
        if not path or client is None:
            return None
        self.upload = WeightsImport(client, str(path))
        return self.upload

    def pollDownloadNow(self, busy: Callable[[str], bool]) -> bool:
        """Whether the weights timer may ask for the download's status now (``busy(name)``: a task of that
        name is pending). Not while the start request is still on its way: asked before the backend has
        queued the fetch, the status is "missing", which reads as a finished, failed download, so the
        panel stopped following a download that then ran, and the model it brought was never chosen
        (the race behind test_a_downloaded_foundation_model_is_chosen_and_saved_instead_of_none)."""
        return self.download is not None and not busy(STARTING_DOWNLOAD) and not busy(DOWNLOAD_STATUS)

    def downloadStatus(self, status: Any) -> bool:
        """A download's status arrived; True when it finished (the chooser is listed again)."""
        if status.finished:
            if status.ok and self.download is not None:
                self.justAdded = self.download.name
            self.download = None
        return bool(status.finished)

    def importedText(self, row: Dict[str, Any]) -> str:
        """What the panel says of an imported weights file (it is then chosen: :meth:`foundation`)."""
        if row.get("name"):
            self.justAdded = str(row["name"])
        return "Imported {} ({}).".format(row.get("name"), row.get("architecture") or "SAM")

    def transferEnded(self) -> None:
        """An import finished, or a download or import failed."""
        self.download = self.upload = None
