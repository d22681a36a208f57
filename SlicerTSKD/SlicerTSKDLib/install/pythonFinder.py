"""Finding a Python interpreter to base the backend's environment on.

The backend needs the CPython versions its ``pyproject.toml`` names (``requires-python``, read by
:func:`supportedRange`: one place, so the finder and the pinned packages cannot drift; 3.11 to 3.13
today); Slicer 5.6/5.8 ship 3.9, so the
set-up looks for another interpreter: versioned names (``python3.12``...) on the search path, the
usual install folders (python.org, Homebrew, pyenv, conda, uv), the Windows ``py`` launcher, and
finally Slicer's own interpreter when it is recent enough (Slicer >= 5.10 ships 3.12; it is then
only the *base* of a separate environment). Every candidate is *probed* by running it with
:data:`PROBE_CODE`, because a name on the path can be a shim that does not work.

This module only lists candidates, builds probe commands and reads their output; running the
probes is the set-up's job (through a process runner, so the GUI never waits).
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from ..hostContext import HostContext, findExecutable, isExecutableFile

__all__ = [
    "PROBE_MARK",
    "PROBE_CODE",
    "SUPPORTED_RANGE",
    "supportedRange",
    "rangeText",
    "pythonVersionProblem",
    "DEFAULT_PREFERRED_VERSIONS",
    "PythonCandidate",
    "PythonInfo",
    "candidatePythons",
    "probeCommand",
    "parseProbeOutput",
    "unsuitableReason",
    "findUv",
    "noSuitablePythonMessage",
]

PROBE_MARK = "TSKD-PROBE"

#: One line, valid in any Python 3: prints ``TSKD-PROBE {json}`` describing the interpreter.
PROBE_CODE = (
    "import sys, json, platform, importlib.util as u; "
    "has = lambda n: u.find_spec(n) is not None; "
    "print('" + PROBE_MARK + " ' + json.dumps({'version': list(sys.version_info[:3]), "
    "'executable': sys.executable, 'implementation': platform.python_implementation(), "
    "'bits': 64 if sys.maxsize > 2 ** 32 else 32, 'venv': has('venv') and has('ensurepip'), "
    "'pip': has('pip'), 'virtual': sys.prefix != getattr(sys, 'base_prefix', sys.prefix)}))"
)

#: Oldest and newest ``(major, minor)`` the backend runs on when its ``pyproject.toml`` cannot be read
#: (:func:`supportedRange` reads the real one).
SUPPORTED_RANGE = ((3, 11), (3, 13))

#: Search order of minor versions: the best-supported first (those outside the range are skipped).
DEFAULT_PREFERRED_VERSIONS = ((3, 12), (3, 11), (3, 13), (3, 10))

_REQUIRES_PYTHON = re.compile(r'^\s*requires-python\s*=\s*["\']([^"\']+)["\']', re.MULTILINE)
_SPECIFIER = re.compile(r"^\s*(>=|<=|<|>|==|~=)\s*(\d+)\.(\d+)(?:\.\*|\.\d+)?\s*$")


def supportedRange(backendSourceDir: str) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """``((oldest major, minor), (newest major, minor))`` from the backend's ``requires-python``
    (``>=3.11,<3.14`` gives ``((3, 11), (3, 13))``); :data:`SUPPORTED_RANGE` when it cannot be read.
    A plain-text read: Slicer 5.6/5.8's Python 3.9 has no ``tomllib``."""
    try:
        with open(os.path.join(backendSourceDir, "pyproject.toml"), encoding="utf-8") as stream:
            found = _REQUIRES_PYTHON.search(stream.read())
    except (OSError, TypeError):
        return SUPPORTED_RANGE
    if not found:
        return SUPPORTED_RANGE
    low, high = SUPPORTED_RANGE
    for part in found.group(1).split(","):
        match = _SPECIFIER.match(part)
        if not match:
            continue
        operator, version = match.group(1), (int(match.group(2)), int(match.group(3)))
        if operator in (">=", "~="):
            low = version
        elif operator == ">":
            low = (version[0], version[1] + 1)
        elif operator == "<":
            high = (version[0], version[1] - 1) if version[1] > 0 else (version[0] - 1, 99)
        elif operator == "<=":
            high = version
        elif operator == "==":
            low = high = version
    return low, high


def rangeText(supported: Tuple[Tuple[int, int], Tuple[int, int]]) -> str:
    """``"3.11 to 3.13"``."""
    (lowMajor, lowMinor), (highMajor, highMinor) = supported
    return "{}.{} to {}.{}".format(lowMajor, lowMinor, highMajor, highMinor)


_WRONG_PYTHON = ("require a different python version", "requires a different Python", "Requires-Python")


def pythonVersionProblem(output: str, version: str, supported: Tuple[Tuple[int, int], Tuple[int, int]]) -> str:
    """When pip's ``output`` says a package needs another Python: a sentence naming the environment's Python
    ``version`` as the cause (instead of the network advice a "No matching distribution" gets); else ""."""
    if not any(needle.lower() in output.lower() for needle in _WRONG_PYTHON):
        return ""
    return ("The environment's Python {} is the cause: the backend's packages need Python {}. Delete the environment "
            "folder (or choose another under Advanced) and click Retry: a suitable Python is then looked for, or "
            "downloaded.".format(version or "(unknown version)", rangeText(supported)))


