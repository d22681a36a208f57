"""The student inside Slicer: slice-index mapping for live mode, ROI bounds, label mapping, model cache,
and live mode writing into a real segmentation (slicer-core's scene, a real ONNX student)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import importSlicer
from SlicerTSKDLib import sceneData
from SlicerTSKDLib.segment.segmentationLogic import (
    LiveSegmentation,
    ModelCache,
    SegmentationProblem,
    packageLabels,
    roiIjkBounds,
    roiNodeBounds,
    sliceIndexForView,
    valuesToIndices,
)
from SlicerTSKDLib.selfTest import addPhantomToScene, obliqueIjkToRas

SHAPE = (24, 48, 56)  # (k, j, i)


def sliceToRasFor(ijkToWorld: np.ndarray, ijkAxis: int, index: float, inPlane=(10.0, 12.0)) -> np.ndarray:
    """A slice view's SliceToRAS lying in the plane ``ijk[ijkAxis] = index`` (normal = that axis' direction)."""
    others = [a for a in range(3) if a != ijkAxis]
    x = ijkToWorld[:3, others[0]] / np.linalg.norm(ijkToWorld[:3, others[0]])
    normal = np.cross(ijkToWorld[:3, others[0]], ijkToWorld[:3, others[1]])
    normal /= np.linalg.norm(normal)
    y = np.cross(normal, x)
    point = np.zeros(3)
    point[ijkAxis] = index
    point[others[0]], point[others[1]] = inPlane
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = x, y, normal
    matrix[:3, 3] = (ijkToWorld @ np.append(point, 1.0))[:3]
    return matrix


def rotateAbout(matrix: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    angle = math.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    out = matrix.copy()
    out[:3, :3] = rotation @ matrix[:3, :3]
    return out


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_index_of_an_aligned_view_on_an_oblique_volume(axis):
    ijkToWorld = obliqueIjkToRas()
    for index in (0, 7, SHAPE[axis] - 1):
        view = sliceToRasFor(ijkToWorld, 2 - axis, index)
        assert sliceIndexForView(view, ijkToWorld, SHAPE, axis) == index
        # a point half a slice away rounds to the nearest slice
        assert sliceIndexForView(sliceToRasFor(ijkToWorld, 2 - axis, index + 0.4), ijkToWorld, SHAPE, axis) == index
    view = sliceToRasFor(ijkToWorld, 2 - axis, 5)
    flipped = view.copy()
    flipped[:3, 2] *= -1  # looking from the other side is the same plane
    assert sliceIndexForView(flipped, ijkToWorld, SHAPE, axis) == 5


def test_tilted_wrong_axis_or_outside_views_give_none():
    ijkToWorld = obliqueIjkToRas()
    axial = sliceToRasFor(ijkToWorld, 2, 5)
    assert sliceIndexForView(rotateAbout(axial, axial[:3, 0], 3.0), ijkToWorld, SHAPE, 0) is None
    assert sliceIndexForView(rotateAbout(axial, axial[:3, 0], 0.3), ijkToWorld, SHAPE, 0) == 5
    assert sliceIndexForView(axial, ijkToWorld, SHAPE, 1) is None  # the model slices along j
    assert sliceIndexForView(sliceToRasFor(ijkToWorld, 2, -1), ijkToWorld, SHAPE, 0) is None
    assert sliceIndexForView(sliceToRasFor(ijkToWorld, 2, SHAPE[0]), ijkToWorld, SHAPE, 0) is None
    with pytest.raises(ValueError):
        sliceIndexForView(axial, ijkToWorld, SHAPE, 3)


def test_roi_bounds_axis_aligned_rotated_and_outside():
    ijkToWorld = np.diag([2.0, 1.0, 3.0, 1.0])
    ijkToWorld[:3, 3] = (10.0, 20.0, 30.0)
    roi = np.eye(4)
    roi[:3, 3] = (10.0 + 2 * 10, 20.0 + 15, 30.0 + 3 * 4)  # centred on voxel i=10, j=15, k=4
    assert roiIjkBounds(roi, (8.0, 6.0, 6.0), ijkToWorld, SHAPE) == ((3, 6), (12, 19), (8, 13))
    # the whole volume, and beyond: clipped
    assert roiIjkBounds(roi, (1000.0, 1000.0, 1000.0), ijkToWorld, SHAPE) == ((0, 24), (0, 48), (0, 56))
    far = roi.copy()
    far[:3, 3] = (-500.0, 0.0, 0.0)
    assert roiIjkBounds(far, (10.0, 10.0, 10.0), ijkToWorld, SHAPE) is None
    # a ROI rotated by 45 degrees about k covers the bounding box of its corners
    turned = rotateAbout(roi, np.array([0.0, 0.0, 1.0]), 45.0)
    (k0, k1), (j0, j1), (i0, i1) = roiIjkBounds(turned, (4.0, 4.0, 3.0), ijkToWorld, SHAPE)
    half = 2.0 * math.sqrt(2.0)  # mm, along i (2 mm voxels) and j (1 mm voxels)
    assert (i0, i1) == (math.ceil(10 - half / 2), math.floor(10 + half / 2) + 1) == (9, 12)
    assert (j0, j1) == (math.ceil(15 - half), math.floor(15 + half) + 1) == (13, 18) and (k0, k1) == (4, 5)
    # thinner than a voxel: the nearest voxel
    assert roiIjkBounds(roi, (0.5, 0.5, 0.5), ijkToWorld, SHAPE) == ((4, 5), (15, 16), (10, 11))


def test_values_to_segment_indices_and_package_labels():
    values = np.array([[0, 1, 4], [300, 4, 9]], dtype=np.uint16)
    assert valuesToIndices(values, [1, 4, 300]).tolist() == [[0, 1, 2], [3, 2, 0]]
    assert valuesToIndices(values, [1, 4, 300]).dtype == np.uint8
    labels = packageLabels([{"value": 0, "name": "background"}, {"value": 4, "name": "tumour", "color": [1, 0, 0]}])
    assert labels == [(4, "tumour", (1.0, 0.0, 0.0))]


def test_model_cache_downloads_once_and_loads_once(tmp_path, studentPackage):
    from tskd.export import zip_package

    archive = zip_package(studentPackage[0], tmp_path / "student.tskd.zip")
    calls = []

    class Client:  # the one method of TSKDClient the cache calls
        def download_model(self, modelId, dest, **kwargs):
            calls.append(modelId)
            with open(archive, "rb") as source, open(dest, "wb") as target:
                target.write(source.read())
            return dest

    cache = ModelCache(str(tmp_path / "models"))
    with pytest.raises(SegmentationProblem, match="not downloaded"):
        cache.model("abc123")
    assert cache.download(Client(), "abc123") == cache.packagePath("abc123")
    assert cache.download(Client(), "abc123") and calls == ["abc123"]
    model = cache.model("abc123")
    assert cache.model("abc123") is model and model.num_classes == 3
    assert cache.packagePath("../x y").endswith("___x_y.tskd.zip")


def test_live_mode_writes_the_viewed_slice_like_segment_volume(slicerScene, studentPackage):
    slicer = importSlicer()
    from tskd.runtime import OnnxSegmenter, segment_volume

    model = OnnxSegmenter(studentPackage[0], threads=1)
    volume, _, _ = addPhantomToScene(slicerScene, "live", seed=8, withSegmentation=False)
    whole = segment_volume(model, sceneData.volumeArrayCopy(volume))
    segmentation = slicerScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "live result")
    live = LiveSegmentation(model, volume, segmentation, packageLabels(model.package.labels))
    ijkToWorld = sceneData.ijkToWorldArray(volume)
    assert live.updateForView(rotateAbout(sliceToRasFor(ijkToWorld, 2, 9), np.array([1.0, 0, 0]), 20.0)) is None
    assert live.updateForView(sliceToRasFor(ijkToWorld, 2, 9)) == 9
    assert live.updateForView(sliceToRasFor(ijkToWorld, 2, 12)) == 12
    ids = [segmentId for segmentId, _, _ in sceneData.segmentList(segmentation)]
    for segmentId, value in zip(ids, (1, 2)):
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume) > 0
        assert np.array_equal(mask[9], whole[9] == value) and np.array_equal(mask[12], whole[12] == value)
        assert not mask[:9].any() and not mask[13:].any() and not mask[10:12].any()


def test_live_mode_gives_a_stacked_student_its_neighbouring_slices(slicerScene, stackedStudentPackage):
    """A package whose student sees each slice between its neighbours (``input.context_slices``): a
    live slice, the first and last ones included, equals that slice of the whole-volume result."""
    importSlicer()
    from tskd.runtime import OnnxSegmenter, segment_volume

    model = OnnxSegmenter(stackedStudentPackage[0], threads=1)
    assert model.context_slices == 2
    volume, _, _ = addPhantomToScene(slicerScene, "live stacked", seed=8, withSegmentation=False)
    array = sceneData.volumeArrayCopy(volume)
    whole = segment_volume(model, array, postprocessing="none")
    segmentation = slicerScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "live stacked result")
    live = LiveSegmentation(model, volume, segmentation, packageLabels(model.package.labels))
    last = array.shape[0] - 1
    for index in (0, 9, last):
        assert np.array_equal(live.segmentSlice(index), whole[index])
    written = sceneData.sharedLabelmapArray(live.segmentationNode, live.segmentIds, live.volumeNode)
    for index in (0, 9, last):
        assert np.array_equal(written[index] > 0, whole[index] > 0)


def test_live_mode_keeps_what_the_segments_held_and_other_segments(slicerScene, studentPackage):
    slicer = importSlicer()
    from tskd.runtime import OnnxSegmenter

    model = OnnxSegmenter(studentPackage[0], threads=1)
    volume, segmentation, label = addPhantomToScene(slicerScene, "edited", seed=9)  # organ_a, organ_b drawn
    other = segmentation.GetSegmentation().AddEmptySegment("", "marker", [1.0, 1.0, 0.0])
    marker = np.zeros(label.shape, np.uint8)
    marker[20, 0:3, 0:3] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(marker, segmentation, other, volume)
    live = LiveSegmentation(model, volume, segmentation, packageLabels(model.package.labels))
    values = live.segmentSlice(3)
    ids = live.segmentIds
    first = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, ids[0], volume) > 0
    # issue 32, item 2: what was drawn on the slice stays; only its empty voxels take the model's result
    assert np.array_equal(first[3], (label[3] == 1) | ((label[3] == 0) & (values == 1)))
    assert np.array_equal(first[4:], label[4:] == 1)  # the drawn label of the other slices is kept
    assert np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, other, volume) > 0, marker > 0)


def test_roi_node_bounds(slicerScene):
    volume, _, _ = addPhantomToScene(slicerScene, "roi", seed=10, withSegmentation=False)
    roi = slicerScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    centre = (sceneData.ijkToRasArray(volume) @ np.array([20.0, 24.0, 12.0, 1.0]))[:3]
    roi.SetCenter(*centre)
    roi.SetSize(5.0, 5.0, 5.0)
    (k0, k1), (j0, j1), (i0, i1) = roiNodeBounds(roi, volume)
    assert k0 <= 12 < k1 and j0 <= 24 < j1 and i0 <= 20 < i1
    assert (k1 - k0) <= 4 and (j1 - j0) <= 9 and (i1 - i0) <= 11  # 5 mm at 2.5, 1.1 and 0.8 mm (rotated)


def _underTransform(slicerScene, volume):
    """Put ``volume`` under a rotation + shift transform node; returns the transform node."""
    transform = slicerScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    matrix = np.eye(4)
    matrix[:3, :3] = rotateAbout(np.eye(4), np.array([0.0, 0.3, 1.0]), 25.0)[:3, :3]
    matrix[:3, 3] = (12.0, -7.0, 30.0)
    transform.SetMatrixTransformToParent(sceneData.matrixFromArray(matrix))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    return transform


def test_live_mode_on_a_volume_under_a_transform(slicerScene, studentPackage):
    """Issue 14, item 4: the new output segmentation gets the volume's parent transform, so live mode writes in place."""
    slicer = importSlicer()
    from tskd.runtime import OnnxSegmenter, segment_volume

    model = OnnxSegmenter(studentPackage[0], threads=1)
    volume, _, _ = addPhantomToScene(slicerScene, "moved", seed=11, withSegmentation=False)
    transform = _underTransform(slicerScene, volume)
    whole = segment_volume(model, sceneData.volumeArrayCopy(volume))
    segmentation = sceneData.newSegmentationFor(volume, "moved TS-KD")
    assert segmentation.GetTransformNodeID() == transform.GetID()
    live = LiveSegmentation(model, volume, segmentation, packageLabels(model.package.labels))
    ijkToWorld = sceneData.ijkToWorldArray(volume)
    assert not np.allclose(ijkToWorld, sceneData.ijkToRasArray(volume))  # the transform matters
    assert live.updateForView(sliceToRasFor(ijkToWorld, 2, 7)) == 7
    for segmentId, value in zip(live.segmentIds, (1, 2)):
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume) > 0
        assert np.array_equal(mask[7], whole[7] == value)
        assert not mask[:7].any() and not mask[8:].any()


