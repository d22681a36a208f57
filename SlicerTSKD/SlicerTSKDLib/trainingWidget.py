"""The "Train" panel (Slicer only): preset, foundation model, Start / Cancel / Resume, progress per
stage, ETA, Dice, log.

A ``qt.QTimer`` asks for the job's status every 2 s (the call runs in a worker thread; a new one is
not sent while the previous one is out); :func:`trainingLogic.jobDisplay` turns the answer into
what the widgets show. The "Foundation model" chooser, its download (polled by a second timer) and
its import (upload progress read by the same timer) are :mod:`foundationLogic`; this file only
copies their values into widgets.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import ctk
import qt

from .foundationLogic import (
    NO_FOUNDATION_TEXT,
    FoundationLogic,
    WeightsDownload,
    WeightsImport,
    downloadCandidates,
    foundationChoices,
    initialChoice,
)
from .trainingLogic import activeJob, jobDisplay, presetChoices, resumableJob
from .session import SessionState, showError, userMessage

__all__ = ["TrainingWidget"]

_POLL_MS = 2000
_WEIGHTS_POLL_MS = 500


class TrainingWidget:
    """Builds the panel into ``parentLayout``.

    Args:
        parentLayout: layout of the module widget.
        session: the shared state (``modelReady`` is emitted when a job produced a model).
    """

    def __init__(self, parentLayout: "qt.QLayout", session: SessionState) -> None:
        self.session = session
        self.jobId: Optional[str] = None
        self.resumeId: Optional[str] = None
        self.stageBars: Dict[str, Any] = {}
        self.timer = qt.QTimer()
        self.timer.setInterval(_POLL_MS)
        self.timer.connect("timeout()", self._poll)
        self.download: Optional[WeightsDownload] = None
        self.upload: Optional[WeightsImport] = None
        self.checkpointRows: list = []
        self.weightsTimer = qt.QTimer()
        self.weightsTimer.setInterval(_WEIGHTS_POLL_MS)
        self.weightsTimer.connect("timeout()", self._pollWeights)
        self._build(parentLayout)
        session.connectionChanged.connect(self._onConnection)
        session.projectChanged.connect(self._onProject)
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
        self.startButton = qt.QPushButton("Start training")
        self.cancelButton = qt.QPushButton("Cancel")
        self.resumeButton = qt.QPushButton("Resume")
        self.resumeButton.toolTip = "Continue the last interrupted, failed or cancelled training from its last checkpoint."
        for button in (self.startButton, self.cancelButton, self.resumeButton):
            row.addWidget(button)
        form.addRow(row)
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
        self.checkpointRows = list(rows or [])
        choices = foundationChoices(self.checkpointRows)
        self.foundationCombo.clear()
        for choice in choices:
            self.foundationCombo.addItem(choice.title, choice.value)
            self.foundationCombo.setItemData(self.foundationCombo.count - 1, choice.tooltip, qt.Qt.ToolTipRole)
        selected = initialChoice(choices, self.session.project)
        self.foundationCombo.setCurrentIndex(max(0, [c.value for c in choices].index(selected)))
        candidates = downloadCandidates(self.checkpointRows)
        noneAvailable = len(choices) == 1
        self.foundationNote.visible = noneAvailable
        self.downloadButton.visible = bool(candidates) and noneAvailable
        if candidates:
            self.downloadButton.text = "Download " + " / ".join(
                {"medsam-vit-b": "MedSAM", "sam-vit-b": "SAM ViT-B"}.get(str(r["name"]), str(r["name"])) for r in candidates)
        self._updateButtons()

    def onFoundationChosen(self, index: int) -> None:
        project, client = self.session.project, self.session.client
        if project is None or client is None:
            return
        value = self.foundationCombo.itemData(index)
        self.session.submit("Saving the foundation model choice", FoundationLogic(client).saveChoice, project, value,
                            onSuccess=self._onProjectSaved, onError=lambda exc: showError(exc, self.session))

    def _onProjectSaved(self, project) -> None:
        self.session.project = project  # the saved choice is in its settings

    def onDownload(self) -> None:
        candidates = downloadCandidates(self.checkpointRows)
        if not candidates or self.session.client is None:
            return
        self.download = WeightsDownload(self.session.client, str(candidates[0]["name"]))
        self.session.submit("Starting the download", self.download.start, onSuccess=self._showDownload,
                            onError=self._onWeightsError)
        self.weightsTimer.start()
        self._updateButtons()

    def onCancelDownload(self) -> None:
        if self.download is not None:
            self.session.submit("Cancelling the download", self.download.cancel, onSuccess=self._showDownload,
                                onError=self._onWeightsError)

    def onImport(self) -> None:
        if self.session.client is None:
            return
        path = qt.QFileDialog.getOpenFileName(None, "Import foundation model weights", "",
                                              "Weights (*.pth *.pt *.safetensors *.bin);;All files (*)")
        if not path:
            return
        self.upload = WeightsImport(self.session.client, path)
        self.weightsLabel.text = "Uploading {} to the backend, which checks it...".format(path)
        self.session.submit("Importing weights", self.upload.run, onSuccess=self._onImported,
                            onError=self._onWeightsError)
        self.weightsTimer.start()
        self._updateButtons()

    def _onImported(self, row) -> None:
        self.upload = None
        self.weightsTimer.stop()
        self.weightsBar.value = 1000
        self.weightsLabel.text = "Imported {} ({}).".format(row.get("name"), row.get("architecture") or "SAM")
        self._refreshFoundation()

    def _pollWeights(self) -> None:
        if self.upload is not None:
            fraction = self.upload.fraction
            self.weightsBar.value = int(round((fraction or 0.0) * 1000))
            return
        if self.download is not None and not self.session.tasks.busy("Download status"):
            self.session.submit("Download status", self.download.poll, onSuccess=self._showDownload,
                                onError=self._onWeightsError)

    def _showDownload(self, status) -> None:
        self.weightsBar.value = int(round((status.fraction or 0.0) * 1000))
        self.weightsLabel.text = status.text
        if status.finished:
            self.download = None
            self.weightsTimer.stop()
            self._refreshFoundation()
        self._updateButtons()

    def _onWeightsError(self, exc: BaseException) -> None:
        self.download = self.upload = None
        self.weightsTimer.stop()
        self.weightsLabel.text = userMessage(exc, self.session.url)
        self._updateButtons()

    def _onConnection(self, client, info) -> None:
        self.presetCombo.clear()
        if info is not None:
            for title, preset, tip in presetChoices(info.presets, info.device):
                self.presetCombo.addItem(title, preset)
                self.presetCombo.setItemData(self.presetCombo.count - 1, tip, qt.Qt.ToolTipRole)
        self._follow(None)
        self._refreshFoundation()

    def _onProject(self, project) -> None:
        self._follow(None)
        self.resumeId = None
        self._showFoundation(self.checkpointRows)  # the project's saved choice
        if project is None or self.session.client is None:
            return
        self.session.submit("Listing jobs", self.session.client.list_jobs, str(project["id"]),
                            onSuccess=self._onJobs, onError=lambda exc: showError(exc, self.session))

    def _onJobs(self, jobs) -> None:
        active, resumable = activeJob(jobs), resumableJob(jobs)
        self.resumeId = str(resumable["id"]) if resumable else None
        if active is not None:
            self._follow(str(active["id"]))
        elif resumable is not None:
            self._show(resumable)
        self._updateButtons()

    def _follow(self, jobId: Optional[str]) -> None:
        self.jobId = jobId
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
        preset = self.presetCombo.currentData
        base = self.foundationCombo.currentData or "none"
        self.session.submit("Starting training", FoundationLogic(client).startJob, project, preset or None, base,
                            onSuccess=lambda job: self._follow(str(job["id"])),
                            onError=lambda exc: showError(exc, self.session))

    def onCancel(self) -> None:
        if self.jobId and self.session.client is not None:
            self.session.submit("Cancelling training", self.session.client.cancel_job, self.jobId,
                                onSuccess=self._show, onError=lambda exc: showError(exc, self.session))

    def onResume(self) -> None:
        if self.resumeId and self.session.client is not None:
            jobId = self.resumeId
            self.session.submit("Resuming training", self.session.client.resume_job, jobId,
                                onSuccess=lambda job: self._follow(jobId), onError=lambda exc: showError(exc, self.session))

    def _poll(self) -> None:
        if not self.jobId or self.session.client is None or self.session.tasks.busy("Job status"):
            return
        self.session.submit("Job status", self.session.client.job_status, self.jobId,
                            onSuccess=self._show, onError=self._onPollError)

    def _onPollError(self, exc: BaseException) -> None:
        self.headline.text = "Cannot read the training status: " + userMessage(exc, self.session.url)

    def _show(self, status: Dict[str, Any]) -> None:
        display = jobDisplay(status)
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
            self.jobId = None
            self.resumeId = str(status.get("id")) if display.canResume else None
            if display.modelId:
                self.session.modelReady.emit(display.modelId)
        self._updateButtons()

    def _updateButtons(self) -> None:
        connected = self.session.client is not None and self.session.project is not None
        self.startButton.enabled = connected and self.jobId is None
        self.cancelButton.enabled = connected and self.jobId is not None
        self.resumeButton.enabled = connected and self.jobId is None and self.resumeId is not None
        transferring = self.download is not None or self.upload is not None
        online = self.session.client is not None
        self.downloadButton.enabled = online and not transferring
        self.importButton.enabled = online and not transferring
        self.weightsCancelButton.visible = self.download is not None
        self.weightsBar.visible = transferring

    def cleanup(self) -> None:
        self.timer.stop()
        self.weightsTimer.stop()