@dataclass(frozen=True)
class PythonCandidate:
    """A command that may run a usable Python.

    Args:
        command: program and leading arguments (``("py", "-3.12")`` for the Windows launcher).
        source: where it was found, for messages (``PATH``, ``pyenv``, ``Slicer``...).
    """

    command: Tuple[str, ...]
    source: str


@dataclass(frozen=True)
class PythonInfo:
    """What a probe reported about an interpreter."""

    command: Tuple[str, ...]
    source: str
    version: Tuple[int, int, int]
    executable: str
    implementation: str = "CPython"
    bits: int = 64
    hasVenv: bool = True
    hasPip: bool = True
    isVirtual: bool = False

    @property
    def versionText(self) -> str:
        return "{}.{}.{}".format(*self.version)


def _commonLocations(host: HostContext, version: Tuple[int, int]) -> List[Tuple[str, str]]:
    """(glob pattern, source) pairs of usual install places of Python ``version``."""
    major, minor = version
    dotted = "{}.{}".format(major, minor)
    join = host.path.join
    home = host.home
    if host.isWindows:
        env = host.environment
        local = env.get("LOCALAPPDATA", join(home, "AppData", "Local"))
        roaming = env.get("APPDATA", join(home, "AppData", "Roaming"))
        programFiles = env.get("ProgramFiles", "C:\\Program Files")
        folder = "Python{}{}".format(major, minor)
        return [
            (join(local, "Programs", "Python", folder, "python.exe"), "python.org (user)"),
            (join(programFiles, folder, "python.exe"), "python.org (all users)"),
            (join("C:\\", folder, "python.exe"), "python.org"),
            (join(roaming, "uv", "python", "cpython-{}.*".format(dotted), "python.exe"), "uv"),
            (join(home, ".pyenv", "pyenv-win", "versions", "{}.*".format(dotted), "python.exe"), "pyenv"),
        ]
    name = "python" + dotted
    data = host.environment.get("XDG_DATA_HOME", join(home, ".local", "share"))
    places = [
        (join(home, ".pyenv", "versions", "{}.*".format(dotted), "bin", name), "pyenv"),
        (join(data, "uv", "python", "cpython-{}.*".format(dotted), "bin", name), "uv"),
    ]
    if host.platform == "darwin":
        places += [
            (join("/Library/Frameworks/Python.framework/Versions", dotted, "bin", name), "python.org"),
            (join("/opt/homebrew/opt", "python@" + dotted, "bin", name), "Homebrew"),
            (join("/usr/local/opt", "python@" + dotted, "bin", name), "Homebrew"),
            (join("/opt/homebrew/bin", name), "Homebrew"),
        ]
    places += [(join(folder, name), "system") for folder in ("/usr/local/bin", "/usr/bin")]
    places += [(join(home, conda, "bin", name), "conda") for conda in ("miniforge3", "miniconda3", "anaconda3")]
    return places


def candidatePythons(
    host: HostContext,
    preferredVersions: Sequence[Tuple[int, int]] = DEFAULT_PREFERRED_VERSIONS,
    isFile: Callable[[str], bool] = isExecutableFile,
    expand: Callable[[str], List[str]] = glob.glob,
    supported: Tuple[Tuple[int, int], Tuple[int, int]] = SUPPORTED_RANGE,
) -> List[PythonCandidate]:
    """Commands worth probing, best first, without duplicates.

    For each preferred version: the versioned name on the search path, the Windows launcher
    (``py -3.X``), then the usual install folders. Then the unversioned ``python3``/``python`` on the
    path, and last Slicer's own interpreter when it is 3.10 or newer.

    Args:
        host: the machine (search path, home, platform).
        preferredVersions: ``(major, minor)`` pairs in order of preference.
        isFile: existence check for a program path (tests pass a fake).
        expand: glob expansion of install-folder patterns (tests pass a fake).
    """
    found: List[PythonCandidate] = []
    seen = set()

    def add(command: Tuple[str, ...], source: str) -> None:
        key = tuple(part.lower() for part in command) if host.isWindows else command
        if key not in seen:
            seen.add(key)
            found.append(PythonCandidate(command, source))

    launcher = findExecutable("py", host, isFile) if host.isWindows else None
    if host.isWindows and launcher is None and isFile("C:\\Windows\\py.exe"):
        launcher = "C:\\Windows\\py.exe"
    for version in [v for v in preferredVersions if supported[0] <= tuple(v) <= supported[1]]:
        dotted = "{}.{}".format(*version)
        onPath = findExecutable("python" + dotted, host, isFile)
        if onPath:
            add((onPath,), "PATH")
        if launcher:
            add((launcher, "-" + dotted), "py launcher")
        for pattern, source in _commonLocations(host, version) if host.searchCommonLocations else ():
            matches = sorted(expand(pattern), reverse=True) if any(c in pattern for c in "*?[") else [pattern]
            for path in matches:
                if isFile(path):
                    add((path,), source)
    for name in ("python3", "python"):
        onPath = findExecutable(name, host, isFile)
        if onPath:
            add((onPath,), "PATH")
    if host.slicerPython and supported[0] <= tuple((host.slicerPythonVersion or (0, 0))[:2]) <= supported[1]:
        add(tuple(host.slicerPython), "Slicer")
    return found


