"""Issue 14, item 13: the "Backend server" panel's decisions with a real BackendLogic: a real ``tskd serve``
started and stopped through LocalBackend on a SubprocessRunner (its /health probed in the session's
workers, as in Slicer), a real backend on loopback for the remote mode, and a recorded fake of the Qt
calls (fakeQt)."""

from __future__ import annotations

import sys

import pytest

from conftest import backendEnvironment, pumpUntil
from fakeQt import FakeObject, installFakeQt
from SlicerTSKDLib.backend.backendLogic import (ENTER_ADDRESS, NOT_ENCRYPTED_DECLINED, NO_ENVIRONMENT, RUNNING, SET_UP_OR_CONNECT, STOPPED, BackendLogic,
                                        LocalBackend, freeLocalPort)
from SlicerTSKDLib.install.environmentMarker import EnvironmentInfo
from SlicerTSKDLib.processRunner import SubprocessRunner
from SlicerTSKDLib.session import SessionState
from SlicerTSKDLib.settingsStore import MemorySettings


class World:
    def __init__(self, monkeypatch, tmp_path, settings=None) -> None:
        installFakeQt(monkeypatch)
        from SlicerTSKDLib.backend import backendWidget

        self.session = SessionState()
        self.errors = []
        self.session.errors.display = self.errors.append
        self.runner = SubprocessRunner()
        self.local = LocalBackend(self.runner, startTimeout=150.0, stopGrace=20.0, submit=self.session.submit)
        self.settings = settings or MemorySettings()
        self.logic = BackendLogic(self.local, self.settings, str(tmp_path / "workspace"), backendEnvironment())
        self.widget = backendWidget.BackendWidget(FakeObject(), self.session, self.logic)
        self.connections = []
        self.session.connectionChanged.connect(lambda client, info: self.connections.append(client))

    def pump(self, predicate, timeout=60.0) -> None:
        pumpUntil(self.session, predicate, timeout, timers=[self.widget.localTimer], runner=self.runner)

    def close(self) -> None:
        if self.runner.isRunning():
            self.runner.kill()
            self.runner.waitUntil(lambda: not self.runner.isRunning(), 20)
        self.session.shutdown()


@pytest.fixture
def world(monkeypatch, tmp_path):
    made = []

    def make(settings=None):
        made.append(World(monkeypatch, tmp_path, settings))
        return made[-1]

    yield make
    for w in made:
        w.close()


def test_without_an_environment_start_is_off_and_says_what_to_do(world):
    w = world()
    widget = w.widget
    assert widget.localRadio.checked and widget.localButtons.visible and not widget.remoteRows.visible
    assert not widget.startButton.enabled and not widget.stopButton.enabled
    assert widget.statusLabel.text == SET_UP_OR_CONNECT
    widget.onStartLocal()
    assert widget.statusLabel.text == NO_ENVIRONMENT and not w.runner.isRunning() and w.connections == []
    widget.remoteRadio.checked, widget.localRadio.checked = True, False  # the user picks "A server"
    assert widget.remoteRows.visible and not widget.localButtons.visible and widget.connectButton.enabled


def test_start_connects_to_the_local_backend_and_stop_disconnects(world, tmp_path):
    pytest.importorskip("fastapi")
    w = world()
    widget = w.widget
    widget.setEnvironment(EnvironmentInfo(kind="existing", backendCommand=[sys.executable, "-m", "tskd"],
                                          backendVersion="test"))
    assert widget.startButton.enabled and not widget.stopButton.enabled
    widget.startButton.trigger("clicked()")
    assert widget.statusLabel.text.startswith("Starting the local backend at http://127.0.0.1:")
    assert not widget.startButton.enabled and widget.stopButton.enabled and widget.localTimer.active
    assert w.settings.value("SlicerTSKD/Backend/Mode") == "local"
    w.pump(lambda: w.session.client is not None, timeout=180)
    assert w.local.state == RUNNING and not widget.localTimer.active
    assert widget.statusLabel.text.startswith("Connected to tskd ") and w.session.client.server_url == w.local.url
    assert w.session.backendInfo.presets and "tskd serve: listening on" in widget.logView.plainText
    assert (tmp_path / "workspace" / "tskd.db").is_file()  # the default workspace
    widget.stopButton.trigger("clicked()")
    assert w.session.client is None and widget.statusLabel.text == "Stopping the local backend..."
    w.pump(lambda: w.local.state == STOPPED, timeout=60)
    assert widget.statusLabel.text == "The local backend is stopped." and widget.startButton.enabled
    assert not widget.stopButton.enabled and w.connections[-1] is None and w.errors == []


