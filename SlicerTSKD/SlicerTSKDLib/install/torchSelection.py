"""Choosing the PyTorch build for the machine: CUDA when an NVIDIA GPU is usable, CPU otherwise.

The NVIDIA driver reports the newest CUDA version it supports in the header of ``nvidia-smi``'s
output (``CUDA Version: 12.6``). PyTorch publishes one wheel index per CUDA build
(``https://download.pytorch.org/whl/cu126``); the chosen build is the newest one the driver
supports. Without a usable GPU the CPU index is used (it avoids downloading gigabytes of CUDA
libraries); on macOS PyTorch comes from the default index (its wheels use the Apple GPU).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from ..hostContext import HostContext, findExecutable, isExecutableFile

__all__ = [
    "PYTORCH_INDEX_ROOT",
    "CPU_INDEX_URL",
    "DEFAULT_CUDA_BUILDS",
    "GpuInfo",
    "TorchBuild",
    "parseNvidiaSmi",
    "nvidiaSmiCommand",
    "chooseTorchBuild",
]

PYTORCH_INDEX_ROOT = "https://download.pytorch.org/whl/"
CPU_INDEX_URL = PYTORCH_INDEX_ROOT + "cpu"

#: CUDA builds PyTorch publishes, newest first (``(12, 6)`` is the ``cu126`` index).
DEFAULT_CUDA_BUILDS = ((13, 0), (12, 8), (12, 6))

_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*(\d+)\.(\d+)")
_DRIVER_VERSION = re.compile(r"Driver Version\s*:\s*([0-9.]+)")
_GPU_ROW = re.compile(r"^\|\s*(\d+)\s+(.+?)\s+(?:On|Off)\s*\|")


@dataclass(frozen=True)
class GpuInfo:
    """What ``nvidia-smi`` reported.

    Args:
        cudaVersion: newest CUDA ``(major, minor)`` the driver supports.
        driverVersion: driver version text (``"560.35.03"``), empty when not printed.
        names: GPU model names in index order (may be empty when the table was not parsed).
    """

    cudaVersion: Tuple[int, int]
    driverVersion: str = ""
    names: Tuple[str, ...] = ()


@dataclass(frozen=True)
class TorchBuild:
    """The PyTorch build to install.

    Args:
        device: ``"cuda"`` or ``"cpu"`` (``"cpu"`` also on macOS, where PyTorch may use the Apple GPU).
        tag: ``"cu126"``-style tag, ``"cpu"``, or ``""`` for the default index's build.
        indexUrl: pip index to install torch from; ``""`` means pip's configured default index.
        reason: one sentence for the log saying why.
    """

    device: str
    tag: str
    indexUrl: str
    reason: str


def parseNvidiaSmi(output: str) -> Optional[GpuInfo]:
    """Read ``nvidia-smi``'s default output; None when it reports no CUDA version (no usable driver)."""
    match = _CUDA_VERSION.search(output)
    if not match:
        return None
    driver = _DRIVER_VERSION.search(output)
    names = []
    for line in output.splitlines():
        row = _GPU_ROW.match(line)
        if row:
            name = row.group(2).strip()
            names.append(name)
    return GpuInfo(
        cudaVersion=(int(match.group(1)), int(match.group(2))),
        driverVersion=driver.group(1) if driver else "",
        names=tuple(names),
    )


def nvidiaSmiCommand(host: HostContext, isFile=isExecutableFile) -> Optional[List[str]]:
    """Command that prints the GPU table, or None when ``nvidia-smi`` is not installed."""
    path = findExecutable("nvidia-smi", host, isFile)
    if path is None and host.isWindows:
        root = host.environment.get("SystemRoot", "C:\\Windows")
        programFiles = host.environment.get("ProgramFiles", "C:\\Program Files")
        for candidate in (
            host.path.join(root, "System32", "nvidia-smi.exe"),
            host.path.join(programFiles, "NVIDIA Corporation", "NVSMI", "nvidia-smi.exe"),
        ):
            if isFile(candidate):
                path = candidate
                break
    return [path] if path else None


def _tag(version: Tuple[int, int]) -> str:
    return "cu{}{}".format(version[0], version[1])


def chooseTorchBuild(
    gpu: Optional[GpuInfo],
    platform: str,
    device: str = "auto",
    cudaBuilds: Sequence[Tuple[int, int]] = DEFAULT_CUDA_BUILDS,
) -> TorchBuild:
    """Pick the PyTorch build.

    Args:
        gpu: what ``nvidia-smi`` reported, or None (no NVIDIA GPU or driver).
        platform: ``sys.platform`` value.
        device: ``"auto"`` (decide from ``gpu``), ``"cpu"`` or ``"cuda"`` (force).
        cudaBuilds: CUDA ``(major, minor)`` builds available, any order.

    Raises:
        ValueError: on an unknown ``device`` or an empty ``cudaBuilds`` when CUDA is needed.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError("device must be 'auto', 'cpu' or 'cuda', got {!r}".format(device))
    if platform == "darwin":
        return TorchBuild("cpu", "", "", "macOS: PyTorch from the default index (it uses the Apple GPU when available)")
    if device == "cpu":
        return TorchBuild("cpu", "cpu", CPU_INDEX_URL, "CPU build requested")
    builds = sorted(set(tuple(b) for b in cudaBuilds), reverse=True)
    if device == "cuda" and gpu is None:
        if not builds:
            raise ValueError("cudaBuilds is empty: cannot choose a CUDA build")
        return TorchBuild("cuda", _tag(builds[0]), PYTORCH_INDEX_ROOT + _tag(builds[0]), "CUDA build requested")
    if gpu is None:
        return TorchBuild("cpu", "cpu", CPU_INDEX_URL, "no NVIDIA GPU found: CPU build")
    names = ", ".join(gpu.names) or "NVIDIA GPU"
    supported = [b for b in builds if b <= gpu.cudaVersion]
    if not supported:
        # CUDA minor-version compatibility: a driver for 12.x runs builds for any 12.y.
        supported = [b for b in sorted(builds) if b[0] == gpu.cudaVersion[0]]
    if not supported:
        oldest = min(builds) if builds else None
        needed = " (PyTorch needs CUDA {}.{} or newer: update the NVIDIA driver to use the GPU)".format(*oldest) if oldest else ""
        return TorchBuild(
            "cpu",
            "cpu",
            CPU_INDEX_URL,
            "{} with a driver for CUDA {}.{}{}: CPU build".format(names, gpu.cudaVersion[0], gpu.cudaVersion[1], needed),
        )
    chosen = supported[0]
    return TorchBuild(
        "cuda",
        _tag(chosen),
        PYTORCH_INDEX_ROOT + _tag(chosen),
        "{} with a driver for CUDA {}.{}: {} build".format(names, gpu.cudaVersion[0], gpu.cudaVersion[1], _tag(chosen)),
    )
