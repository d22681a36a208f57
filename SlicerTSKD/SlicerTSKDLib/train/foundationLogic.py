"""The "Foundation model" chooser of the Train panel, without Qt: choices, the saved choice, downloads, imports.

TS-KD's teacher is a foundation model (LiteMedSAM, MedSAM or SAM) fine-tuned on the task; trained
from scratch instead, its student ends up worse than one trained on the labels alone. So the chooser
offers what the backend has (``GET /checkpoints``, in the backend's order of preference for its own
device: without a GPU LiteMedSAM first, 39 MB and made for a CPU; with a GPU MedSAM ViT-B first;
``tskd.foundation.resolve.preference_order`` decides it), then "None: train from scratch (much less
accurate)". The first usable row is the default, so the chooser never needs to know the device.
The choice is stored in the project's settings (``settings["base"]``) and sent with each job
(``start_job(..., base=choice)``).

When the backend has no foundation model the panel says what that costs (:data:`NO_FOUNDATION_TEXT`)
and offers a download (:func:`downloadCandidates`: the first two the backend can download, in its
order, through the backend's fetch route, followed by :class:`WeightsDownload`) and "Import weights
file..." (:class:`WeightsImport`, an upload with progress, for hospitals without internet).

Threading: every method that talks to the backend blocks; the widget runs it through
``SessionState.submit`` (a worker thread) and reads :meth:`WeightsImport.fraction` or calls
:meth:`WeightsDownload.poll` from its ``qt.QTimer``. Nothing here touches Qt.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

__all__ = [
    "NONE",
    "AUTO",
    "NONE_TITLE",
    "NO_FOUNDATION_TEXT",
    "FoundationChoice",
    "foundationChoices",
    "savedChoice",
    "initialChoice",
    "downloadCandidates",
    "downloadTitle",
    "FoundationView",
    "foundationView",
    "FoundationLogic",
    "DownloadStatus",
    "WeightsDownload",
    "WeightsImport",
]

NONE = "none"
AUTO = "auto"
NONE_TITLE = "None: train from scratch (much less accurate)"
NO_FOUNDATION_TEXT = (
    "The backend has no foundation model. Without one the teacher is trained from scratch and the student "
    "is much less accurate (on HC18 it was worse than training on the labels alone). Download one (LiteMedSAM: "
    "39 MB, runs on a CPU; MedSAM: about 375 MB, for a GPU), or import a weights file you already have."
)
#: how many models "Download" names (the first one is downloaded)
_DOWNLOAD_OFFERS = 2
_USABLE = ("verified", "present")
_SETTING = "base"


@dataclass
class FoundationChoice:
    """One entry of the chooser: ``value`` is what the job's ``base`` gets."""

    value: str
    title: str
    tooltip: str = ""


def _size(value: Any) -> str:
    return "{:.0f} MB".format(value / 1e6) if isinstance(value, (int, float)) and value > 0 else ""


def foundationChoices(checkpoints: Sequence[Dict[str, Any]]) -> List[FoundationChoice]:
    """The usable foundation models in the backend's order (its best for its device first), then the
    from-scratch entry."""
    out = []
    for row in checkpoints:
        if row.get("state") not in _USABLE:
            continue
        name = str(row.get("name"))
        title = str(row.get("title") or name) if row.get("catalog") else name
        tip = "Backend name '{}'".format(name)
        details = [d for d in (str(row.get("architecture") or ""), _size(row.get("size_bytes"))) if d]
        if details:
            tip += " ({})".format(", ".join(details))
        if row.get("sha256"):
            tip += "; SHA-256 {}".format(row["sha256"])
        out.append(FoundationChoice(name, title, tip + "."))
    out.append(FoundationChoice(NONE, NONE_TITLE, "The teacher is trained from scratch: much less accurate. "
                                                  "Use it only for quick tests."))
    return out


def savedChoice(project: Optional[Dict[str, Any]]) -> Optional[str]:
    """The choice stored in the project's settings, or None."""
    settings = (project or {}).get("settings") if isinstance((project or {}).get("settings"), dict) else {}
    value = settings.get(_SETTING)
    return str(value) if isinstance(value, str) and value else None


def initialChoice(choices: Sequence[FoundationChoice], project: Optional[Dict[str, Any]]) -> str:
    """What the chooser shows first: the project's saved choice when still offered, else the best model
    the backend has (its first usable row: LiteMedSAM on a backend without a GPU, MedSAM on one with
    a GPU), else none."""
    values = [c.value for c in choices]
    saved = savedChoice(project)
    if saved in values:
        return saved  # type: ignore[return-value]
    return values[0] if values else NONE


