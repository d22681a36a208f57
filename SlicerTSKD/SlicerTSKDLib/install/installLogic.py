"""The "Backend environment" panel's decisions, without Qt.

:class:`EnvironmentPanelLogic` holds what the panel (``installWidget.py``) decides: which choices
are remembered in the settings and their defaults (:class:`EnvironmentChoices`), how the choices
become :class:`~SlicerTSKDLib.install.environment.EnvironmentOptions` (the PyTorch build and index, the
extra pip arguments; a quote left open or an empty custom index is refused before anything runs),
the status line of each environment state, when Set up, Use existing, Cancel and Retry apply,
and what a finished set-up leads to (the status line, ``environmentReady`` when it is ready).
The set-up itself is :class:`~SlicerTSKDLib.install.environmentSetup.EnvironmentSetup`, run on a
process runner made by ``runnerFactory`` (``QProcessRunner`` in Slicer), one per set-up.
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .environment import EnvironmentOptions, defaultEnvironmentRoot, shippedBackendVersion
from .environmentMarker import BROKEN, NOT_SET_UP, OUTDATED, READY, EnvironmentInfo, environmentState
from .environmentSetup import CANCELLED, FAILED, IDLE, EnvironmentSetup
from ..hostContext import HostContext
from ..processRunner import ProcessRunner
from ..signal import Signal

__all__ = [
    "EnvironmentPanelLogic",
    "EnvironmentChoices",
    "EnvironmentStatus",
    "SETTINGS_PREFIX",
    "DEVICE_TITLES",
    "INDEX_MODE_TITLES",
    "AUTOMATIC_INDEX",
    "PIP_INDEX",
    "CUSTOM_INDEX",
    "STATE_TEXTS",
    "SOURCES_MISSING",
    "SETTING_UP",
    "EMPTY_CUSTOM_INDEX",
    "UNREADABLE_PIP_ARGUMENTS",
    "describeReady",
]

logger = logging.getLogger(__name__)

#: the ``QSettings`` group of the panel's choices
SETTINGS_PREFIX = "SlicerTSKD/Environment/"

#: the "PyTorch build" chooser, in order; the build each one asks for is in ``_DEVICES``
DEVICE_TITLES = ("Automatic", "CPU only", "NVIDIA GPU (CUDA)")
_DEVICES = ("auto", "cpu", "cuda")

#: the "PyTorch index" chooser, in order
INDEX_MODE_TITLES = ("Automatic (download.pytorch.org, CUDA or CPU)", "pip's configured index", "Custom URL")
AUTOMATIC_INDEX, PIP_INDEX, CUSTOM_INDEX = 0, 1, 2

STATE_TEXTS = {
    NOT_SET_UP: "The backend is not set up. Click 'Set up local backend' (downloads about 3 GB), "
                "or enter an existing installation below.",
    OUTDATED: "The backend environment is older than this extension: click 'Set up local backend' to update it.",
    BROKEN: "The backend environment is damaged or was moved: click 'Set up local backend' to repair it.",
}
SOURCES_MISSING = "(The backend sources are missing from this extension: only 'Use existing' can work.)"
SETTING_UP = "Setting up... (you can keep using Slicer)"
EMPTY_CUSTOM_INDEX = ("Advanced > Custom index URL is empty: enter the address of the PyTorch mirror "
                      "(e.g. https://mirror.example.org/pytorch/cu126), or choose another PyTorch index.")
UNREADABLE_PIP_ARGUMENTS = ("Advanced > Extra pip arguments cannot be read ({reason}): {text}\n"
                            "Close every quote you open, e.g. --proxy \"http://proxy:3128\".")


@dataclass
class EnvironmentChoices:
    """What the panel's fields hold (and the settings remember).

    Args:
        folder: the environment folder ("" means the per-user default).
        device: position in :data:`DEVICE_TITLES`.
        indexMode: position in :data:`INDEX_MODE_TITLES`.
        indexUrl: the custom PyTorch index (used with :data:`CUSTOM_INDEX` only).
        pipArgs: extra pip arguments as typed (a command line: quotes group words).
        existing: an existing environment folder, its Python, or a ``tskd`` command.
        upgradePip: upgrade pip in the new environment first.
    """

    folder: str = ""
    device: int = 0
    indexMode: int = AUTOMATIC_INDEX
    indexUrl: str = ""
    pipArgs: str = ""
    existing: str = ""
    upgradePip: bool = True


@dataclass
class EnvironmentStatus:
    """The environment in ``folder``: its state (``environmentMarker.READY`` ...), its marker, the status line."""

    state: str
    info: Optional[EnvironmentInfo]
    text: str


def describeReady(info: EnvironmentInfo) -> str:
    """The status line of a ready environment: ``Backend ready: tskd 0.1.0, PyTorch 2.13.0+cpu (CPU).``"""
    text = "Backend ready: tskd {}".format(info.backendVersion)
    if info.torchVersion:
        text += ", PyTorch {} ({})".format(info.torchVersion, "GPU" if info.device == "cuda" else "CPU")
    return text + "."


def _position(value: Any, count: int) -> int:
    """A chooser's remembered position (Qt may give it back as text); out of range or unreadable: the first."""
    try:
        position = int(value)
    except (TypeError, ValueError):
        return 0
    return position if 0 <= position < count else 0


