"""Issue 14, item 13: the "Backend environment" panel's decisions with a real EnvironmentPanelLogic, real
EnvironmentSetup runs on a SubprocessRunner against fake interpreters and tools (fakeTools: real
executables that answer like Python, pip and ``tskd``; nothing is downloaded or installed), and a
recorded fake of the Qt calls (fakeQt)."""

from __future__ import annotations

import dataclasses
import sys
import time

import pytest

from conftest import REPO_ROOT
from fakeQt import FakeObject, installFakeQt
from fakeTools import alive, fakeEnvironment, makeFakePython, makeScript, readCalls, writeRules
from SlicerTSKDLib.install.environment import shippedBackendVersion
from SlicerTSKDLib.install.environmentMarker import BROKEN, NOT_SET_UP, OUTDATED, EnvironmentInfo, readMarker, writeMarker
from SlicerTSKDLib.install.environmentSetup import CANCELLED
from SlicerTSKDLib.hostContext import HostContext
from SlicerTSKDLib.install.installLogic import (EMPTY_CUSTOM_INDEX, SETTING_UP, SETTINGS_PREFIX, SOURCES_MISSING, STATE_TEXTS,
                                        EnvironmentPanelLogic)
from SlicerTSKDLib.processRunner import SubprocessRunner
from SlicerTSKDLib.settingsStore import MemorySettings

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the fakes are POSIX scripts")

BACKEND = str(REPO_ROOT / "TSKDBackend")
SHIPPED = shippedBackendVersion(BACKEND)


class World:
    """The panel with a real logic on fakes: ``bin/`` is the whole search path, the home folder is in ``tmp``."""

    def __init__(self, monkeypatch, tmp, settings=None, backendSourceDir: str = BACKEND) -> None:
        installFakeQt(monkeypatch)
        from SlicerTSKDLib.install import installWidget

        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.rulesPath = writeRules(tmp / "rules.json", {})
        self.host = HostContext("linux", fakeEnvironment(tmp, [self.bin], self.rulesPath), str(tmp / "home"),
                                searchCommonLocations=False)
        self.runners = []
        self.settings = settings if settings is not None else MemorySettings()
        self.logic = EnvironmentPanelLogic(self.host, backendSourceDir, self._newRunner, self.settings)
        self.ready = []
        self.logic.environmentReady.connect(self.ready.append)
        self.widget = installWidget.InstallWidget(FakeObject(), self.logic)

    def _newRunner(self) -> SubprocessRunner:
        self.runners.append(SubprocessRunner())
        return self.runners[-1]

    def rules(self, **rules) -> None:
        writeRules(self.rulesPath, rules)

    def wait(self, timeout: float = 90.0) -> None:
        """Deliver the runner's events (as Qt's event loop would) until the set-up has ended."""
        assert self.runners[-1].waitUntil(lambda: not self.logic.isRunning(), timeout), "the set-up did not end"

    def keys(self):
        return [step.key for step in self.logic.setup.stepsRun]

    def calls(self):
        return readCalls(self.tmp / "calls.jsonl")

    def buttons(self):
        w = self.widget
        return {name: getattr(w, name + "Button").enabled for name in ("setup", "useExisting", "cancel", "retry")}


IDLE_BUTTONS = {"setup": True, "useExisting": True, "cancel": False, "retry": False}
RUNNING_BUTTONS = {"setup": False, "useExisting": False, "cancel": True, "retry": False}


