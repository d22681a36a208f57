"""Planning the backend's dedicated Python environment ("Set up local backend").

The backend never goes into Slicer's own Python (its packages would replace Slicer's). It gets a
virtual environment in a per-user folder (``rootDir``)::

    rootDir/
      venv/                 the environment (created from a Python the backend supports, found or downloaded)
      backend-source/       copy of the backend sources shipped in the extension (pip builds here,
                            so the extension's own folder may stay read-only)
      constraints.txt       the backend's pinned versions, without the torch pin
      environment.json      written last: what was installed (see environmentMarker)
      setup.log             the full output of every set-up

This module is pure planning: :func:`planInstall` turns options and what was discovered (base
interpreter, PyTorch build) into a list of :class:`Step` commands; running them is
:class:`SlicerTSKDLib.install.environmentSetup.EnvironmentSetup`'s job.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..hostContext import HostContext
from .pythonFinder import DEFAULT_PREFERRED_VERSIONS, PROBE_CODE, PythonInfo
from .torchSelection import DEFAULT_CUDA_BUILDS, TorchBuild

__all__ = [
    "SetupError",
    "INFO_MARK",
    "INFO_CODE",
    "BACKEND_FOLDER_NAME",
    "EnvironmentOptions",
    "Step",
    "defaultEnvironmentRoot",
    "venvPython",
    "findBackendSource",
    "shippedBackendVersion",
    "stageBackendSource",
    "pinnedRequirement",
    "constraintsWithout",
    "torchRequirementFor",
    "planInstall",
    "existingBackendCommand",
    "planExistingCheck",
    "parseVersionOutput",
    "parseInfoOutput",
    "failureHint",
]

INFO_MARK = "TSKD-INFO"

#: Run by the environment's Python at the end: imports the backend and torch, prints what they are.
INFO_CODE = (
    "import json, platform, torch, tskd; "
    "print('" + INFO_MARK + " ' + json.dumps({'backendVersion': tskd.__version__, "
    "'torchVersion': torch.__version__, 'torchCuda': torch.version.cuda or '', "
    "'cudaAvailable': bool(torch.cuda.is_available()), 'pythonVersion': platform.python_version()}))"
)

#: Name of the backend sources' folder inside the installed module (see SlicerTSKD/CMakeLists.txt).
BACKEND_FOLDER_NAME = "SlicerTSKDBackend"

_PIP_COMMON = ("--progress-bar", "off", "--no-warn-script-location")
_STAGE_IGNORED = ("__pycache__", "*.pyc", "*.egg-info", "build", "dist", "tests", "benchmarks", ".pytest_cache")


class SetupError(Exception):
    """A set-up problem the user can fix; the message says what to do."""


@dataclass
class EnvironmentOptions:
    """What to set up and how.

    Args:
        rootDir: per-user folder holding the environment (see the module docstring).
        backendSourceDir: the backend sources (folder with ``pyproject.toml``); see :func:`findBackendSource`.
        baseInterpreter: command of the Python to create the environment from; None searches the machine.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (which PyTorch build).
        torchIndexUrl: pip index for torch; None chooses from the GPU, ``""`` uses pip's configured
            default index (and ``find-links``), anything else is used as given (a mirror).
        torchRequirement: torch requirement, e.g. ``"torch==2.13.0"``; None uses the backend's pin
            (CPU) or the newest build on the CUDA index.
        extraPipArgs: added to every ``pip install`` (``--index-url``/``--proxy`` of a hospital mirror).
        upgradePip: upgrade pip in the new environment first.
        useConstraints: install the backend with its pinned versions (``constraints.txt``).
        existingCommand: text of an existing Python/``tskd`` command or environment folder to use
            instead of creating one; only verified.
        preferredVersions: Python ``(major, minor)`` versions in search order.
        cudaBuilds: CUDA builds PyTorch publishes, as ``(major, minor)``.
    """

    rootDir: str
    backendSourceDir: str = ""
    baseInterpreter: Optional[Sequence[str]] = None
    device: str = "auto"
    torchIndexUrl: Optional[str] = None
    torchRequirement: Optional[str] = None
    extraPipArgs: Sequence[str] = ()
    upgradePip: bool = True
    useConstraints: bool = True
    existingCommand: Optional[str] = None
    preferredVersions: Sequence[Tuple[int, int]] = field(default=DEFAULT_PREFERRED_VERSIONS)
    cudaBuilds: Sequence[Tuple[int, int]] = field(default=DEFAULT_CUDA_BUILDS)

    def __post_init__(self) -> None:
        if not self.rootDir:
            raise ValueError("EnvironmentOptions.rootDir must name a folder")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError("EnvironmentOptions.device must be 'auto', 'cpu' or 'cuda', got {!r}".format(self.device))
        if isinstance(self.extraPipArgs, str):
            raise ValueError("EnvironmentOptions.extraPipArgs must be a list of arguments, not one string")
        if self.baseInterpreter is not None and (isinstance(self.baseInterpreter, str) or not self.baseInterpreter):
            raise ValueError("EnvironmentOptions.baseInterpreter must be a non-empty list of strings or None")

    @property
    def venvDir(self) -> str:
        return os.path.join(self.rootDir, "venv")

    @property
    def markerPath(self) -> str:
        return os.path.join(self.rootDir, "environment.json")

    @property
    def logPath(self) -> str:
        return os.path.join(self.rootDir, "setup.log")

    @property
    def stagedBackendDir(self) -> str:
        return os.path.join(self.rootDir, "backend-source")

    @property
    def stagedConstraintsPath(self) -> str:
        return os.path.join(self.rootDir, "constraints.txt")


@dataclass(frozen=True)
class Step:
    """One command of the set-up.

    Args:
        key: what the step does, for the runner's bookkeeping (``create-venv``, ``install-torch``...).
        label: shown to the user (``"Installing PyTorch (CPU)"``).
        command: program and arguments.
        weight: share of the progress bar, relative to the other steps.
        expectedPackages: for pip steps, about how many packages it installs (progress estimate).
        extraEnvironment: ``(name, value)`` pairs set for this command only.
    """

    key: str
    label: str
    command: Tuple[str, ...]
    weight: float = 1.0
    expectedPackages: int = 0
    extraEnvironment: Tuple[Tuple[str, str], ...] = ()


def defaultEnvironmentRoot(host: HostContext) -> str:
    """Per-user data folder for the environment (outside Slicer's installation, survives upgrades)."""
    join = host.path.join
    if host.isWindows:
        base = host.environment.get("LOCALAPPDATA") or join(host.home, "AppData", "Local")
    elif host.platform == "darwin":
        base = join(host.home, "Library", "Application Support")
    else:
        base = host.environment.get("XDG_DATA_HOME") or join(host.home, ".local", "share")
    return join(base, "SlicerTSKD", "backend")


def venvPython(venvDir: str, host: HostContext) -> str:
    """The Python executable of the virtual environment ``venvDir``."""
    if host.isWindows:
        return host.path.join(venvDir, "Scripts", "python.exe")
    return host.path.join(venvDir, "bin", "python")


def findBackendSource(moduleDir: str) -> Optional[str]:
    """The backend sources next to the module: installed extension first, then a source checkout.

    Args:
        moduleDir: folder of ``SlicerTSKD.py``.

    Returns:
        A folder containing ``pyproject.toml`` and ``src/tskd``, or None.
    """
    for candidate in (
        os.path.join(moduleDir, BACKEND_FOLDER_NAME),
        os.path.join(os.path.dirname(os.path.abspath(moduleDir)), "TSKDBackend"),
    ):
        if os.path.isfile(os.path.join(candidate, "pyproject.toml")) and os.path.isdir(os.path.join(candidate, "src", "tskd")):
            return candidate
    return None


def shippedBackendVersion(backendDir: str) -> Optional[str]:
    """``tskd.__version__`` of the backend sources in ``backendDir`` (read, not imported)."""
    try:
        with open(os.path.join(backendDir, "src", "tskd", "__init__.py"), encoding="utf-8") as handle:
            match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", handle.read(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1) if match else None


def stageBackendSource(sourceDir: str, targetDir: str) -> None:
    """Copy the backend sources to ``targetDir`` (replacing it), without tests and build leftovers.

    Raises:
        SetupError: when ``sourceDir`` is not a backend source folder or the copy fails.
    """
    if not os.path.isfile(os.path.join(sourceDir, "pyproject.toml")):
        raise SetupError(
            "The backend sources were not found at '{}' (no pyproject.toml). Reinstall the SlicerTSKD extension.".format(sourceDir)
        )
    try:
        if os.path.isdir(targetDir):
            shutil.rmtree(targetDir)
        shutil.copytree(sourceDir, targetDir, ignore=shutil.ignore_patterns(*_STAGE_IGNORED))
    except OSError as exc:
        raise SetupError("Could not copy the backend sources to '{}': {}".format(targetDir, exc)) from exc


def _requirementName(line: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def pinnedRequirement(constraintsText: str, name: str) -> Optional[str]:
    """The line of ``constraintsText`` that constrains package ``name`` (e.g. ``"torch==2.13.0"``)."""
    wanted = _requirementName(name)
    for line in constraintsText.splitlines():
        code = line.split("#", 1)[0].strip()
        if code and _requirementName(code) == wanted:
            return code
    return None


def constraintsWithout(constraintsText: str, name: str) -> str:
    """``constraintsText`` with the lines constraining ``name`` removed."""
    wanted = _requirementName(name)
    kept = [line for line in constraintsText.splitlines() if _requirementName(line.split("#", 1)[0]) != wanted]
    return "\n".join(kept) + "\n"


def torchRequirementFor(options: EnvironmentOptions, build: TorchBuild, constraintsText: str = "") -> str:
    """The torch requirement to install: the option, else the backend's pin (CPU), else ``torch``."""
    if options.torchRequirement:
        return options.torchRequirement
    if build.device == "cuda" and options.torchIndexUrl is None:
        return "torch"  # the newest build on the CUDA index; the CPU pin may not exist there
    pin = pinnedRequirement(constraintsText, "torch") if options.useConstraints else None
    return pin or "torch"


def _countRequirements(constraintsText: str) -> int:
    return sum(1 for line in constraintsText.splitlines() if line.split("#", 1)[0].strip())


def planInstall(
    options: EnvironmentOptions,
    host: HostContext,
    base: Optional[PythonInfo],
    build: TorchBuild,
    constraintsText: str = "",
) -> List[Step]:
    """The commands that create (or re-use) the environment and install the backend into it.

    Args:
        options: what to set up.
        host: the machine.
        base: interpreter to create the environment from; None re-uses the existing ``venv``.
        build: the PyTorch build (:func:`SlicerTSKDLib.install.torchSelection.chooseTorchBuild`).
        constraintsText: the backend's ``constraints.txt`` (empty when there is none).

    The backend is installed from :attr:`EnvironmentOptions.stagedBackendDir` with the constraints
    at :attr:`EnvironmentOptions.stagedConstraintsPath` (written by the caller without the torch pin,
    so torch installed by the previous step is kept).
    """
    python = venvPython(options.venvDir, host)
    steps: List[Step] = []
    if base is not None:
        steps.append(
            Step("create-venv", "Creating the Python environment (Python {})".format(base.versionText),
                 tuple(base.command) + ("-m", "venv", "--clear", options.venvDir), 4.0)
        )
        steps.append(Step("probe-new-venv", "Checking the new environment", (python, "-c", PROBE_CODE), 1.0))
    pip = (python, "-m", "pip", "install") + _PIP_COMMON
    extra = tuple(options.extraPipArgs)
    if options.upgradePip:
        steps.append(Step("upgrade-pip", "Upgrading pip", pip + ("--upgrade", "pip") + extra, 3.0, 1))
    indexUrl = build.indexUrl if options.torchIndexUrl is None else options.torchIndexUrl
    ownIndex = choosesIndex(extra)
    # a mirror or a wheelhouse in the extra arguments serves torch too: never put PyTorch's index after it
    # (pip takes the last --index-url; issue 32, item 7)
    index = ("--index-url", indexUrl) if indexUrl and not ownIndex else ()
    requirement = torchRequirementFor(options, build, constraintsText)
    if ownIndex:
        device = "{}, from the index in the extra pip arguments".format(build.device.upper())
    elif options.torchIndexUrl is not None:
        device = "from " + (options.torchIndexUrl or "pip's configured index")
    elif build.device == "cuda" and re.match(r"^cu\d{3}$", build.tag):
        device = "CUDA {}.{}".format(build.tag[2:-1], build.tag[-1])
    else:
        device = build.device.upper()
    steps.append(
        Step("install-torch", "Installing PyTorch ({})".format(device), pip + (requirement,) + extra + index, 35.0,
             25 if build.device == "cuda" else 10)
    )
    constraints = ("-c", options.stagedConstraintsPath) if options.useConstraints and constraintsText else ()
    steps.append(
        Step("install-backend", "Installing the SlicerTSKD backend and its dependencies",
             pip + constraints + (options.stagedBackendDir,) + extra, 50.0, max(20, _countRequirements(constraintsText)))
    )
    steps.append(Step("verify-version", "Checking the backend command", (python, "-m", "tskd", "--version"), 3.0))
    steps.append(Step("verify-import", "Checking that the backend and PyTorch load", (python, "-c", INFO_CODE), 4.0))
    return steps


_INDEX_OPTIONS = ("--index-url", "-i", "--no-index")


def choosesIndex(pipArgs: Sequence[str]) -> bool:
    """Whether extra pip arguments name the package index (a mirror: ``--index-url URL``, ``--index-url=URL``,
    ``-i URL``, ``-iURL``) or forbid one (a wheelhouse: ``--no-index``)."""
    for arg in pipArgs:
        if arg in _INDEX_OPTIONS or arg.startswith("--index-url=") or (arg.startswith("-i") and not arg.startswith("--")):
            return True
    return False


_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?w?(\.exe)?$", re.IGNORECASE)


def existingBackendCommand(
    text: str,
    host: HostContext,
    isFile: Callable[[str], bool] = os.path.isfile,
    isDir: Callable[[str], bool] = os.path.isdir,
) -> List[str]:
    """The backend command for what a user typed under "Use existing environment/command".

    Accepts an environment folder (its Python is used), a Python executable (``-m tskd`` is added)
    or a command that runs ``tskd`` (``tskd``, ``conda run -n seg tskd``...).

    Raises:
        SetupError: when the text is empty or names a folder without a Python.
    """
    text = text.strip()
    if not text:
        raise SetupError("Enter an environment folder, its Python executable, or a command that runs 'tskd'.")
    if isDir(text):
        python = venvPython(text, host)
        if not isFile(python):
            raise SetupError(
                "The folder '{}' has no {}: enter the folder of a Python environment where the backend is installed, "
                "its Python executable, or a command that runs 'tskd'.".format(text, host.path.relpath(python, text))
            )
        return [python, "-m", "tskd"]
    if isFile(text):
        parts = [text]
    else:
        parts = shlex.split(text, posix=not host.isWindows)
        if host.isWindows:
            parts = [part.strip('"') for part in parts]
    if len(parts) == 1 and _PYTHON_NAME.match(host.path.basename(parts[0])):
        return parts + ["-m", "tskd"]
    return parts


def planExistingCheck(command: Sequence[str]) -> List[Step]:
    """Steps that verify an existing backend command (version; imports too when it is a Python)."""
    steps = [Step("check-existing-version", "Checking the backend command", tuple(command) + ("--version",), 1.0)]
    if len(command) == 3 and list(command[1:]) == ["-m", "tskd"]:
        steps.append(Step("check-existing-import", "Checking that the backend and PyTorch load", (command[0], "-c", INFO_CODE), 1.0))
    return steps


def parseVersionOutput(output: str) -> Optional[str]:
    """The version in ``tskd --version`` output (``"tskd 0.1.0"``), or None."""
    match = re.search(r"^tskd\s+(\S+)\s*$", output, re.MULTILINE)
    return match.group(1) if match else None


def parseInfoOutput(output: str) -> Optional[Dict[str, object]]:
    """The dictionary printed by :data:`INFO_CODE`, or None when absent or malformed."""
    for line in output.splitlines():
        if line.startswith(INFO_MARK + " "):
            try:
                data = json.loads(line[len(INFO_MARK) + 1 :])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


_HINTS = (
    (("No matching distribution found", "Could not find a version that satisfies"),
     "pip could not find a package. Check the network connection; a hospital network may need a package "
     "mirror or proxy: set it under Advanced (extra pip arguments, e.g. --index-url or --proxy)."),
    (("CERTIFICATE_VERIFY_FAILED",),
     "A proxy intercepts HTTPS. Add its certificate with --cert, or --trusted-host for the mirror, under Advanced."),
    (("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable", "ConnectTimeoutError", "ReadTimeoutError"),
     "The package index could not be reached. Check the network connection, or set a mirror/proxy under Advanced."),
    (("No space left on device", "[Errno 28]"),
     "The disk is full: free some space (the environment needs about 3 GB, 8 GB with CUDA), then click Retry."),
    (("ensurepip", "venv module"),
     "This Python cannot create environments: install its 'venv' package (Debian/Ubuntu: python3.X-venv), then click Retry."),
)


def failureHint(output: str) -> str:
    """A sentence telling the user what to do about a failed step's output; empty when nothing is recognised."""
    for needles, hint in _HINTS:
        if any(needle in output for needle in needles):
            return hint
    return ""
