"""Issue 32, item 3: colour (vector) volumes, e.g. ultrasound PNG/JPEG exports, which Slicer loads as
``vtkMRMLVectorVolumeNode`` (a ``vtkMRMLScalarVolumeNode`` subclass, so the selector offers them): they are
segmented and uploaded as their luminance with a note, instead of failing with "Unexpected error
(ValueError)"; diffusion images are hidden from the selector. slicer-core's scene, a real ONNX student."""

from __future__ import annotations

import numpy as np
from conftest import importSlicer, pumpUntil
from SlicerTSKDLib import sceneData
from SlicerTSKDLib.segment.segmentationLogic import ModelCache, SegmentationLogic
from SlicerTSKDLib.selfTest import obliqueIjkToRas
from SlicerTSKDLib.session import SessionState
from SlicerTSKDLib.train.projectLogic import prepareTrainingCase
from fakeQt import FakeObject, installFakeQt
from test_pairing import Data, LABELS


def colourVolume(scene, name="us frame"):
    slicer = importSlicer()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, size=(1, 40, 48, 3)).astype(np.uint8)
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, rgb)
    node.SetIJKToRASMatrix(sceneData.matrixFromArray(obliqueIjkToRas()))
    return node, rgb


def test_a_colour_volume_is_used_as_its_luminance(slicerScene):
    node, rgb = colourVolume(slicerScene)
    assert node.IsA("vtkMRMLScalarVolumeNode")  # what the selector offers
    grey = sceneData.volumeArrayCopy(node)
    expected = 0.30 * rgb[..., 0] + 0.59 * rgb[..., 1] + 0.11 * rgb[..., 2]
    assert grey.shape == (1, 40, 48) and np.allclose(grey, expected, atol=1e-3)
    assert sceneData.colourNote(node) == "'us frame' is a colour image: its brightness (luminance) is used."
    segmentation = sceneData.newSegmentationFor(node, "us labels")
    ids = sceneData.ensureSegments(segmentation, [("organ_a", (1, 0, 0))])
    label = np.zeros(grey.shape, np.uint8)
    label[0, 10:20, 10:20] = 1
    sceneData.importIndexArray(label, node, segmentation, ids)
    case = prepareTrainingCase(node, segmentation, [{"value": 1, "name": "organ_a"}])
    assert np.allclose(case.image.array, expected, atol=1e-3) and np.array_equal(case.label.array, label)
    tensor = slicerScene.AddNewNodeByClass("vtkMRMLDiffusionTensorVolumeNode")
    assert any(tensor.IsA(name) for name in sceneData.VOLUME_SELECTOR["hideChildNodeTypes"])
    assert not any(node.IsA(name) for name in sceneData.VOLUME_SELECTOR["hideChildNodeTypes"])


def test_segment_volume_on_a_colour_volume_works_and_says_so(monkeypatch, tmp_path, slicerScene, studentPackage):
    from tskd.runtime import OnnxSegmenter

    installFakeQt(monkeypatch)
    importSlicer()
    from SlicerTSKDLib.segment import segmentationWidget

    node, _ = colourVolume(slicerScene)
    cache = ModelCache(str(tmp_path / "models"), loader=lambda path: OnnxSegmenter(studentPackage[0], threads=1))
    (tmp_path / "models").mkdir()
    open(cache.packagePath("m1"), "wb").close()
    logic = SegmentationLogic(str(tmp_path), cache, None, runtimeImportable=lambda d: None, onnxAvailable=lambda: True)
    session = SessionState()
    errors = []
    session.errors.display = errors.append
    data = Data(node, None)
    widget = segmentationWidget.SegmentationWidget(FakeObject(), session, data, None, logic)
    widget._showModels([{"id": "m1", "created": "2026-12-01T10:00", "labels": LABELS}], "m1")
    widget.segmentButton.trigger("clicked()")
    pumpUntil(session)
    assert errors == [], errors
    assert widget.statusLabel.text.startswith("Done: ")
    assert widget.statusLabel.text.endswith("'us frame' is a colour image: its brightness (luminance) is used.")
    assert data.segmentationNode() is not None