def test_a_missing_environment_says_what_to_do_and_the_remembered_choices_fill_the_panel(monkeypatch, tmp_path):
    fresh = World(monkeypatch, tmp_path)
    widget = fresh.widget
    assert widget.statusLabel.text == STATE_TEXTS[NOT_SET_UP] and fresh.ready == []
    assert fresh.buttons() == IDLE_BUTTONS and not widget.progressBar.visible
    assert widget.folderEdit.currentPath == str(tmp_path / "home" / ".local" / "share" / "SlicerTSKD" / "backend")
    assert (widget.deviceCombo.currentIndex, widget.indexModeCombo.currentIndex, widget.upgradePipCheck.checked) == (0, 0, True)
    assert widget.pipArgsEdit.text == "" and widget.existingEdit.text == "" and not widget.indexUrlEdit.enabled
    widget.indexModeCombo.currentIndex = 2  # "Custom URL": the URL field applies
    assert widget.indexUrlEdit.enabled

    # what the settings kept (qt.QSettings gives numbers back as text); an unreadable position falls back to the first
    saved = {"Folder": str(tmp_path / "env"), "Device": "seven", "IndexMode": "2", "IndexUrl": "https://mirror.invalid/cpu",
             "PipArgs": "--proxy http://proxy.invalid:3128", "Existing": "/opt/tskd/bin/tskd", "UpgradePip": "false"}
    remembered = World(monkeypatch, tmp_path, MemorySettings({SETTINGS_PREFIX + k: v for k, v in saved.items()}))
    widget = remembered.widget
    assert widget.folderEdit.currentPath == str(tmp_path / "env") and widget.deviceCombo.currentIndex == 0
    assert widget.indexModeCombo.currentIndex == 2 and widget.indexUrlEdit.text == "https://mirror.invalid/cpu"
    assert widget.indexUrlEdit.enabled and widget.pipArgsEdit.text == "--proxy http://proxy.invalid:3128"
    assert widget.existingEdit.text == "/opt/tskd/bin/tskd" and not widget.upgradePipCheck.checked
    widget.indexModeCombo.currentIndex = 1  # "pip's configured index"
    assert not widget.indexUrlEdit.enabled


def test_ready_outdated_and_broken_environments_are_told_apart(monkeypatch, tmp_path):
    world = World(monkeypatch, tmp_path)
    widget = world.widget
    folder = tmp_path / "env"
    python = makeFakePython(folder / "venv" / "bin" / "python")
    info = EnvironmentInfo(kind="managed", backendCommand=[str(python), "-m", "tskd"], backendVersion=SHIPPED,
                           pythonVersion="3.11.7", torchVersion="2.13.0+cu126", torchCuda="12.6", device="cuda")
    writeMarker(str(folder / "environment.json"), info)
    widget.folderEdit.currentPath = str(folder)
    widget.refreshStatus()
    assert widget.statusLabel.text == "Backend ready: tskd {}, PyTorch 2.13.0+cu126 (GPU).".format(SHIPPED)
    assert world.ready == [info] and world.buttons() == IDLE_BUTTONS

    writeMarker(str(folder / "environment.json"), dataclasses.replace(info, backendVersion="0.0.1"))
    widget.refreshStatus()
    assert widget.statusLabel.text == STATE_TEXTS[OUTDATED] and len(world.ready) == 1
    python.unlink()
    writeMarker(str(folder / "environment.json"), info)
    widget.refreshStatus()
    assert widget.statusLabel.text == STATE_TEXTS[BROKEN] and len(world.ready) == 1

    noSources = World(monkeypatch, tmp_path / "second", backendSourceDir="")
    assert noSources.widget.statusLabel.text == STATE_TEXTS[NOT_SET_UP] + "\n" + SOURCES_MISSING
    assert not noSources.widget.setupButton.enabled and noSources.widget.useExistingButton.enabled


def test_unreadable_advanced_settings_say_which_field_and_start_nothing(monkeypatch, tmp_path):
    world = World(monkeypatch, tmp_path)
    widget = world.widget
    makeFakePython(world.bin / "python3.11")
    widget.pipArgsEdit.text = '--proxy "http://proxy.invalid:3128'
    widget.setupButton.trigger("clicked()")
    assert widget.statusLabel.text == ("Advanced > Extra pip arguments cannot be read (no closing quotation): "
                                       "--proxy \"http://proxy.invalid:3128\nClose every quote you open, e.g. "
                                       "--proxy \"http://proxy:3128\".")
    widget.useExistingButton.trigger("clicked()")
    assert "no closing quotation" in widget.statusLabel.text

    widget.pipArgsEdit.text = "--proxy http://proxy.invalid:3128"
    widget.indexModeCombo.currentIndex = 2
    widget.indexUrlEdit.text = "  "
    widget.setupButton.trigger("clicked()")
    assert widget.statusLabel.text == EMPTY_CUSTOM_INDEX
    # nothing ran, nothing was remembered, the panel is as before
    assert world.runners == [] and world.logic.setup is None and world.calls() == [] and world.settings.values == {}
    assert world.buttons() == IDLE_BUTTONS and not widget.progressBar.visible and widget.logView.plainText == ""


