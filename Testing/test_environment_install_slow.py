"""The real thing: build the backend environment from the repository's TSKDBackend/ (minutes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from SlicerTSKDLib.install.environment import EnvironmentOptions
from SlicerTSKDLib.install.environmentMarker import READY, environmentState
from SlicerTSKDLib.install.environmentSetup import SUCCEEDED, EnvironmentSetup
from SlicerTSKDLib.hostContext import HostContext
from SlicerTSKDLib.processRunner import SubprocessRunner


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="the test drives a POSIX python3.11")
def test_set_up_a_real_environment_from_the_repository(tmp_path):
    base = shutil.which("python3.11")
    if base is None:
        pytest.skip("python3.11 is not on PATH")
    # pip's own configuration (index, find-links) supplies every package, torch==2.13.0 (CPU) included.
    # --no-compile (through the extra pip arguments, as a hospital's --proxy would be): pip then does not
    # byte-compile the 14,935 modules it unpacks (about 60 s of CPU), of which this test imports some 500
    options = EnvironmentOptions(
        rootDir=str(tmp_path / "tskd env"),  # a space in the path, as in "Application Support"
        backendSourceDir=str(REPO_ROOT / "TSKDBackend"),
        baseInterpreter=[base],
        torchIndexUrl="",
        torchRequirement="torch==2.13.0",
        extraPipArgs=["--no-compile"],
        upgradePip=False,
    )
    runner = SubprocessRunner()
    setup = EnvironmentSetup(options, HostContext.current(), runner)
    progress, results = [], []
    setup.progress.connect(lambda fraction, label: progress.append(fraction))
    setup.finished.connect(lambda ok, message: results.append((ok, message)))
    setup.start()
    assert runner.waitUntil(lambda: bool(results), 840), "set-up did not finish in 14 minutes"
    ok, message = results[0]
    assert ok, message + "\n--- log ---\n" + (tmp_path / "tskd env" / "setup.log").read_text(encoding="utf-8")[-5000:]
    assert setup.state == SUCCEEDED
    assert [s.key for s in setup.stepsRun] == ["probe-python", "create-venv", "probe-new-venv", "install-torch",
                                              "install-backend", "verify-version", "verify-import"]
    assert progress == sorted(progress) and progress[-1] == 1.0

    python = tmp_path / "tskd env" / "venv" / "bin" / "python"
    state, info = environmentState(options.markerPath, "0.1.0")
    assert state == READY
    assert info.backendCommand == [str(python), "-m", "tskd"]
    assert info.torchVersion.startswith("2.13.0") and info.device == "cpu" and info.pythonVersion.startswith("3.11.")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    version = subprocess.run([str(python), "-m", "tskd", "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "tskd 0.1.0"
    # a separate environment: the backend is not imported from the repository or the test's venv
    where = subprocess.run([str(python), "-c", "import sys, tskd; print(tskd.__file__); print(sys.prefix)"],
                           capture_output=True, text=True, env=env, timeout=120)
    tskdFile, prefix = where.stdout.splitlines()
    assert tskdFile.startswith(str(tmp_path / "tskd env" / "venv"))
    assert os.path.realpath(prefix) != os.path.realpath(sys.prefix)

    # a second set-up re-uses the environment: no new venv, pip finds everything installed
    results.clear()
    setup.start()
    assert runner.waitUntil(lambda: bool(results), 600)
    assert results[0][0], results[0][1]
    assert setup.stepsRun[0].key == "probe-venv" and "create-venv" not in [s.key for s in setup.stepsRun]
