"""The "Train" panel (Slicer only): preset, Start / Cancel / Resume, progress per stage, ETA, Dice, log.

A ``qt.QTimer`` asks for the job's status every 2 s (the call runs in a worker thread; a new one is
not sent while the previous one is out); :func:`trainingLogic.jobDisplay` turns the answer into
what the widgets show.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import ctk
import qt

from .trainingLogic import activeJob, jobDisplay, presetChoices, resumableJob
from .session import SessionState, showError, userMessage

__all__ = ["TrainingWidget"]

_POLL_MS = 2000


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

    def _onConnection(self, client, info) -> None:
        self.presetCombo.clear()
        if info is not None:
            for title, preset, tip in presetChoices(info.presets, info.device):
                self.presetCombo.addItem(title, preset)
                self.presetCombo.setItemData(self.presetCombo.count - 1, tip, qt.Qt.ToolTipRole)
        self._follow(None)

    def _onProject(self, project) -> None:
        self._follow(None)
        self.resumeId = None
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
        self.session.submit("Starting training", client.start_job, str(project["id"]), preset or None,
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

    def cleanup(self) -> None:
        self.timer.stop()