class EnvironmentPanelLogic:
    """The "Backend environment" panel's decisions and its current set-up.

    Args:
        host: the machine (search path, platform, the children's environment before cleaning).
        backendSourceDir: the backend sources shipped with the extension ("" when missing:
            only "Use existing" can work); see :func:`environment.findBackendSource`.
        runnerFactory: makes the process runner of one set-up (``QProcessRunner`` in Slicer).
        settings: ``qt.QSettings()`` in Slicer (``value`` / ``setValue``); default: in memory.

    Signals:
        runStarting(): a set-up (or a retry) is about to start: the panel clears its log.
        progress(fraction, label), logMessage(text): the running set-up's.
        finished(succeeded, text): a set-up ended; ``text`` is the status line to show.
        environmentReady(info: EnvironmentInfo): the environment is ready (after a set-up, or found so).

    Attributes:
        setup: the last set-up started (:class:`EnvironmentSetup`), or None.
    """

    def __init__(self, host: HostContext, backendSourceDir: str, runnerFactory: Callable[[], ProcessRunner],
                 settings: Any = None) -> None:
        from ..settingsStore import MemorySettings

        self.host = host
        self.backendSourceDir = backendSourceDir or ""
        self.runnerFactory = runnerFactory
        self.settings = settings if settings is not None else MemorySettings()
        self.defaultFolder = defaultEnvironmentRoot(host)
        self.setup: Optional[EnvironmentSetup] = None
        self.runStarting = Signal()
        self.progress = Signal("fraction", "label")
        self.logMessage = Signal("text")
        self.finished = Signal("succeeded", "text")
        self.environmentReady = Signal("info")

    # -------------------------------------------------------------- settings
    def loadSettings(self) -> EnvironmentChoices:
        """The remembered choices; the defaults of :class:`EnvironmentChoices` (folder: the per-user one) otherwise."""
        value = self.settings.value
        default = EnvironmentChoices()
        return EnvironmentChoices(
            folder=str(value(SETTINGS_PREFIX + "Folder", self.defaultFolder) or self.defaultFolder),
            device=_position(value(SETTINGS_PREFIX + "Device", default.device), len(DEVICE_TITLES)),
            indexMode=_position(value(SETTINGS_PREFIX + "IndexMode", default.indexMode), len(INDEX_MODE_TITLES)),
            indexUrl=str(value(SETTINGS_PREFIX + "IndexUrl", default.indexUrl) or ""),
            pipArgs=str(value(SETTINGS_PREFIX + "PipArgs", default.pipArgs) or ""),
            existing=str(value(SETTINGS_PREFIX + "Existing", default.existing) or ""),
            upgradePip=str(value(SETTINGS_PREFIX + "UpgradePip", "true" if default.upgradePip else "false")).lower() == "true",
        )

    def saveSettings(self, choices: EnvironmentChoices) -> None:
        setValue = self.settings.setValue
        setValue(SETTINGS_PREFIX + "Folder", choices.folder)
        setValue(SETTINGS_PREFIX + "Device", choices.device)
        setValue(SETTINGS_PREFIX + "IndexMode", choices.indexMode)
        setValue(SETTINGS_PREFIX + "IndexUrl", choices.indexUrl)
        setValue(SETTINGS_PREFIX + "PipArgs", choices.pipArgs)
        setValue(SETTINGS_PREFIX + "Existing", choices.existing)
        setValue(SETTINGS_PREFIX + "UpgradePip", "true" if choices.upgradePip else "false")

    # --------------------------------------------------------------- options
    def folder(self, choices: EnvironmentChoices) -> str:
        return choices.folder or self.defaultFolder

    def options(self, choices: EnvironmentChoices, existing: Optional[str] = None) -> EnvironmentOptions:
        """The set-up the choices describe (``existing``: only verify that command).

        Raises:
            ValueError: with the sentence to show, for extra pip arguments that cannot be read (a
                quote left open) or a custom index without an address.
        """
        mode = _position(choices.indexMode, len(INDEX_MODE_TITLES))
        indexUrl: Optional[str] = None  # chosen from the GPU
        if mode == PIP_INDEX:
            indexUrl = ""
        elif mode == CUSTOM_INDEX:
            indexUrl = choices.indexUrl.strip()
            if not indexUrl:
                raise ValueError(EMPTY_CUSTOM_INDEX)
        try:
            pipArgs = shlex.split(choices.pipArgs, posix=not self.host.isWindows)
        except ValueError as exc:
            raise ValueError(UNREADABLE_PIP_ARGUMENTS.format(reason=str(exc).lower(), text=choices.pipArgs)) from None
        return EnvironmentOptions(
            rootDir=self.folder(choices),
            backendSourceDir=self.backendSourceDir,
            device=_DEVICES[_position(choices.device, len(_DEVICES))],
            torchIndexUrl=indexUrl,
            extraPipArgs=pipArgs,
            upgradePip=bool(choices.upgradePip),
            existingCommand=existing,
        )

    # ---------------------------------------------------------------- status
    def status(self, folder: str) -> EnvironmentStatus:
        """The environment in ``folder`` ("" : the default one) and its status line."""
        markerPath = os.path.join(folder or self.defaultFolder, "environment.json")
        shipped = shippedBackendVersion(self.backendSourceDir) if self.backendSourceDir else None
        state, info = environmentState(markerPath, shipped)
        text = describeReady(info) if state == READY and info is not None else STATE_TEXTS[state]
        if not self.backendSourceDir:
            text += "\n" + SOURCES_MISSING
        return EnvironmentStatus(state, info, text)

    def refresh(self, folder: str) -> EnvironmentStatus:
        """:meth:`status`, emitting ``environmentReady`` when the environment is ready."""
        status = self.status(folder)
        if status.state == READY:
            self.environmentReady.emit(status.info)
        return status

    # --------------------------------------------------------------- buttons
    def isRunning(self) -> bool:
        return self.setup is not None and self.setup.isRunning()

    def canSetUp(self) -> bool:
        return not self.isRunning() and bool(self.backendSourceDir)

    def canUseExisting(self) -> bool:
        return not self.isRunning()

    def canCancel(self) -> bool:
        return self.isRunning()

    def canRetry(self) -> bool:
        """The last set-up failed or was cancelled."""
        return not self.isRunning() and self.setup is not None and self.setup.state in (FAILED, CANCELLED)

    def showsProgress(self) -> bool:
        return self.setup is not None and self.setup.state != IDLE

    @staticmethod
    def indexUrlApplies(indexMode: int) -> bool:
        return indexMode == CUSTOM_INDEX

    # --------------------------------------------------------------- actions
    def start(self, choices: EnvironmentChoices, existing: Optional[str] = None) -> Optional[str]:
        """Start a set-up (``existing``: only verify that command); returns at once.

        Returns:
            Why it cannot start (nothing runs, nothing is remembered), or None. Ignored while one runs.
        """
        if self.isRunning():
            return None
        try:
            options = self.options(choices, existing)
        except ValueError as exc:
            return str(exc)
        self.saveSettings(choices)
        setup = EnvironmentSetup(options, self.host, self.runnerFactory())
        setup.progress.connect(self.progress.emit)
        setup.logMessage.connect(self.logMessage.emit)
        setup.finished.connect(self._onFinished)
        self.setup = setup
        self._run()
        return None

    def retry(self, choices: EnvironmentChoices) -> Optional[str]:
        """Run the set-up again with the *current* choices (issue 32, item 7: a mirror or index set under
        Advanced after a failure is used); a verification of an existing command verifies it again."""
        if self.setup is not None and self.setup.isRunning():
            return None
        existing = self.setup.options.existingCommand if self.setup is not None else None
        return self.start(choices, existing)

    def cancel(self) -> None:
        """Kill the running command's process tree; ``finished`` follows."""
        if self.setup is not None:
            self.setup.cancel()

    def _run(self) -> None:
        self.runStarting.emit()
        self.setup.start()

    def _onFinished(self, succeeded: bool, message: str) -> None:
        status = self.refresh(self.setup.options.rootDir)
        logger.info("environment set-up %s: %s", "succeeded" if succeeded else self.setup.state, message)
        self.finished.emit(succeeded, status.text if succeeded else message)

    def cleanup(self) -> None:
        """The module closes: a running set-up is cancelled."""
        if self.isRunning():
            self.setup.cancel()