def probeCommand(command: Sequence[str]) -> List[str]:
    """The command that probes interpreter ``command`` (prints a :data:`PROBE_MARK` line)."""
    if not command:
        raise ValueError("probeCommand needs a non-empty interpreter command")
    return list(command) + ["-c", PROBE_CODE]


def parseProbeOutput(command: Sequence[str], source: str, output: str) -> Optional[PythonInfo]:
    """Read a probe's output; None when it has no valid :data:`PROBE_MARK` line.

    Args:
        command: the interpreter command that was probed.
        source: where it was found.
        output: everything the probe printed.
    """
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith(PROBE_MARK + " "):
            continue
        try:
            data = json.loads(line[len(PROBE_MARK) + 1 :])
            version = tuple(int(v) for v in data["version"])
            if len(version) != 3:
                return None
            return PythonInfo(
                command=tuple(command),
                source=source,
                version=version,  # type: ignore[arg-type]
                executable=str(data.get("executable") or command[0]),
                implementation=str(data.get("implementation", "CPython")),
                bits=int(data.get("bits", 64)),
                hasVenv=bool(data.get("venv", False)),
                hasPip=bool(data.get("pip", False)),
                isVirtual=bool(data.get("virtual", False)),
            )
        except (ValueError, KeyError, TypeError):
            return None
    return None


def unsuitableReason(
    info: PythonInfo, supported: Tuple[Tuple[int, int], Tuple[int, int]] = SUPPORTED_RANGE, needVenv: bool = True
) -> str:
    """Why ``info`` cannot be the base interpreter; an empty string when it can.

    Args:
        info: the probed interpreter.
        supported: oldest and newest ``(major, minor)`` accepted.
        needVenv: require the ``venv`` and ``ensurepip`` modules (to create an environment).
    """
    (lowMajor, lowMinor), (highMajor, highMinor) = supported
    majorMinor = info.version[:2]
    if majorMinor < (lowMajor, lowMinor):
        return "Python {} is too old (the backend needs {}.{} to {}.{})".format(
            info.versionText, lowMajor, lowMinor, highMajor, highMinor
        )
    if majorMinor > (highMajor, highMinor):
        return "Python {} is newer than the backend supports ({}.{} to {}.{})".format(
            info.versionText, lowMajor, lowMinor, highMajor, highMinor
        )
    if info.implementation != "CPython":
        return "{} is not CPython".format(info.implementation)
    if info.bits != 64:
        return "it is a 32-bit Python; PyTorch needs a 64-bit one"
    if needVenv and not info.hasVenv:
        return "its 'venv'/'ensurepip' modules are missing (Debian/Ubuntu: install the package python{}.{}-venv)".format(
            *info.version[:2]
        )
    return ""


def findUv(host: HostContext, isFile: Callable[[str], bool] = isExecutableFile) -> Optional[str]:
    """The ``uv`` program (it can download a Python), on the search path or where its installer puts it."""
    onPath = findExecutable("uv", host, isFile)
    if onPath:
        return onPath
    name = "uv.exe" if host.isWindows else "uv"
    for folder in (host.path.join(host.home, ".local", "bin"), host.path.join(host.home, ".cargo", "bin")):
        path = host.path.join(folder, name)
        if isFile(path):
            return path
    return None


def noSuitablePythonMessage(host: HostContext, rejected: Sequence[Tuple[PythonInfo, str]] = (),
                            supported: Tuple[Tuple[int, int], Tuple[int, int]] = SUPPORTED_RANGE) -> str:
    """What to tell a user whose machine has no usable Python: what was found, what to install."""
    lines = ["No suitable Python was found: the SlicerTSKD backend needs a 64-bit Python {} (3.12 recommended)."
             .format(rangeText(supported))]
    for info, reason in rejected:
        lines.append("  - {} ({}): {}".format(" ".join(info.command), info.source, reason))
    if host.isWindows:
        lines.append(
            "Install Python 3.12 (64-bit) from https://www.python.org/downloads/windows/ "
            "(keep 'py launcher' selected), or install uv (https://docs.astral.sh/uv/), then click Retry."
        )
    elif host.platform == "darwin":
        lines.append(
            "Install Python 3.12 from https://www.python.org/downloads/macos/ or with Homebrew "
            "('brew install python@3.12'), or install uv (https://docs.astral.sh/uv/), then click Retry."
        )
    else:
        lines.append(
            "Install Python 3.12 with its venv module (Debian/Ubuntu: 'sudo apt install python3.12 python3.12-venv'; "
            "Fedora: 'sudo dnf install python3.12'), or install uv (https://docs.astral.sh/uv/), then click Retry."
        )
    lines.append("Or, if the backend is already installed somewhere, enter its Python or 'tskd' command under 'Use existing environment'.")
    return "\n".join(lines)
