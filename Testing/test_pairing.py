"""Issue 32, item 1: another volume's segmentation is never overwritten by a result nor uploaded as this
volume's label without asking, and the segmentation follows the volume. slicer-core's real scene and
segmentations logic; the Segment and Project panels on the recorded fake Qt (fakeQt); two phantom
volumes on the same grid (the worst case: they overlap everywhere, so no emptiness check fires)."""

from __future__ import annotations

import numpy as np
from conftest import importSlicer, pumpUntil
from fakeQt import FakeObject, installFakeQt
from SlicerTSKDLib import pairing, sceneData
from SlicerTSKDLib.pairing import OTHER, SAME, UNKNOWN, SegmentationPairs
from SlicerTSKDLib.segment.segmentationLogic import ModelCache, SegmentationLogic
from SlicerTSKDLib.selfTest import PHANTOM_SEGMENTS, addPhantomToScene
from SlicerTSKDLib.session import SessionState

LABELS = [{"value": 1, "name": "organ_a", "color": [0.85, 0.4, 0.31]},
          {"value": 2, "name": "organ_b", "color": [0.5, 0.68, 0.5]}]


class Selector(FakeObject):
    def __init__(self) -> None:
        super().__init__()
        self.node = None

    def setCurrentNode(self, node) -> None:
        self.node = node


class Data:
    def __init__(self, volume=None, segmentation=None) -> None:
        self.volumeSelector, self.segmentationSelector = Selector(), Selector()
        self.volumeSelector.node, self.segmentationSelector.node = volume, segmentation
        self.pairs = SegmentationPairs()

    def volumeNode(self):
        return self.volumeSelector.node

    def segmentationNode(self):
        return self.segmentationSelector.node

    def roiNode(self):
        return None


def indexArray(segmentation, volume):
    ids = [segmentId for segmentId, _, _ in sceneData.segmentList(segmentation)]
    return sceneData.exportSegmentsAsIndexArray(segmentation, ids, volume)


def test_a_segmentation_knows_its_volume_and_follows_it(slicerScene):
    a, segA, _ = addPhantomToScene(slicerScene, "A", seed=1)
    b, segB, _ = addPhantomToScene(slicerScene, "B", seed=2)  # the same grid as A
    assert pairing.owner(segA, a) == (SAME, "A") and pairing.owner(segA, b) == (OTHER, "A")
    fresh = slicerScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "just made")
    assert pairing.owner(fresh, b) == (UNKNOWN, "")
    assert "was drawn on 'A', not on 'B'" in pairing.ownerText(segA, b) and pairing.ownerText(segB, b) is None

    # a segmentation read from a file: the reference geometry without the node reference
    loaded = slicerScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "from file")
    loaded.GetSegmentation().SetConversionParameter(
        "Reference image geometry", segA.GetSegmentation().GetConversionParameter("Reference image geometry"))
    assert loaded.GetNodeReference("referenceImageGeometryRef") is None
    assert pairing.owner(loaded, a)[0] == SAME
    c, _, _ = addPhantomToScene(slicerScene, "C", seed=3, shape=(20, 40, 50), withSegmentation=False)
    assert pairing.owner(loaded, c) == (OTHER, "another image grid")

    pairs = SegmentationPairs()
    assert pairs.segmentationFor(b) is segB and pairs.segmentationFor(c) is None
    assert pairs.segmentationFor(a) is segA  # the one naming A, before one that only shares its grid
    pairs.remember(a, loaded)
    assert pairs.segmentationFor(a) is loaded  # the one last used with A
    pairs.remember(a, segA)
    pairs.remember(b, segA)  # another volume's: not remembered for B
    assert pairs.segmentationFor(a) is segA and pairs.segmentationFor(b) is segB
    slicerScene.RemoveNode(segA)
    assert pairs.segmentationFor(a) is loaded  # a removed node is forgotten (objects held, not IDs)
    assert pairing.hasContent(segB) and not pairing.hasContent(fresh)


class SegmentWorld:
    """The Segment panel with a real logic; the student itself replaced by a fixed answer (all organ_b)."""

    def __init__(self, monkeypatch, tmp_path, data) -> None:
        installFakeQt(monkeypatch)
        self.slicer = importSlicer()
        from SlicerTSKDLib.segment import segmentationWidget

        self.asked = []
        self.replies = []
        monkeypatch.setattr(self.slicer.util, "confirmYesNoDisplay",
                            lambda text, **kw: self.asked.append(text) or self.replies.pop(0), raising=False)
        cache = ModelCache(str(tmp_path / "models"), loader=lambda path: type("Model", (), {"package": type(
            "Package", (), {"labels": [(1, "organ_a", (1, 0, 0)), (2, "organ_b", (0, 1, 0))]})()})())
        (tmp_path / "models").mkdir()
        open(cache.packagePath("m1"), "wb").close()
        monkeypatch.setattr(segmentationWidget, "segmentArray",
                            lambda model, array, roi, **kw: np.full(array.shape, 2, dtype=np.uint8))
        self.logic = SegmentationLogic(str(tmp_path), cache, None, runtimeImportable=lambda d: None,
                                       onnxAvailable=lambda: True)
        self.session = SessionState()
        self.errors = []
        self.session.errors.display = self.errors.append
        self.widget = segmentationWidget.SegmentationWidget(FakeObject(), self.session, data, None, self.logic)
        self.widget._showModels([{"id": "m1", "created": "2026-12-01T10:00", "labels": LABELS}], "m1")

    def segment(self) -> None:
        self.widget.segmentButton.trigger("clicked()")
        pumpUntil(self.session)


