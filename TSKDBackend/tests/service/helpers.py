"""Helpers of the service tests: real servers (uvicorn in a thread or in a subprocess) on free
loopback ports, talked to with the Slicer module's stdlib client, and the fixture worker
(``fake_train.py``) that keeps the ``tskd train`` contract in a fraction of a second.

Importing this module puts ``SlicerTSKD/`` on ``sys.path`` (for ``SlicerTSKDLib.backend.client``) and this
checkout's sources on the ``PYTHONPATH`` that worker processes inherit."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
SRC = REPO_ROOT / "TSKDBackend" / "src"
sys.path.insert(0, str(REPO_ROOT / "SlicerTSKD"))
# workers started by the servers under test import tskd from this checkout
os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

from SlicerTSKDLib.backend.client import TSKDClient  # noqa: E402

from tskd.data.phantom import PhantomConfig, phantom_labels  # noqa: E402
from tskd.service.settings import ServiceSettings  # noqa: E402

FAKE_TRAIN = Path(__file__).with_name("fake_train.py")
FAKE_TRAIN_COMMAND = [sys.executable, str(FAKE_TRAIN)]
#: pass as ``train_command`` to run jobs with the server's default command, ``python -m tskd train``
REAL_PIPELINE = ["<default: python -m tskd train>"]
#: settings for a real tiny run on phantoms, in about a quarter of its time: no supervised reference, and a
#: quarter to a third of the steps. For tests about what happens around training (kill, resume, download,
#: Slicer's loop), not about its quality: they ask for held-out Dice >= 0.85. Measured (2026-12-06, 6 phantom
#: cases of PhantomConfig(structures=2), held-out case 6): mean Dice 0.953 (0.956 / 0.950 per structure);
#: with the previous, twice as long settings (teacher 150, synthesis 16 images / 50 steps, students 100)
#: 0.95-0.97. Testing/test_workflow_e2e_slow.py and benchmarks/bench_soak.py use them too.
QUICK_TINY_SETTINGS = {
    "reference": {"enabled": False},
    "teacher": {"train": {"max_steps": 75}},
    "synthesis": {"num_synthetic": 8, "train": {"max_steps": 25}},
    "distill": {"train": {"max_steps": 50}},
    "finetune": {"train": {"max_steps": 50}},
}
PHANTOM = PhantomConfig(size=(32, 32, 8), spacing=(1.0, 1.0, 2.5), structures=2)
IGNORED = {"tskd.db", "tskd.db-wal", "tskd.db-shm", "server.lock"}


def project_labels(config: PhantomConfig = PHANTOM) -> list[dict[str, Any]]:
    """The phantom's labels in the API's form (colours in 0..1)."""
    out = []
    for item in phantom_labels(config):
        entry = {"value": item["value"], "name": item["name"]}
        if item.get("color"):
            entry["color"] = [c / 255.0 for c in item["color"]]
        out.append(entry)
    return out


def workspace_files(workspace: Path) -> set[str]:
    """Every file and folder under the workspace (relative), except the database and the lock."""
    return {p.relative_to(workspace).as_posix() for p in workspace.rglob("*") if p.name not in IGNORED}


class ServerThread:
    """A real uvicorn server on a free loopback port, in a thread of the test process."""

    def __init__(self, settings: ServiceSettings) -> None:
        import uvicorn

        from tskd.service.app import create_app
        from tskd.service.core import Service
        from tskd.service.server import bind_socket

        self.settings = settings
        self.service = Service(settings)
        self.sock = bind_socket(settings.host, 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(self.service), log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    @property
    def workspace(self) -> Path:
        return self.settings.workspace

    def client(self, **kwargs: Any) -> TSKDClient:
        kwargs.setdefault("token", self.settings.token)
        return TSKDClient(self.url, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.service.close()
        self.sock.close()


def add_cases(client: TSKDClient, project_id: str, phantom_files: dict[str, tuple[Path, Path]], count: int = 2) -> None:
    for name, (image, label) in list(phantom_files.items())[:count]:
        client.upload_case(project_id, name, str(image), str(label))


def wait_state(client: TSKDClient, job_id: str, states: tuple[str, ...], timeout: float = 60.0) -> dict[str, Any]:
    """Poll a job until its state is one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.job_status(job_id)
        if status["state"] in states:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {status['state']} after {timeout} s: {status}")
        time.sleep(0.05)


class ServerProcess:
    """``python -m tskd serve`` in a subprocess (for restarts and kill -9)."""

    def __init__(self, workspace: Path, *extra: str, train_command: list[str] | None = None,
                 log: Path | None = None, entry: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        """``entry`` replaces ``-m tskd`` (e.g. a wrapper script); ``env`` is added to the environment.
        The weights cache is ``workspace.parent / "weights"`` unless ``extra`` names one."""
        cache = [] if "--weights-cache" in extra else ["--weights-cache", str(workspace.parent / "weights")]
        command = [sys.executable, *(entry or ["-m", "tskd"]), "serve", "--workspace", str(workspace), "--port", "0",
                   "--cancel-grace-s", "2", *cache, *extra]
        if train_command != REAL_PIPELINE:  # the real pipeline is the server's default command
            command += ["--train-command", shlex.join(train_command or FAKE_TRAIN_COMMAND)]
            if train_command is None:  # the fake trainer's settings are its own ('fake: {...}')
                command += ["--no-settings-check"]
        self.log = open(log or workspace.parent / f"server-{time.time_ns()}.log", "ab")
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=REPO_ROOT,
                                     env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if "listening on " not in line:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}; see {self.log.name}")
        self.url = line.split("listening on ", 1)[1].split(";")[0].split(" ")[0]

    def client(self, **kwargs: Any) -> TSKDClient:
        return TSKDClient(self.url, **kwargs)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return int(self.proc.returncode)
