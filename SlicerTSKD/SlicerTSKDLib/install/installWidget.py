"""The "Backend environment" panel (Slicer only): set up the backend's own Python environment, or use an existing one.

The decisions live in :class:`~SlicerTSKDLib.install.installLogic.EnvironmentPanelLogic`, passed in (made in
Slicer by :func:`makeEnvironmentPanelLogic`: the host with Slicer's startup environment, a
``QProcessRunner`` per set-up, ``qt.QSettings``, the backend sources next to the module); this file
builds the widgets, copies the choices between them and the logic, and shows the set-up's
progress, log and result. The GUI never waits for a command.
"""

from __future__ import annotations

from typing import Optional

import ctk
import qt

from .installLogic import DEVICE_TITLES, INDEX_MODE_TITLES, SETTING_UP, EnvironmentChoices, EnvironmentPanelLogic

__all__ = ["InstallWidget", "makeEnvironmentPanelLogic"]


def makeEnvironmentPanelLogic(moduleDir: str) -> EnvironmentPanelLogic:
    """The panel's logic in Slicer: children get Slicer's startup environment (without its Python
    variables), commands run through a ``QProcessRunner``, the choices are kept in ``qt.QSettings``.

    Args:
        moduleDir: folder of ``SlicerTSKD.py`` (the backend sources are found from there).
    """
    import shutil
    import sys

    import slicer

    from .environment import findBackendSource
    from ..hostContext import HostContext
    from ..processRunner import QProcessRunner

    slicerPython = shutil.which("PythonSlicer")
    host = HostContext.current(
        environment=slicer.util.startupEnvironment(),  # without Slicer's own Python variables
        slicerPython=(slicerPython,) if slicerPython else None,
        slicerPythonVersion=tuple(sys.version_info[:3]),
    )
    return EnvironmentPanelLogic(host, findBackendSource(moduleDir) or "", QProcessRunner, qt.QSettings())


class InstallWidget:
    """Builds the panel into ``parentLayout``.

    Args:
        parentLayout: layout of the module widget.
        logic: the panel's :class:`EnvironmentPanelLogic` (its ``environmentReady`` signal says when
            the environment is ready: after a set-up, or found so by :meth:`refreshStatus`).
    """

    def __init__(self, parentLayout: "qt.QLayout", logic: EnvironmentPanelLogic) -> None:
        self.logic = logic
        self._build(parentLayout)
        logic.runStarting.connect(self._onRunStarting)
        logic.progress.connect(self._onProgress)
        logic.logMessage.connect(self.logView.appendPlainText)
        logic.finished.connect(self._onFinished)
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
        self.deviceCombo.addItems(list(DEVICE_TITLES))
        advancedForm.addRow("PyTorch build:", self.deviceCombo)
        self.indexModeCombo = qt.QComboBox()
        self.indexModeCombo.addItems(list(INDEX_MODE_TITLES))
        self.indexUrlEdit = qt.QLineEdit()
        self.indexUrlEdit.placeholderText = "https://mirror.example.org/pytorch/cu126"
        advancedForm.addRow("PyTorch index:", self.indexModeCombo)
        advancedForm.addRow("Custom index URL:", self.indexUrlEdit)
        self.pipArgsEdit = qt.QLineEdit()
        self.pipArgsEdit.placeholderText = "e.g. --index-url https://mirror/simple --proxy http://proxy:3128"
        advancedForm.addRow("Extra pip arguments:", self.pipArgsEdit)
        self.upgradePipCheck = qt.QCheckBox("Upgrade pip first")
        advancedForm.addRow(self.upgradePipCheck)

        self.setupButton.connect("clicked()", self.onSetUp)
        self.useExistingButton.connect("clicked()", self.onUseExisting)
        self.retryButton.connect("clicked()", self.onRetry)
        self.cancelButton.connect("clicked()", self.onCancel)
        self.indexModeCombo.connect("currentIndexChanged(int)", lambda index: self._updateButtons())

    # -------------------------------------------------------------- settings
    def _loadSettings(self) -> None:
        saved = self.logic.loadSettings()
        self.folderEdit.currentPath = saved.folder
        self.deviceCombo.currentIndex = saved.device
        self.indexModeCombo.currentIndex = saved.indexMode
        self.indexUrlEdit.text = saved.indexUrl
        self.pipArgsEdit.text = saved.pipArgs
        self.existingEdit.text = saved.existing
        self.upgradePipCheck.checked = saved.upgradePip

    def choices(self) -> EnvironmentChoices:
        """What the fields hold."""
        return EnvironmentChoices(folder=self.folderEdit.currentPath, device=self.deviceCombo.currentIndex,
                                  indexMode=self.indexModeCombo.currentIndex, indexUrl=self.indexUrlEdit.text,
                                  pipArgs=self.pipArgsEdit.text, existing=self.existingEdit.text,
                                  upgradePip=bool(self.upgradePipCheck.checked))

    # --------------------------------------------------------------- actions
    def onSetUp(self) -> None:
        self._show(self.logic.start(self.choices()))

    def onUseExisting(self) -> None:
        self._show(self.logic.start(self.choices(), existing=self.existingEdit.text))

    def onRetry(self) -> None:
        """Run the last set-up again (a new one when there was none)."""
        self._show(self.logic.retry(self.choices()))

    def onCancel(self) -> None:
        self.logic.cancel()

    def _show(self, problem: Optional[str]) -> None:
        if problem is not None:
            self.statusLabel.text = problem
        self._updateButtons()

    def _onRunStarting(self) -> None:
        self.logView.clear()
        self.statusLabel.text = SETTING_UP
        self._updateButtons()

    def _onProgress(self, fraction: float, label: str) -> None:
        self.progressBar.value = int(round(fraction * 1000))
        self.stepLabel.text = label

    def _onFinished(self, succeeded: bool, text: str) -> None:
        self.statusLabel.text = text
        self._updateButtons()

    def refreshStatus(self) -> None:
        """Show whether the environment in the chosen folder is ready (the logic emits ``environmentReady`` when it is)."""
        self.statusLabel.text = self.logic.refresh(self.folderEdit.currentPath).text
        self._updateButtons()

    def _updateButtons(self) -> None:
        logic = self.logic
        self.setupButton.enabled = logic.canSetUp()
        self.useExistingButton.enabled = logic.canUseExisting()
        self.cancelButton.enabled = logic.canCancel()
        self.retryButton.enabled = logic.canRetry()
        self.progressBar.visible = logic.showsProgress()
        self.indexUrlEdit.enabled = logic.indexUrlApplies(self.indexModeCombo.currentIndex)

    def cleanup(self) -> None:
        """Stop a running set-up (called when the module is closed or reloaded)."""
        self.logic.cleanup()
