"""Slicer-side tests: import ``SlicerTSKDLib`` from the module folder, as Slicer would.

Fixtures for the workflow tests: a real MRML scene with Slicer's volumes and segmentations logic
(slicer-core), an untrained student package, and a real ``tskd serve`` started by the module's
``LocalBackend``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO_ROOT / "SlicerTSKD"

for folder in (MODULE_DIR, Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


BACKEND_SRC = REPO_ROOT / "TSKDBackend" / "src"


def importSlicer():
    """slicer-core's ``slicer`` package with ``slicer.util`` (skips the test when it is not installed)."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    pytest.importorskip("vtk")
    import slicer.util  # noqa: F401

    return slicer


@pytest.fixture
def slicerScene() -> Iterator[Any]:
    """A real MRML scene with Slicer's volumes and segmentations logic (see :mod:`slicerCore`);
    ``slicer.mrmlScene`` and ``slicer.modules`` point at it during the test."""
    importSlicer()
    from slicerCore import installScene

    scene, restore = installScene()
    try:
        yield scene
    finally:
        restore()


def rasFromLps(geometry) -> np.ndarray:
    """The IJK-to-RAS matrix of a ``tskd.data.image.Geometry`` (ITK, LPS)."""
    matrix = np.eye(4)
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    matrix[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ direction @ np.diag(geometry.spacing)
    matrix[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(geometry.origin, dtype=float)
    return matrix


def addImageToScene(scene, image, name: str) -> Any:
    """A ``tskd.data.image.Image`` as a scalar volume node with its geometry."""
    slicer = importSlicer()
    from SlicerTSKDLib.sceneData import matrixFromArray

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(image.array))
    node.SetIJKToRASMatrix(matrixFromArray(rasFromLps(image.geometry)))
    return node


@pytest.fixture(scope="session")
def studentPackage(tmp_path_factory) -> Tuple[str, Dict[str, Any]]:
    """An untrained ``unet_tiny`` student package (labels 0, organ_a 1, organ_b 2; input 32): ``(folder, labels)``."""
    return _studentPackage(tmp_path_factory, inChannels=1)


@pytest.fixture(scope="session")
def stackedStudentPackage(tmp_path_factory) -> Tuple[str, Dict[str, Any]]:
    """The same with a student that sees each slice between 2 neighbours on either side (5 channels)."""
    return _studentPackage(tmp_path_factory, inChannels=5)


def _studentPackage(tmp_path_factory, inChannels: int) -> Tuple[str, Dict[str, Any]]:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import torch

    from tskd.data.labels import Label, LabelTable
    from tskd.export import write_student_package
    from tskd.preprocess import NormalizationSpec
    from tskd.student import build_student

    torch.manual_seed(0)
    labels = LabelTable([Label(0, "background", None), Label(1, "organ_a", (0.85, 0.4, 0.31)),
                         Label(2, "organ_b", (0.5, 0.68, 0.5))], source="test")
    folder = write_student_package(
        tmp_path_factory.mktemp("student") / "package",
        student=build_student("unet_tiny", num_classes=3, input_size=32, in_channels=inChannels), labels=labels,
        input_size=32, slice_axis=0,
        normalization=NormalizationSpec(mode="percentile", p_low=1.0, p_high=99.0), teacher_info=None, metrics={})
    return str(folder), {"organ_a": (0.85, 0.4, 0.31), "organ_b": (0.5, 0.68, 0.5)}


@pytest.fixture(scope="session")
def liteMedSamBoxModel() -> Tuple[Path, Path]:
    """The real LiteMedSAM as an ONNX box model: ``(box model folder, weights file)``. The weights come from
    the backend suite's test home (fetched from the package index once per clone) and the export is the
    one ``tskd segment-box`` keeps there (made once per clone, 10-40 s on two cores). Mark tests using it
    ``package_index``."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    if str(REPO_ROOT / "TSKDBackend") not in sys.path:
        sys.path.insert(0, str(REPO_ROOT / "TSKDBackend"))  # the backend's test helpers
    from tests.conftest import TEST_HOME, fetch_litemedsam
    from tskd.inference.box_segment import zero_shot_box_model

    weights = fetch_litemedsam(TEST_HOME)
    return zero_shot_box_model(str(weights), cache_dir=TEST_HOME / "box_models", name="litemedsam"), weights


def backendEnvironment() -> Dict[str, str]:
    """Environment for a ``tskd serve`` child: this checkout's backend sources first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("TSKD_TOKEN",)}
    env["PYTHONPATH"] = os.pathsep.join([str(BACKEND_SRC)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def localBackend(tmp_path) -> Iterator[Any]:
    """A real ``tskd serve`` on a free loopback port with a fresh token, started by :class:`LocalBackend`."""
    pytest.importorskip("fastapi")
    from SlicerTSKDLib.backend.backendLogic import RUNNING, LocalBackend
    from SlicerTSKDLib.processRunner import SubprocessRunner

    runner = SubprocessRunner()
    backend = LocalBackend(runner, startTimeout=120.0, stopGrace=20.0)
    backend.start([sys.executable, "-m", "tskd"], str(tmp_path / "workspace"), backendEnvironment())
    deadline = time.monotonic() + 150
    while backend.state not in (RUNNING,) and time.monotonic() < deadline:
        runner.processEvents(timeout=0.2)
        backend.poll()
        assert backend.state != "failed", backend._outputTail
    assert backend.state == RUNNING, backend._outputTail
    try:
        yield backend
    finally:
        if runner.isRunning():
            backend.stop()
            runner.waitUntil(lambda: not runner.isRunning(), 30)
            if runner.isRunning():
                runner.kill()
                runner.waitUntil(lambda: not runner.isRunning(), 10)
        shutil.rmtree(tmp_path / "workspace", ignore_errors=True)


def pumpUntil(session, predicate=None, timeout: float = 60.0, timers=(), runner=None) -> None:
    """Run the GUI's event loop by hand: deliver the session's finished tasks (as its ``qt.QTimer``
    does), fire the started fake ``qt.QTimer`` s in ``timers`` (widget polls) and the process runner's
    events, until ``predicate()`` holds and (without a predicate) no task is pending."""
    deadline = time.monotonic() + timeout
    while True:
        if runner is not None:
            runner.processEvents(timeout=0.02)
        for timer in timers:
            if timer.active:
                timer.trigger("timeout()")
        session.poll()
        if (predicate() if predicate is not None else not session.tasks.pending()):
            return
        assert time.monotonic() < deadline, "gave up waiting after {:g} s".format(timeout)
        time.sleep(0.02)


@pytest.fixture
def serviceServer(tmp_path, monkeypatch) -> Iterator[Any]:
    """A real backend (uvicorn in a thread, on a free loopback port, with a token) whose jobs run the
    service tests' fixture worker (``fake_train.py``: the ``tskd train`` contract in a fraction of a
    second). Nothing may reach beyond loopback."""
    pytest.importorskip("fastapi")
    pytest.importorskip("onnx")
    if str(REPO_ROOT / "TSKDBackend") not in sys.path:
        sys.path.insert(0, str(REPO_ROOT / "TSKDBackend"))  # the backend's test helpers
    from tests.foundation.loopback import guard_urlopen
    from tests.service.helpers import FAKE_TRAIN_COMMAND, ServerThread
    from tskd.service.settings import ServiceSettings

    guard_urlopen(monkeypatch)
    server = ServerThread(ServiceSettings(workspace=tmp_path / "service", weights_cache=tmp_path / "weights",
                                          token="widget-test", train_command=list(FAKE_TRAIN_COMMAND),
                                          check_job_settings=False,  # the fake trainer's own settings
                                          scheduler_interval_s=0.1, cancel_grace_s=5.0))
    try:
        yield server
    finally:
        server.stop()
