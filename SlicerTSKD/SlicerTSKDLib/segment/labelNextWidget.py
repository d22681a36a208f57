"""The "Label next" list inside the Segment panel (Slicer only): thin Qt wiring over
:mod:`SlicerTSKDLib.segment.labelNext`.

"Refresh suggestions" asks the backend (worker thread); while it computes, a single-shot timer
asks again every :data:`~SlicerTSKDLib.segment.labelNext.POLL_MS`. A click on a row goes to that
slice: the volume of the case if the scene has it, else the case downloaded from the backend
(worker thread) and loaded; the first visit shows the student's prediction (the panel's
"Segment volume") as the starting point to correct. "Add volume to rank" uploads the selected
volume as a case without a label (only those are ranked).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, List, Optional

import ctk
import qt
import slicer

from .. import sceneData
from ..session import SessionState, showError
from .labelNext import COMPUTING, POLL_MS, LabelNextLogic, SuggestionRow, answerMessage, suggestionRows

__all__ = ["LabelNextWidget"]

logger = logging.getLogger(__name__)


class LabelNextWidget:
    """Builds the list into ``form`` (the Segment panel's form layout).

    Args:
        form: the Segment panel's layout.
        session: the shared state (client, project, tasks).
        data: the volume/segmentation selectors.
        logic: downloads, loading, the slice jump, which volumes were predicted.
        currentModel: the model chosen in the Segment panel (a dict with ``id``) or None.
        segment: shows the student's prediction on the selected volume ("Segment volume").
    """

    def __init__(self, form: "qt.QLayout", session: SessionState, data, logic: LabelNextLogic,
                 currentModel: Callable[[], Optional[dict]], segment: Callable[[], None]) -> None:
        self.session = session
        self.data = data
        self.logic = logic
        self.currentModel = currentModel
        self.segment = segment
        self.rows: List[SuggestionRow] = []
        self._projectId: Optional[str] = None
        self.pollTimer = qt.QTimer()
        self.pollTimer.setSingleShot(True)
        self.pollTimer.setInterval(POLL_MS)
        self.pollTimer.connect("timeout()", lambda: self.refresh(poll=True))
        box = ctk.ctkCollapsibleGroupBox()
        box.title = "Label next"
        form.addRow(box)
        layout = qt.QFormLayout(box)
        self.table = qt.QTableWidget()
        self.table.setColumnCount(4)
        self.table.setHorizontalHeaderLabels(["Case", "Slice", "Score", "Why"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        self.table.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(120)
        self.table.toolTip = ("The unlabelled cases' slices the model is least sure of. Click one to go to it; the "
                              "first visit of a case shows the student's result to correct.")
        layout.addRow(self.table)
        row = qt.QHBoxLayout()
        self.refreshButton = qt.QPushButton("Refresh suggestions")
        self.addVolumeButton = qt.QPushButton("Add volume to rank (no label)")
        self.addVolumeButton.toolTip = ("Uploads the selected volume to the project without a label, so that the "
                                        "suggestions rank its slices.")
        row.addWidget(self.refreshButton)
        row.addWidget(self.addVolumeButton)
        layout.addRow(row)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        layout.addRow(self.statusLabel)
        self.refreshButton.connect("clicked()", lambda: self.refresh())
        self.addVolumeButton.connect("clicked()", self.onAddVolume)
        self.table.connect("cellClicked(int,int)", lambda row, column: self.onRowClicked(row))
        session.projectChanged.connect(lambda project: self._clear())

    # ------------------------------------------------------------- suggestions
    def refresh(self, poll: bool = False) -> None:
        """Ask the backend for the suggestions of the chosen model (again, while it computes)."""
        project, client, model = self.session.project, self.session.client, self.currentModel()
        if project is None or client is None or model is None:
            self.statusLabel.text = "Connect to the backend, choose a project and a trained model first."
            return
        if not poll:
            self.pollTimer.stop()
        projectId, modelId = str(project["id"]), str(model["id"])
        self._projectId = projectId
        self.refreshButton.enabled = False
        self.session.submit("Suggestions", self.logic.fetch, client, projectId, modelId, not poll,
                            onSuccess=lambda answer: self._show(projectId, answer), onError=self._failed)

    def _show(self, projectId: str, answer: dict) -> None:
        self.refreshButton.enabled = True
        if projectId != self._projectId:
            return  # another project was chosen meanwhile
        self.statusLabel.text = answerMessage(answer)
        if answer.get("status") == COMPUTING:
            self.pollTimer.start()
            return
        try:
            self.rows = suggestionRows(answer)
        except ValueError as exc:
            self._failed(exc)
            return
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            for c, text in enumerate(row.texts()):
                self.table.setItem(r, c, qt.QTableWidgetItem(text))

    def _failed(self, exc: BaseException) -> None:
        self.refreshButton.enabled = True
        self.statusLabel.text = "No suggestions."
        showError(exc, self.session)

    def _clear(self) -> None:
        self.pollTimer.stop()
        self._projectId = None
        self.rows = []
        self.table.setRowCount(0)
        self.statusLabel.text = ""

    def onAddVolume(self) -> None:
        """Upload the selected volume as a case without a label (the project panel uploads labelled ones)."""
        volume = self.data.volumeNode()
        try:
            client, project = self.session.requireClient(), self.session.requireProject()
            if volume is None:
                self.statusLabel.text = "Select the volume to add first."
                return
            snapshot, name = sceneData.volumeSnapshot(volume), volume.GetName()  # a copy; written in the worker
        except Exception as exc:
            showError(exc, self.session)
            return
        self.addVolumeButton.enabled = False
        self.statusLabel.text = "Uploading '{}' without a label...".format(name)

        def done(case: dict) -> None:
            self.addVolumeButton.enabled = True
            self.statusLabel.text = ("Added '{}' without a label: Refresh suggestions to rank it."
                                     .format(case.get("name", name)))
            self.session.casesChanged.emit()

        def failed(exc: BaseException) -> None:
            self.addVolumeButton.enabled = True
            self.statusLabel.text = "The volume was not added."
            showError(exc, self.session)

        self.session.submit("Uploading case", self.logic.uploadUnlabelled, client, str(project["id"]), name, snapshot,
                            onSuccess=done, onError=failed, passTask=True)

    # ------------------------------------------------------------------ click
    def onRowClicked(self, index: int) -> None:
        if not 0 <= index < len(self.rows):
            return
        row = self.rows[index]
        try:
            current = self.data.volumeNode()
            volume = self.logic.findVolume(slicer.mrmlScene, row.case, current)
            if volume is not None:
                self._goTo(volume, row)
                return
            client, projectId = self.session.requireClient(), self._projectId
            self.statusLabel.text = "Downloading case '{}' from the backend...".format(row.case)
            self.session.submit("Downloading case", self.logic.download, client, projectId, row.case,
                                onSuccess=lambda path: self._loaded(path, row),
                                onError=lambda exc: showError(exc, self.session))
        except Exception as exc:
            showError(exc, self.session)

    def _loaded(self, path: str, row: SuggestionRow) -> None:
        try:
            volume = self.logic.findVolume(slicer.mrmlScene, row.case)  # loaded meanwhile by another click?
            self._goTo(volume if volume is not None else self.logic.load(path, row.case), row)
        except Exception as exc:
            showError(exc, self.session)

    def _goTo(self, volume: Any, row: SuggestionRow) -> None:
        current = self.data.volumeNode()
        switched = current is None or current.GetID() != volume.GetID()
        if switched:
            self.data.volumeSelector.setCurrentNode(volume)
            self.data.segmentationSelector.setCurrentNode(None)  # the old one belongs to the old volume
        self.logic.jumpTo(slicer.mrmlScene, volume, row)
        text = "'{}', slice {}: {}.".format(row.case, row.sliceIndex, row.why)
        if not self.logic.shownInAView(slicer.mrmlScene, volume, row):
            text += (" No view lies along the volume's slices: align one ('Rotate to volume plane' in the view's "
                     "menu) to see exactly that slice.")
        self.statusLabel.text = text
        if self.logic.needsPrediction(volume, hasSegmentation=self.data.segmentationNode() is not None):
            self.segment()

    def cleanup(self) -> None:
        self.pollTimer.stop()