def test_set_up_runs_the_steps_with_the_advanced_choices_and_ends_ready(monkeypatch, tmp_path):
    world = World(monkeypatch, tmp_path)
    widget = world.widget
    makeFakePython(world.bin / "python3.11")
    folder = tmp_path / "env"
    widget.folderEdit.currentPath = str(folder)
    widget.deviceCombo.currentIndex = 1  # CPU only
    widget.indexModeCombo.currentIndex = 2
    widget.indexUrlEdit.text = " https://mirror.invalid/whl/cpu "
    widget.pipArgsEdit.text = "--proxy 'http://proxy.invalid:3128' --timeout 60"
    widget.upgradePipCheck.checked = False
    widget.setupButton.trigger("clicked()")
    assert widget.statusLabel.text == SETTING_UP and world.buttons() == RUNNING_BUTTONS and widget.progressBar.visible
    world.wait()
    assert world.keys() == ["probe-python", "create-venv", "probe-new-venv", "install-torch", "install-backend",
                            "verify-version", "verify-import"]
    extra = ["--proxy", "http://proxy.invalid:3128", "--timeout", "60"]  # the quotes grouped, then removed
    torch, backend = [c for c in world.calls() if c[1:4] == ["-m", "pip", "install"]]  # no pip upgrade
    assert torch[-7].startswith("torch") and torch[-6:] == extra + ["--index-url", "https://mirror.invalid/whl/cpu"]
    assert backend[-5:] == [str(folder / "backend-source")] + extra

    venvPython = str(folder / "venv" / "bin" / "python")
    assert widget.statusLabel.text == "Backend ready: tskd {}, PyTorch 2.13.0+cpu (CPU).".format(SHIPPED)
    assert [info.backendCommand for info in world.ready] == [[venvPython, "-m", "tskd"]]
    assert world.ready[0] == readMarker(str(folder / "environment.json"))
    assert world.ready[0].torchIndexUrl == "https://mirror.invalid/whl/cpu"
    assert widget.progressBar.value == 1000 and widget.progressBar.visible and world.buttons() == IDLE_BUTTONS
    assert "Successfully installed pkg0-1.0" in widget.logView.plainText

    assert world.settings.values == {SETTINGS_PREFIX + k: v for k, v in {
        "Folder": str(folder), "Device": 1, "IndexMode": 2, "IndexUrl": " https://mirror.invalid/whl/cpu ",
        "PipArgs": "--proxy 'http://proxy.invalid:3128' --timeout 60", "Existing": "", "UpgradePip": "false"}.items()}
    again = World(monkeypatch, tmp_path, world.settings)  # the next Slicer session
    assert again.widget.folderEdit.currentPath == str(folder) and again.widget.deviceCombo.currentIndex == 1
    assert again.widget.pipArgsEdit.text == "--proxy 'http://proxy.invalid:3128' --timeout 60"
    assert again.widget.statusLabel.text == widget.statusLabel.text and again.ready == world.ready


def test_cancel_kills_pip_and_retry_finishes_the_same_set_up(monkeypatch, tmp_path):
    world = World(monkeypatch, tmp_path)
    widget = world.widget
    makeFakePython(world.bin / "python3.11")
    pidFile = tmp_path / "pids.txt"
    world.rules(slowPip="torch", pidFile=str(pidFile))
    widget.folderEdit.currentPath = str(tmp_path / "env")
    widget.deviceCombo.currentIndex = 1
    widget.upgradePipCheck.checked = False
    widget.setupButton.trigger("clicked()")
    runner = world.runners[0]
    assert runner.waitUntil(lambda: "Collecting torch" in widget.logView.plainText, 60)  # pip's line, in the log
    pip, grandchild = (int(p) for p in pidFile.read_text(encoding="utf-8").split())  # written before that line
    assert world.buttons() == RUNNING_BUTTONS
    widget.cancelButton.trigger("clicked()")
    world.wait(30)
    assert world.logic.setup.state == CANCELLED
    assert "cancelled" in widget.statusLabel.text.lower() and "Installing PyTorch" in widget.statusLabel.text
    assert world.buttons() == {"setup": True, "useExisting": True, "cancel": False, "retry": True}
    assert world.ready == [] and not (tmp_path / "env" / "environment.json").exists()
    deadline = time.monotonic() + 10
    while (alive(pip) or alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pip) and not alive(grandchild)

    world.rules()
    widget.retryButton.trigger("clicked()")
    assert widget.statusLabel.text == SETTING_UP and "Collecting torch" not in widget.logView.plainText  # a fresh log
    assert world.buttons() == RUNNING_BUTTONS
    world.wait()
    # a new set-up with the current choices (issue 32, item 7); the environment made before is re-used
    assert world.keys()[0] == "probe-venv" and len(world.runners) == 2
    assert widget.statusLabel.text.startswith("Backend ready: tskd ") and world.buttons() == IDLE_BUTTONS
    assert [info.backendCommand[0] for info in world.ready] == [str(tmp_path / "env" / "venv" / "bin" / "python")]


