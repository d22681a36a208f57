"""The Train panel's foundation model chooser and weights transfer as they change, without Qt.

:class:`FoundationState` keeps what the chooser last showed (the backend's checkpoints), a weights
download or import in progress, and a foundation model just downloaded or imported, which is then
chosen and saved as the project's choice (issue 32, item 12). The pure parts (choices, the saved
choice, what may be downloaded) and the transfers themselves are in :mod:`.foundationLogic`.
:class:`~SlicerTSKDLib.train.trainingLogic.TrainingLogic` is a ``FoundationState``: the panel keeps one
object for its state.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

from .foundationLogic import FoundationView, WeightsDownload, WeightsImport, downloadCandidates, foundationView, savedChoice

__all__ = ["STARTING_DOWNLOAD", "DOWNLOAD_STATUS", "FoundationState"]

#: The names of the weights download's background tasks (see :meth:`FoundationState.pollDownloadNow`).
STARTING_DOWNLOAD = "Starting the download"
DOWNLOAD_STATUS = "Download status"


class FoundationState:
    """The foundation model chooser's state (see the module docstring).

    Attributes:
        checkpointRows: the backend's foundation models (``GET /checkpoints``) last listed.
        download: the weights download in progress, or None.
        upload: the weights import in progress, or None.
        justAdded: a foundation model just downloaded or imported (chosen next), or None.
    """

    def __init__(self) -> None:
        self.checkpointRows: List[Dict[str, Any]] = []
        self.download: Optional[WeightsDownload] = None
        self.upload: Optional[WeightsImport] = None
        self.justAdded: Optional[str] = None
        self._saving: Optional[str] = None

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
