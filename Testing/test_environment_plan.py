"""Planning the backend environment: commands, paths, constraints, marker, progress estimate."""

from __future__ import annotations

import json

import pytest

from conftest import REPO_ROOT
from SlicerTSKDLib.install.environment import (
    INFO_CODE,
    EnvironmentOptions,
    SetupError,
    constraintsWithout,
    defaultEnvironmentRoot,
    existingBackendCommand,
    failureHint,
    findBackendSource,
    parseInfoOutput,
    parseVersionOutput,
    pinnedRequirement,
    planExistingCheck,
    planInstall,
    shippedBackendVersion,
    stageBackendSource,
    torchRequirementFor,
)
from SlicerTSKDLib.install.environmentMarker import (
    BROKEN,
    NOT_SET_UP,
    OUTDATED,
    READY,
    EnvironmentInfo,
    environmentState,
    readMarker,
    writeMarker,
)
from SlicerTSKDLib.hostContext import HostContext
from SlicerTSKDLib.install.pipProgress import PipProgress
from SlicerTSKDLib.install.pythonFinder import PythonInfo
from SlicerTSKDLib.install.torchSelection import CPU_INDEX_URL, TorchBuild

BACKEND = REPO_ROOT / "TSKDBackend"
CONSTRAINTS = "numpy==2.4.6\ntorch==2.13.0  # CPU wheel\nTorch-Audio==1.0\n# comment\nscipy==1.17.1\n"
LINUX = HostContext("linux", {"PATH": "/usr/bin"}, "/home/ann")
BASE = PythonInfo(("/usr/bin/python3.11",), "PATH", (3, 11, 7), "/usr/bin/python3.11")
CPU = TorchBuild("cpu", "cpu", CPU_INDEX_URL, "no GPU")
CUDA = TorchBuild("cuda", "cu126", "https://download.pytorch.org/whl/cu126", "GPU")


def commands(steps):
    return {step.key: list(step.command) for step in steps}


def test_cpu_plan_with_default_index_and_pinned_torch():
    """What the slow test and this machine use: pip's configured index/find-links, torch==2.13.0."""
    options = EnvironmentOptions(rootDir="/data/tskd", backendSourceDir=str(BACKEND), torchIndexUrl="", upgradePip=False)
    steps = planInstall(options, LINUX, BASE, CPU, CONSTRAINTS)
    assert [s.key for s in steps] == ["create-venv", "probe-new-venv", "install-torch", "install-backend", "verify-version", "verify-import"]
    cmd = commands(steps)
    python = "/data/tskd/venv/bin/python"
    assert cmd["create-venv"] == ["/usr/bin/python3.11", "-m", "venv", "--clear", "/data/tskd/venv"]
    assert cmd["install-torch"][:4] == [python, "-m", "pip", "install"]
    assert cmd["install-torch"][-1] == "torch==2.13.0"
    assert "--index-url" not in cmd["install-torch"]
    assert steps[2].label == "Installing PyTorch (from pip's configured index)"
    assert cmd["install-backend"][-3:] == ["-c", "/data/tskd/constraints.txt", "/data/tskd/backend-source"]
    assert cmd["verify-version"] == [python, "-m", "tskd", "--version"]
    assert cmd["verify-import"] == [python, "-c", INFO_CODE]
    assert all(step.weight > 0 and step.label for step in steps)


def test_automatic_cpu_and_cuda_plans_use_the_pytorch_indexes():
    options = EnvironmentOptions(rootDir="/r", backendSourceDir="/b")
    cpu = commands(planInstall(options, LINUX, BASE, CPU, CONSTRAINTS))
    assert cpu["install-torch"][-3:] == ["torch==2.13.0", "--index-url", CPU_INDEX_URL]
    assert cpu["upgrade-pip"][-2:] == ["--upgrade", "pip"]
    cudaSteps = planInstall(options, LINUX, BASE, CUDA, CONSTRAINTS)
    cuda = commands(cudaSteps)
    assert cuda["install-torch"][-3:] == ["torch", "--index-url", "https://download.pytorch.org/whl/cu126"]
    assert next(s.label for s in cudaSteps if s.key == "install-torch") == "Installing PyTorch (CUDA 12.6)"


def test_mirror_arguments_and_explicit_torch_choices_override():
    options = EnvironmentOptions(
        rootDir="/r", backendSourceDir="/b", torchIndexUrl="https://mirror.example/torch",
        torchRequirement="torch==2.6.0", extraPipArgs=["--proxy", "http://proxy:3128"], useConstraints=False,
    )
    cmd = commands(planInstall(options, LINUX, BASE, CUDA, CONSTRAINTS))
    assert cmd["install-torch"][-5:] == ["torch==2.6.0", "--proxy", "http://proxy:3128", "--index-url", "https://mirror.example/torch"]
    assert cmd["install-backend"][-3:] == ["/r/backend-source", "--proxy", "http://proxy:3128"]
    assert "-c" not in cmd["install-backend"]
    assert cmd["upgrade-pip"][-2:] == ["--proxy", "http://proxy:3128"]


