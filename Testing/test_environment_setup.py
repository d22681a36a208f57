"""EnvironmentSetup end to end on fake interpreters and tools (real processes, fast).

The fakes (see fakeTools.py) answer like Python, pip, nvidia-smi and uv would, and record every
call, so these tests check the order of commands, retries, cancellation and the marker.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from fakeTools import NVIDIA_SMI_12_6, alive, fakeEnvironment, makeFakePython, makeScript, readCalls, writeRules
from SlicerTSKDLib.install.environment import EnvironmentOptions
from SlicerTSKDLib.install.environmentMarker import READY, environmentState, readMarker
from SlicerTSKDLib.install.environmentSetup import CANCELLED, FAILED, SUCCEEDED, EnvironmentSetup
from SlicerTSKDLib.hostContext import HostContext
from SlicerTSKDLib.processRunner import SubprocessRunner

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the fakes are POSIX scripts")

BACKEND = REPO_ROOT / "TSKDBackend"
NOW = datetime.datetime(2025, 1, 2, 3, 4, 5)


class Harness:
    """A set-up on fakes: ``bin/`` is the whole search path; rules change the fakes' behaviour."""

    def __init__(self, tmp: Path, **options) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.rulesPath = writeRules(tmp / "rules.json", {})
        self.root = tmp / "root"
        env = fakeEnvironment(tmp, [self.bin], self.rulesPath)
        self.host = HostContext("linux", env, str(tmp / "home"), searchCommonLocations=False)
        options.setdefault("backendSourceDir", str(BACKEND))
        self.options = EnvironmentOptions(rootDir=str(self.root), **options)
        self.progress, self.log, self.results = [], [], []
        self.withHost()

    def withHost(self, **changes) -> None:
        """A set-up on this host with some fields changed (Slicer's own Python, the processor...)."""
        import dataclasses

        self.host = dataclasses.replace(self.host, **changes)
        self.runner = SubprocessRunner()  # one set-up per runner (each listens to its runner's events)
        self.setup = EnvironmentSetup(self.options, self.host, self.runner, now=lambda: NOW)
        self.setup.progress.connect(lambda fraction, label: self.progress.append((fraction, label)))
        self.setup.logMessage.connect(self.log.append)
        self.setup.finished.connect(lambda ok, message: self.results.append((ok, message)))

    def rules(self, **rules) -> None:
        writeRules(self.rulesPath, rules)

    def run(self, timeout: float = 60.0):
        self.results.clear()
        self.progress.clear()
        self.setup.start()
        assert self.runner.waitUntil(lambda: bool(self.results), timeout), "set-up did not finish"
        return self.results[-1]

    def keys(self):
        return [step.key for step in self.setup.stepsRun]

    def calls(self):
        return readCalls(self.tmp / "calls.jsonl")

    @property
    def venvPython(self) -> Path:
        return self.root / "venv" / "bin" / "python"


