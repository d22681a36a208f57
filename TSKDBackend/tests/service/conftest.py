"""Fixtures of the service tests (see :mod:`tests.service.helpers`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.service.helpers import FAKE_TRAIN_COMMAND, PHANTOM, ServerProcess, ServerThread, project_labels
from tskd.data.image import write_image
from tskd.data.phantom import make_phantom
from tskd.service.settings import ServiceSettings


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerThread]]:
    """Start servers with settings overrides (default workspace ``tmp_path/ws``, the fixture worker)."""
    servers: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        values: dict[str, Any] = {
            "workspace": tmp_path / "ws",
            "weights_cache": tmp_path / "weights",  # never the user's $TSKD_HOME
            "train_command": list(FAKE_TRAIN_COMMAND),
            "check_job_settings": False,  # the fake trainer's settings are its own ('fake: {...}')
            "cancel_grace_s": 2.0,
            "scheduler_interval_s": 0.1,
        }
        values.update(overrides)
        server = ServerThread(ServiceSettings(**values))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Three small phantom cases: name -> (image .nii.gz, label .nii.gz)."""
    folder = tmp_path_factory.mktemp("phantoms")
    files = {}
    for index in range(3):
        image, label = make_phantom(PHANTOM, index)
        name = f"case_{index:03d}"
        files[name] = (write_image(image, folder / f"{name}.nii.gz"), write_image(label, folder / f"{name}-label.nii.gz"))
    return files


@pytest.fixture
def project(server: ServerThread) -> dict[str, Any]:
    return server.client().create_project("phantoms", project_labels())


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    processes: list[ServerProcess] = []

    def start(*extra: str, workspace: Path | None = None, **kwargs: Any) -> ServerProcess:
        proc = ServerProcess(workspace or tmp_path / "ws", *extra, **kwargs)
        processes.append(proc)
        return proc

    yield start
    for proc in processes:
        proc.stop()
