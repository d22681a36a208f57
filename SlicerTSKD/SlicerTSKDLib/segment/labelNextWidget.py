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
from .labelNext import COMPUTING, POLL_MS, LabelNextLogic, SuggestionRow, answerError, answerMessage, suggestionRows
from ..backgroundTasks import TaskCancelled
from ..pairing import ownerText, sameNode
from ..train.projectLogic import caseOf, prepareTrainingCase, tagCase, writeAndUploadTrainingCase

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
        self.submitButton = qt.QPushButton("Submit and go to next")
        self.submitButton.toolTip = ("Sends the corrected segmentation as the label of this case (replacing the case, "
                                     "not adding a copy), then goes to the next suggested case.")
        layout.addRow(self.submitButton)
        row = qt.QHBoxLayout()
        self.refreshButton = qt.QPushButton("Refresh suggestions")
        self.addVolumeButton = qt.QPushButton("Add volume to rank (no label)")
        self.addVolumeButton.toolTip = ("Uploads the selected volume to the project without a label, so that the "
                                        "suggestions rank its slices.")
        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.toolTip = "Stop the case's download or upload."
        self.cancelButton.enabled = False
        row.addWidget(self.refreshButton)
        row.addWidget(self.addVolumeButton)
        row.addWidget(self.cancelButton)
        layout.addRow(row)
        self.transfer = None  # the download or upload in progress (Cancel stops it; its percent in the status)
        self._cancelledTransfer = False
        self._transferText = ""
        self.progressTimer = qt.QTimer()
        self.progressTimer.setInterval(200)
        self.progressTimer.connect("timeout()", self._showProgress)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        layout.addRow(self.statusLabel)
        self.refreshButton.connect("clicked()", lambda: self.refresh())
        self.addVolumeButton.connect("clicked()", self.onAddVolume)
        self.submitButton.connect("clicked()", self.onSubmit)
        self.cancelButton.connect("clicked()", self.onCancel)
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
        self._fillTable()

    def _failed(self, exc: BaseException) -> None:
        self.refreshButton.enabled = True
        quiet = answerError(exc)
        if quiet is not None:  # nothing to rank (every case labelled): a state, not an error
            self.rows = []
            self.table.setRowCount(0)
            self.statusLabel.text = quiet
            return
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

        projectId = str(project["id"])

        def done(case: dict) -> None:
            self._endTransfer()
            tagCase(volume, projectId, case.get("name", name))  # its suggestions lead back to this volume
            self.addVolumeButton.enabled = True
            self.statusLabel.text = ("Added '{}' without a label: Refresh suggestions to rank it."
                                     .format(case.get("name", name)))
            self.session.casesChanged.emit()

        def failed(exc: BaseException) -> None:
            self._endTransfer()
            self.addVolumeButton.enabled = True
            self.statusLabel.text = "The volume was not added."
            if not self._cancelled(exc):
                showError(exc, self.session)

        self._startTransfer("Uploading '{}'".format(name), "Uploading case", self.logic.uploadUnlabelled, client,
                            projectId, name, snapshot, onSuccess=done, onError=failed)

    # ------------------------------------------------------------------ click
    def onRowClicked(self, index: int) -> None:
        if not 0 <= index < len(self.rows):
            return
        row = self.rows[index]
        try:
            current = self.data.volumeNode()
            volume = self.logic.findVolume(slicer.mrmlScene, self._projectId, row.case, current)
            if volume is not None:
                self._goTo(volume, row)
                return
            client, projectId = self.session.requireClient(), self._projectId
            if self.transfer is not None:
                return  # one transfer at a time (Cancel stops it)

            def failed(exc: BaseException) -> None:
                self._endTransfer()
                self.statusLabel.text = "The case '{}' was not downloaded.".format(row.case)
                if not self._cancelled(exc):
                    showError(exc, self.session)

            def loaded(path: str) -> None:
                self._endTransfer()
                self._loaded(path, projectId, row)

            self._startTransfer("Downloading case '{}' from the backend".format(row.case), "Downloading case",
                                self.logic.download, client, projectId, row.case, onSuccess=loaded, onError=failed)
        except Exception as exc:
            showError(exc, self.session)

    def _loaded(self, path: str, projectId: str, row: SuggestionRow) -> None:
        try:
            volume = self.logic.findVolume(slicer.mrmlScene, projectId, row.case)  # loaded meanwhile by another click?
            self._goTo(volume if volume is not None else self.logic.load(path, projectId, row.case), row)
        except Exception as exc:
            showError(exc, self.session)

    def _goTo(self, volume: Any, row: SuggestionRow) -> None:
        current = self.data.volumeNode()
        switched = not sameNode(current, volume)
        if switched:
            self.data.volumeSelector.setCurrentNode(volume)
            # the segmentation last used with this volume, else the newest made for it, else none (issue 32, item 4)
            self.data.segmentationSelector.setCurrentNode(self.data.pairs.segmentationFor(volume))
        self.logic.show(volume, switched)  # the case itself in the views, not only the planes moved
        self.logic.jumpTo(slicer.mrmlScene, volume, row)
        text = "'{}', slice {}: {}.".format(row.case, row.sliceIndex, row.why)
        if not self.logic.shownInAView(slicer.mrmlScene, volume, row):
            text += (" No view lies along the volume's slices: align one ('Rotate to volume plane' in the view's "
                     "menu) to see exactly that slice.")
        self.statusLabel.text = text
        if self.logic.needsPrediction(volume, hasSegmentation=self.data.segmentationNode() is not None):
            self.segment()

    # ----------------------------------------------------------------- submit
    def onSubmit(self) -> None:
        """Send the current volume's segmentation as the label of its case (replace), drop its rows, go to the
        next suggested case and ask for a new ranking (MONAI Label's "submit label" pattern)."""
        volume, segmentation = self.data.volumeNode(), self.data.segmentationNode()
        try:
            client, project = self.session.requireClient(), self.session.requireProject()
            projectId = str(project["id"])
            case = caseOf(volume, projectId)
            if case is None:
                self.statusLabel.text = ("The selected volume is not a case of this project from the list: click a "
                                         "suggestion first (or use 'Add as training case').")
                return
            if segmentation is None:
                self.statusLabel.text = "Select the segmentation of '{}' to submit.".format(case)
                return
            question = ownerText(segmentation, volume)
            if question is not None and qt.QMessageBox.question(
                    None, "Submit", question, qt.QMessageBox.Yes | qt.QMessageBox.No) != qt.QMessageBox.Yes:
                return
            data = prepareTrainingCase(volume, segmentation, project.get("labels", []))  # copies; written in the worker
        except Exception as exc:
            showError(exc, self.session)
            return
        self.submitButton.enabled = False
        self.statusLabel.text = "Submitting the label of '{}'...".format(case)

        def done(result: dict) -> None:
            self._endTransfer()
            self.submitButton.enabled = True
            self.session.casesChanged.emit()
            self.rows = [row for row in self.rows if row.case != case]
            self._fillTable()
            self.statusLabel.text = "Submitted the label of '{}'.".format(case)
            if self.rows:
                self.onRowClicked(0)
                self.statusLabel.text = "Submitted the label of '{}'. Next: {}".format(case, self.statusLabel.text)
            self.refresh(poll=True)  # the ranking without that case (the backend computes it again)

        def failed(exc: BaseException) -> None:
            self._endTransfer()
            self.submitButton.enabled = True
            self.statusLabel.text = "The label of '{}' was not submitted.".format(case)
            if not self._cancelled(exc):
                showError(exc, self.session)

        self._startTransfer("Submitting the label of '{}'".format(case), "Uploading case", writeAndUploadTrainingCase,
                            client, projectId, case, data, True, onSuccess=done, onError=failed)

    # -------------------------------------------------------------- transfers
    def _startTransfer(self, text: str, name: str, function, *args, onSuccess, onError) -> None:
        """A download or upload with its percent in the status line and Cancel (issue 32, item 10)."""
        self._transferText = text
        self._cancelledTransfer = False
        self.statusLabel.text = text + "..."
        self.transfer = self.session.submit(name, function, *args, onSuccess=onSuccess, onError=onError, passTask=True)
        self.cancelButton.enabled = True
        self.progressTimer.start()

    def _endTransfer(self) -> None:
        self.transfer = None
        self.cancelButton.enabled = False
        self.progressTimer.stop()

    def _showProgress(self) -> None:
        task = self.transfer
        if task is not None and task.progress is not None and not task.done:
            self.statusLabel.text = "{}... {}%".format(self._transferText, int(round(100 * task.progress)))

    def onCancel(self) -> None:
        if self.transfer is not None:
            self.transfer.cancel()
            self._cancelledTransfer = True

    def _cancelled(self, exc: BaseException) -> bool:
        """The transfer ended because of Cancel (the stopped transfer's own error, or ``TaskCancelled``)."""
        cancelled, self._cancelledTransfer = self._cancelledTransfer, False
        return cancelled or isinstance(exc, TaskCancelled)

    def _fillTable(self) -> None:
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            for c, text in enumerate(row.texts()):
                self.table.setItem(r, c, qt.QTableWidgetItem(text))

    def cleanup(self) -> None:
        self.pollTimer.stop()
        self.progressTimer.stop()
        if self.transfer is not None:
            self.transfer.cancel()
