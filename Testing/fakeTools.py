"""Fake interpreters and tools for the set-up tests: real executables that behave like small ones.

:func:`makeFakePython` writes an executable script (POSIX) that answers like a Python of a given
version to what the set-up runs: the probe (``-c`` with ``TSKD-PROBE``), ``-m venv DIR`` (makes
``DIR/bin/python``, itself a fake), ``-m pip install ...`` (prints pip-like lines, records the call,
"installs" into the fake environment), ``-m tskd --version`` and the import check. Behaviour that
tests change between runs (failures, a slow pip) comes from a rules file named by the
``FAKE_RULES`` variable of the child's environment; every call is appended to ``FAKE_CALLS``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path
from typing import Dict, Optional, Sequence

FAKE_PROGRAM = textwrap.dedent(
    r'''
    import json, os, subprocess, sys, time

    me = sys.argv[1]
    args = sys.argv[2:]
    config = json.load(open(me + ".json"))
    rules = json.load(open(os.environ["FAKE_RULES"])) if os.environ.get("FAKE_RULES") else {}
    if os.environ.get("FAKE_CALLS"):
        with open(os.environ["FAKE_CALLS"], "a") as log:
            log.write(json.dumps([me] + args) + "\n")
    state = os.path.join(os.path.dirname(me), "installed.json")
    installed = json.load(open(state)) if os.path.exists(state) else []

    def rule(key):
        return rules.get(key)

    if config.get("broken"):
        print("error while loading shared libraries: libpython.so", file=sys.stderr)
        sys.exit(127)
    if args[:1] == ["-c"]:
        code = args[1]
        if "TSKD-PROBE" in code:
            print("TSKD-PROBE " + json.dumps({
                "version": config["version"], "executable": me, "implementation": "CPython", "bits": 64,
                "venv": config.get("venv", True), "pip": config.get("pip", True), "virtual": config.get("virtual", False)}))
            sys.exit(0)
        if "TSKD-INFO" in code:
            if "tskd" not in installed or "torch" not in installed:
                print("ModuleNotFoundError: No module named 'tskd'", file=sys.stderr)
                sys.exit(1)
            print("TSKD-INFO " + json.dumps({"backendVersion": rules.get("backendVersion", "0.1.0"),
                  "torchVersion": rules.get("torchVersion", "2.13.0+cpu"), "torchCuda": rules.get("torchCuda", ""),
                  "cudaAvailable": bool(rules.get("torchCuda")), "pythonVersion": ".".join(map(str, config["version"]))}))
            sys.exit(0)
        sys.exit(0)
    if args[:2] == ["-m", "venv"]:
        target = args[-1]
        if rule("failVenv"):
            print("Error: Command '['" + target + "/bin/python', '-m', 'ensurepip']' returned non-zero exit status 1.")
            sys.exit(1)
        if "--clear" in args and os.path.isdir(target):
            import shutil
            shutil.rmtree(target)
        os.makedirs(os.path.join(target, "bin"), exist_ok=True)
        with open(os.path.join(target, "pyvenv.cfg"), "w") as cfg:
            cfg.write("home = " + os.path.dirname(me) + "\n")
        child = os.path.join(target, "bin", "python")
        with open(me) as source:
            script = source.read()
        with open(child, "w") as out:
            out.write(script)
        os.chmod(child, 0o755)
        json.dump({"version": config["version"], "virtual": True, "pip": not rule("venvWithoutPip")}, open(child + ".json", "w"))
        sys.exit(0)
    if args[:3] == ["-m", "pip", "install"]:
        spec = [a for a in args[3:] if not a.startswith("-")]
        wrong = rules.get("wrongPython")
        if wrong and any(wrong in a for a in args):  # what pip says when a pin needs a newer Python
            print("ERROR: Ignored the following versions that require a different python version: 2.4.6 Requires-Python >=3.11")
            print("ERROR: Could not find a version that satisfies the requirement " + wrong)
            print("ERROR: No matching distribution found for " + wrong)
            sys.exit(1)
        for needle, code in rules.get("failPip", {}).items():
            if any(needle in a for a in args):
                print("ERROR: Could not find a version that satisfies the requirement " + needle)
                print("ERROR: No matching distribution found for " + needle)
                sys.exit(code)
        if rules.get("slowPip") and any(rules["slowPip"] in a for a in args):
            grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
            with open(rules["pidFile"], "w") as pids:
                pids.write("{} {}".format(os.getpid(), grandchild.pid))
            print("Collecting " + rules["slowPip"], flush=True)
            time.sleep(300)
        names = ["pkg{}".format(i) for i in range(4)]
        for name in names:
            print("Collecting " + name)
            print("  Downloading " + name + "-1.0-py3-none-any.whl (10 kB)")
        print("Installing collected packages: " + ", ".join(names))
        if any("torch" in a for a in spec):
            installed.append("torch")
        if any("backend-source" in a for a in spec):
            installed.append("tskd")
        json.dump(sorted(set(installed)), open(state, "w"))
        print("Successfully installed " + " ".join(n + "-1.0" for n in names))
        sys.exit(0)
    if args[:2] == ["-m", "tskd"]:
        if "tskd" not in installed:
            print(sys.executable + ": No module named tskd", file=sys.stderr)
            sys.exit(1)
        print("tskd " + rules.get("backendVersion", "0.1.0"))
        sys.exit(0)
    print("fake python: unexpected arguments {}".format(args), file=sys.stderr)
    sys.exit(2)
    '''
)


#: Default output of nvidia-smi on a machine with two GPUs and a driver for CUDA 12.6.
NVIDIA_SMI_12_6 = """\
Tue Mar  4 10:12:01 2025
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 560.35.03              Driver Version: 560.35.03      CUDA Version: 12.6     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA GeForce RTX 3090        Off |   00000000:01:00.0  On |                  N/A |
| 30%   41C    P8             27W /  350W |     512MiB /  24576MiB |      2%      Default |
+-----------------------------------------+------------------------+----------------------+
|   1  NVIDIA RTX A4000               Off |   00000000:02:00.0 Off |                  Off |
| 41%   35C    P8             14W /  140W |       1MiB /  16376MiB |      0%      Default |
+-----------------------------------------+------------------------+----------------------+
"""


def _writeExecutable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def makeFakePython(path: Path, version: Sequence[int] = (3, 11, 7), **config: object) -> Path:
    """An executable at ``path`` that answers like Python ``version`` (see the module docstring).

    ``config`` may set ``venv=False`` (no venv module), ``pip=False`` or ``broken=True`` (does not run).
    """
    # self-contained, so that the copy made by "-m venv" works too
    _writeExecutable(path, "#!{}\nimport sys\nsys.argv.insert(1, __file__)\n{}".format(sys.executable, FAKE_PROGRAM))
    Path(str(path) + ".json").write_text(json.dumps(dict(config, version=list(version))), encoding="utf-8")
    return path


def makeScript(path: Path, body: str) -> Path:
    """An executable ``/bin/sh`` script at ``path`` running ``body``."""
    return _writeExecutable(path, "#!/bin/sh\n" + body + "\n")


def writeRules(path: Path, rules: Dict[str, object]) -> Path:
    """Write the fakes' rules file (see the module docstring)."""
    path.write_text(json.dumps(rules), encoding="utf-8")
    return path


def readCalls(path: Path) -> list:
    """Every recorded call: ``[program, arg1, arg2, ...]`` lists in call order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fakeEnvironment(tmp: Path, pathDirs: Sequence[Path], rules: Optional[Path] = None) -> Dict[str, str]:
    """A child environment with only the given search path and the fakes' variables."""
    env = {"PATH": os.pathsep.join(str(d) for d in pathDirs), "HOME": str(tmp / "home"), "FAKE_CALLS": str(tmp / "calls.jsonl")}
    if rules is not None:
        env["FAKE_RULES"] = str(rules)
    return env


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, dead but not yet reaped, counts as dead)."""
    if os.path.isdir("/proc/self"):
        try:
            with open("/proc/{}/stat".format(pid)) as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
