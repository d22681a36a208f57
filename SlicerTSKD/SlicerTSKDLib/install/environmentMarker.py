"""The marker file that says the backend environment is ready, and what it contains.

Written last by a successful set-up (atomically), deleted when a new set-up starts, so a failed or
cancelled set-up never looks ready. The module reads it to know how to start the backend
(:attr:`EnvironmentInfo.backendCommand` + ``serve ...``) and whether the environment is older than
the backend shipped with the extension.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, List, Optional, Tuple

__all__ = ["MARKER_FORMAT", "EnvironmentInfo", "writeMarker", "readMarker", "environmentState", "READY", "NOT_SET_UP", "OUTDATED", "BROKEN"]

MARKER_FORMAT = 1

READY = "ready"
NOT_SET_UP = "notSetUp"
OUTDATED = "outdated"
BROKEN = "broken"


@dataclass
class EnvironmentInfo:
    """What a set-up installed.

    Args:
        kind: ``"managed"`` (created by the set-up) or ``"existing"`` (given by the user, verified only).
        backendCommand: command that runs ``tskd`` (``[python, "-m", "tskd"]`` or the user's command).
        backendVersion: ``tskd`` version installed.
        pythonVersion: version of the environment's Python (empty when unknown).
        torchVersion: ``torch.__version__`` (``"2.13.0+cpu"``; empty when unknown).
        torchCuda: CUDA version torch was built for (``"12.6"``), empty for a CPU build.
        device: ``"cuda"`` when torch can use a GPU, else ``"cpu"``.
        torchIndexUrl: index torch was installed from (empty: pip's default).
        createdAt: ISO time of the set-up.
    """

    kind: str
    backendCommand: List[str]
    backendVersion: str
    pythonVersion: str = ""
    torchVersion: str = ""
    torchCuda: str = ""
    device: str = "cpu"
    torchIndexUrl: str = ""
    createdAt: str = ""
    formatVersion: int = field(default=MARKER_FORMAT)


def writeMarker(path: str, info: EnvironmentInfo) -> None:
    """Write ``info`` as JSON to ``path`` atomically (temporary file, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".environment-", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(asdict(info), stream, indent=2)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def readMarker(path: str) -> Optional[EnvironmentInfo]:
    """The marker at ``path``; None when missing, unreadable, or of another format version."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("formatVersion") != MARKER_FORMAT:
        return None
    known = {f.name for f in fields(EnvironmentInfo)}
    try:
        info = EnvironmentInfo(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None
    if not isinstance(info.backendCommand, list) or not info.backendCommand or not all(isinstance(p, str) for p in info.backendCommand):
        return None
    return info


def environmentState(
    markerPath: str, shippedVersion: Optional[str] = None, isFile: Callable[[str], bool] = os.path.isfile
) -> Tuple[str, Optional[EnvironmentInfo]]:
    """Whether the environment can be used.

    Args:
        markerPath: the marker file (``EnvironmentOptions.markerPath``).
        shippedVersion: backend version shipped with the extension; a different installed version is
            :data:`OUTDATED` (only for managed environments; None skips the comparison).
        isFile: existence check (tests pass a fake).

    Returns:
        ``(state, info)``: :data:`READY`, :data:`NOT_SET_UP` (no marker), :data:`OUTDATED`, or
        :data:`BROKEN` (the marker's program is gone), with the marker's content when there is one.
    """
    info = readMarker(markerPath)
    if info is None:
        return NOT_SET_UP, None
    program = info.backendCommand[0]
    if os.path.isabs(program) and not isFile(program):
        return BROKEN, info
    if info.kind == "managed" and shippedVersion and info.backendVersion != shippedVersion:
        return OUTDATED, info
    return READY, info
