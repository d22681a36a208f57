"""What the set-up logic needs to know about the machine, gathered in one object tests can fake.

Slicer runs with its own Python variables (``PYTHONHOME``, ``PYTHONPATH``, library paths) set by its
launcher. A child process running *another* Python must not inherit them, so the set-up builds
each child's environment from :attr:`HostContext.environment` (in Slicer:
``slicer.util.startupEnvironment()``, the environment before the launcher changed it) with
:func:`childEnvironment`, and never modifies ``os.environ``.
"""

from __future__ import annotations

import ntpath
import os
import posixpath
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

__all__ = ["HostContext", "childEnvironment", "findExecutable", "isExecutableFile", "PYTHON_VARIABLES_REMOVED"]

#: Variables that would make a child Python load the wrong standard library or packages.
PYTHON_VARIABLES_REMOVED = (
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONEXECUTABLE",
    "PYTHONUSERBASE",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "__PYVENV_LAUNCHER__",
)


@dataclass(frozen=True)
class HostContext:
    """The machine as the set-up sees it.

    Args:
        platform: ``sys.platform`` value (``linux``, ``darwin``, ``win32``).
        environment: environment for child processes, before :func:`childEnvironment` cleans it.
        home: the user's home folder.
        pathDirs: folders searched for programs; defaults to ``environment["PATH"]``.
        slicerPython: command that runs Slicer's own interpreter (``PythonSlicer``), or None.
        slicerPythonVersion: that interpreter's ``(major, minor, micro)``, or None.
        searchCommonLocations: also look for Python in the usual install folders, not only on
            ``pathDirs`` (tests turn it off to see only their fakes).
        machine: the processor (``x86_64``, ``arm64``, ``AMD64``...); on macOS the hardware's, also when
            Slicer runs under Rosetta (:func:`hardwareMachine`). Empty: unknown.
    """

    platform: str
    environment: Mapping[str, str]
    home: str
    pathDirs: Tuple[str, ...] = field(default=())
    slicerPython: Optional[Tuple[str, ...]] = None
    slicerPythonVersion: Optional[Tuple[int, int, int]] = None
    searchCommonLocations: bool = True
    machine: str = ""

    @property
    def isIntelMac(self) -> bool:
        """A Mac with an Intel processor (PyTorch has published no macOS x86_64 build since 2.2)."""
        return self.platform == "darwin" and self.machine in ("x86_64", "i386")

    @property
    def isAppleSilicon(self) -> bool:
        return self.platform == "darwin" and self.machine == "arm64"

    def __post_init__(self) -> None:
        if self.platform not in ("linux", "darwin", "win32") and not self.platform.startswith(("linux", "freebsd")):
            raise ValueError("platform must be a sys.platform value such as 'linux', 'darwin' or 'win32', got {!r}".format(self.platform))
        if not self.pathDirs:
            separator = ";" if self.platform == "win32" else ":"
            dirs = tuple(d for d in self.environment.get("PATH", self.environment.get("Path", "")).split(separator) if d)
            object.__setattr__(self, "pathDirs", dirs)

    @property
    def isWindows(self) -> bool:
        return self.platform == "win32"

    @property
    def path(self):
        """``ntpath`` on Windows, ``posixpath`` elsewhere: joins paths the way the host does."""
        return ntpath if self.isWindows else posixpath

    @classmethod
    def current(
        cls,
        environment: Optional[Mapping[str, str]] = None,
        slicerPython: Optional[Sequence[str]] = None,
        slicerPythonVersion: Optional[Tuple[int, int, int]] = None,
    ) -> "HostContext":
        """The running machine; ``environment`` defaults to a copy of ``os.environ`` (read, never written)."""
        env = dict(os.environ if environment is None else environment)
        return cls(
            platform=sys.platform,
            environment=env,
            home=os.path.expanduser("~"),
            slicerPython=tuple(slicerPython) if slicerPython else None,
            slicerPythonVersion=slicerPythonVersion,
            machine=hardwareMachine(),
        )


def hardwareMachine() -> str:
    """The processor: ``platform.machine()``, except on macOS, where an x86_64 Slicer may run under Rosetta
    on Apple silicon: ``sysctl hw.optional.arm64`` (1 on Apple silicon, whatever the process) decides."""
    import platform
    import subprocess

    machine = platform.machine()
    if sys.platform == "darwin" and machine == "x86_64":
        try:
            answer = subprocess.run(["/usr/sbin/sysctl", "-n", "hw.optional.arm64"], capture_output=True, text=True,
                                    timeout=5)
            if answer.stdout.strip() == "1":
                return "arm64"
        except (OSError, subprocess.SubprocessError):
            pass
    return machine


def childEnvironment(base: Mapping[str, str], extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for a child Python process: ``base`` without Python-redirecting variables.

    Output is forced to UTF-8 and unbuffered (so progress arrives line by line), the user's
    site-packages are ignored and pip never prompts.

    Args:
        base: the environment to start from (not modified).
        extra: variables to set on top.
    """
    env = {str(k): str(v) for k, v in base.items() if k not in PYTHON_VARIABLES_REMOVED}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONUTF8": "1",
            "PYTHONNOUSERSITE": "1",
            "PIP_NO_INPUT": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env


def isExecutableFile(path: str) -> bool:
    """True for an existing file this user may run."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


def findExecutable(name: str, host: HostContext, isFile: Callable[[str], bool] = isExecutableFile) -> Optional[str]:
    """First ``name`` (``name.exe`` on Windows) in ``host.pathDirs``, skipping Windows Store stubs.

    Args:
        name: program name without folder.
        host: the machine.
        isFile: existence check (tests pass a fake).
    """
    names = [name] if not host.isWindows or name.lower().endswith(".exe") else [name + ".exe", name]
    for directory in host.pathDirs:
        if host.isWindows and "windowsapps" in directory.lower():
            continue  # "python.exe" there opens the Microsoft Store instead of running Python
        for candidate in names:
            path = host.path.join(directory, candidate)
            if isFile(path):
                return path
    return None
