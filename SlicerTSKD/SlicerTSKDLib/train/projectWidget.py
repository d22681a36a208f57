"""The "Project and training cases" panel (Slicer only).

Choose or create a project (labels from the selected segmentation's segments), add the selected
volume and segmentation as a training case, list and delete cases. Taking the case out of the scene
(a copy of the voxels and the label map) runs on the GUI thread; writing its files and every call
to the backend run in a worker thread, with the progress in the status line.

The decisions (which project to show, the texts, what a new project or case is made of) are
:class:`~SlicerTSKDLib.train.projectLogic.ProjectLogic`'s, passed in; this class only shows them and
makes the Qt calls.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import ctk
import qt

from .. import sceneData
from .projectLogic import ProjectLogic, caseRows, projectTitle, tagCase, writeAndUploadTrainingCase
from ..backgroundTasks import TaskCancelled
from ..session import SessionState, showError

__all__ = ["ProjectWidget"]


class ProjectWidget:
    """Builds the panel into ``parentLayout``.

    Args:
        parentLayout: layout of the module widget.
        session: the shared state.
        data: the volume/segmentation selectors (:class:`moduleWidget.DataSelectors`).
        logic: the panel's :class:`ProjectLogic` (``ProjectLogic(qt.QSettings())`` in Slicer).
    """

    def __init__(self, parentLayout: "qt.QLayout", session: SessionState, data, logic: ProjectLogic) -> None:
        self.session = session
        self.data = data
        self.logic = logic
        self.projects: List[Dict[str, Any]] = []
        self.cases: List[Dict[str, Any]] = []
        self._uploadTask = None
        self.preferredProject = lambda: ""  # the scene's parameter node's project id (moduleWidget sets it)
        self._uploadName = ""
        self.progressTimer = qt.QTimer()
        self.progressTimer.setInterval(200)
        self.progressTimer.connect("timeout()", self._showUploadProgress)
        self._build(parentLayout)
        session.connectionChanged.connect(lambda client, info: self.refreshProjects())
        session.casesChanged.connect(self.refreshCases)
        self._updateButtons()

    def _build(self, parentLayout: "qt.QLayout") -> None:
        box = ctk.ctkCollapsibleButton()
        box.text = "Project and training cases"
        parentLayout.addWidget(box)
        form = qt.QFormLayout(box)
        row = qt.QHBoxLayout()
        self.projectCombo = qt.QComboBox()
        self.projectCombo.toolTip = "A project is one segmentation task: its labels, its cases and its models."
        self.refreshButton = qt.QPushButton("Refresh")
        self.newProjectButton = qt.QPushButton("New...")
        self.newProjectButton.toolTip = "Create a project whose labels are the segments of the selected segmentation."
        row.addWidget(self.projectCombo, 1)
        row.addWidget(self.refreshButton)
        row.addWidget(self.newProjectButton)
        form.addRow("Project:", row)
        self.labelsLabel = qt.QLabel()
        self.labelsLabel.wordWrap = True
        form.addRow("Labels:", self.labelsLabel)

        self.caseNameEdit = qt.QLineEdit()
        self.caseNameEdit.placeholderText = "case name (default: the volume's name)"
        self.addCaseButton = qt.QPushButton("Add as training case")
        self.addCaseButton.toolTip = ("Uploads the selected volume and its segmentation (on the volume's grid) to the "
                                      "project. Segment names must be the project's labels.")
        self.cancelUploadButton = qt.QPushButton("Cancel")
        self.cancelUploadButton.toolTip = "Stop writing or uploading the case (nothing is added)."
        row = qt.QHBoxLayout()
        row.addWidget(self.caseNameEdit, 1)
        row.addWidget(self.addCaseButton)
        row.addWidget(self.cancelUploadButton)
        form.addRow(row)

        self.caseTable = qt.QTableWidget()
        self.caseTable.setColumnCount(3)
        self.caseTable.setHorizontalHeaderLabels(["Case", "Label", "Size"])
        self.caseTable.horizontalHeader().setStretchLastSection(True)
        self.caseTable.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        self.caseTable.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        self.caseTable.setMinimumHeight(120)
        form.addRow(self.caseTable)
        row = qt.QHBoxLayout()
        self.refreshCasesButton = qt.QPushButton("Refresh cases")
        self.deleteCaseButton = qt.QPushButton("Delete selected case")
        row.addWidget(self.refreshCasesButton)
        row.addWidget(self.deleteCaseButton)
        form.addRow(row)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        form.addRow(self.statusLabel)

        self.refreshButton.connect("clicked()", self.refreshProjects)
        self.newProjectButton.connect("clicked()", self.onNewProject)
        self.projectCombo.connect("currentIndexChanged(int)", self._onProjectChosen)
        self.addCaseButton.connect("clicked()", lambda: self.addCase())
        self.cancelUploadButton.connect("clicked()", self.onCancelUpload)
        self.refreshCasesButton.connect("clicked()", self.refreshCases)
        self.deleteCaseButton.connect("clicked()", self.onDeleteCase)

    # -------------------------------------------------------------- projects
    def refreshProjects(self, selectId: Optional[str] = None) -> None:
        self.projectCombo.blockSignals(True)  # no "no project" flicker while the list is asked for
        self.projectCombo.clear()
        self.projectCombo.blockSignals(False)
        self.projects = []
        if self.session.client is None:
            self._updateButtons()
            return
        wanted = (selectId, self.preferredProject())
        self.session.submit("Listing projects", self.session.client.list_projects,
                            onSuccess=lambda projects: self._showProjects(projects, wanted),
                            onError=lambda exc: showError(exc, self.session))

    def _showProjects(self, projects: List[Dict[str, Any]], wanted) -> None:
        self.projects, index = self.logic.chooseProject(projects, *wanted)
        self.projectCombo.blockSignals(True)
        self.projectCombo.clear()
        for project in self.projects:
            self.projectCombo.addItem(projectTitle(project), str(project["id"]))
        self.projectCombo.currentIndex = index
        self.projectCombo.blockSignals(False)
        self._onProjectChosen(index)

    def _onProjectChosen(self, index: int) -> None:
        project = self.projects[index] if 0 <= index < len(self.projects) else None
        self.logic.remember(project)
        self.labelsLabel.text = self.logic.labelsText(project)
        self.session.setProject(project)
        self.refreshCases()

    def onNewProject(self) -> None:
        try:
            client = self.session.requireClient()
            segmentation = self.data.segmentationNode()
            labels = self.logic.newProjectLabels(segmentation)
        except Exception as exc:
            showError(exc, self.session)
            return
        name = self.logic.projectName(qt.QInputDialog.getText(
            None, "New project", self.logic.newProjectQuestion(labels), qt.QLineEdit.Normal, segmentation.GetName()))
        if name is None:
            return
        settings = self.logic.newProjectSettings(segmentation)  # the segments' terminology (issue 32, item 13)
        self.session.submit("Creating project", client.create_project, name, labels, settings,
                            onSuccess=lambda project: self.refreshProjects(str(project["id"])),
                            onError=lambda exc: showError(exc, self.session))

    # ----------------------------------------------------------------- cases
    def refreshCases(self) -> None:
        self.caseTable.setRowCount(0)
        project, client = self.session.project, self.session.client
        if project is None or client is None:
            self._updateButtons()
            return
        self.session.submit("Listing cases", client.list_cases, str(project["id"]),
                            onSuccess=self._showCases, onError=lambda exc: showError(exc, self.session))
        self._updateButtons()

    def _showCases(self, cases: List[Dict[str, Any]]) -> None:
        self.cases = cases
        if self.session.project is not None:  # the Train panel reads the counts (no projectChanged: same project)
            self.session.project = self.logic.withCaseCounts(self.session.project, cases)
        rows = caseRows(cases)
        self.caseTable.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.caseTable.setItem(r, c, qt.QTableWidgetItem(text))
        self._updateButtons()

    def addCase(self, volumeNode=None, segmentationNode=None) -> None:
        """Export and upload a volume and its segmentation (default: the selected ones) as a case."""
        volumeNode = volumeNode or self.data.volumeNode()
        segmentationNode = segmentationNode or self.data.segmentationNode()
        try:
            client, project = self.session.requireClient(), self.session.requireProject()
            question = self.logic.pairingQuestion(volumeNode, segmentationNode)
            if question is not None and qt.QMessageBox.question(
                    None, "Add training case", question, qt.QMessageBox.Yes | qt.QMessageBox.No) != qt.QMessageBox.Yes:
                self.statusLabel.text = "The case was not added."
                return
            name, case, replace = self.logic.caseToAdd(volumeNode, segmentationNode, project, self.caseNameEdit.text,
                                                       self.cases)  # copies; files in the worker
        except Exception as exc:
            showError(exc, self.session)
            return
        self.statusLabel.text = "Writing and uploading '{}'...".format(name)
        self.addCaseButton.enabled = False
        note = sceneData.colourNote(volumeNode)

        projectId = str(project["id"])

        def done(case: Dict[str, Any]) -> None:
            self.progressTimer.stop()
            tagCase(volumeNode, projectId, case.get("name", name))  # a later correction replaces this case
            text = ("Replaced the label of case '{}'." if replace else "Added case '{}'.").format(case.get("name", name))
            self.statusLabel.text = text + (" " + note if note else "")
            self.caseNameEdit.text = ""
            self.session.casesChanged.emit()

        def failed(exc: BaseException) -> None:
            self.progressTimer.stop()
            self._updateButtons()
            if isinstance(exc, TaskCancelled) or self._uploadTask.isCancelled():  # the user's Cancel: no error box
                self.statusLabel.text = "Cancelled."
                self.session.casesChanged.emit()  # the list shows whether the backend had received it all
                return
            self.statusLabel.text = "The case was not added."
            showError(exc, self.session)

        self._uploadName = name
        self._uploadTask = self.session.submit("Uploading case", writeAndUploadTrainingCase, client, projectId,
                                               name, case, replace, onSuccess=done, onError=failed, passTask=True)
        self.progressTimer.start()
        self._updateButtons()

    def onCancelUpload(self) -> None:
        """Stop the case's writing or upload at its next chunk (issue 32, item 10)."""
        if self._uploadTask is not None and not self._uploadTask.done:
            self._uploadTask.cancel()

    def _showUploadProgress(self) -> None:
        task = self._uploadTask
        text = self.logic.uploadText(self._uploadName, task.progress) if task is not None and not task.done else None
        if text is not None:
            self.statusLabel.text = text

    def onDeleteCase(self) -> None:
        row = self.caseTable.currentRow()
        item = self.caseTable.item(row, 0) if row >= 0 else None
        if item is None or self.session.project is None or self.session.client is None:
            return
        name = item.text()
        if not qt.QMessageBox.question(None, "Delete case", self.logic.deleteQuestion(name),
                                       qt.QMessageBox.Yes | qt.QMessageBox.No) == qt.QMessageBox.Yes:
            return
        self.session.submit("Deleting case", self.session.client.delete_case, str(self.session.project["id"]), name,
                            onSuccess=lambda _: self.session.casesChanged.emit(),
                            onError=lambda exc: showError(exc, self.session))

    def cleanup(self) -> None:
        self.progressTimer.stop()

    def _updateButtons(self) -> None:
        connected = self.session.client is not None
        hasProject = self.session.project is not None
        self.refreshButton.enabled = connected
        self.newProjectButton.enabled = connected
        uploading = self.session.tasks.busy("Uploading case")
        self.addCaseButton.enabled = hasProject and not uploading
        self.cancelUploadButton.enabled = self._uploadTask is not None and not self._uploadTask.done
        self.refreshCasesButton.enabled = hasProject
        self.deleteCaseButton.enabled = hasProject
