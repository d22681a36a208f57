"""Issue 14, item 5: onnxruntime installs as a child process through the module's process runner (progress,
Cancel), never on the calling thread, and a second start while it runs is ignored.

A real child process (``SubprocessRunner``) runs a small program that prints what ``pip install`` prints.
"""

from __future__ import annotations

import sys
import textwrap
import time

from SlicerTSKDLib.processRunner import SubprocessRunner
from SlicerTSKDLib.install.runtimeSetup import OnnxruntimeInstall, pipInstallCommand

FAKE_PIP = textwrap.dedent("""
    import sys, time
    for line in ["Collecting onnxruntime", "Collecting numpy", "Collecting protobuf",
                 "Installing collected packages: numpy, protobuf, onnxruntime"]:
        print(line, flush=True)
        time.sleep(0.05)
    if "{mode}" == "hang":
        time.sleep(60)
    if "{mode}" == "fail":
        print("ERROR: No matching distribution found for onnxruntime", flush=True)
        sys.exit(1)
    print("Successfully installed numpy protobuf onnxruntime", flush=True)
""")


def makeInstall(mode: str, imports=lambda: True):
    runner = SubprocessRunner()
    install = OnnxruntimeInstall(runner, [sys.executable, "-c", FAKE_PIP.format(mode=mode)], {"PATH": ""},
                                 imports=imports)
    events = []
    install.progress.connect(lambda fraction: events.append(("progress", fraction)))
    install.finished.connect(lambda ok, message: events.append(("finished", ok, message)))
    return runner, install, events


def test_the_install_runs_as_a_child_process_with_progress_and_start_returns_at_once():
    runner, install, events = makeInstall("ok")
    began = time.monotonic()
    assert install.start() is True
    assert time.monotonic() - began < 1.0 and install.isRunning()
    assert runner.processId() is not None and runner.isRunning()
    assert install.start() is False  # the second click while it runs
    assert runner.waitUntil(lambda: not install.isRunning(), 30)
    fractions = [event[1] for event in events if event[0] == "progress"]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions) and len(fractions) >= 4
    assert events[-1] == ("finished", True, "")
    assert [event for event in events if event[0] == "finished"] == [("finished", True, "")]  # one pip, one result
    assert "Successfully installed numpy protobuf onnxruntime" in install.output


def test_cancel_kills_pip_and_reports_cancelled():
    runner, install, events = makeInstall("hang")
    install.start()
    assert runner.waitUntil(lambda: any(e[0] == "progress" and e[1] > 0.5 for e in events), 30)
    install.cancel()
    assert runner.waitUntil(lambda: not install.isRunning(), 30)
    assert events[-1] == ("finished", False, "cancelled") and not runner.isRunning()


def test_a_failing_pip_and_a_package_that_does_not_import_are_failures():
    runner, install, events = makeInstall("fail")
    install.start()
    assert runner.waitUntil(lambda: not install.isRunning(), 30)
    assert events[-1][:2] == ("finished", False) and "No matching distribution" in events[-1][2]
    runner, install, events = makeInstall("ok", imports=lambda: False)
    install.start()
    assert runner.waitUntil(lambda: not install.isRunning(), 30)
    assert events[-1][:2] == ("finished", False) and "does not import" in events[-1][2]
    assert install.start() is True  # a new try is possible once the first has finished


def test_a_program_that_cannot_start_is_a_failure_not_a_hang():
    runner = SubprocessRunner()
    install = OnnxruntimeInstall(runner, ["/nonexistent/PythonSlicer", "-m", "pip"], {}, imports=lambda: True)
    results = []
    install.finished.connect(lambda ok, message: results.append((ok, message)))
    install.start()
    runner.waitUntil(lambda: bool(results), 10)
    assert results and results[0][0] is False and not install.isRunning()


def test_the_command_is_what_slicers_pip_install_runs():
    assert pipInstallCommand("/slicer/bin/PythonSlicer") == [
        "/slicer/bin/PythonSlicer", "-m", "pip", "install", "--progress-bar", "off", "onnxruntime"]