def test_use_existing_verifies_the_command_and_says_why_one_is_not_the_backend(monkeypatch, tmp_path):
    world = World(monkeypatch, tmp_path, backendSourceDir="")  # without the sources only "Use existing" works
    widget = world.widget
    assert not widget.setupButton.enabled and widget.useExistingButton.enabled
    other = makeScript(tmp_path / "tools" / "other", 'echo "other 1.0"')
    widget.existingEdit.text = str(other)
    widget.useExistingButton.trigger("clicked()")
    world.wait()
    assert "does not run the SlicerTSKD backend" in widget.statusLabel.text and world.ready == []
    assert widget.retryButton.enabled and not widget.setupButton.enabled

    tskd = makeScript(tmp_path / "tools" / "tskd", 'echo "tskd {}"'.format(SHIPPED))
    widget.existingEdit.text = str(tskd)
    widget.useExistingButton.trigger("clicked()")
    world.wait()
    assert world.keys() == ["check-existing-version"]
    assert [(info.kind, info.backendCommand) for info in world.ready] == [("existing", [str(tskd)])]
    assert widget.statusLabel.text == "Backend ready: tskd {}.\n{}".format(SHIPPED, SOURCES_MISSING)
    assert world.settings.values[SETTINGS_PREFIX + "Existing"] == str(tskd) and not widget.retryButton.enabled
    assert not (tmp_path / "home" / ".local" / "share" / "SlicerTSKD" / "backend" / "venv").exists()


def test_retry_uses_the_advanced_settings_changed_after_a_failure_and_a_mirror_serves_torch(monkeypatch, tmp_path):
    """Issue 32, item 7: Retry takes the current Advanced settings; a mirror given as --index-url in the extra
    pip arguments is not overridden by PyTorch's own index for the torch step (pip takes the last one)."""
    world = World(monkeypatch, tmp_path)
    widget = world.widget
    makeFakePython(world.bin / "python3.11")
    widget.folderEdit.currentPath = str(tmp_path / "env")
    widget.upgradePipCheck.checked = False
    world.rules(failPip={"torch": 1})  # the hospital blocks download.pytorch.org
    widget.setupButton.trigger("clicked()")
    world.wait()
    assert world.logic.setup.state == "failed" and world.buttons()["retry"]
    torch = [c for c in world.calls() if c[1:4] == ["-m", "pip", "install"] and any(a.startswith("torch") for a in c)]
    assert torch[-1][-2:] == ["--index-url", "https://download.pytorch.org/whl/cpu"]
    world.rules()
    widget.pipArgsEdit.text = "--index-url https://mirror.hospital.invalid/simple"  # set under Advanced, then Retry
    widget.retryButton.trigger("clicked()")
    world.wait()
    assert widget.statusLabel.text.startswith("Backend ready: tskd "), widget.statusLabel.text
    torch = [c for c in world.calls() if c[1:4] == ["-m", "pip", "install"] and any(a.startswith("torch") for a in c)]
    assert torch[-1][-2:] == ["--index-url", "https://mirror.hospital.invalid/simple"]
    assert "https://download.pytorch.org/whl/cpu" not in torch[-1]
    assert any(label.startswith("Installing PyTorch (CPU, from the index in the extra pip arguments)")
               for label in [step.label for step in world.logic.setup.stepsRun])
