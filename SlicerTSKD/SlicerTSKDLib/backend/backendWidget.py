"""The "Backend server" panel (Slicer only): start/stop a local backend, or connect to a remote one.

The decisions live in :class:`~SlicerTSKDLib.backend.backendLogic.BackendLogic`, passed in (made in Slicer by
:func:`makeBackendLogic`: a ``QProcessRunner``, ``qt.QSettings``, the per-user workspace); this file
builds the widgets, polls the local backend's start-up from a ``qt.QTimer``, and checks a server in
a worker thread (never on the GUI thread).
"""

from __future__ import annotations

import ctk
import qt

from .backendLogic import NOT_ENCRYPTED_DECLINED, RUNNING, BackendInfo, BackendLogic, BackendSettings, checkBackend
from .client import TSKDClient
from ..install.environmentMarker import EnvironmentInfo
from ..session import SessionState

__all__ = ["BackendWidget", "makeBackendLogic"]


def makeBackendLogic(session: SessionState) -> BackendLogic:
    """The panel's logic in Slicer: the server runs through a ``QProcessRunner`` with Slicer's startup
    environment (without its Python variables), its ``/health`` probed in the session's workers."""
    import slicer

    from .backendLogic import LocalBackend, defaultWorkspace
    from ..install.environment import defaultEnvironmentRoot
    from ..hostContext import HostContext, childEnvironment
    from ..processRunner import QProcessRunner

    host = HostContext.current(environment=slicer.util.startupEnvironment())
    return BackendLogic(LocalBackend(QProcessRunner(), submit=session.submit), qt.QSettings(),
                        defaultWorkspace(defaultEnvironmentRoot(host)), childEnvironment(host.environment))


class BackendWidget:
    """Builds the panel into ``parentLayout``.

    Args:
        parentLayout: layout of the module widget.
        session: the shared state (receives the connection).
        logic: the panel's :class:`BackendLogic`.
    """

    def __init__(self, parentLayout: "qt.QLayout", session: SessionState, logic: BackendLogic) -> None:
        self.session = session
        self.logic = logic
        self.local = logic.local
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
        saved = self.logic.loadSettings()
        self.remoteRadio.checked = saved.remote
        self.localRadio.checked = not saved.remote
        self.urlEdit.text = saved.url
        self.workspaceEdit.currentPath = saved.workspace

    def _saveSettings(self) -> None:
        self.logic.saveSettings(BackendSettings(bool(self.remoteRadio.checked), self.urlEdit.text,
                                                self.workspaceEdit.currentPath))

    # --------------------------------------------------------------- actions
    def setEnvironment(self, info: EnvironmentInfo) -> None:
        """The environment panel found a ready backend environment."""
        self.logic.environment = info
        self._updateButtons()

    def onStartLocal(self) -> None:
        if self.logic.environment is not None:
            self._saveSettings()
            self.session.setConnection(None, None)
            self.logView.clear()
        problem = self.logic.startLocal(self.workspaceEdit.currentPath)
        self._updateButtons()
        if problem is not None:
            self.statusLabel.text = problem

    def onStopLocal(self) -> None:
        self.session.setConnection(None, None)
        self.logic.stopLocal()
        self._updateButtons()

    def onConnectRemote(self) -> None:
        self._saveSettings()
        client, problem = self.logic.remoteClient(self.urlEdit.text, self.tokenEdit.text)
        if client is None:
            self.statusLabel.text = problem
            return
        question = self.logic.insecureQuestion(self.urlEdit.text)
        if question is not None:  # plain http to another machine: only on the user's explicit Yes
            if qt.QMessageBox.question(None, "Unencrypted connection", question,
                                       qt.QMessageBox.Yes | qt.QMessageBox.No) != qt.QMessageBox.Yes:
                self.statusLabel.text = NOT_ENCRYPTED_DECLINED
                return
            self.logic.acceptPlain(self.urlEdit.text)
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
        elif self.logic.dropsConnection(state, bool(self.remoteRadio.checked), self.session.client is not None):
            self.session.setConnection(None, None)
        self._updateButtons()

    def _updateButtons(self) -> None:
        local = bool(self.localRadio.checked)
        self.localButtons.visible = local
        self.remoteRows.visible = not local
        self.startButton.enabled = local and self.logic.canStartLocal()
        self.stopButton.enabled = local and self.logic.canStopLocal()
        self.connectButton.enabled = not local and not self.session.tasks.busy("Connecting")
        idle = self.logic.idleText(not local, self.session.client is not None)
        if idle is not None:
            self.statusLabel.text = idle

    def cleanup(self) -> None:
        """Stop the local backend (training jobs keep running and are picked up at the next start)."""
        self.localTimer.stop()
        self.logic.cleanup()
