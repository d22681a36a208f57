"""Finding a base interpreter: candidate lists, probing real and fake interpreters, messages."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fakeTools import makeFakePython, makeScript
from SlicerTSKDLib.hostContext import HostContext, childEnvironment, findExecutable
from SlicerTSKDLib.processRunner import SubprocessRunner
from SlicerTSKDLib.install.pythonFinder import (
    PythonInfo,
    candidatePythons,
    findUv,
    noSuitablePythonMessage,
    parseProbeOutput,
    probeCommand,
    unsuitableReason,
)

posixOnly = pytest.mark.skipif(sys.platform == "win32", reason="fake interpreters are POSIX scripts")


def linuxHost(tmp_path: Path, pathDirs, **kwargs) -> HostContext:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return HostContext(platform="linux", environment={"PATH": os.pathsep.join(map(str, pathDirs))}, home=str(home), **kwargs)


def probe(command) -> str:
    runner = SubprocessRunner()
    chunks, done = [], []
    runner.outputReady.connect(lambda: chunks.append(runner.readOutput()))
    runner.finished.connect(lambda code, status: done.append(code))
    runner.start(probeCommand(command), childEnvironment(os.environ))
    assert runner.waitUntil(lambda: bool(done), 60)
    return "".join(chunks) + runner.readOutput()


@posixOnly
def test_candidates_follow_preference_and_skip_missing(tmp_path):
    first, second = tmp_path / "bin1", tmp_path / "bin2"
    makeFakePython(first / "python3.11", (3, 11, 7))
    makeFakePython(second / "python3.12", (3, 12, 1))
    makeFakePython(second / "python3.11", (3, 11, 2))  # shadowed by bin1's
    makeFakePython(second / "python3", (3, 9, 18))
    (first / "python3.10").write_text("not executable", encoding="utf-8")
    host = linuxHost(tmp_path, [first, second])
    found = [(c.command, c.source) for c in candidatePythons(host, expand=lambda pattern: [])]
    # only the search path is relevant here: common folders may exist on the test machine
    onPath = [item for item in found if item[1] == "PATH"]
    assert onPath == [
        ((str(second / "python3.12"),), "PATH"),
        ((str(first / "python3.11"),), "PATH"),
        ((str(second / "python3"),), "PATH"),
    ]


def test_candidates_in_common_folders_of_a_fake_home(tmp_path):
    home = tmp_path / "home"
    pyenv = home / ".pyenv" / "versions" / "3.11.9" / "bin" / "python3.11"
    uv = home / ".local" / "share" / "uv" / "python" / "cpython-3.12.4-linux-x86_64-gnu" / "bin" / "python3.12"
    for path in (pyenv, uv):
        path.parent.mkdir(parents=True)
        path.write_text("#!/bin/sh\n", encoding="utf-8")
        path.chmod(0o755)
    host = HostContext(platform="linux", environment={"PATH": ""}, home=str(home))
    found = [c for c in candidatePythons(host) if str(home) in c.command[0]]
    assert [(c.command[0], c.source) for c in found] == [(str(uv), "uv"), (str(pyenv), "pyenv")]


def test_windows_candidates_use_the_py_launcher_and_skip_store_stubs():
    files = {
        "C:\\Users\\ann\\AppData\\Local\\Microsoft\\WindowsApps\\python3.12.exe",
        "C:\\Windows\\py.exe",
        "C:\\Users\\ann\\AppData\\Local\\Programs\\Python\\Python311\\python.exe",
    }
    host = HostContext(
        platform="win32",
        environment={"PATH": "C:\\Users\\ann\\AppData\\Local\\Microsoft\\WindowsApps;C:\\Windows",
                     "LOCALAPPDATA": "C:\\Users\\ann\\AppData\\Local"},
        home="C:\\Users\\ann",
    )
    found = [(c.command, c.source) for c in candidatePythons(host, isFile=files.__contains__, expand=lambda p: [])]
    assert found[0] == (("C:\\Windows\\py.exe", "-3.12"), "py launcher")
    assert (("C:\\Windows\\py.exe", "-3.11"), "py launcher") in found
    assert (("C:\\Users\\ann\\AppData\\Local\\Programs\\Python\\Python311\\python.exe",), "python.org (user)") in found
    assert not any("WindowsApps" in c[0][0] for c in found)


def test_macos_candidates_include_python_org_and_homebrew():
    files = {"/Library/Frameworks/Python.framework/Versions/3.12/bin/python3.12", "/opt/homebrew/bin/python3.11"}
    host = HostContext(platform="darwin", environment={"PATH": "/usr/bin"}, home="/Users/ann")
    found = [(c.command[0], c.source) for c in candidatePythons(host, isFile=files.__contains__, expand=lambda p: [])]
    assert found == [
        ("/Library/Frameworks/Python.framework/Versions/3.12/bin/python3.12", "python.org"),
        ("/opt/homebrew/bin/python3.11", "Homebrew"),
    ]


def test_slicer_python_is_a_last_resort_only_when_recent():
    host = HostContext(platform="linux", environment={"PATH": ""}, home="/nonexistent",
                       slicerPython=("/opt/Slicer/bin/PythonSlicer",), slicerPythonVersion=(3, 12, 10))
    found = candidatePythons(host, isFile=lambda p: False, expand=lambda p: [])
    assert [(c.command, c.source) for c in found] == [(("/opt/Slicer/bin/PythonSlicer",), "Slicer")]
    old = HostContext(platform="linux", environment={"PATH": ""}, home="/nonexistent",
                      slicerPython=("/opt/Slicer/bin/PythonSlicer",), slicerPythonVersion=(3, 9, 10))
    assert candidatePythons(old, isFile=lambda p: False, expand=lambda p: []) == []


def test_probe_of_the_running_interpreter_reports_its_version():
    info = parseProbeOutput((sys.executable,), "test", probe([sys.executable]))
    assert info is not None
    assert info.version == tuple(sys.version_info[:3])
    assert info.hasPip is True
    assert info.isVirtual == (sys.prefix != sys.base_prefix)
    if sys.version_info >= (3, 10):
        assert unsuitableReason(info) == ""
    else:  # the Slicer-side tests also run on Python 3.9, like Slicer 5.8
        assert "too old" in unsuitableReason(info)


@posixOnly
def test_probe_of_fake_interpreters(tmp_path):
    good = makeFakePython(tmp_path / "python3.11", (3, 11, 7))
    old = makeFakePython(tmp_path / "python3.9", (3, 9, 18))
    noVenv = makeFakePython(tmp_path / "python3.12", (3, 12, 3), venv=False)
    shim = makeScript(tmp_path / "python3.13", "echo 'pyenv: python3.13: command not found' >&2; exit 127")
    assert parseProbeOutput((str(good),), "PATH", probe([str(good)])).version == (3, 11, 7)
    assert "too old" in unsuitableReason(parseProbeOutput((str(old),), "PATH", probe([str(old)])))
    assert "python3.12-venv" in unsuitableReason(parseProbeOutput((str(noVenv),), "PATH", probe([str(noVenv)])))
    assert parseProbeOutput((str(shim),), "PATH", probe([str(shim)])) is None


def test_unsuitable_reasons():
    base = dict(command=("p",), source="PATH", executable="p")
    assert "newer" in unsuitableReason(PythonInfo(version=(3, 14, 0), **base))
    assert "32-bit" in unsuitableReason(PythonInfo(version=(3, 11, 0), bits=32, **base))
    assert "PyPy" in unsuitableReason(PythonInfo(version=(3, 11, 0), implementation="PyPy", **base))
    # issue 32, item 6: 3.10 is refused (the pins need 3.11); the fallback range is the backend's today
    assert "too old (the backend needs 3.11 to 3.13)" in unsuitableReason(PythonInfo(version=(3, 10, 12), **base))
    assert unsuitableReason(PythonInfo(version=(3, 11, 0), **base)) == ""
    assert unsuitableReason(PythonInfo(version=(3, 11, 0), hasVenv=False, **base), needVenv=False) == ""


def test_parse_probe_output_ignores_noise_and_rejects_garbage():
    line = 'TSKD-PROBE {"version": [3, 12, 1], "executable": "/x/python3.12", "venv": true, "pip": false}'
    info = parseProbeOutput(("python3.12",), "PATH", "warning: something\n" + line + "\n")
    assert info.version == (3, 12, 1) and info.executable == "/x/python3.12" and not info.hasPip
    assert parseProbeOutput(("p",), "PATH", "TSKD-PROBE {not json") is None
    assert parseProbeOutput(("p",), "PATH", 'TSKD-PROBE {"version": [3]}') is None
    assert parseProbeOutput(("p",), "PATH", "Python 3.11.7") is None


def test_find_uv_on_path_and_in_its_install_folder():
    host = HostContext(platform="linux", environment={"PATH": "/usr/bin"}, home="/home/ann")
    assert findUv(host, isFile={"/usr/bin/uv"}.__contains__) == "/usr/bin/uv"
    assert findUv(host, isFile={"/home/ann/.local/bin/uv"}.__contains__) == "/home/ann/.local/bin/uv"
    assert findUv(host, isFile=lambda p: False) is None
    assert findExecutable("uv", host, isFile=lambda p: False) is None


def test_no_python_message_says_what_to_install_per_platform():
    rejected = [(PythonInfo(("/usr/bin/python3",), "PATH", (3, 9, 2), "/usr/bin/python3"), "too old")]
    linux = noSuitablePythonMessage(HostContext("linux", {"PATH": ""}, "/h"), rejected)
    assert "python3.12-venv" in linux and "/usr/bin/python3 (PATH): too old" in linux
    assert "python.org/downloads/windows" in noSuitablePythonMessage(HostContext("win32", {"PATH": ""}, "C:\\h"))
    assert "brew install python@3.12" in noSuitablePythonMessage(HostContext("darwin", {"PATH": ""}, "/h"))


def test_child_environment_drops_python_redirections():
    env = childEnvironment({"PYTHONHOME": "/slicer", "PYTHONPATH": "/slicer/lib", "PATH": "/bin", "HTTPS_PROXY": "p"})
    assert "PYTHONHOME" not in env and "PYTHONPATH" not in env
    assert env["PATH"] == "/bin" and env["HTTPS_PROXY"] == "p"
    assert env["PYTHONNOUSERSITE"] == "1" and env["PYTHONUNBUFFERED"] == "1"


def test_host_context_validates_platform():
    with pytest.raises(ValueError, match="platform"):
        HostContext(platform="amiga", environment={}, home="/")
