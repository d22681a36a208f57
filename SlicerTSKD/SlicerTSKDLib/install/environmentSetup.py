"""Running "Set up local backend": discovery, then the planned commands, one process at a time.

:class:`EnvironmentSetup` is event driven (see :class:`~SlicerTSKDLib.install.stepSequence.StepSequence`):
:meth:`start` launches the first command through a process runner and returns at once; each
command's end decides and launches the next. In Slicer (``QProcessRunner``) the GUI stays
responsive; in tests and headless use (``SubprocessRunner``) the owner pumps the runner's events.

Order of a managed set-up:

1. re-use ``venv`` when its Python works (probe), else probe base interpreters until one is
   suitable (:mod:`pythonFinder`), asking ``uv`` for one when none is;
2. run ``nvidia-smi`` (when present) to choose the PyTorch build (:mod:`torchSelection`);
3. copy the backend sources, then run :func:`environment.planInstall`'s steps: create the
   environment, upgrade pip, install torch, install the backend, verify;
4. write the marker (:mod:`environmentMarker`), which a new start deletes first.

With :attr:`EnvironmentOptions.existingCommand` only that command is verified. A failed or
cancelled set-up can be started again: pip skips what is installed, and a half-made environment
is re-used when its Python works and has pip, recreated otherwise.
"""

from __future__ import annotations

import datetime
import os
from typing import Callable, Dict, List, Optional

from .environment import (
    EnvironmentOptions,
    SetupError,
    Step,
    constraintsWithout,
    existingBackendCommand,
    parseInfoOutput,
    parseVersionOutput,
    planExistingCheck,
    planInstall,
    shippedBackendVersion,
    stageBackendSource,
    venvPython,
)
from .environmentMarker import EnvironmentInfo, writeMarker
from ..hostContext import HostContext, childEnvironment
from ..processRunner import ProcessRunner
from .pythonFinder import (
    PROBE_CODE,
    PythonCandidate,
    PythonInfo,
    candidatePythons,
    findUv,
    noSuitablePythonMessage,
    parseProbeOutput,
    pythonVersionProblem,
    rangeText,
    supportedRange,
    unsuitableReason,
)
from .stepSequence import CANCELLED, FAILED, IDLE, RUNNING, SUCCEEDED, StepSequence
from .torchSelection import TorchBuild, chooseTorchBuild, nvidiaSmiCommand, parseNvidiaSmi

__all__ = ["EnvironmentSetup", "IDLE", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]

_UV_PYTHON = "3.12"

#: Where ``uv`` bootstrapped through Slicer's own pip lives (``<root>/uv``; its binary in ``bin/`` or ``Scripts\``).
UV_FOLDER = "uv"
#: Where uv keeps the Python it downloads (``UV_PYTHON_INSTALL_DIR``): inside the module's folder, not the user's.
UV_PYTHONS_FOLDER = "python"

INTEL_MAC = ("This Mac has an Intel processor. PyTorch has published no builds for Intel Macs since version 2.2, "
             "and the backend needs 2.11 or newer, so it cannot be set up on this computer. Run the backend on "
             "another computer (a Linux or Windows PC, or an Apple-silicon Mac) and choose 'A server' in the "
             "Backend server panel.")


