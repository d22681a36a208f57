"""The "Backend server" panel (Slicer only): start/stop a local backend, or connect to a remote one.

The decisions live in :mod:`backendLogic`; this file builds the widgets, keeps the address and
mode in ``qt.QSettings`` (the token of a remote server is not stored), polls the local backend's
start-up from a ``qt.QTimer``, and checks a server in a worker thread (never on the GUI thread).
"""

from __future__ import annotations

from typing import Optional

import ctk
import qt
import slicer

from .backendLogic import FAILED, RUNNING, STARTING, STOPPED, BackendInfo, LocalBackend, checkBackend, defaultWorkspace
from .client import TSKDClient
from .environment import defaultEnvironmentRoot
from .environmentMarker import EnvironmentInfo
from .hostContext import HostContext, childEnvironment
from .processRunner import QProcessRunner
from .session import SessionState

__all__ = ["BackendWidget"]

_SETTINGS = "SlicerTSKD/Backend/"


class BackendWidget:
    """Builds the panel into ``parentLayout``.

    Args:
        parentLayout: layout of the module widget.
        session: the shared state (receives the connection).
        installWidget: the environment panel (its folder locates the default workspace).
    """

    def __init__(self, parentLayout: "qt.QLayout", session: SessionState, installWidget) -> None:
        self.session = session
        self.installWidget = installWidget
        self.environment: Optional[EnvironmentInfo] = None
        self.host = HostContext.current(environment=slicer.util.startupEnvironment())
        self.local = LocalBackend(QProcessRunner(), submit=session.submit)  # /health probed in a worker
        self.local.stateChanged.connect(self._onLocalState)
        self.local.output.connect(lambda text: self.logView.appendPlainText(text.rstrip()))
        self.localTimer = qt.QTimer()
        self.localTimer.setInterval(300)
        self.localTimer.connect("timeout()", self._pollLocal)
        self._build(parentLayout)
        self._loadSettings()
        self._updateButtons()

    # ---------------------------------------------------------------- layout
    def _build(self, parentLayout: "qt.QLayout") -> None:
        box = ctk.ctkCollapsibleButton()
        box.text = "Backend server"
        parentLayout.addWidget(box)
        form = qt.QFormLayout(box)
        self.localRadio = qt.QRadioButton("This computer (local backend)")
        self.remoteRadio = qt.QRadioButton("A server (remote backend)")
        modes = qt.QHBoxLayout()
        modes.addWidget(self.localRadio)
        modes.addWidget(self.remoteRadio)
        form.addRow(modes)

        self.localButtons = qt.QWidget()
        row = qt.QHBoxLayout(self.localButtons)
        row.setContentsMargins(0, 0, 0, 0)
        self.startButton = qt.QPushButton("Start local backend")
        self.stopButton = qt.QPushButton("Stop")
        row.addWidget(self.startButton)
        row.addWidget(self.stopButton)
        form.addRow(self.localButtons)

        self.urlEdit = qt.QLineEdit()
        self.urlEdit.placeholderText = "https://server.hospital.org:8443"
        self.tokenEdit = qt.QLineEdit()
        self.tokenEdit.echoMode = qt.QLineEdit.Password
        self.tokenEdit.placeholderText = "the server's token (not stored)"
        self.connectButton = qt.QPushButton("Connect")
        # The remote rows live in one widget, hidden as a whole with their labels: Qt 5.15's
        # QFormLayout has no setRowVisible (Qt 6.4+), and hiding a field leaves its label showing.
        self.remoteRows = qt.QWidget()
        remoteForm = qt.QFormLayout(self.remoteRows)
        remoteForm.setContentsMargins(0, 0, 0, 0)
        remoteForm.addRow("Server address:", self.urlEdit)
        remoteForm.addRow("Token:", self.tokenEdit)
        remoteForm.addRow(self.connectButton)
        form.addRow(self.remoteRows)

        self.statusLabel = qt.QLabel("Not connected.")
        self.statusLabel.wordWrap = True
        self.statusLabel.setTextInteractionFlags(qt.Qt.TextSelectableByMouse)
        form.addRow(self.statusLabel)

        advanced = ctk.ctkCollapsibleGroupBox()
        advanced.title = "Local backend log and workspace"
        advanced.collapsed = True
        form.addRow(advanced)
        advancedForm = qt.QFormLayout(advanced)
        self.workspaceEdit = ctk.ctkPathLineEdit()
        self.workspaceEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.workspaceEdit.toolTip = "Where the local backend keeps projects, cases, jobs and models."
        advancedForm.addRow("Workspace:", self.workspaceEdit)
        self.logView = qt.QPlainTextEdit()
        self.logView.readOnly = True
        self.logView.setMaximumBlockCount(2000)
        advancedForm.addRow(self.logView)

        self.localRadio.connect("toggled(bool)", lambda checked: self._updateButtons())
        self.startButton.connect("clicked()", self.onStartLocal)
        self.stopButton.connect("clicked()", self.onStopLocal)
        self.connectButton.connect("clicked()", self.onConnectRemote)

    # -------------------------------------------------------------- settings
    def _loadSettings(self) -> None:
        settings = qt.QSettings()
        remote = str(settings.value(_SETTINGS + "Mode", "local")) == "remote"
        self.remoteRadio.checked = remote
        self.localRadio.checked = not remote
        self.urlEdit.text = settings.value(_SETTINGS + "URL", "")
        self.workspaceEdit.currentPath = settings.value(_SETTINGS + "Workspace", defaultWorkspace(defaultEnvironmentRoot(self.host)))

    def _saveSettings(self) -> None:
        settings = qt.QSettings()
        settings.setValue(_SETTINGS + "Mode", "remote" if self.remoteRadio.checked else "local")
        settings.setValue(_SETTINGS + "URL", self.urlEdit.text.strip())
        settings.setValue(_SETTINGS + "Workspace", self.workspaceEdit.currentPath)

    # --------------------------------------------------------------- actions
    def setEnvironment(self, info: EnvironmentInfo) -> None:
        """The environment panel found a ready backend environment."""
        self.environment = info
        self._updateButtons()

    def onStartLocal(self) -> None:
        if self.environment is None:
            self.statusLabel.text = "Set up the local backend first (panel above), or connect to a server."
            return
        self._saveSettings()
        self.session.setConnection(None, None)
        self.logView.clear()
        workspace = self.workspaceEdit.currentPath or defaultWorkspace(defaultEnvironmentRoot(self.host))
        try:
            self.local.start(self.environment.backendCommand, workspace, childEnvironment(self.host.environment))
        except (OSError, RuntimeError, ValueError) as exc:
            self.statusLabel.text = "Cannot start the local backend: {}".format(exc)
        self._updateButtons()

    def onStopLocal(self) -> None:
        self.session.setConnection(None, None)
        self.local.stop()
        self._updateButtons()

    def onConnectRemote(self) -> None:
        self._saveSettings()
        url = self.urlEdit.text.strip()
        try:
            client = TSKDClient(url, token=self.tokenEdit.text.strip() or None)
        except ValueError:
            self.statusLabel.text = "Enter the server's address, like https://server.hospital.org:8443."
            return
        self._check(client)

    def _check(self, client: TSKDClient) -> None:
        self.statusLabel.text = "Connecting to {}...".format(client.server_url)
        self.connectButton.enabled = False
        self.session.submit("Connecting", checkBackend, client,
                            onSuccess=lambda info: self._onConnected(client, info), onError=self._onConnectFailed)

    def _onConnected(self, client: TSKDClient, info: BackendInfo) -> None:
        self.statusLabel.text = info.summary()
        self.session.setConnection(client, info)
        self._updateButtons()

    def _onConnectFailed(self, exc: BaseException) -> None:
        self.statusLabel.text = str(exc)
        self._updateButtons()

    def _pollLocal(self) -> None:
        self.local.poll()
        if not self.local.needsPolling():
            self.localTimer.stop()

    def _onLocalState(self, state: str, message: str) -> None:
        self.statusLabel.text = message
        if self.local.needsPolling():
            self.localTimer.start()
        if state == RUNNING:
            self._check(self.local.client())
        elif state in (STOPPED, FAILED) and self.session.client is not None and self.remoteRadio.checked is False:
            self.session.setConnection(None, None)
        self._updateButtons()

    def _updateButtons(self) -> None:
        local = bool(self.localRadio.checked)
        self.localButtons.visible = local
        self.remoteRows.visible = not local
        active = self.local.state in (STARTING, RUNNING) or self.local.needsPolling()
        self.startButton.enabled = local and not active and self.environment is not None
        self.stopButton.enabled = local and self.local.runner.isRunning()
        self.connectButton.enabled = not local and not self.session.tasks.busy("Connecting")
        if local and self.environment is None and self.local.state == STOPPED and self.session.client is None:
            self.statusLabel.text = "Set up the local backend (panel above), or choose 'A server'."

    def cleanup(self) -> None:
        """Stop the local backend (training jobs keep running and are picked up at the next start)."""
        self.localTimer.stop()
        if self.local.runner.isRunning():
            self.local.runner.terminate()