def test_reuse_skips_creation_and_windows_paths():
    windows = HostContext("win32", {"PATH": ""}, "C:\\Users\\ann", )
    options = EnvironmentOptions(rootDir="C:\\data", backendSourceDir="C:\\b", upgradePip=False)
    steps = planInstall(options, windows, None, CPU, "")
    assert [s.key for s in steps] == ["install-torch", "install-backend", "verify-version", "verify-import"]
    assert steps[0].command[0].endswith("Scripts\\python.exe")
    assert steps[0].command[-3] == "torch"  # no constraints: unpinned


def test_torch_requirement_rules():
    options = EnvironmentOptions(rootDir="/r")
    assert torchRequirementFor(options, CPU, CONSTRAINTS) == "torch==2.13.0"
    assert torchRequirementFor(options, CUDA, CONSTRAINTS) == "torch"
    assert torchRequirementFor(EnvironmentOptions(rootDir="/r", torchIndexUrl=""), CUDA, CONSTRAINTS) == "torch==2.13.0"
    assert torchRequirementFor(EnvironmentOptions(rootDir="/r", useConstraints=False), CPU, CONSTRAINTS) == "torch"


def test_constraint_helpers():
    assert pinnedRequirement(CONSTRAINTS, "torch") == "torch==2.13.0"
    assert pinnedRequirement(CONSTRAINTS, "torch_audio") == "Torch-Audio==1.0"
    assert pinnedRequirement(CONSTRAINTS, "pillow") is None
    without = constraintsWithout(CONSTRAINTS, "torch")
    assert "torch==" not in without and "Torch-Audio==1.0" in without and "numpy==2.4.6" in without
    real = (BACKEND / "constraints.txt").read_text(encoding="utf-8")
    assert pinnedRequirement(real, "torch") == "torch==2.13.0"


def test_options_validation():
    with pytest.raises(ValueError, match="rootDir"):
        EnvironmentOptions(rootDir="")
    with pytest.raises(ValueError, match="device"):
        EnvironmentOptions(rootDir="/r", device="gpu")
    with pytest.raises(ValueError, match="extraPipArgs"):
        EnvironmentOptions(rootDir="/r", extraPipArgs="--proxy x")
    with pytest.raises(ValueError, match="baseInterpreter"):
        EnvironmentOptions(rootDir="/r", baseInterpreter="python3.11")


def test_default_root_per_platform():
    assert defaultEnvironmentRoot(LINUX) == "/home/ann/.local/share/SlicerTSKD/backend"
    assert defaultEnvironmentRoot(HostContext("linux", {"XDG_DATA_HOME": "/x"}, "/h")) == "/x/SlicerTSKD/backend"
    assert defaultEnvironmentRoot(HostContext("darwin", {}, "/Users/ann")) == "/Users/ann/Library/Application Support/SlicerTSKD/backend"
    windows = HostContext("win32", {"LOCALAPPDATA": "C:\\Users\\ann\\AppData\\Local"}, "C:\\Users\\ann")
    assert defaultEnvironmentRoot(windows) == "C:\\Users\\ann\\AppData\\Local\\SlicerTSKD\\backend"