class EnvironmentSetup(StepSequence):
    """Sets up (or verifies) the backend environment through ``runner``.

    Args:
        options: what to set up.
        host: the machine (search path, platform, child environment).
        runner: runs the commands.
        now: clock for the log and the marker's time stamp (tests pass a fixed one).

    Signals (from :class:`StepSequence`): ``progress(fraction, label)``, ``logMessage(text)``,
    ``finished(succeeded, message)``. After success, :attr:`result` holds what the marker says.
    """

    def __init__(
        self,
        options: EnvironmentOptions,
        host: HostContext,
        runner: ProcessRunner,
        now: Callable[[], datetime.datetime] = datetime.datetime.now,
    ) -> None:
        self.options = options
        self.host = host
        self.result: Optional[EnvironmentInfo] = None
        super().__init__(runner, childEnvironment(host.environment), options.rootDir, options.logPath, now)

    def _resetRun(self) -> None:
        super()._resetRun()
        self.result = None
        self._candidates: List[PythonCandidate] = []
        self._currentCandidate: Optional[PythonCandidate] = None
        self._rejected: List = []
        self._uvTried = False
        self._uv = ""
        self._base: Optional[PythonInfo] = None
        self._build: Optional[TorchBuild] = None
        self._existingCommand: List[str] = []
        self._versionSeen = ""
        self._envPython = ""  # the environment's Python version, once known
        # the backend's own requires-python: the finder and the pinned packages cannot drift (issue 32, item 6)
        self._range = supportedRange(self.options.backendSourceDir)

    def _begin(self) -> None:
        if os.path.exists(self.options.markerPath):
            os.remove(self.options.markerPath)
        if self.options.existingCommand is not None:
            self._startExistingCheck()
        else:
            self._startManaged()

    def _stepFinished(self, step: Step, exitCode: int, output: str) -> None:
        self._handlers()[step.key](exitCode, output)

    def _handlers(self) -> Dict[str, Callable[[int, str], None]]:
        return {
            "probe-venv": self._afterProbeVenv,
            "probe-python": self._afterProbePython,
            "uv-bootstrap": self._afterUvBootstrap,
            "uv-install": self._afterUvInstall,
            "uv-find": self._afterUvFind,
            "detect-gpu": self._afterDetectGpu,
            "create-venv": self._afterInstallStep,
            "probe-new-venv": self._afterProbeNewVenv,
            "upgrade-pip": self._afterInstallStep,
            "install-torch": self._afterInstallStep,
            "install-backend": self._afterInstallStep,
            "verify-version": self._afterVerifyVersion,
            "verify-import": self._afterVerifyImport,
            "check-existing-version": self._afterExistingVersion,
            "check-existing-import": self._afterExistingImport,
        }

    # ------------------------------------------------------ existing command
    def _startExistingCheck(self) -> None:
        self._existingCommand = existingBackendCommand(self.options.existingCommand or "", self.host)
        self._say("Using the existing backend command: " + " ".join(self._existingCommand))
        self._setPlan(planExistingCheck(self._existingCommand))

    def _afterExistingVersion(self, exitCode: int, output: str) -> None:
        version = parseVersionOutput(output) if exitCode == 0 else None
        if version is None:
            raise self._failure(self._step, exitCode, output,
                                "This command does not run the SlicerTSKD backend ('--version' did not print 'tskd <version>').")
        self._versionSeen = version
        if not self._runNextPlanned():
            self._succeed("existing", {"backendVersion": version})

    def _afterExistingImport(self, exitCode: int, output: str) -> None:
        info = parseInfoOutput(output) if exitCode == 0 else None
        if info is None:
            raise self._failure(self._step, exitCode, output, "The backend or PyTorch cannot be imported in this environment.")
        self._succeed("existing", info)

    # --------------------------------------------------------------- managed
    def _startManaged(self) -> None:
        options = self.options
        if self.host.isIntelMac:  # refused before anything is downloaded (issue 32, item 7)
            raise SetupError(INTEL_MAC)
        if not options.backendSourceDir or not os.path.isfile(os.path.join(options.backendSourceDir, "pyproject.toml")):
            raise SetupError(
                "The backend sources were not found at '{}'. Reinstall the SlicerTSKD extension.".format(options.backendSourceDir)
            )
        venv = options.venvDir
        if os.path.isdir(venv) and os.listdir(venv) and not os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            raise SetupError(
                "The folder '{}' exists but is not a Python environment; it is left untouched. "
                "Choose another folder under Advanced.".format(venv)
            )
        python = venvPython(venv, self.host)
        if os.path.isfile(python):
            self._run(Step("probe-venv", "Checking the existing environment", (python, "-c", PROBE_CODE)))
        else:
            self._startSearch()

    def _startSearch(self) -> None:
        if self.options.baseInterpreter:
            self._candidates = [PythonCandidate(tuple(self.options.baseInterpreter), "configured")]
        else:
            self._candidates = candidatePythons(self.host, self.options.preferredVersions, supported=self._range)
        self._say("Looking for Python {} ({} candidate(s))".format(rangeText(self._range), len(self._candidates)))
        self._probeNextCandidate()

    def _probeNextCandidate(self) -> None:
        if self._candidates:
            candidate = self._candidates.pop(0)
            self._currentCandidate = candidate
            self._run(Step("probe-python", "Looking for Python: " + " ".join(candidate.command),
                           tuple(candidate.command) + ("-c", PROBE_CODE)))
            return
        if not self._uvTried and not self.options.baseInterpreter:
            self._uvTried = True
            uv = findUv(self.host) or self._bootstrappedUv()
            if uv:
                self._uv = uv
                self._runUvInstall()
                return
            if self.host.slicerPython:  # no Python and no uv: uv through Slicer's own pip (issue 32, item 7)
                self._run(self._uvBootstrapStep())
                return
        raise SetupError(noSuitablePythonMessage(self.host, self._rejected, self._range))

    # -- uv: a Python for machines that have none ----------------------------------------------
    def _uvFolder(self) -> str:
        return os.path.join(self.options.rootDir, UV_FOLDER)

    def _bootstrappedUv(self) -> Optional[str]:
        """uv installed by an earlier :meth:`_uvBootstrapStep` (pip ``--target`` puts the wheel's binary in
        ``bin/``, ``Scripts\`` on Windows: the "home" install scheme, ``pip/_internal/commands/install.py``
        ``_handle_target_dir``)."""
        folder = self._uvFolder()
        path = (os.path.join(folder, "Scripts", "uv.exe") if self.host.isWindows
                else os.path.join(folder, "bin", "uv"))
        return path if os.path.isfile(path) else None

    def _uvBootstrapStep(self) -> Step:
        """``PythonSlicer -m pip install --target <root>/uv uv``: the uv wheel carries its binary, so Slicer's
        own pip can install it although Slicer's Python cannot make a venv (the ``PythonSlicer`` launcher
        sets ``PYTHONHOME`` itself: Slicer's ``SuperBuild/python_configure_python_launcher.cmake`` l. 183).
        The extra pip arguments (a mirror, a wheelhouse) apply; on Apple silicon the arm64 binary is asked
        for, also when Slicer runs under Rosetta."""
        command = tuple(self.host.slicerPython or ()) + ("-m", "pip", "install", "--upgrade", "--disable-pip-version-check",
                                                         "--target", self._uvFolder())
        if self.host.isAppleSilicon:
            command += ("--platform", "macosx_11_0_arm64", "--only-binary=:all:")
        return Step("uv-bootstrap", "Installing uv (it downloads Python) with Slicer's pip",
                    command + ("uv",) + tuple(self.options.extraPipArgs), 2.0, 1)

    def _afterUvBootstrap(self, exitCode: int, output: str) -> None:
        uv = self._bootstrappedUv() if exitCode == 0 else None
        if uv is None:
            raise self._failure(self._step, exitCode, output, noSuitablePythonMessage(self.host, self._rejected, self._range))
        self._uv = uv
        self._runUvInstall()

    def _uvRequest(self) -> str:
        """What uv is asked for: Python 3.12, for the Mac's own processor (a Rosetta Slicer would get x86_64)."""
        return "cpython-{}-macos-aarch64-none".format(_UV_PYTHON) if self.host.isAppleSilicon else _UV_PYTHON

    def _uvEnvironment(self) -> tuple:
        return (("UV_PYTHON_INSTALL_DIR", os.path.join(self.options.rootDir, UV_PYTHONS_FOLDER)),)

    def _runUvInstall(self) -> None:
        self._run(Step("uv-install", "Downloading Python {} with uv".format(_UV_PYTHON),
                       (self._uv, "python", "install", self._uvRequest()), extraEnvironment=self._uvEnvironment()))

    def _afterProbeVenv(self, exitCode: int, output: str) -> None:
        info = parseProbeOutput((venvPython(self.options.venvDir, self.host),), "environment", output) if exitCode == 0 else None
        reason = "it does not run" if info is None else unsuitableReason(info, self._range, needVenv=False)
        if not reason and not info.hasPip:
            reason = "pip is missing"
        if reason:
            self._say("The existing environment cannot be re-used ({}); it will be recreated.".format(reason))
            self._startSearch()
            return
        self._say("Re-using the existing environment (Python {}).".format(info.versionText))
        self._envPython = info.versionText
        self._base = None
        self._detectGpu()

    def _afterProbePython(self, exitCode: int, output: str) -> None:
        candidate = self._currentCandidate
        info = parseProbeOutput(candidate.command, candidate.source, output) if exitCode == 0 else None
        if info is None:
            self._say("  not usable: it does not run")
            self._probeNextCandidate()
            return
        reason = unsuitableReason(info, self._range)
        if reason:
            self._say("  not usable: " + reason)
            self._rejected.append((info, reason))
            self._probeNextCandidate()
            return
        self._say("  using Python {} ({})".format(info.versionText, info.executable))
        self._base = info
        self._envPython = info.versionText
        self._detectGpu()

    def _afterUvInstall(self, exitCode: int, output: str) -> None:
        if exitCode != 0:
            raise SetupError(noSuitablePythonMessage(self.host, self._rejected, self._range) + "\n" +
                             str(self._failure(self._step, exitCode, output)))
        self._run(Step("uv-find", "Locating the Python downloaded by uv", (self._uv, "python", "find", self._uvRequest()),
                       extraEnvironment=self._uvEnvironment()))

    def _afterUvFind(self, exitCode: int, output: str) -> None:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        if exitCode != 0 or not lines:
            raise SetupError(noSuitablePythonMessage(self.host, self._rejected, self._range))
        self._candidates = [PythonCandidate((lines[-1],), "uv")]
        self._probeNextCandidate()

    def _detectGpu(self) -> None:
        options = self.options
        if options.torchIndexUrl is not None:
            where = options.torchIndexUrl or "pip's configured index"
            device = "cuda" if options.device == "cuda" else "cpu"
            self._startInstall(TorchBuild(device, "", options.torchIndexUrl, "from {} (set under Advanced)".format(where)))
            return
        if options.device != "auto" or self.host.platform == "darwin":
            self._startInstall(chooseTorchBuild(None, self.host.platform, options.device, options.cudaBuilds))
            return
        command = nvidiaSmiCommand(self.host)
        if command is None:
            self._startInstall(chooseTorchBuild(None, self.host.platform, "auto", options.cudaBuilds))
            return
        self._run(Step("detect-gpu", "Looking for an NVIDIA GPU", tuple(command)))

    def _afterDetectGpu(self, exitCode: int, output: str) -> None:
        gpu = parseNvidiaSmi(output) if exitCode == 0 else None
        self._startInstall(chooseTorchBuild(gpu, self.host.platform, "auto", self.options.cudaBuilds))

    def _startInstall(self, build: TorchBuild) -> None:
        options = self.options
        self._build = build
        self._say("PyTorch: " + build.reason)
        stageBackendSource(options.backendSourceDir, options.stagedBackendDir)
        constraintsPath = os.path.join(options.backendSourceDir, "constraints.txt")
        constraintsText = ""
        if options.useConstraints and os.path.isfile(constraintsPath):
            with open(constraintsPath, encoding="utf-8") as stream:
                constraintsText = stream.read()
            with open(options.stagedConstraintsPath, "w", encoding="utf-8") as stream:
                stream.write(constraintsWithout(constraintsText, "torch"))
        self._setPlan(planInstall(options, self.host, self._base, build, constraintsText))

    def _afterInstallStep(self, exitCode: int, output: str) -> None:
        if exitCode != 0:  # a package that needs another Python: say so, not "check the network"
            raise self._failure(self._step, exitCode, output, pythonVersionProblem(output, self._envPython, self._range))
        self._runNextPlanned()

    def _afterProbeNewVenv(self, exitCode: int, output: str) -> None:
        info = parseProbeOutput((venvPython(self.options.venvDir, self.host),), "environment", output) if exitCode == 0 else None
        if info is None or not info.hasPip:
            base = self._base
            advice = "The environment created from {} ({}) does not work{}.".format(
                " ".join(base.command) if base else "?", base.source if base else "?",
                "" if info is None else " (pip is missing)")
            if base is not None and base.source == "Slicer":
                advice += " Slicer's own Python cannot be used here: install Python 3.12 and click Retry."
            raise self._failure(self._step, exitCode, output, advice)
        self._runNextPlanned()

    def _afterVerifyVersion(self, exitCode: int, output: str) -> None:
        version = parseVersionOutput(output) if exitCode == 0 else None
        if version is None:
            raise self._failure(self._step, exitCode, output, "The backend was installed but 'tskd --version' does not work.")
        expected = shippedBackendVersion(self.options.backendSourceDir)
        if expected and version != expected:
            raise self._failure(self._step, exitCode, output,
                                "The environment runs backend {} but the extension ships {}.".format(version, expected))
        self._versionSeen = version
        self._runNextPlanned()

    def _afterVerifyImport(self, exitCode: int, output: str) -> None:
        info = parseInfoOutput(output) if exitCode == 0 else None
        if info is None:
            raise self._failure(self._step, exitCode, output, "The backend or PyTorch cannot be imported in the new environment.")
        self._succeed("managed", info)

    def _succeed(self, kind: str, info: Dict[str, object]) -> None:
        build = self._build
        if kind == "managed":
            command = [venvPython(self.options.venvDir, self.host), "-m", "tskd"]
            indexUrl = (build.indexUrl if build else "") if self.options.torchIndexUrl is None else self.options.torchIndexUrl
        else:
            command, indexUrl = list(self._existingCommand), ""
        torchCuda = str(info.get("torchCuda") or "")
        self.result = EnvironmentInfo(
            kind=kind,
            backendCommand=command,
            backendVersion=str(info.get("backendVersion") or self._versionSeen),
            pythonVersion=str(info.get("pythonVersion") or ""),
            torchVersion=str(info.get("torchVersion") or ""),
            torchCuda=torchCuda,
            device="cuda" if torchCuda and info.get("cudaAvailable") else "cpu",
            torchIndexUrl=indexUrl,
            createdAt=self.now().isoformat(timespec="seconds"),
        )
        writeMarker(self.options.markerPath, self.result)
        summary = "The backend environment is ready: tskd {}".format(self.result.backendVersion)
        if self.result.device == "cuda":
            summary += ", PyTorch {} (GPU, CUDA {})".format(self.result.torchVersion, torchCuda)
        elif torchCuda:
            summary += ", PyTorch {} (a CUDA {} build, but no usable GPU: it runs on the CPU)".format(self.result.torchVersion, torchCuda)
        elif self.result.torchVersion:
            summary += ", PyTorch {} (CPU)".format(self.result.torchVersion)
        self._finish(SUCCEEDED, summary + ".")
