"""Issue 14, item 12: the module's selections on the scene's parameter node, saved with the scene (slicer-core).

slicer-core has no ``slicer.parameterNodeWrapper``: here :class:`SelectionStore` is used, written in the
wrapper's layout (checked field by field below), so Slicer >= 5.4's wrapper reads the same node.
"""

from __future__ import annotations

import pytest

from conftest import importSlicer
from SlicerTSKDLib.parameterNode import (MODULE_NAME, NODE_FIELDS, TEXT_FIELDS, findParameterNode,
                                         selections, wrapperClass)


def fill(scene):
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ct labels")
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    store = selections(findParameterNode(scene))
    store.volume, store.segmentation, store.roi = volume, segmentation, roi
    store.projectId, store.modelId = "p-17", "m-3"
    return volume, segmentation, roi, store


def test_selections_are_kept_on_the_modules_singleton_parameter_node(slicerScene):
    volume, segmentation, roi, store = fill(slicerScene)
    node = findParameterNode(slicerScene)
    assert node is store.parameterNode and node.GetAttribute("ModuleName") == MODULE_NAME
    assert slicerScene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1  # found again, not made twice
    again = selections(findParameterNode(slicerScene))
    assert again.volume is volume and again.segmentation is segmentation and again.roi is roi
    assert (again.projectId, again.modelId) == ("p-17", "m-3")
    # the layout of parameterNodeWrapper's serializers (NodeSerializer / StringSerializer, no prefix)
    for field in NODE_FIELDS:
        assert node.GetParameter(field) == "" and node.GetNodeReferenceID(field) == getattr(again, field).GetID()
    assert node.GetParameter("projectId") == "p-17" and node.GetParameter("modelId") == "m-3"
    again.roi = None
    assert again.roi is None and node.GetNodeReferenceID("roi") is None
    slicerScene.RemoveNode(segmentation)
    assert again.segmentation is None  # a removed node is no selection


def test_wrong_node_types_and_unknown_fields_are_refused(slicerScene):
    store = selections(findParameterNode(slicerScene))
    label = slicerScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    if wrapperClass() is None:
        with pytest.raises(TypeError):
            store.segmentation = label
        with pytest.raises(AttributeError):
            store.colour = "red"
    assert store.projectId == "" and store.volume is None  # nothing chosen yet


def test_selections_come_back_after_the_scene_is_saved_and_loaded(slicerScene, tmp_path):
    slicer = importSlicer()
    volume, segmentation, roi, _ = fill(slicerScene)
    path = str(tmp_path / "scene.mrml")
    slicerScene.SetURL(path)
    assert slicerScene.Commit()
    loaded = slicer.vtkMRMLScene()
    loaded.SetURL(path)
    assert loaded.Connect()
    try:
        store = selections(findParameterNode(loaded))
        assert loaded.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1
        assert store.volume is not None and store.volume.GetName() == "ct"
        assert store.segmentation.GetName() == "ct labels" and store.roi.GetName() == "box"
        assert (store.projectId, store.modelId) == ("p-17", "m-3")
    finally:
        loaded.Clear(1)


def test_slicer_core_has_no_wrapper_so_the_store_is_used():
    importSlicer()
    try:
        import slicer.parameterNodeWrapper  # noqa: F401
    except ImportError:
        assert wrapperClass() is None
    else:  # a Slicer with the wrapper: its class has our fields
        assert wrapperClass() is not None
    assert set(NODE_FIELDS) | set(TEXT_FIELDS) == {"volume", "segmentation", "roi", "projectId", "modelId"}
