"""The "Train" panel (Slicer only): preset, foundation model, Train from scratch / Update the model
with the new cases / Cancel / Resume, progress per stage, ETA, Dice, log.

A ``qt.QTimer`` asks for the job's status every 2 s (the call runs in a worker thread; a new one is
not sent while the previous one is out). The panel's state and decisions (the job it follows, what
Resume continues, whether Start may send a job, the foundation model chooser, a weights download or
import) are :class:`~SlicerTSKDLib.train.trainingLogic.TrainingLogic`'s, passed in; what a job status shows
is :func:`~SlicerTSKDLib.train.jobDisplayLogic.jobDisplay`'s. This file only copies their values into widgets.
"""

from __future__ import annotations

from typing import Any, Dict

import ctk
import qt

from .foundationLogic import NO_FOUNDATION_TEXT, FoundationLogic
from .foundationState import DOWNLOAD_STATUS, STARTING_DOWNLOAD
from .trainingLogic import TrainingLogic
from ..session import SessionState, showError, userMessage

__all__ = ["TrainingWidget"]

_POLL_MS = 2000
_WEIGHTS_POLL_MS = 500


class TrainingWidget:
    """Builds the panel into ``parentLayout``.

    Args:
        parentLayout: layout of the module widget.
        session: the shared state (``modelReady`` is emitted when a job produced a model).
        logic: the panel's :class:`TrainingLogic`.
    """

    def __init__(self, parentLayout: "qt.QLayout", session: SessionState, logic: TrainingLogic) -> None:
        self.session = session
        self.logic = logic
        self.stageBars: Dict[str, Any] = {}
        self.preferredModel = lambda: ""  # the model chosen in the Segment panel (moduleWidget sets it)
        self.timer = qt.QTimer()
        self.timer.setInterval(_POLL_MS)
        self.timer.connect("timeout()", self._poll)
        self.weightsTimer = qt.QTimer()
        self.weightsTimer.setInterval(_WEIGHTS_POLL_MS)
        self.weightsTimer.connect("timeout()", self._pollWeights)
        self._build(parentLayout)
        session.connectionChanged.connect(self._onConnection)
        session.projectChanged.connect(self._onProject)
        session.casesChanged.connect(self._refreshModels)  # the update button counts the new cases
        self._updateButtons()

    def _build(self, parentLayout: "qt.QLayout") -> None:
        box = ctk.ctkCollapsibleButton()
        box.text = "Train"
        parentLayout.addWidget(box)
        form = qt.QFormLayout(box)
        self.presetCombo = qt.QComboBox()
        form.addRow("Quality:", self.presetCombo)
        self.foundationCombo = qt.QComboBox()
        self.foundationCombo.toolTip = "The foundation model the teacher is fine-tuned from (MedSAM is best for medical images)."
        form.addRow("Foundation model:", self.foundationCombo)
        self.foundationNote = qt.QLabel(NO_FOUNDATION_TEXT)
        self.foundationNote.wordWrap = True
        form.addRow(self.foundationNote)
        weightsRow = qt.QHBoxLayout()
        self.downloadButton = qt.QPushButton("Download MedSAM / SAM ViT-B")
        self.importButton = qt.QPushButton("Import weights file...")
        self.importButton.toolTip = "Upload SAM or MedSAM weights (.pth, .safetensors) you already have, e.g. without internet."
        self.weightsCancelButton = qt.QPushButton("Cancel")
        for button in (self.downloadButton, self.importButton, self.weightsCancelButton):
            weightsRow.addWidget(button)
        form.addRow(weightsRow)
        self.weightsBar = qt.QProgressBar()
        self.weightsBar.setRange(0, 1000)
        self.weightsLabel = qt.QLabel()
        self.weightsLabel.wordWrap = True
        form.addRow(self.weightsBar)
        form.addRow(self.weightsLabel)
        row = qt.QHBoxLayout()
        self.startButton = qt.QPushButton("Train from scratch")
        self.updateButton = qt.QPushButton("Update the model with the new cases")
        self.cancelButton = qt.QPushButton("Cancel")
        self.resumeButton = qt.QPushButton("Resume")
        self.resumeButton.toolTip = "Continue the last interrupted, failed or cancelled training from its last checkpoint."
        for button in (self.startButton, self.updateButton, self.cancelButton, self.resumeButton):
            row.addWidget(button)
        form.addRow(row)
        self.reuseSynthesisCheck = qt.QCheckBox("Update: reuse the earlier synthetic images (faster)")
        self.reuseSynthesisCheck.checked = True
        self.reuseSynthesisCheck.toolTip = ("Unchecked, the update trains the diffusion model and makes the synthetic "
                                            "images again from all cases (slower).")
        form.addRow(self.reuseSynthesisCheck)
        self.headline = qt.QLabel("No training yet.")
        self.headline.wordWrap = True
        form.addRow(self.headline)
        self.jobFoundationLabel = qt.QLabel()
        form.addRow("Foundation model of this job:", self.jobFoundationLabel)
        self.stageForm = qt.QFormLayout()
        form.addRow(self.stageForm)
        self.etaLabel = qt.QLabel()
        self.diceLabel = qt.QLabel()
        form.addRow("Time left in this stage:", self.etaLabel)
        form.addRow("Validation Dice:", self.diceLabel)
        logBox = ctk.ctkCollapsibleGroupBox()
        logBox.title = "Log"
        logBox.collapsed = True
        form.addRow(logBox)
        logLayout = qt.QVBoxLayout(logBox)
        self.logView = qt.QPlainTextEdit()
        self.logView.readOnly = True
        logLayout.addWidget(self.logView)
        self.startButton.connect("clicked()", self.onStart)
        self.updateButton.connect("clicked()", self.onUpdate)
        self.cancelButton.connect("clicked()", self.onCancel)
        self.resumeButton.connect("clicked()", self.onResume)
        self.downloadButton.connect("clicked()", self.onDownload)
        self.importButton.connect("clicked()", self.onImport)
        self.weightsCancelButton.connect("clicked()", self.onCancelDownload)
        self.foundationCombo.connect("activated(int)", self.onFoundationChosen)

    # -- foundation model ---------------------------------------------------------------------
    def _refreshFoundation(self) -> None:
        if self.session.client is None:
            self._showFoundation([])
            return
        self.session.submit("Listing foundation models", FoundationLogic(self.session.client).checkpoints,
                            onSuccess=self._showFoundation, onError=lambda exc: showError(exc, self.session))

    def _showFoundation(self, rows) -> None:
        view = self.logic.foundation(rows, self.session.project)
        self.foundationCombo.clear()
        for choice in view.choices:
            self.foundationCombo.addItem(choice.title, choice.value)
            self.foundationCombo.setItemData(self.foundationCombo.count - 1, choice.tooltip, qt.Qt.ToolTipRole)
        self.foundationCombo.setCurrentIndex(view.index)
        save = self.logic.choiceToSave(view, self.session.project)
        if save is not None:  # just downloaded or imported: it is the project's choice from now on
            self._saveFoundationChoice(save)
        self.foundationNote.visible = view.noneAvailable
        self.downloadButton.visible = view.offerDownload
        if view.downloadText:
            self.downloadButton.text = view.downloadText
        self._updateButtons()

    def onFoundationChosen(self, index: int) -> None:
        """The user's choice (``activated``): saved in the project, and it wins over a model just added."""
        self.logic.userChose()
        self._saveFoundationChoice(self.foundationCombo.itemData(index))

    def _saveFoundationChoice(self, value) -> None:
        project, client = self.session.project, self.session.client
        if project is None or client is None:
            return
        self.session.submit("Saving the foundation model choice", FoundationLogic(client).saveChoice, project, value,
                            onSuccess=self._onProjectSaved, onError=lambda exc: showError(exc, self.session))

    def _onProjectSaved(self, project) -> None:
        self.session.project = project  # the saved choice is in its settings
        self.logic.choiceSaved(project)

    def onDownload(self) -> None:
        download = self.logic.startDownload(self.session.client)
        if download is None:
            return
        self.session.submit(STARTING_DOWNLOAD, download.start, onSuccess=self._showDownload,
                            onError=self._onWeightsError)
        self.weightsTimer.start()
        self._updateButtons()

    def onCancelDownload(self) -> None:
        if self.logic.upload is not None:  # an import: stopped at its next chunk (issue 32, item 10)
            self.logic.upload.cancel()
            return
        if self.logic.download is not None:
            self.session.submit("Cancelling the download", self.logic.download.cancel, onSuccess=self._showDownload,
                                onError=self._onWeightsError)

    def onImport(self) -> None:
        if self.session.client is None:
            return
        path = qt.QFileDialog.getOpenFileName(None, "Import foundation model weights", "",
                                              "Weights (*.pth *.pt *.safetensors *.bin);;All files (*)")
        upload = self.logic.startImport(self.session.client, path)
        if upload is None:
            return
        self.weightsLabel.text = "Uploading {} to the backend, which checks it...".format(path)
        self.session.submit("Importing weights", upload.run, onSuccess=self._onImported,
                            onError=self._onWeightsError)
        self.weightsTimer.start()
        self._updateButtons()

    def _onImported(self, row) -> None:
        self.logic.transferEnded()
        self.weightsTimer.stop()
        self.weightsBar.value = 1000
        self.weightsLabel.text = self.logic.importedText(row)
        self._refreshFoundation()

    def _pollWeights(self) -> None:
        if self.logic.upload is not None:
            fraction = self.logic.upload.fraction
            self.weightsBar.value = int(round((fraction or 0.0) * 1000))
            return
        if self.logic.pollDownloadNow(self.session.tasks.busy):
            self.session.submit(DOWNLOAD_STATUS, self.logic.download.poll, onSuccess=self._showDownload,
                                onError=self._onWeightsError)

    def _showDownload(self, status) -> None:
        self.weightsBar.value = int(round((status.fraction or 0.0) * 1000))
        self.weightsLabel.text = status.text
        if self.logic.downloadStatus(status):
            self.weightsTimer.stop()
            self._refreshFoundation()
        self._updateButtons()

    def _onWeightsError(self, exc: BaseException) -> None:
        cancelled = self.logic.upload is not None and self.logic.upload.cancelled
        self.logic.transferEnded()
        self.weightsTimer.stop()
        self.weightsLabel.text = "Import cancelled." if cancelled else userMessage(exc, self.session.url)
        self._updateButtons()

    def _onConnection(self, client, info) -> None:
        self.presetCombo.clear()
        for title, preset, tip in self.logic.presetEntries(info):
            self.presetCombo.addItem(title, preset)
            self.presetCombo.setItemData(self.presetCombo.count - 1, tip, qt.Qt.ToolTipRole)
        self._follow(None)
        self._refreshFoundation()

    def _onProject(self, project) -> None:
        self._follow(None)
        self.logic.forgetJobs()
        self._showFoundation(self.logic.checkpointRows)  # the project's saved choice
        if project is None or self.session.client is None:
            return
        self.session.submit("Listing jobs", self.session.client.list_jobs, str(project["id"]),
                            onSuccess=self._onJobs, onError=lambda exc: showError(exc, self.session))
        self._refreshModels()

    def _refreshModels(self) -> None:
        project, client = self.session.project, self.session.client
        if project is not None and client is not None:
            self.session.submit("Listing models for updates", self.logic.listForUpdate, client, str(project["id"]),
                                onSuccess=self._onModels, onError=lambda exc: showError(exc, self.session))

    def _onModels(self, lists) -> None:
        self.logic.listed(lists)
        self._updateButtons()

    def _onJobs(self, jobs) -> None:
        follow, show = self.logic.jobsListed(jobs)
        if follow is not None:
            self._follow(follow)
        elif show is not None:
            self._show(show)
        self._updateButtons()

    def _follow(self, jobId) -> None:
        self.logic.follow(jobId)
        self.stageBars = {}
        while self.stageForm.rowCount() > 0:
            self.stageForm.removeRow(0)  # deletes the row's label and progress bar
        if jobId is None:
            self.timer.stop()
            self.headline.text = "No training running."
            self.etaLabel.text = self.diceLabel.text = ""
        else:
            self.timer.start()
            self._poll()
        self._updateButtons()

    def onStart(self) -> None:
        try:
            client, project = self.session.requireClient(), self.session.requireProject()
        except Exception as exc:
            showError(exc, self.session)
            return
        problem = self.logic.startProblem(project)
        if problem is not None:
            self.headline.text = problem
            return
        self._send("Starting training", self.logic.startJob, client, project, self.presetCombo.currentData,
                   self.foundationCombo.currentData)

    def onUpdate(self) -> None:
        project, client = self.session.project, self.session.client
        model = self.logic.updateModel(self.preferredModel())
        if self.logic.updateProblem(project is not None and client is not None, self.preferredModel()) is not None \
                or model is None:
            return
        self._send("Starting the update", self.logic.startUpdate, client, project, model,
                   self.reuseSynthesisCheck.checked)

    def _send(self, name: str, function, *args, jobId=None) -> None:
        """One start (training, update, resume) at a time: the buttons stay disabled until the backend answered,
        so a double click never queues two trainings (issue 32, item 5)."""
        if not self.logic.beginStart(name):
            return

        def done(job) -> None:
            self.logic.startEnded()
            self._follow(jobId or str(job["id"]))

        def failed(exc: BaseException) -> None:
            self.logic.startEnded()
            self._updateButtons()
            project, client = self.session.project, self.session.client
            if not self.logic.mayBeTrainingAlready(exc) or project is None or client is None:
                showError(exc, self.session)
                return

            def jobsListed(jobs) -> None:
                refusal = self.logic.startRefusal(jobs)
                if refusal is None:
                    showError(exc, self.session)
                    return
                self.logic.notice = refusal  # kept above the followed job's headline until it finishes
                self.headline.text = refusal
                self._onJobs(jobs)  # the project trains already: follow that training

            self.session.submit("Listing jobs", client.list_jobs, str(project["id"]), onSuccess=jobsListed,
                                onError=lambda error: showError(exc, self.session))

        self.session.submit(name, function, *args, onSuccess=done, onError=failed)
        self._updateButtons()

    def onCancel(self) -> None:
        if self.logic.jobId and self.session.client is not None:
            self.session.submit("Cancelling training", self.session.client.cancel_job, self.logic.jobId,
                                onSuccess=self._show, onError=lambda exc: showError(exc, self.session))

    def onResume(self) -> None:
        if self.logic.resumeId and self.session.client is not None:
            self._send("Resuming training", self.session.client.resume_job, self.logic.resumeId,
                       jobId=self.logic.resumeId)

    def _poll(self) -> None:
        if not self.logic.jobId or self.session.client is None or self.session.tasks.busy("Job status"):
            return
        self.session.submit("Job status", self.session.client.job_status, self.logic.jobId,
                            onSuccess=self._show, onError=self._onPollError)

    def _onPollError(self, exc: BaseException) -> None:
        self.headline.text = "Cannot read the training status: " + userMessage(exc, self.session.url)

    def _show(self, status: Dict[str, Any]) -> None:
        display = self.logic.statusArrived(status)
        self.headline.text = display.headline
        self.jobFoundationLabel.text = display.foundationText
        for row in display.stages:
            bar = self.stageBars.get(row.name)
            if bar is None:
                bar = qt.QProgressBar()
                bar.setRange(0, 1000)
                self.stageBars[row.name] = bar
                self.stageForm.addRow(row.title + ":", bar)
            bar.value = int(round((row.fraction or 0.0) * 1000))
            bar.setFormat(row.text or "%p%")
        self.etaLabel.text = display.etaText
        self.diceLabel.text = display.diceText
        self.logView.setPlainText(display.logText)
        self.logView.verticalScrollBar().setValue(self.logView.verticalScrollBar().maximum)
        if display.finished:
            self.timer.stop()
            if display.modelId:
                self.session.modelReady.emit(display.modelId)
                self._refreshModels()
        self._updateButtons()

    def _updateButtons(self) -> None:
        connected = self.session.client is not None and self.session.project is not None
        following = self.logic.jobId is not None
        starting = self.logic.starting is not None
        self.startButton.enabled = connected and not following and not starting
        self.cancelButton.enabled = connected and following
        self.resumeButton.enabled = connected and not following and not starting and self.logic.resumeId is not None
        problem = self.logic.updateProblem(connected, self.preferredModel())
        self.updateButton.enabled = problem is None and not starting
        self.updateButton.toolTip = problem or self.logic.updateTip
        self.updateButton.text = self.logic.updateText(self.preferredModel())
        transferring = self.logic.transferring
        online = self.session.client is not None
        self.downloadButton.enabled = online and not transferring
        self.importButton.enabled = online and not transferring
        self.weightsCancelButton.visible = self.logic.download is not None or self.logic.upload is not None
        self.weightsBar.visible = transferring

    def cleanup(self) -> None:
        self.timer.stop()
        self.weightsTimer.stop()
