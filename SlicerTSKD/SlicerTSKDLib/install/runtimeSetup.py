"""Making the student runtime (``tskd.runtime``) usable inside Slicer's own Python.

The backend's sources ship inside the extension (``SlicerTSKDBackend/src``, see
:func:`SlicerTSKDLib.install.environment.findBackendSource`). Only the light, numpy-only part of them is
imported into Slicer: ``tskd`` (its ``__init__`` only sets the version), ``tskd.errors``,
``tskd.preprocess`` and ``tskd.runtime``; never the training code (torch, MONAI...), which lives in
the backend's own environment. :func:`ensureRuntimeImportable` puts the ``src`` folder on
``sys.path``.

``tskd.runtime`` needs ``onnxruntime`` to run a model. It is not part of Slicer, so it is never
imported when the module loads: :func:`onnxruntimeAvailable` only looks for it, and the widget asks
the user before installing it (:class:`OnnxruntimeInstall`; :func:`installOnnxruntime` for scripts). When it
cannot be had, segmentation runs on the backend (``client.predict``).

Inside Slicer the install runs as a child process through the module's own
:class:`~SlicerTSKDLib.processRunner.ProcessRunner` (:class:`OnnxruntimeInstall`): the GUI keeps
running, pip's output gives the progress, Cancel kills it, and a second start while one runs is
ignored. The command is what ``slicer.util.pip_install`` runs (Slicer's ``Base/Python/slicer/util.py``,
``_executePythonModule``: ``shutil.which("PythonSlicer")``, ``-m pip``, Slicer's own environment,
``useStartupEnvironment=False``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from typing import Callable, List, Mapping, Optional, Sequence

from .environment import findBackendSource
from .pipProgress import PipProgress
from ..processRunner import EXITED, KILLED, ProcessRunner
from ..signal import Signal

__all__ = [
    "RUNTIME_MODULES",
    "RuntimeSetupError",
    "runtimeSourceFolder",
    "ensureRuntimeImportable",
    "onnxruntimeAvailable",
    "installOnnxruntime",
    "ONNXRUNTIME_REQUIREMENT",
    "OnnxruntimeInstall",
    "onnxruntimeImports",
    "pipInstallCommand",
]

logger = logging.getLogger(__name__)

#: The backend modules imported into Slicer (numpy only; onnxruntime when a model is loaded).
RUNTIME_MODULES = ("tskd", "tskd.errors", "tskd.preprocess", "tskd.runtime")

#: What ``pip_install`` installs.
ONNXRUNTIME_REQUIREMENT = "onnxruntime"


class RuntimeSetupError(Exception):
    """The runtime cannot be used inside Slicer; the message says what to do."""


def runtimeSourceFolder(moduleDir: str) -> Optional[str]:
    """The backend's ``src`` folder shipped next to the module (None when missing)."""
    backend = findBackendSource(moduleDir)
    return os.path.join(backend, "src") if backend else None


def ensureRuntimeImportable(moduleDir: str) -> str:
    """Make ``tskd.runtime`` importable (adds the shipped ``src`` folder to ``sys.path``) and import it.

    Args:
        moduleDir: folder of ``SlicerTSKD.py``.

    Returns:
        The folder ``tskd`` is imported from.

    Raises:
        RuntimeSetupError: the sources are missing or do not import.
    """
    source = runtimeSourceFolder(moduleDir)
    if source is None and importlib.util.find_spec("tskd") is None:
        raise RuntimeSetupError("The backend sources are missing from this SlicerTSKD extension: reinstall the extension.")
    if source is not None and source not in sys.path:
        sys.path.insert(0, source)
        importlib.invalidate_caches()
    try:
        for name in RUNTIME_MODULES:
            importlib.import_module(name)
    except Exception as exc:
        raise RuntimeSetupError("The student runtime (tskd.runtime) does not load from {}: {}".format(source, exc)) from None
    tskd = sys.modules["tskd"]
    return os.path.dirname(os.path.dirname(os.path.abspath(tskd.__file__)))