def test_full_setup_finds_python_installs_and_writes_marker(tmp_path):
    h = Harness(tmp_path, upgradePip=True)
    makeScript(h.bin / "python3.12", "echo 'pyenv: python3.12: command not found' >&2; exit 127")
    good = makeFakePython(h.bin / "python3.11", (3, 11, 7))
    makeFakePython(h.bin / "python3.13", (3, 14, 0))
    ok, message = h.run()
    assert ok, message
    assert h.setup.state == SUCCEEDED
    assert h.keys() == ["probe-python", "probe-python", "create-venv", "probe-new-venv", "upgrade-pip",
                        "install-torch", "install-backend", "verify-version", "verify-import"]
    calls = h.calls()  # the shim records nothing: the first call is the good probe
    assert calls[0][:2] == [str(good), "-c"]
    assert calls[1] == [str(good), "-m", "venv", "--clear", str(h.root / "venv")]
    torch = next(c for c in calls if "pip" in c and any(a.startswith("torch") for a in c))
    assert torch[0] == str(h.venvPython)
    assert torch[-3:] == ["torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cpu"]
    backend = next(c for c in calls if str(h.root / "backend-source") in c)
    assert backend[-3:] == ["-c", str(h.root / "constraints.txt"), str(h.root / "backend-source")]
    staged = (h.root / "constraints.txt").read_text(encoding="utf-8")
    assert "torch==" not in staged and "numpy==" in staged
    marker = readMarker(str(h.root / "environment.json"))
    assert marker.kind == "managed"
    assert marker.backendCommand == [str(h.venvPython), "-m", "tskd"]
    assert (marker.backendVersion, marker.torchVersion, marker.device, marker.pythonVersion) == ("0.1.0", "2.13.0+cpu", "cpu", "3.11.7")
    assert marker.createdAt == "2025-01-02T03:04:05"
    assert environmentState(str(h.root / "environment.json"), "0.1.0")[0] == READY
    fractions = [f for f, _ in h.progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(label == "Installing PyTorch (CPU)" for _, label in h.progress)
    assert "Successfully installed pkg0-1.0 pkg1-1.0 pkg2-1.0 pkg3-1.0" in h.log
    logText = (h.root / "setup.log").read_text(encoding="utf-8")
    assert "not usable: it does not run" in logText and "ready" in logText


def test_failed_step_reports_advice_and_retry_reuses_the_environment(tmp_path):
    h = Harness(tmp_path, upgradePip=False)
    makeFakePython(h.bin / "python3.11")
    h.rules(failPip={"backend-source": 1})
    ok, message = h.run()
    assert not ok and h.setup.state == FAILED
    assert "'Installing the SlicerTSKD backend and its dependencies' failed (exit code 1)" in message
    assert "mirror" in message and "Retry" in message and "No matching distribution" in message
    assert not (h.root / "environment.json").exists()
    h.rules()
    ok, message = h.run()
    assert ok, message
    assert h.keys() == ["probe-venv", "install-torch", "install-backend", "verify-version", "verify-import"]


def test_broken_environment_is_recreated(tmp_path):
    h = Harness(tmp_path, upgradePip=False)
    makeFakePython(h.bin / "python3.11")
    assert h.run()[0]
    config = json.loads(Path(str(h.venvPython) + ".json").read_text(encoding="utf-8"))
    Path(str(h.venvPython) + ".json").write_text(json.dumps(dict(config, broken=True)), encoding="utf-8")
    ok, message = h.run()
    assert ok, message
    assert h.keys()[:4] == ["probe-venv", "probe-python", "create-venv", "probe-new-venv"]
    assert "cannot be re-used (it does not run)" in "\n".join(h.log)


def test_environment_without_pip_fails_with_advice(tmp_path):
    h = Harness(tmp_path, upgradePip=False)
    makeFakePython(h.bin / "python3.11")
    h.rules(venvWithoutPip=True)
    ok, message = h.run()
    assert not ok
    assert "does not work (pip is missing)" in message


def test_cancel_kills_the_running_pip_tree_and_retry_completes(tmp_path):
    h = Harness(tmp_path, upgradePip=False)
    makeFakePython(h.bin / "python3.11")
    pidFile = tmp_path / "pids.txt"
    h.rules(slowPip="torch", pidFile=str(pidFile))
    h.setup.start()
    assert h.runner.waitUntil(lambda: pidFile.exists() and pidFile.read_text(encoding="utf-8").strip() != "", 60)
    pip, grandchild = (int(p) for p in pidFile.read_text(encoding="utf-8").split())
    assert alive(pip) and alive(grandchild)
    started = time.monotonic()
    h.setup.cancel()
    assert h.runner.waitUntil(lambda: bool(h.results), 30)
    assert time.monotonic() - started < 10
    assert h.setup.state == CANCELLED
    ok, message = h.results[-1]
    assert not ok and "cancelled" in message.lower() and "Installing PyTorch" in message
    deadline = time.monotonic() + 10
    while (alive(pip) or alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pip) and not alive(grandchild)
    h.rules()
    ok, message = h.run()
    assert ok, message
    assert h.keys()[0] == "probe-venv"


def test_no_suitable_python_names_what_was_found_and_what_to_install(tmp_path):
    h = Harness(tmp_path)
    old = makeFakePython(h.bin / "python3", (3, 9, 18))
    ok, message = h.run()
    assert not ok
    assert "No suitable Python" in message
    assert "{} (PATH): Python 3.9.18 is too old".format(old) in message
    assert "python3.12-venv" in message
    assert not (h.root / "venv").exists()


def test_uv_provides_a_python_when_none_is_installed(tmp_path):
    h = Harness(tmp_path, upgradePip=False)
    managed = makeFakePython(tmp_path / "uv-pythons" / "cpython-3.12.8" / "bin" / "python3.12", (3, 12, 8))
    makeScript(h.bin / "uv", 'if [ "$2" = install ]; then echo "Installed Python 3.12.8"; else echo "{}"; fi'.format(managed))
    ok, message = h.run()
    assert ok, message
    assert h.keys()[:4] == ["uv-install", "uv-find", "probe-python", "create-venv"]
    assert h.calls()[1][:3] == [str(managed), "-m", "venv"]
    assert readMarker(str(h.root / "environment.json")).pythonVersion == "3.12.8"


def test_nvidia_gpu_selects_the_cuda_index(tmp_path):
    h = Harness(tmp_path, upgradePip=False)
    makeFakePython(h.bin / "python3.11")
    (tmp_path / "smi.txt").write_text(NVIDIA_SMI_12_6, encoding="utf-8")
    makeScript(h.bin / "nvidia-smi", "exec /bin/cat '{}'".format(tmp_path / "smi.txt"))  # PATH has only the fakes
    h.rules(torchVersion="2.13.0+cu126", torchCuda="12.6")
    ok, message = h.run()
    assert ok, message
    assert "detect-gpu" in h.keys()
    torch = next(c for c in h.calls() if "pip" in c and "torch" in c)
    assert torch[-3:] == ["torch", "--index-url", "https://download.pytorch.org/whl/cu126"]
    marker = readMarker(str(h.root / "environment.json"))
    assert (marker.device, marker.torchCuda, marker.torchIndexUrl) == ("cuda", "12.6", "https://download.pytorch.org/whl/cu126")
    assert "GPU, CUDA 12.6" in message


def test_backend_version_mismatch_fails(tmp_path):
    h = Harness(tmp_path, upgradePip=False)
    makeFakePython(h.bin / "python3.11")
    h.rules(backendVersion="0.0.9")
    ok, message = h.run()
    assert not ok and "runs backend 0.0.9 but the extension ships 0.1.0" in message


def test_existing_tskd_command_is_only_verified(tmp_path):
    tskd = makeScript(tmp_path / "tools" / "tskd", 'echo "tskd 0.1.0"')
    h = Harness(tmp_path, existingCommand=str(tskd))
    ok, message = h.run()
    assert ok, message
    assert h.keys() == ["check-existing-version"]
    marker = readMarker(str(h.root / "environment.json"))
    assert (marker.kind, marker.backendCommand, marker.backendVersion) == ("existing", [str(tskd)], "0.1.0")
    assert not (h.root / "venv").exists()


def test_existing_environment_folder_is_checked_with_imports(tmp_path):
    env = tmp_path / "myenv"
    makeFakePython(env / "bin" / "python", (3, 12, 2))
    (env / "bin" / "installed.json").write_text('["torch", "tskd"]', encoding="utf-8")
    h = Harness(tmp_path, existingCommand=str(env))
    ok, message = h.run()
    assert ok, message
    assert h.keys() == ["check-existing-version", "check-existing-import"]
    marker = readMarker(str(h.root / "environment.json"))
    assert marker.backendCommand == [str(env / "bin" / "python"), "-m", "tskd"]
    assert marker.pythonVersion == "3.12.2" and marker.torchVersion == "2.13.0+cpu"


def test_existing_command_that_is_not_the_backend_fails(tmp_path):
    other = makeScript(tmp_path / "tools" / "other", 'echo "other 1.0"')
    h = Harness(tmp_path, existingCommand=str(other))
    ok, message = h.run()
    assert not ok and "does not run the SlicerTSKD backend" in message
    h2 = Harness(tmp_path / "second", existingCommand=str(tmp_path / "missing-tool"))
    ok, message = h2.run()
    assert not ok and "Could not start" in message


def test_folders_that_are_not_ours_are_never_cleared(tmp_path):
    h = Harness(tmp_path)
    precious = h.root / "venv" / "notes.txt"
    precious.parent.mkdir(parents=True)
    precious.write_text("keep me", encoding="utf-8")
    ok, message = h.run()
    assert not ok and "is not a Python environment" in message
    assert precious.read_text(encoding="utf-8") == "keep me"


def test_missing_backend_sources_fail_clearly(tmp_path):
    h = Harness(tmp_path, backendSourceDir=str(tmp_path / "nowhere"))
    ok, message = h.run()
    assert not ok and "Reinstall the SlicerTSKD extension" in message


def test_start_while_running_is_ignored_and_cancel_when_idle_does_nothing(tmp_path):
    h = Harness(tmp_path, upgradePip=False)
    makeFakePython(h.bin / "python3.11")
    h.setup.cancel()
    assert h.results == []
    h.setup.start()
    first = list(h.setup.stepsRun)
    h.setup.start()
    assert h.setup.stepsRun == first
    assert h.runner.waitUntil(lambda: bool(h.results), 60)
    assert h.results[-1][0]


def test_the_python_range_comes_from_the_backends_metadata(tmp_path):
    """Issue 32, item 6: the finder takes the backend's requires-python (3.10 is refused: numpy 2.4 and
    networkx 3.6 need 3.11), so the two cannot drift."""
    from SlicerTSKDLib.install.pythonFinder import supportedRange

    assert supportedRange(str(BACKEND)) == ((3, 11), (3, 13))
    h = Harness(tmp_path)
    old = makeFakePython(h.bin / "python3", (3, 10, 12))  # Ubuntu 22.04
    ok, message = h.run()
    assert not ok and "needs a 64-bit Python 3.11 to 3.13" in message
    assert "{} (PATH): Python 3.10.12 is too old (the backend needs 3.11 to 3.13)".format(old) in message
    assert "Looking for Python 3.11 to 3.13" in "\n".join(h.log)

    narrow = tmp_path / "narrow"  # another backend's metadata: the finder follows it
    narrow.mkdir()
    (narrow / "pyproject.toml").write_text('[project]\nname = "tskd"\nrequires-python = ">=3.12, <3.13"\n')
    assert supportedRange(str(narrow)) == ((3, 12), (3, 12))
    g = Harness(tmp_path / "g", backendSourceDir=str(narrow))
    makeFakePython(g.bin / "python3", (3, 11, 7))
    ok, message = g.run()
    assert not ok and "Python 3.11.7 is too old (the backend needs 3.12 to 3.12)" in message


def test_a_pin_that_needs_another_python_names_the_python_not_the_network(tmp_path):
    h = Harness(tmp_path, upgradePip=False)
    makeFakePython(h.bin / "python3.11", (3, 11, 7))
    h.rules(wrongPython="backend-source")
    ok, message = h.run()
    assert not ok
    assert "The environment's Python 3.11.7 is the cause: the backend's packages need Python 3.11 to 3.13" in message
    assert "Check the network connection" not in message


FAKE_SLICER_PIP = r"""
# PythonSlicer -m pip install --upgrade --disable-pip-version-check --target DIR [--platform ...] uv [extra...]:
# the uv wheel's binary lands in DIR/bin (pip's "home" scheme)
echo "$0 $*" >> "CALLS"
target=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--target" ]; then target="$2"; fi
  shift
done
[ -n "$target" ] || exit 2
/bin/mkdir -p "$target/bin"
/bin/cat > "$target/bin/uv" <<'UV'
#!/bin/sh
echo "uv $* UV_PYTHON_INSTALL_DIR=$UV_PYTHON_INSTALL_DIR" >> "CALLS"
if [ "$2" = install ]; then echo "Installed Python 3.12.8"; else echo "MANAGED"; fi
UV
/bin/chmod +x "$target/bin/uv"
echo "Successfully installed uv-0.9.0"
"""


def test_no_python_and_no_uv_bootstraps_uv_through_slicers_pip(tmp_path):
    """Issue 32, item 7: a machine with no Python (stock Windows) or only 3.9 (macOS): uv is installed with
    Slicer's own pip into the set-up folder and provides Python 3.12 there; nothing installed by hand."""
    h = Harness(tmp_path, upgradePip=False, extraPipArgs=("--index-url", "https://mirror.invalid/simple"))
    makeFakePython(h.bin / "python3", (3, 9, 6))  # macOS's own
    managed = makeFakePython(tmp_path / "root" / "python" / "cpython-3.12.8" / "bin" / "python3.12", (3, 12, 8))
    calls = tmp_path / "slicer-calls.txt"
    script = FAKE_SLICER_PIP.replace("MANAGED", str(managed)).replace("CALLS", str(calls))
    slicerPython = makeScript(tmp_path / "Slicer" / "bin" / "PythonSlicer", script)
    h.withHost(slicerPython=(str(slicerPython),), slicerPythonVersion=(3, 9, 10))
    ok, message = h.run()
    assert ok, message
    assert h.keys()[:5] == ["probe-python", "uv-bootstrap", "uv-install", "uv-find", "probe-python"]
    lines = calls.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "{} -m pip install --upgrade --disable-pip-version-check --target {} uv --index-url " \
                       "https://mirror.invalid/simple".format(slicerPython, tmp_path / "root" / "uv")
    python = str(tmp_path / "root" / "python")  # uv keeps its Python inside the set-up folder
    assert lines[1] == "uv python install 3.12 UV_PYTHON_INSTALL_DIR={}".format(python)
    assert lines[2] == "uv python find 3.12 UV_PYTHON_INSTALL_DIR={}".format(python)
    assert next(c for c in h.calls() if c[1:3] == ["-m", "venv"])[0] == str(managed)
    assert readMarker(str(h.root / "environment.json")).pythonVersion == "3.12.8"
    # a second set-up finds the uv it installed: no second bootstrap
    (h.root / "venv").rename(h.root / "old-venv")
    assert h.run()[0] and "uv-bootstrap" not in h.keys() and h.keys()[1] == "uv-install"


def test_an_intel_mac_is_refused_before_anything_is_downloaded(tmp_path):
    h = Harness(tmp_path)
    makeFakePython(h.bin / "python3.12", (3, 12, 8))
    h.withHost(platform="darwin", machine="x86_64")
    ok, message = h.run()
    assert not ok and message.startswith("This Mac has an Intel processor. PyTorch has published no builds")
    assert h.keys() == [] and h.calls() == []
    h.withHost(platform="darwin", machine="arm64")  # Apple silicon (also under Rosetta: hardwareMachine)
    assert h.setup._uvRequest() == "cpython-3.12-macos-aarch64-none"
    assert "--platform" in h.setup._uvBootstrapStep().command or h.host.slicerPython is None
