"""What the Train panel shows of a job and of a finished model, from the server's JSON, without Qt.

:func:`jobDisplay` is a pure function from the job status JSON (``GET /jobs/{id}``) to the values
the widget shows: a sentence, one progress row per stage, the ETA, the latest validation Dice, the
log tail and which buttons apply. The widget polls the status with a ``qt.QTimer`` (in a worker
thread) and only copies these values into its widgets. :func:`activeJob` and :func:`resumableJob`
pick, from a project's jobs, the one to follow and the one *Resume* continues; :func:`modelTitle`
is a finished model's line in the model choosers (Train and Segment panels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from .updateLogic import lineageText

__all__ = [
    "ACTIVE_STATES",
    "RESUMABLE_STATES",
    "formatDuration",
    "StageRow",
    "JobDisplay",
    "jobDisplay",
    "verdictText",
    "KIND_TITLES",
    "activeJob",
    "resumableJob",
    "modelTitle",
]

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


def stageTitle(name: str) -> str:
    """The display title of a backend stage name; a numbered part keeps its number
    (``"reference 2/3"``, the second member of an ensembled reference: "Labels-only reference 2/3")."""
    base, _, part = str(name).partition(" ")
    title = _STAGE_TITLES.get(base, base.capitalize())
    return "{} {}".format(title, part) if part else title



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
        rows.append(StageRow(name, stageTitle(name), fraction, text, name == current))
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
    title = stageTitle(current) if current else ""
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