def onnxruntimeAvailable() -> bool:
    """True when ``onnxruntime`` can be imported (it is looked for, not imported)."""
    importlib.invalidate_caches()
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def installOnnxruntime(pipInstall: Callable[[str], object]) -> bool:
    """Install onnxruntime with ``pipInstall`` (``slicer.util.pip_install``); True when it imports afterwards.

    Failures (offline, no wheel for this platform) are logged and give False: the caller then
    segments on the backend instead.
    """
    try:
        pipInstall(ONNXRUNTIME_REQUIREMENT)
    except Exception as exc:  # pip's failures come as CalledProcessError, OSError...
        logger.warning("installing %s failed: %s", ONNXRUNTIME_REQUIREMENT, exc)
        return False
    return onnxruntimeImports()


def onnxruntimeImports() -> bool:
    """True when ``onnxruntime`` is found and imports (after an install)."""
    if not onnxruntimeAvailable():
        return False
    try:
        importlib.import_module("onnxruntime")
    except Exception as exc:
        logger.warning("onnxruntime was installed but does not load: %s", exc)
        return False
    return True


def pipInstallCommand(python: str, requirement: str = ONNXRUNTIME_REQUIREMENT) -> List[str]:
    """``python -m pip install`` as ``slicer.util.pip_install`` runs it, with pip's line output (no bar)."""
    return [python, "-m", "pip", "install", "--progress-bar", "off", requirement]


class OnnxruntimeInstall:
    """Installs onnxruntime into Slicer's Python as a child process (never on the GUI thread).

    Args:
        runner: the process runner (``QProcessRunner`` in Slicer).
        command: the pip command (:func:`pipInstallCommand` with ``PythonSlicer``).
        env: the child's environment (Slicer's own, as ``pip_install`` uses).
        imports: checks the result once pip exited 0 (default :func:`onnxruntimeImports`).

    Signals:
        progress(fraction): from pip's lines (:class:`PipProgress`).
        finished(ok, message): once per start; ``ok`` only when onnxruntime imports afterwards;
            ``message`` is empty on success, ``"cancelled"`` after :meth:`cancel`.
    """

    #: about how many packages ``pip install onnxruntime`` resolves (onnxruntime and its dependencies)
    EXPECTED_PACKAGES = 8

    def __init__(self, runner: ProcessRunner, command: Sequence[str], env: Mapping[str, str],
                 imports: Optional[Callable[[], bool]] = None) -> None:
        self.runner = runner
        self.command = list(command)
        self.env = dict(env)
        self.imports = imports or onnxruntimeImports
        self.progress = Signal("fraction")
        self.finished = Signal("ok", "message")
        self.output: List[str] = []
        self._pip: Optional[PipProgress] = None
        self._partial = ""
        self._running = False
        self._cancelled = False
        runner.outputReady.connect(self._onOutput)
        runner.finished.connect(self._onFinished)

    def isRunning(self) -> bool:
        return self._running

    def start(self) -> bool:
        """Start pip; returns False (and does nothing) while an install is already running."""
        if self._running:
            logger.info("onnxruntime is already being installed: the second request is ignored")
            return False
        self._running, self._cancelled = True, False
        self._pip, self._partial, self.output = PipProgress(self.EXPECTED_PACKAGES), "", []
        try:
            self.runner.start(self.command, self.env)
        except Exception as exc:
            self._running = False
            self.finished.emit(False, "pip could not be started: {}".format(exc))
            return True
        self.progress.emit(0.0)
        return True

    def cancel(self) -> None:
        """Kill pip (and its children); ``finished(False, "cancelled")`` follows."""
        if self._running:
            self._cancelled = True
            self.runner.kill()

    def _onOutput(self) -> None:
        text = self._partial + self.runner.readOutput()
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        self.output.append(line.rstrip("\r"))
        fraction = self._pip.feed(line) if self._pip is not None else None
        if fraction is not None:
            self.progress.emit(fraction)

    def _onFinished(self, exitCode: int, status: str) -> None:
        if not self._running:
            return
        self._onOutput()
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        self._running = False
        if self._cancelled or status == KILLED:
            self.finished.emit(False, "cancelled")
        elif status != EXITED or exitCode != 0:
            tail = "\n".join(self.output[-5:])
            self.finished.emit(False, "pip failed (exit code {}, {}): {}".format(exitCode, status, tail))
        elif not self.imports():
            self.finished.emit(False, "pip finished but onnxruntime does not import (no package for this computer?)")
        else:
            self.progress.emit(1.0)
            self.finished.emit(True, "")
