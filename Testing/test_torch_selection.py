"""CUDA or CPU PyTorch from nvidia-smi's report."""

from __future__ import annotations

import pytest

from fakeTools import NVIDIA_SMI_12_6
from SlicerTSKDLib.hostContext import HostContext
from SlicerTSKDLib.install.torchSelection import (
    CPU_INDEX_URL,
    GpuInfo,
    chooseTorchBuild,
    nvidiaSmiCommand,
    parseNvidiaSmi,
)


NVIDIA_SMI_11_4 = NVIDIA_SMI_12_6.replace("560.35.03 ", "470.256.02").replace("CUDA Version: 12.6", "CUDA Version: 11.4")

NO_DRIVER = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n"


def test_parse_reports_cuda_version_driver_and_names():
    gpu = parseNvidiaSmi(NVIDIA_SMI_12_6)
    assert gpu == GpuInfo((12, 6), "560.35.03", ("NVIDIA GeForce RTX 3090", "NVIDIA RTX A4000"))


def test_parse_without_driver_is_none():
    assert parseNvidiaSmi(NO_DRIVER) is None
    assert parseNvidiaSmi("") is None


@pytest.mark.parametrize(
    "cuda, tag",
    [((12, 6), "cu126"), ((12, 7), "cu126"), ((12, 8), "cu128"), ((12, 9), "cu128"), ((13, 0), "cu130"), ((13, 2), "cu130"),
     ((12, 2), "cu126")],  # 12.2 driver: minor-version compatibility within CUDA 12
)
def test_cuda_build_is_the_newest_the_driver_supports(cuda, tag):
    build = chooseTorchBuild(GpuInfo(cuda, "x", ("GPU",)), "linux")
    assert build.device == "cuda"
    assert build.tag == tag
    assert build.indexUrl == "https://download.pytorch.org/whl/" + tag


def test_decision_from_real_looking_outputs():
    assert chooseTorchBuild(parseNvidiaSmi(NVIDIA_SMI_12_6), "linux").indexUrl == "https://download.pytorch.org/whl/cu126"
    old = chooseTorchBuild(parseNvidiaSmi(NVIDIA_SMI_11_4), "win32")
    assert old.device == "cpu" and old.indexUrl == CPU_INDEX_URL
    assert "update the NVIDIA driver" in old.reason
    none = chooseTorchBuild(parseNvidiaSmi(NO_DRIVER), "linux")
    assert (none.device, none.indexUrl) == ("cpu", CPU_INDEX_URL)


def test_forced_devices_and_macos():
    gpu = GpuInfo((12, 8))
    assert chooseTorchBuild(gpu, "linux", device="cpu").indexUrl == CPU_INDEX_URL
    assert chooseTorchBuild(None, "linux", device="cuda").tag == "cu130"
    mac = chooseTorchBuild(None, "darwin")
    assert mac.indexUrl == "" and mac.device == "cpu"
    custom = chooseTorchBuild(GpuInfo((12, 4)), "linux", cudaBuilds=[(11, 8), (12, 1), (12, 4)])
    assert custom.tag == "cu124"
    with pytest.raises(ValueError, match="device"):
        chooseTorchBuild(None, "linux", device="gpu")


def test_nvidia_smi_command_on_path_and_windows_default_folder():
    linux = HostContext("linux", {"PATH": "/usr/bin"}, "/h")
    assert nvidiaSmiCommand(linux, isFile={"/usr/bin/nvidia-smi"}.__contains__) == ["/usr/bin/nvidia-smi"]
    assert nvidiaSmiCommand(linux, isFile=lambda p: False) is None
    windows = HostContext("win32", {"PATH": "C:\\Tools", "SystemRoot": "C:\\Windows"}, "C:\\h")
    assert nvidiaSmiCommand(windows, isFile={"C:\\Windows\\System32\\nvidia-smi.exe"}.__contains__) == [
        "C:\\Windows\\System32\\nvidia-smi.exe"
    ]