def test_segmenting_never_writes_into_another_volumes_segmentation(monkeypatch, tmp_path, slicerScene):
    a, segA, _ = addPhantomToScene(slicerScene, "A", seed=1)
    b, _, _ = addPhantomToScene(slicerScene, "B", seed=2, withSegmentation=False)
    manual = indexArray(segA, a).copy()
    data = Data(b, segA)  # the selectors are independent: B's volume with A's labels still selected
    world = SegmentWorld(monkeypatch, tmp_path, data)
    world.segment()
    assert world.errors == [] and world.asked == []
    assert np.array_equal(indexArray(segA, a), manual)  # A's manual labels are untouched
    written = data.segmentationNode()
    assert written is not segA and pairing.owner(written, b)[0] == SAME
    assert "'A segmentation' belongs to 'A', so the result went into a new segmentation." in world.widget.statusLabel.text
    assert (indexArray(written, b) > 0).all()


def test_segmenting_over_the_volumes_own_labels_asks_and_no_keeps_them(monkeypatch, tmp_path, slicerScene):
    a, segA, _ = addPhantomToScene(slicerScene, "A", seed=1)
    manual = indexArray(segA, a).copy()
    data = Data(a, segA)
    world = SegmentWorld(monkeypatch, tmp_path, data)
    world.replies = [False]  # No: a new segmentation
    world.segment()
    assert len(world.asked) == 1 and "'A segmentation' already holds organ_a, organ_b" in world.asked[0]
    assert "Slicer cannot undo this" in world.asked[0]
    assert np.array_equal(indexArray(segA, a), manual) and data.segmentationNode() is not segA
    data.segmentationSelector.node = segA
    world.replies = [True]  # Yes: replaced
    world.segment()
    assert data.segmentationNode() is segA and (indexArray(segA, a) == 2).all()
    empty = sceneData.newSegmentationFor(a, "empty")
    data.segmentationSelector.node = empty
    world.segment()  # nothing to lose: no question
    assert len(world.asked) == 2 and data.segmentationNode() is empty and pairing.hasContent(empty)


def test_adding_another_volumes_segmentation_as_a_case_asks_first(monkeypatch, slicerScene):
    installFakeQt(monkeypatch)
    importSlicer()
    import qt
    from SlicerTSKDLib.train import projectWidget
    from SlicerTSKDLib.train.projectLogic import ProjectLogic

    class Client:
        server_url = "http://127.0.0.1:9"
        uploads = []

        def upload_case(self, projectId, name, imagePath, labelPath=None, replace=False, **kwargs):
            self.uploads.append(name)
            return {"name": name, "labelled": True}

        def list_cases(self, projectId):
            return []

    a, segA, _ = addPhantomToScene(slicerScene, "A", seed=1)
    b, _, _ = addPhantomToScene(slicerScene, "B", seed=2, withSegmentation=False)
    session = SessionState()
    errors = []
    session.errors.display = errors.append
    session.client, session.project = Client(), {"id": "p1", "labels": LABELS}
    widget = projectWidget.ProjectWidget(FakeObject(), session, Data(b, segA), ProjectLogic())
    qt.QMessageBox.replies = [qt.QMessageBox.No]
    widget.addCase()
    pumpUntil(session)
    assert "was drawn on 'A', not on 'B'" in qt.QMessageBox.asked[-1][2]
    assert Client.uploads == [] and widget.statusLabel.text == "The case was not added." and errors == []
    qt.QMessageBox.replies = [qt.QMessageBox.Yes]  # the user insists (e.g. two series on one grid)
    widget.addCase()
    pumpUntil(session)
    assert Client.uploads == ["B"] and errors == []
    widget.addCase(a, segA)  # its own segmentation: no question
    pumpUntil(session)
    assert Client.uploads == ["B", "A"] and qt.QMessageBox.replies == []


def test_a_corrected_case_goes_back_to_its_own_case(slicerScene):
    """Issue 32, item 4: "Add corrected result as a training case" on a volume that is a case of the project
    (tagged when downloaded or uploaded) replaces that case instead of adding ``<case>_2``; a typed name or an
    untagged volume still gives a new, unique case."""
    from SlicerTSKDLib.train.projectLogic import ProjectLogic, caseOf, tagCase

    volume, segmentation, _ = addPhantomToScene(slicerScene, "3: AX T1", seed=1)
    project = {"id": "p1", "labels": LABELS}
    cases = [{"name": "3_AX_T1", "labelled": False}]
    name, _, replace = ProjectLogic.caseToAdd(volume, segmentation, project, "", cases)
    assert (name, replace) == ("3_AX_T1_2", False)  # not known as that case: a new one
    tagCase(volume, "p1", "3_AX_T1")
    assert caseOf(volume, "p1") == "3_AX_T1" and caseOf(volume, "p2") is None
    name, data, replace = ProjectLogic.caseToAdd(volume, segmentation, project, "", cases)
    assert (name, replace) == ("3_AX_T1", True) and data.label.array.any()
    assert ProjectLogic.caseToAdd(volume, segmentation, project, "other", cases)[::2] == ("other", False)
    assert ProjectLogic.caseToAdd(volume, segmentation, {"id": "p2", "labels": LABELS}, "", cases)[::2] == ("3_AX_T1_2", False)