def test_a_segmentation_without_the_volumes_transform_is_refused_by_live_mode(slicerScene, studentPackage):
    """What item 4 fixed: a segmentation made without the transform cannot take live slices."""
    from tskd.runtime import OnnxSegmenter

    model = OnnxSegmenter(studentPackage[0], threads=1)
    volume, _, _ = addPhantomToScene(slicerScene, "moved2", seed=12, withSegmentation=False)
    _underTransform(slicerScene, volume)
    segmentation = slicerScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "no transform")
    live = LiveSegmentation(model, volume, segmentation, packageLabels(model.package.labels))
    with pytest.raises(SegmentationProblem, match="same transform as the volume"):
        live.segmentSlice(3)


def test_temporary_labelmaps_are_hidden_before_they_enter_the_scene(slicerScene, tmp_path):
    """Issue 14, item 11: selectors never see the temporary labelmap nodes."""
    import vtk

    volume, _, label = addPhantomToScene(slicerScene, "hidden", seed=13, withSegmentation=False)
    added = []

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(caller, event, node):
        added.append((node.GetClassName(), node.GetName(), bool(node.GetHideFromEditors())))

    tag = slicerScene.AddObserver(slicerScene.NodeAddedEvent, onNodeAdded)
    try:
        path = sceneData.writeLabelFile(label.astype(np.uint8), volume, str(tmp_path / "label.nrrd"))
        back = sceneData.readLabelFile(path, volume)
    finally:
        slicerScene.RemoveObserver(tag)
    assert np.array_equal(back, label)
    labelmaps = [entry for entry in added if entry[0] == "vtkMRMLLabelMapVolumeNode"]
    assert len(labelmaps) == 2 and all(hidden for _, _, hidden in labelmaps), added
    assert not slicerScene.GetNodesByName(sceneData.TEMPORARY_NODE_NAME).GetNumberOfItems()


def test_the_volume_selector_leaves_out_labelmaps(slicerScene):
    slicer = importSlicer()
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    assert labelmap.IsA("vtkMRMLScalarVolumeNode")  # nodeTypes alone would offer it
    assert any(labelmap.IsA(name) for name in sceneData.VOLUME_SELECTOR["hideChildNodeTypes"])
    assert sceneData.VOLUME_SELECTOR["nodeTypes"] == ["vtkMRMLScalarVolumeNode"]