def downloadCandidates(checkpoints: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The first two catalog entries the backend can download and does not have, in the backend's order
    of preference for its device (no GPU: LiteMedSAM, MedSAM; a GPU: MedSAM, LiteMedSAM)."""
    rows = [r for r in checkpoints
            if r.get("catalog") and r.get("downloadable") and r.get("state") not in _USABLE]
    return rows[:_DOWNLOAD_OFFERS]


_SHORT_TITLES = {"litemedsam": "LiteMedSAM", "medsam-vit-b": "MedSAM", "sam-vit-b": "SAM ViT-B"}


def downloadTitle(candidates: Sequence[Dict[str, Any]]) -> str:
    """The download button's text: ``"Download LiteMedSAM / MedSAM"``."""
    return "Download " + " / ".join(_SHORT_TITLES.get(str(r["name"]), str(r["name"])) for r in candidates)


@dataclass
class FoundationView:
    """What the chooser shows for the backend's checkpoints and the project.

    Attributes:
        choices: the chooser's entries; ``index``: the one shown first.
        noneAvailable: the backend has no foundation model (the note on what that costs is shown).
        offerDownload: show the download button; ``downloadText`` its text.
    """

    choices: List[FoundationChoice]
    index: int
    noneAvailable: bool
    offerDownload: bool
    downloadText: str


def foundationView(checkpoints: Sequence[Dict[str, Any]], project: Optional[Dict[str, Any]]) -> FoundationView:
    """The chooser for ``checkpoints`` (``GET /checkpoints``) and the project's saved choice."""
    choices = foundationChoices(checkpoints)
    values = [c.value for c in choices]
    candidates = downloadCandidates(checkpoints)
    noneAvailable = len(choices) == 1
    return FoundationView(choices, max(0, values.index(initialChoice(choices, project))), noneAvailable,
                          bool(candidates) and noneAvailable, downloadTitle(candidates) if candidates else "")


class FoundationLogic:
    """The chooser's backend calls (blocking: run them in a worker thread).

    Args:
        client: a :class:`~SlicerTSKDLib.backend.client.TSKDClient`.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    def checkpoints(self) -> List[Dict[str, Any]]:
        return self.client.list_checkpoints()

    def saveChoice(self, project: Dict[str, Any], value: str) -> Dict[str, Any]:
        """Store ``value`` in the project's settings (the others are kept); returns the updated project."""
        settings = dict(project.get("settings") or {})
        settings[_SETTING] = value
        return self.client.update_project(str(project["id"]), settings=settings)

    def startJob(self, project: Dict[str, Any], preset: Optional[str], value: str) -> Dict[str, Any]:
        """Start training with foundation model ``value`` (``none`` for from scratch); the choice is saved first."""
        if savedChoice(project) != value:
            self.saveChoice(project, value)
        return self.client.start_job(str(project["id"]), preset, base=value)


@dataclass
class DownloadStatus:
    """What the panel shows about a download: ``fraction`` (None: unknown), ``text``, ``finished``, ``ok``."""

    fraction: Optional[float]
    text: str
    finished: bool
    ok: bool = False


class WeightsDownload:
    """The backend's download of one catalog model, followed by polling (each call blocks briefly).

    Args:
        client: a :class:`~SlicerTSKDLib.backend.client.TSKDClient`.
        name: the catalog name (``medsam-vit-b``...).
    """

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def start(self) -> DownloadStatus:
        return self.status(self.client.fetch_checkpoint(self.name))

    def poll(self) -> DownloadStatus:
        return self.status(self.client.get_checkpoint(self.name))

    def cancel(self) -> DownloadStatus:
        return self.status(self.client.cancel_fetch(self.name))

    def status(self, row: Dict[str, Any]) -> DownloadStatus:
        fetch = row.get("fetch") or {}
        state = fetch.get("state")
        title = str(row.get("title") or self.name)
        done, total = fetch.get("done_bytes"), fetch.get("total_bytes")
        fraction = None
        if isinstance(done, int) and isinstance(total, int) and total > 0:
            fraction = max(0.0, min(1.0, done / float(total)))
        if row.get("state") == "verified" and state in (None, "done"):
            return DownloadStatus(1.0, "{} is on the backend (verified).".format(title), True, True)
        if state in ("queued", "running"):
            amount = "{:.0f} of {:.0f} MB".format(done / 1e6, total / 1e6) if fraction is not None else (
                "{:.0f} MB".format(done / 1e6) if isinstance(done, int) else "")
            verb = "Stopping the download of" if fetch.get("cancel_requested") else "Downloading"
            return DownloadStatus(fraction, "{} {}... {}".format(verb, title, amount).strip(), False)
        if state == "cancelled":
            return DownloadStatus(fraction, "Download of {} cancelled; downloading again continues where it "
                                            "stopped.".format(title), True)
        if state == "failed":
            return DownloadStatus(fraction, "Download of {} failed: {}".format(title, fetch.get("error") or
                                                                              "see the backend's log."), True)
        return DownloadStatus(fraction, "Download of {}: {}.".format(title, state or row.get("state")), True,
                              row.get("state") == "verified")


class WeightsImport:
    """Uploading a weights file to the backend, which checks it is SAM / MedSAM before accepting it.

    :meth:`run` blocks (call it in a worker thread); :attr:`fraction` can be read from the GUI thread
    meanwhile.

    Args:
        client: a :class:`~SlicerTSKDLib.backend.client.TSKDClient`.
        path: the file (``.pth``, ``.safetensors``...).
        name: the name to record it under (default: the backend chooses: catalog name or file name).
    """

    def __init__(self, client: Any, path: str, name: Optional[str] = None) -> None:
        self.client = client
        self.path = path
        self.name = name
        self._lock = threading.Lock()
        self._sent, self._total = 0, 0
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop the upload at its next 1 MiB chunk (issue 32, item 10); :meth:`run` then raises
        ``TSKDTransferAborted``."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _progress(self, sent: int, total: int) -> None:
        with self._lock:
            self._sent, self._total = sent, total

    @property
    def fraction(self) -> Optional[float]:
        with self._lock:
            return self._sent / float(self._total) if self._total else None

    def run(self) -> Dict[str, Any]:
        """Upload and import; returns the backend's checkpoint row (raises the client's errors)."""
        return self.client.import_checkpoint(self.path, name=self.name, progress=self._progress,
                                             cancel=self._cancelled.is_set)
