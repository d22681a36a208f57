"""Issue 32, item 9: Close scene and scene loads, on slicer-core's real scene. The selectors follow the
scene's parameter node after a close (nothing selected, nothing written into the dying node) and after a
scene is loaded (its saved selections); a segmentation result that arrives after Close scene is not
written into the node that now has the old node's ID (node IDs restart: ``vtkMRMLScene::Clear``)."""

from __future__ import annotations

import numpy as np
from conftest import importSlicer, pumpUntil
from fakeQt import FakeObject
from SlicerTSKDLib.parameterNode import findParameterNode, selections
from SlicerTSKDLib.sceneEvents import SceneWatcher, SelectionSync
from SlicerTSKDLib.selfTest import addPhantomToScene
from test_pairing import Data, SegmentWorld


class QtSelector(FakeObject):
    """A node selector that, like ``qMRMLNodeComboBox``, emits ``currentNodeChanged`` when its node changes."""

    def __init__(self) -> None:
        super().__init__()
        self.node = None

    def currentNode(self):
        return self.node

    def setCurrentNode(self, node) -> None:
        if node is not self.node:
            self.node = node
            self.trigger("currentNodeChanged(vtkMRMLNode*)", node)


def test_selections_follow_close_scene_and_scene_loads(slicerScene, tmp_path):
    importSlicer()
    selectors = {"volume": QtSelector(), "segmentation": QtSelector(), "roi": QtSelector()}
    sync = SelectionSync(slicerScene, selectors)
    events = []
    watcher = SceneWatcher(slicerScene, lambda: events.append("start") or sync.startClose(),
                           lambda: events.append("end") or sync.endClose(),
                           lambda: events.append("import") or sync.endImport())
    sync.attach()
    volume, segmentation, _ = addPhantomToScene(slicerScene, "ct", seed=1)
    selectors["volume"].setCurrentNode(volume)  # the user's choices go to the parameter node
    selectors["segmentation"].setCurrentNode(segmentation)
    sync.parameters.projectId = "p-1"
    assert selections(findParameterNode(slicerScene)).segmentation is segmentation
    path = str(tmp_path / "scene.mrml")
    slicerScene.SetURL(path)
    assert slicerScene.Commit()

    slicerScene.Clear(0)  # File > Close scene
    assert events == ["start", "end"]
    assert selectors["volume"].currentNode() is None and selectors["segmentation"].currentNode() is None
    assert sync.ids() == ("", "") and sync.parameters is not None  # a fresh parameter node

    slicerScene.SetURL(path)
    slicerScene.Import()  # File > Load scene
    assert events[-1] == "import"
    assert selectors["volume"].currentNode().GetName() == "ct"
    assert selectors["segmentation"].currentNode().GetName() == "ct segmentation"
    assert sync.ids()[0] == "p-1"
    watcher.remove()
    slicerScene.Clear(0)
    assert events.count("start") == 1 + 0 and selectors["volume"].currentNode() is not None  # no longer observed


def test_a_result_after_close_scene_never_lands_on_the_node_that_took_the_old_id(monkeypatch, tmp_path, slicerScene):
    a, _, _ = addPhantomToScene(slicerScene, "A", seed=1, withSegmentation=False)
    oldId = a.GetID()
    data = Data(a, None)
    world = SegmentWorld(monkeypatch, tmp_path, data)
    world.session.tasks.submit = _held(world.session.tasks.submit)  # the result waits until released
    world.widget.segmentButton.trigger("clicked()")
    slicerScene.Clear(0)  # Close scene while the worker segments
    b, _, _ = addPhantomToScene(slicerScene, "B", seed=2, withSegmentation=False)
    assert b.GetID() == oldId  # node IDs restart after Close scene
    _release()
    pumpUntil(world.session)
    assert world.widget.statusLabel.text == "The volume was removed before the result arrived."
    assert slicerScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0 and world.errors == []

    data.volumeSelector.node = b
    world.widget.segmentButton.trigger("clicked()")
    world.widget.sceneClosing()  # what the module does on StartCloseEvent: the running segmentation stops
    pumpUntil(world.session)
    assert world.widget.statusLabel.text == "Segmentation cancelled." and world.errors == []
    assert np is not None


_gate = None


def _held(submit):
    import threading

    global _gate
    _gate = threading.Event()

    def wrapped(name, function, *args, **kwargs):
        def held(*inner):
            _gate.wait(10)
            return function(*inner)

        return submit(name, held, *args, **kwargs)

    return wrapped


def _release():
    _gate.set()
