"""Issue 14, items 13 and 5: the Segment panel's decisions with a real SegmentationLogic (and a real pip-like
child process through SubprocessRunner), real slicer-core, and a recorded fake of the few Qt calls (fakeQt).
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
from conftest import importSlicer
from fakeQt import FakeObject, installFakeQt
from SlicerTSKDLib.processRunner import SubprocessRunner
from SlicerTSKDLib.install.runtimeSetup import OnnxruntimeInstall
from SlicerTSKDLib.segment.segmentationLogic import ASK, BACKEND, HERE, INSTALLING, ModelCache, SegmentationLogic
from SlicerTSKDLib.session import SessionState

PIP = textwrap.dedent("""
    import time
    print("Collecting onnxruntime", flush=True)
    time.sleep({delay})
    print("Successfully installed onnxruntime", flush=True)
""")


class Data:
    def __init__(self, volume=None, roi=None) -> None:
        self.volume, self.roi = volume, roi
        self.volumeSelector, self.segmentationSelector = FakeObject(), FakeObject()

    def volumeNode(self):
        return self.volume

    def segmentationNode(self):
        return None

    def roiNode(self):
        return self.roi


class World:
    """The widget with a real logic; onnxruntime 'appears' once the fake pip succeeded."""

    def __init__(self, monkeypatch, tmp_path, answer: bool, delay: float = 0.3, volume=None, roi=None) -> None:
        installFakeQt(monkeypatch)
        slicer = importSlicer()
        from SlicerTSKDLib.segment import segmentationWidget

        self.onnx = False
        self.asked, self.here, self.backend = [], [], []
        monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay",
                            lambda text, **kw: self.asked.append(text) or answer, raising=False)
        self.runner = SubprocessRunner()
        installer = OnnxruntimeInstall(self.runner, [sys.executable, "-c", PIP.format(delay=delay)], {},
                                       imports=lambda: self._installed())
        self.logic = SegmentationLogic(str(tmp_path), ModelCache(str(tmp_path / "models")), installer,
                                       runtimeImportable=lambda moduleDir: None, onnxAvailable=lambda: self.onnx)
        self.session = SessionState()
        self.errors = []
        self.session.errors.display = self.errors.append
        self.widget = segmentationWidget.SegmentationWidget(FakeObject(), self.session, Data(volume or FakeVolume(), roi),
                                                            None, self.logic)
        self.widget._segmentHere = lambda modelId, volume, roi, **kw: self.here.append((modelId, roi))
        self.widget._segmentOnBackend = lambda model, volume, roi, **kw: self.backend.append((model["id"], roi))
        self.widget._showModels([{"id": "m1", "created": "2026-12-01T10:00"}], "m1")

    def _installed(self) -> bool:
        self.onnx = True
        return True

    def waitInstall(self) -> None:
        assert self.runner.waitUntil(lambda: not self.logic.installing(), 30)


class FakeVolume:
    def GetName(self):
        return "ct"

    def GetID(self):
        return "vtkMRMLScalarVolumeNode1"


def test_segment_asks_once_installs_in_a_child_process_with_controls_disabled_then_segments_here(monkeypatch, tmp_path):
    world = World(monkeypatch, tmp_path, answer=True)
    widget = world.widget
    assert world.logic.whereToRun() == ASK and widget.segmentButton.enabled
    widget.segmentButton.trigger("clicked()")
    assert len(world.asked) == 1 and world.logic.installing()  # returned while pip runs
    assert not widget.segmentButton.enabled and not widget.liveCheck.enabled and widget.cancelButton.enabled
    assert widget.progressBar.visible and world.here == [] and world.backend == []
    widget.onSegment()  # a second click while it installs: no second question, no second pip
    assert len(world.asked) == 1 and world.logic.whereToRun() == INSTALLING
    pid = world.runner.processId()
    world.waitInstall()
    assert world.runner.processId() == pid  # one pip only
    assert world.here == [("m1", None)] and world.backend == []  # the click that asked is carried out
    assert widget.segmentButton.enabled and widget.liveCheck.enabled and not widget.progressBar.visible
    widget.onSegment()
    assert len(world.asked) == 1 and world.here == [("m1", None), ("m1", None)]


def test_declining_segments_on_the_backend_and_never_asks_again(monkeypatch, tmp_path):
    world = World(monkeypatch, tmp_path, answer=False)
    world.widget.onSegment()
    world.widget.onSegment()
    assert len(world.asked) == 1 and world.backend == [("m1", None), ("m1", None)] and not world.logic.installing()


def test_cancel_during_the_install_kills_pip_and_does_not_segment(monkeypatch, tmp_path):
    world = World(monkeypatch, tmp_path, answer=True, delay=30)
    world.widget.onSegment()
    assert world.logic.installing()
    world.widget.cancelButton.trigger("clicked()")
    world.waitInstall()
    assert "cancelled" in world.widget.statusLabel.text and world.here == [] and world.backend == []
    assert world.logic.whereToRun() == BACKEND and world.widget.segmentButton.enabled and world.errors == []


def test_live_mode_waits_for_the_install_and_starts_once_it_is_there(monkeypatch, tmp_path):
    world = World(monkeypatch, tmp_path, answer=True)
    started = []
    world.widget.session.submit = lambda name, *args, **kwargs: started.append(name)
    monkeypatch.setattr("SlicerTSKDLib.sceneData.volumeArrayCopy", lambda volume: np.zeros((2, 2, 2)))
    world.widget.liveCheck.checked = True  # the user's click: Qt (and fakeQt) emit toggled(True)
    assert world.logic.installing() and not world.widget.liveCheck.checked and started == []
    world.waitInstall()
    assert world.widget.liveCheck.checked and started == ["Loading model"]


def test_the_roi_is_read_by_the_logic_and_passed_on(monkeypatch, tmp_path, slicerScene):
    from SlicerTSKDLib.selfTest import addPhantomToScene

    volume, _, _ = addPhantomToScene(slicerScene, "v", seed=2, withSegmentation=False)
    roi = slicerScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    world = World(monkeypatch, tmp_path, answer=False, volume=volume, roi=roi)
    roi.SetCenter([1e4, 1e4, 1e4])
    roi.SetSize([1.0, 1.0, 1.0])
    world.widget.onSegment()
    assert world.widget.statusLabel.text == "The region (ROI) does not overlap the volume." and world.backend == []
    assert world.asked == []  # nothing asked for a request that cannot run
    import vtk

    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    dims = volume.GetImageData().GetDimensions()
    middle = m.MultiplyPoint([d / 2.0 for d in dims] + [1.0])[:3]
    roi.SetCenter(middle)
    roi.SetSize([5.0, 5.0, 5.0])
    world.widget.onSegment()
    assert len(world.backend) == 1 and world.backend[0][1] is not None
    expected, problem = world.logic.region(roi, volume)
    assert problem is None and world.backend[0][1] == expected


def test_prediction_folders_are_removed_by_cleanup(tmp_path):
    import os

    logic = SegmentationLogic(str(tmp_path), ModelCache(str(tmp_path / "m")), None,
                              runtimeImportable=lambda d: None, onnxAvailable=lambda: False)
    assert logic.whereToRun() == BACKEND  # no installer: never asks
    kept, removed = logic.newPredictionFolder(), logic.newPredictionFolder()
    logic.removeFolder(removed)
    assert os.path.isdir(kept) and not os.path.exists(removed)
    logic.cleanup()
    assert not os.path.exists(kept)


def test_a_runtime_that_does_not_import_means_backend_without_asking(tmp_path):
    def broken(moduleDir):
        raise RuntimeError("no sources")

    logic = SegmentationLogic(str(tmp_path), ModelCache(str(tmp_path / "m")), None, runtimeImportable=broken,
                              onnxAvailable=lambda: False)
    logic.installer = type("Idle", (), {"isRunning": lambda self: False})()  # an installer exists, yet no question
    assert logic.whereToRun() == BACKEND
    logic._runtimeImportable = lambda d: None
    logic._onnxAvailable = lambda: True
    assert logic.whereToRun() == HERE