def test_remote_mode_checks_the_server_and_says_why_it_cannot_connect(world, serviceServer):
    w = world(MemorySettings({"SlicerTSKD/Backend/Mode": "remote", "SlicerTSKD/Backend/URL": "http://saved:1"}))
    widget = w.widget
    assert widget.remoteRadio.checked and not widget.localRadio.checked and widget.urlEdit.text == "http://saved:1"
    assert widget.remoteRows.visible and widget.statusLabel.text == "Not connected."

    widget.urlEdit.text = "server.hospital.org"  # no scheme
    widget.connectButton.trigger("clicked()")
    assert widget.statusLabel.text == ENTER_ADDRESS and not w.session.tasks.pending()

    refused = "http://127.0.0.1:{}".format(freeLocalPort())
    widget.urlEdit.text = refused
    widget.onConnectRemote()
    assert widget.statusLabel.text == "Connecting to {}...".format(refused) and not widget.connectButton.enabled
    w.pump(lambda: not w.session.tasks.pending())
    assert widget.statusLabel.text.startswith("Nothing answers at {}".format(refused)) and w.session.client is None
    assert widget.connectButton.enabled

    widget.urlEdit.text, widget.tokenEdit.text = serviceServer.url, "not-the-token"
    widget.onConnectRemote()
    w.pump(lambda: not w.session.tasks.pending())
    assert "refused the token" in widget.statusLabel.text and w.session.client is None

    widget.tokenEdit.text = " widget-test "
    widget.onConnectRemote()
    w.pump(lambda: not w.session.tasks.pending())
    assert widget.statusLabel.text.startswith("Connected to tskd ") and w.session.client.token == "widget-test"
    assert w.settings.values["SlicerTSKD/Backend/URL"] == serviceServer.url
    assert "widget-test" not in w.settings.values.values()  # the token is never stored
    assert w.errors == []


def test_plain_http_to_another_machine_needs_an_explicit_yes(world, monkeypatch):
    """Issue 32, item 11: http:// to a non-loopback server sends images and the token unencrypted: the panel
    asks first; No connects nothing; Yes connects (and is not asked again for that address this session).
    No connection is attempted here (the check is recorded), so nothing leaves loopback."""
    w = world(MemorySettings({"SlicerTSKD/Backend/Mode": "remote"}))
    import qt

    widget = w.widget
    checked = []
    monkeypatch.setattr(widget, "_check", lambda client: checked.append(client.server_url))
    widget.urlEdit.text = "http://192.0.2.10:8000"
    qt.QMessageBox.replies = [qt.QMessageBox.No]
    widget.connectButton.trigger("clicked()")
    assert "is not encrypted (http://, not https://)" in qt.QMessageBox.asked[-1][2]
    assert checked == [] and widget.statusLabel.text == NOT_ENCRYPTED_DECLINED
    qt.QMessageBox.replies = [qt.QMessageBox.Yes]
    widget.onConnectRemote()
    widget.onConnectRemote()  # accepted once: not asked again
    assert len(checked) == 2 and qt.QMessageBox.replies == [] and len(qt.QMessageBox.asked) == 2
    for url in ("https://192.0.2.10:8443", "http://127.0.0.1:8000", "http://localhost:9", "http://[::1]:9"):
        widget.urlEdit.text = url
        widget.onConnectRemote()  # encrypted, or this computer: nothing to ask
    assert len(checked) == 6 and len(qt.QMessageBox.asked) == 2
