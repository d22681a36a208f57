"""Issue 32, item 13: the scripting entry point (``SlicerTSKD.SlicerTSKDLogic().segment(volume, model)``, as
SlicerNNUnet and SlicerMONAIAuto3DSeg offer) and the segments' terminology (the project keeps the entries the
clinician chose in Slicer; results are tagged with them). slicer-core's scene, a real ONNX student."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODULE_DIR, importSlicer
from SlicerTSKDLib import sceneData
from SlicerTSKDLib.scripting import SlicerTSKDLogic
from SlicerTSKDLib.selfTest import addPhantomToScene
from SlicerTSKDLib.train.projectLogic import ProjectLogic, projectTerminology

LIVER = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
         "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")


def test_segment_from_a_script_makes_the_volumes_segmentation(slicerScene, studentPackage):
    importSlicer()
    from tskd.runtime import OnnxSegmenter, segment_volume

    volume, _, _ = addPhantomToScene(slicerScene, "ct", seed=5, withSegmentation=False)
    logic = SlicerTSKDLogic(str(MODULE_DIR))
    segmentation = logic.segment(volume, studentPackage[0], terminology={"organ_a": LIVER})
    expected = segment_volume(OnnxSegmenter(studentPackage[0], threads=1), sceneData.volumeArrayCopy(volume))
    segments = sceneData.segmentList(segmentation)
    assert [name for _, name, _ in segments] == ["organ_a", "organ_b"]
    index = sceneData.exportSegmentsAsIndexArray(segmentation, [s for s, _, _ in segments], volume)
    assert np.array_equal(index, expected)
    seg = segmentation.GetSegmentation()
    assert sceneData.segmentTerminology(seg.GetSegment(segments[0][0])) == LIVER
    assert sceneData.segmentTerminology(seg.GetSegment(segments[1][0])) == ""
    assert segmentation.GetNodeReference("referenceImageGeometryRef") is volume
    other, _, _ = addPhantomToScene(slicerScene, "other", seed=6, withSegmentation=False)
    with pytest.raises(sceneData.SceneError, match="was drawn on another volume"):
        logic.segment(other, studentPackage[0], segmentationNode=segmentation)
    with pytest.raises(sceneData.SceneError, match="No student package at"):
        logic.segment(volume, str(MODULE_DIR / "missing.tskd.zip"))
    # the module file exposes it (Slicer imports SlicerTSKD.py only inside the application)
    assert "from SlicerTSKDLib.scripting import SlicerTSKDLogic" in (MODULE_DIR / "SlicerTSKD.py").read_text()


def test_a_project_keeps_the_segments_terminology_and_results_carry_it(slicerScene):
    importSlicer()
    volume, segmentation, _ = addPhantomToScene(slicerScene, "ct", seed=1)
    first = segmentation.GetSegmentation().GetNthSegment(0)
    first.SetTag(sceneData.TERMINOLOGY_TAG, LIVER)
    settings = ProjectLogic.newProjectSettings(segmentation)
    name = first.GetName()
    assert settings == {"terminology": {name: LIVER}}
    project = {"id": "p", "settings": settings}
    assert projectTerminology(project) == {name: LIVER} and projectTerminology({"settings": {}}) == {}
    result = sceneData.newSegmentationFor(volume, "result")
    ids = sceneData.ensureSegments(result, [(name.upper(), (1, 0, 0)), ("other", (0, 1, 0))], projectTerminology(project))
    assert sceneData.segmentTerminology(result.GetSegmentation().GetSegment(ids[0])) == LIVER  # by name, any case
    mine = "my own choice"
    result.GetSegmentation().GetSegment(ids[1]).SetTag(sceneData.TERMINOLOGY_TAG, mine)
    sceneData.ensureSegments(result, [("other", (0, 1, 0))], {"other": LIVER})
    assert sceneData.segmentTerminology(result.GetSegmentation().GetSegment(ids[1])) == mine  # never replaced
