"""Issue 32, item 2: live mode never erases corrections. On slicer-core's real scene: a slice live mode
wrote, then corrected by the user (voxels erased, painted to another segment), keeps the corrections when
the view comes back and when live mode is started again; what was drawn before live mode reached a slice
stays; live mode stops when a Segment Editor effect becomes active on its segmentation and when the module
is left (``exit()``)."""

from __future__ import annotations

import numpy as np
from conftest import importSlicer, pumpUntil
from SlicerTSKDLib import sceneData
from SlicerTSKDLib.segment.segmentationLogic import LiveSegmentation, LiveWrites, editorEffectActive
from SlicerTSKDLib.selfTest import addPhantomToScene
from test_pairing import Data, SegmentWorld

LABELS = [(1, "organ_a", (1.0, 0.0, 0.0)), (2, "organ_b", (0.0, 1.0, 0.0))]


class FixedSegmenter:
    """The student replaced by a fixed answer: a square of organ_a in every slice."""

    axis = 0

    def __init__(self, volume: np.ndarray) -> None:
        self.volume = volume

    def segment_slice(self, index: int) -> np.ndarray:
        values = np.zeros(self.volume.shape[1:], dtype=np.uint8)
        values[10:30, 10:30] = 1
        return values


def shared(live):
    return sceneData.sharedLabelmapArray(live.segmentationNode, live.segmentIds, live.volumeNode)


def test_corrections_survive_revisits_and_a_restart(slicerScene):
    importSlicer()
    volume, _, _ = addPhantomToScene(slicerScene, "live", seed=8, withSegmentation=False)
    segmentation = sceneData.newSegmentationFor(volume, "live result")
    writes = LiveWrites()
    array = sceneData.volumeArrayCopy(volume)
    live = LiveSegmentation(None, volume, segmentation, LABELS, segmenter=FixedSegmenter(array), writes=writes)
    live.segmentSlice(3)
    assert (shared(live)[3, 10:30, 10:30] == 1).all()
    corrected = shared(live)
    corrected[3, 10:15, 10:30] = 0  # erased by the user
    corrected[3, 20:25, 20:25] = 2  # given to organ_b
    corrected[3, 40:44, 40:44] = 2  # drawn outside the model's result
    sceneData.labelmapModified(segmentation, live.segmentIds)
    expected = corrected[3].copy()
    live.segmentSlice(4)
    live.segmentSlice(3)  # the view came back: nothing of the user's is overwritten
    assert np.array_equal(shared(live)[3], expected) and live.kept > 0
    again = LiveSegmentation(None, volume, segmentation, LABELS, segmenter=FixedSegmenter(array), writes=writes)
    again.segmentSlice(3)  # live mode started again with the segmentation's log
    assert np.array_equal(shared(again)[3], expected)

    drawn = shared(again)  # a slice drawn on before live mode ever came to it
    drawn[7, 12:18, 12:18] = 2
    sceneData.labelmapModified(segmentation, again.segmentIds)
    again.segmentSlice(7)
    assert (shared(again)[7, 12:18, 12:18] == 2).all()  # kept
    assert (shared(again)[7, 20:30, 20:30] == 1).all()  # the empty voxels got the model's result


def test_live_mode_stops_for_a_segment_editor_effect_and_when_the_module_is_left(monkeypatch, tmp_path, slicerScene):
    slicer = importSlicer()
    volume, _, _ = addPhantomToScene(slicerScene, "live", seed=8, withSegmentation=False)
    data = Data(volume, None)
    world = SegmentWorld(monkeypatch, tmp_path, data)
    from SlicerTSKDLib.segment import segmentationWidget

    monkeypatch.setattr(segmentationWidget, "liveSegmenter", lambda model, array: FixedSegmenter(array))
    widget = world.widget

    def start():
        widget.liveCheck.checked = True
        pumpUntil(world.session)
        assert widget.live is not None and world.errors == []

    start()
    segmentation = widget.live.segmentationNode
    assert data.segmentationNode() is segmentation  # a new one, made for the volume
    editor = slicerScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")  # the Segment Editor opened meanwhile
    editor.SetAndObserveSegmentationNode(segmentation)
    assert widget.live is not None and editorEffectActive(slicerScene, segmentation) is None
    editor.SetActiveEffectName("Paint")  # the user picks Paint
    assert widget.live is None and not widget.liveCheck.checked
    assert "the Segment Editor's 'Paint' effect is active" in widget.statusLabel.text
    editor.SetActiveEffectName("")
    start()
    widget.exit()  # the user switches to another module
    assert widget.live is None and not widget.liveCheck.checked
    assert widget.statusLabel.text == "Live mode stopped when the module was left; tick Live again to continue."
    editor.SetActiveEffectName("Erase")  # no observer left behind
    assert world.errors == [] and slicer is not None