def test_backend_source_found_in_checkout_and_installed_layouts(tmp_path):
    assert findBackendSource(str(REPO_ROOT / "SlicerTSKD")) == str(BACKEND)
    installed = tmp_path / "qt-scripted-modules"
    (installed / "SlicerTSKDBackend" / "src" / "tskd").mkdir(parents=True)
    (installed / "SlicerTSKDBackend" / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
    assert findBackendSource(str(installed)) == str(installed / "SlicerTSKDBackend")
    assert findBackendSource(str(tmp_path / "elsewhere")) is None
    assert shippedBackendVersion(str(BACKEND)) == "0.1.0"
    assert shippedBackendVersion(str(tmp_path)) is None


def test_staging_copies_sources_without_tests_or_caches(tmp_path):
    target = tmp_path / "backend-source"
    (target / "stale").mkdir(parents=True)
    stageBackendSource(str(BACKEND), str(target))
    assert (target / "pyproject.toml").is_file()
    assert (target / "src" / "tskd" / "cli" / "main.py").is_file()
    assert not (target / "stale").exists()
    assert not (target / "tests").exists()
    assert not list(target.rglob("__pycache__"))
    with pytest.raises(SetupError, match="Reinstall"):
        stageBackendSource(str(tmp_path / "missing"), str(target))


def test_existing_command_forms(tmp_path):
    venv = tmp_path / "env"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("", encoding="utf-8")
    host = HostContext("linux", {}, "/h")
    assert existingBackendCommand(str(venv), host) == [str(venv / "bin" / "python"), "-m", "tskd"]
    assert existingBackendCommand(" /opt/py/bin/python3.11 ", host) == ["/opt/py/bin/python3.11", "-m", "tskd"]
    assert existingBackendCommand("conda run -n seg tskd", host) == ["conda", "run", "-n", "seg", "tskd"]
    assert existingBackendCommand("'/my tools/tskd'", host) == ["/my tools/tskd"]
    windows = HostContext("win32", {}, "C:\\h")
    assert existingBackendCommand('"C:\\Py 3\\python.exe"', windows, isFile=lambda p: False, isDir=lambda p: False) == [
        "C:\\Py 3\\python.exe", "-m", "tskd"]
    with pytest.raises(SetupError, match="Enter"):
        existingBackendCommand("  ", host)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SetupError, match="bin/python"):
        existingBackendCommand(str(tmp_path / "empty"), host)
    assert [s.key for s in planExistingCheck(["/p/python", "-m", "tskd"])] == ["check-existing-version", "check-existing-import"]
    assert [list(s.command) for s in planExistingCheck(["tskd"])] == [["tskd", "--version"]]


def test_output_parsers_and_hints():
    assert parseVersionOutput("tskd 0.1.0\n") == "0.1.0"
    assert parseVersionOutput("python: No module named tskd") is None
    assert parseInfoOutput('noise\nTSKD-INFO {"torchVersion": "2.13.0+cpu"}\n') == {"torchVersion": "2.13.0+cpu"}
    assert parseInfoOutput("TSKD-INFO [1]") is None
    assert "mirror" in failureHint("ERROR: No matching distribution found for torch==9")
    assert "disk" in failureHint("OSError: [Errno 28] No space left on device")
    assert failureHint("something else") == ""


def test_marker_round_trip_and_states(tmp_path):
    path = tmp_path / "environment.json"
    assert environmentState(str(path)) == (NOT_SET_UP, None)
    python = tmp_path / "python"
    python.write_text("", encoding="utf-8")
    info = EnvironmentInfo(kind="managed", backendCommand=[str(python), "-m", "tskd"], backendVersion="0.1.0",
                           torchVersion="2.13.0+cpu", createdAt="2025-01-01T00:00:00")
    writeMarker(str(path), info)
    assert readMarker(str(path)) == info
    assert json.loads(path.read_text(encoding="utf-8"))["formatVersion"] == 1
    assert environmentState(str(path), "0.1.0") == (READY, info)
    assert environmentState(str(path), "0.2.0")[0] == OUTDATED
    python.unlink()
    assert environmentState(str(path))[0] == BROKEN
    path.write_text('{"formatVersion": 1, "kind": "managed", "backendCommand": [], "backendVersion": "1"}', encoding="utf-8")
    assert readMarker(str(path)) is None
    path.write_text("{broken", encoding="utf-8")
    assert readMarker(str(path)) is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".environment-")] == []


def test_pip_progress_moves_monotonically_to_one():
    progress = PipProgress(expectedPackages=4)
    lines = ["Collecting torch==2.13.0", "  Downloading torch-2.13.0.whl (180 MB)", "Collecting filelock",
             "Requirement already satisfied: numpy in ./venv", "Collecting sympy", "Collecting extra-one",
             "Collecting extra-two", "Installing collected packages: a, b", "Successfully installed a b"]
    values = [progress.feed(line) for line in lines]
    moved = [v for v in values if v is not None]
    assert values[1] is None
    assert moved == sorted(moved) and moved[-1] == 1.0
    assert max(moved[:-2]) < 0.85  # resolving never claims the installing share
    with pytest.raises(ValueError):
        PipProgress(-1)


def test_a_mirror_or_wheelhouse_in_the_extra_arguments_serves_torch():
    """Issue 32, item 7: pip takes the last --index-url, so PyTorch's own index is added only when the extra
    pip arguments name no index (a mirror) and do not forbid one (an offline wheelhouse)."""
    from SlicerTSKDLib.install.environment import choosesIndex

    assert choosesIndex(["--index-url", "https://mirror/simple"]) and choosesIndex(["--index-url=https://m/simple"])
    assert choosesIndex(["-i", "https://m/simple"]) and choosesIndex(["-ihttps://m/simple"])
    assert choosesIndex(["--no-index", "--find-links", "/media/wheelhouse"])
    assert not choosesIndex(["--proxy", "http://proxy:3128", "--extra-index-url", "https://m/simple", "-I"])
