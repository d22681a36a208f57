"""The "Set up local backend" panel: Qt widgets wired to :class:`EnvironmentSetup` (Slicer only).

Thin by design: the decisions live in the logic modules; this file builds the widgets, turns their
values into :class:`EnvironmentOptions`, remembers them in the application settings, and shows the
set-up's progress, log and result. Commands run through :class:`QProcessRunner`, so the GUI never
waits for them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import Optional

import ctk
import qt
import slicer

from .environment import EnvironmentOptions, defaultEnvironmentRoot, findBackendSource, shippedBackendVersion
from .environmentMarker import BROKEN, NOT_SET_UP, OUTDATED, READY, EnvironmentInfo, environmentState
from .environmentSetup import EnvironmentSetup
from .hostContext import HostContext
from .processRunner import QProcessRunner
from .signal import Signal

__all__ = ["InstallWidget"]

_SETTINGS = "SlicerTSKD/Environment/"
_INDEX_MODES = ("Automatic (download.pytorch.org, CUDA or CPU)", "pip's configured index", "Custom URL")


class InstallWidget:
    """Builds the panel into ``parentLayout``.

    Args:
        parentLayout: layout of the module widget.
        moduleDir: folder of ``SlicerTSKD.py`` (the backend sources are found from there).

    Signals:
        environmentReady(info: EnvironmentInfo): a set-up succeeded, or a ready one was found.
    """

    def __init__(self, parentLayout: "qt.QLayout", moduleDir: str) -> None:
        self.environmentReady = Signal("info")
        self.backendSourceDir = findBackendSource(moduleDir) or ""
        self.setup: Optional[EnvironmentSetup] = None
        self.host = HostContext.current(
            environment=slicer.util.startupEnvironment(),  # without Slicer's own Python variables
            slicerPython=(shutil.which("PythonSlicer"),) if shutil.which("PythonSlicer") else None,
            slicerPythonVersion=tuple(sys.version_info[:3]),
        )
        self._build(parentLayout)
        self._loadSettings()
        self.refreshStatus()

    # ---------------------------------------------------------------- layout
    def _build(self, parentLayout: "qt.QLayout") -> None:
        box = ctk.ctkCollapsibleButton()
        box.text = "Backend environment"
        parentLayout.addWidget(box)
        form = qt.QFormLayout(box)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        self.statusLabel.setTextInteractionFlags(qt.Qt.TextSelectableByMouse)
        form.addRow(self.statusLabel)
        self.setupButton = qt.QPushButton("Set up local backend")
        self.setupButton.toolTip = (
            "Creates a separate Python environment for the SlicerTSKD backend and installs it with PyTorch "
            "(CUDA build when an NVIDIA GPU is found). Downloads about 3 GB (8 GB with CUDA). "
            "Slicer's own Python is not changed."
        )
        form.addRow(self.setupButton)
        self.progressBar = qt.QProgressBar()
        self.progressBar.setRange(0, 1000)
        self.stepLabel = qt.QLabel()
        form.addRow(self.progressBar)
        form.addRow(self.stepLabel)
        buttons = qt.QHBoxLayout()
        self.cancelButton = qt.QPushButton("Cancel")
        self.retryButton = qt.QPushButton("Retry")
        buttons.addWidget(self.cancelButton)
        buttons.addWidget(self.retryButton)
        form.addRow(buttons)
        self.logView = qt.QPlainTextEdit()
        self.logView.readOnly = True
        self.logView.setMaximumBlockCount(5000)
        form.addRow(self.logView)

        existing = qt.QHBoxLayout()
        self.existingEdit = qt.QLineEdit()
        self.existingEdit.placeholderText = "Environment folder, its Python, or a 'tskd' command"
        self.useExistingButton = qt.QPushButton("Use existing")
        existing.addWidget(self.existingEdit)
        existing.addWidget(self.useExistingButton)
        form.addRow("Use existing environment/command:", existing)

        advanced = ctk.ctkCollapsibleGroupBox()
        advanced.title = "Advanced"
        advanced.collapsed = True
        form.addRow(advanced)
        advancedForm = qt.QFormLayout(advanced)
        self.folderEdit = ctk.ctkPathLineEdit()
        self.folderEdit.filters = ctk.ctkPathLineEdit.Dirs
        advancedForm.addRow("Environment folder:", self.folderEdit)
        self.deviceCombo = qt.QComboBox()
        self.deviceCombo.addItems(["Automatic", "CPU only", "NVIDIA GPU (CUDA)"])
        advancedForm.addRow("PyTorch build:", self.deviceCombo)
        self.indexModeCombo = qt.QComboBox()
        self.indexModeCombo.addItems(list(_INDEX_MODES))
        self.indexUrlEdit = qt.QLineEdit()
        self.indexUrlEdit.placeholderText = "https://mirror.example.org/pytorch/cu126"
        advancedForm.addRow("PyTorch index:", self.indexModeCombo)
        advancedForm.addRow("Custom index URL:", self.indexUrlEdit)
        self.pipArgsEdit = qt.QLineEdit()
        self.pipArgsEdit.placeholderText = "e.g. --index-url https://mirror/simple --proxy http://proxy:3128"
        advancedForm.addRow("Extra pip arguments:", self.pipArgsEdit)
        self.upgradePipCheck = qt.QCheckBox("Upgrade pip first")
        advancedForm.addRow(self.upgradePipCheck)

        self.setupButton.connect("clicked()", lambda: self._start(existing=None))
        self.useExistingButton.connect("clicked()", lambda: self._start(existing=self.existingEdit.text))
        self.retryButton.connect("clicked()", self.onRetry)
        self.cancelButton.connect("clicked()", self.onCancel)
        self.indexModeCombo.connect("currentIndexChanged(int)", lambda index: self._updateButtons())

    # -------------------------------------------------------------- settings
    def _loadSettings(self) -> None:
        settings = qt.QSettings()
        self.folderEdit.currentPath = settings.value(_SETTINGS + "Folder", defaultEnvironmentRoot(self.host))
        self.deviceCombo.currentIndex = int(settings.value(_SETTINGS + "Device", 0))
        self.indexModeCombo.currentIndex = int(settings.value(_SETTINGS + "IndexMode", 0))
        self.indexUrlEdit.text = settings.value(_SETTINGS + "IndexUrl", "")
        self.pipArgsEdit.text = settings.value(_SETTINGS + "PipArgs", "")
        self.existingEdit.text = settings.value(_SETTINGS + "Existing", "")
        self.upgradePipCheck.checked = str(settings.value(_SETTINGS + "UpgradePip", "true")).lower() == "true"

    def _saveSettings(self) -> None:
        settings = qt.QSettings()
        settings.setValue(_SETTINGS + "Folder", self.folderEdit.currentPath)
        settings.setValue(_SETTINGS + "Device", self.deviceCombo.currentIndex)
        settings.setValue(_SETTINGS + "IndexMode", self.indexModeCombo.currentIndex)
        settings.setValue(_SETTINGS + "IndexUrl", self.indexUrlEdit.text)
        settings.setValue(_SETTINGS + "PipArgs", self.pipArgsEdit.text)
        settings.setValue(_SETTINGS + "Existing", self.existingEdit.text)
        settings.setValue(_SETTINGS + "UpgradePip", "true" if self.upgradePipCheck.checked else "false")

    def options(self, existing: Optional[str] = None) -> EnvironmentOptions:
        """The options the widgets describe; raises ValueError on unbalanced quotes in pip arguments."""
        indexMode = self.indexModeCombo.currentIndex
        indexUrl = None if indexMode == 0 else ("" if indexMode == 1 else self.indexUrlEdit.text.strip())
        return EnvironmentOptions(
            rootDir=self.folderEdit.currentPath or defaultEnvironmentRoot(self.host),
            backendSourceDir=self.backendSourceDir,
            device=("auto", "cpu", "cuda")[self.deviceCombo.currentIndex],
            torchIndexUrl=indexUrl,
            extraPipArgs=shlex.split(self.pipArgsEdit.text, posix=not self.host.isWindows),
            upgradePip=bool(self.upgradePipCheck.checked),
            existingCommand=existing,
        )

    # --------------------------------------------------------------- actions
    def _start(self, existing: Optional[str]) -> None:
        if self.setup is not None and self.setup.isRunning():
            return
        try:
            options = self.options(existing)
        except ValueError as exc:
            self.statusLabel.text = "Invalid advanced setting: {}".format(exc)
            return
        self._saveSettings()
        self.logView.clear()
        self.setup = EnvironmentSetup(options, self.host, QProcessRunner())
        self.setup.progress.connect(self._onProgress)
        self.setup.logMessage.connect(self.logView.appendPlainText)
        self.setup.finished.connect(self._onFinished)
        self.statusLabel.text = "Setting up... (you can keep using Slicer)"
        self.setup.start()
        self._updateButtons()

    def onRetry(self) -> None:
        """Run the last set-up again (a fresh one when there was none)."""
        if self.setup is None:
            self._start(existing=None)
        elif not self.setup.isRunning():
            self.logView.clear()
            self.setup.start()
            self._updateButtons()

    def onCancel(self) -> None:
        if self.setup is not None:
            self.setup.cancel()

    def _onProgress(self, fraction: float, label: str) -> None:
        self.progressBar.value = int(round(fraction * 1000))
        self.stepLabel.text = label

    def _onFinished(self, succeeded: bool, message: str) -> None:
        self.refreshStatus()
        if not succeeded:
            self.statusLabel.text = message
        self._updateButtons()

    def refreshStatus(self) -> None:
        """Show whether the environment is ready; emits ``environmentReady`` when it is."""
        markerPath = os.path.join(self.folderEdit.currentPath or defaultEnvironmentRoot(self.host), "environment.json")
        state, info = environmentState(markerPath, shippedBackendVersion(self.backendSourceDir) if self.backendSourceDir else None)
        texts = {
            NOT_SET_UP: "The backend is not set up. Click 'Set up local backend' (downloads about 3 GB), "
                        "or enter an existing installation below.",
            OUTDATED: "The backend environment is older than this extension: click 'Set up local backend' to update it.",
            BROKEN: "The backend environment is damaged or was moved: click 'Set up local backend' to repair it.",
        }
        self.statusLabel.text = self._describe(info) if state == READY else texts[state]
        if not self.backendSourceDir:
            self.statusLabel.text += "\n(The backend sources are missing from this extension: only 'Use existing' can work.)"
        self._updateButtons()
        if state == READY:
            self.environmentReady.emit(info)

    @staticmethod
    def _describe(info: EnvironmentInfo) -> str:
        text = "Backend ready: tskd {}".format(info.backendVersion)
        if info.torchVersion:
            text += ", PyTorch {} ({})".format(info.torchVersion, "GPU" if info.device == "cuda" else "CPU")
        return text + "."

    def _updateButtons(self) -> None:
        running = self.setup is not None and self.setup.isRunning()
        self.setupButton.enabled = not running and bool(self.backendSourceDir)
        self.useExistingButton.enabled = not running
        self.cancelButton.enabled = running
        self.retryButton.enabled = not running and self.setup is not None and self.setup.state in ("failed", "cancelled")
        self.progressBar.visible = running or (self.setup is not None and self.setup.state != "idle")
        self.indexUrlEdit.enabled = self.indexModeCombo.currentIndex == 2

    def cleanup(self) -> None:
        """Stop a running set-up (called when the module is closed or reloaded)."""
        if self.setup is not None and self.setup.isRunning():
            self.setup.cancel()
