"""Slicer segmentations: reading segment names/layers, writing files Slicer loads, cropped labels."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from tests.data.datamaker import label_for

from tskd.data.align import align_label_to_image, label_mismatch
from tskd.data.image import Geometry, Image, read_image, write_image
from tskd.data.readers import read_image_info
from tskd.data.seg_nrrd import write_seg_nrrd
from tskd.errors import DataError

# Slicer's world is RAS; an identity RAS grid is diag(-1, -1, 1) in ITK's LPS
LPS_FROM_RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def _slicer():
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    pytest.importorskip("vtk")
    return slicer


def slicer_write(path, segments, shape=(6, 8, 10), spacing=(0.5, 0.7, 2.0), origin_ras=(1.0, 2.0, 3.0)):
    """Write a .seg.nrrd with Slicer's own storage node; ``segments``: (name, colour, mask (k, j, i))."""
    slicer = _slicer()
    from vtk.util import numpy_support

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    for name, color, mask in segments:
        data = slicer.vtkOrientedImageData()
        data.SetDimensions(shape[2], shape[1], shape[0])
        data.SetSpacing(*spacing)
        data.SetOrigin(*origin_ras)
        data.AllocateScalars(3, 1)  # VTK_UNSIGNED_CHAR
        data.GetPointData().GetScalars().DeepCopy(numpy_support.numpy_to_vtk(mask.astype(np.uint8).ravel()))
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.SetColor(*color)
        segment.AddRepresentation(slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName(), data)
        node.GetSegmentation().AddSegment(segment)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1
    reference = Geometry((shape[2], shape[1], shape[0]), spacing, (-origin_ras[0], -origin_ras[1], origin_ras[2]), LPS_FROM_RAS)
    return path, reference


def slicer_read(path):
    """Segments as Slicer loads them: [(name, label value, colour)], and the number of layers."""
    slicer = _slicer()
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    segmentation = node.GetSegmentation()
    segments = []
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        segments.append((segment.GetName(), segment.GetLabelValue(), tuple(round(c, 3) for c in segment.GetColor())))
    return segments, segmentation.GetNumberOfLayers()


def test_slicer_reads_our_seg_nrrd_with_names_values_and_colours(tmp_path):
    _slicer()
    geometry = Geometry((12, 10, 6), (0.8, 0.8, 2.0), (-5.0, 10.0, 3.0), LPS_FROM_RAS)
    label = Image(label_for(values=(1, 2, 4)), geometry, metadata={"segments": [
        {"name": "liver", "label_value": 1, "color": [1.0, 0.0, 0.0]},
        {"name": "spleen", "label_value": 2, "color": [0.0, 0.5, 1.0]},
    ]})
    path = write_image(label, tmp_path / "case.seg.nrrd")
    segments, layers = slicer_read(path)
    assert layers == 1
    assert segments[0] == ("liver", 1, (1.0, 0.0, 0.0))
    assert segments[1] == ("spleen", 2, (0.0, 0.5, 1.0))
    assert segments[2][:2] == ("label_4", 4)  # value without a declared segment: default name
    # and we read back exactly what we wrote
    back = read_image(path, kind="label")
    assert np.array_equal(back.array, label.array) and geometry.mismatch(back.geometry) is None
    assert [(s["name"], s["label_value"]) for s in back.metadata["segments"]] == [("liver", 1), ("spleen", 2), ("label_4", 4)]
    assert back.metadata["segments"][1]["color"] == [0.0, 0.5, 1.0]


def test_cropped_slicer_file_is_put_back_on_its_image_grid(tmp_path):
    shape = (6, 8, 10)
    liver = np.zeros(shape, bool)
    liver[1:3, 2:4, 2:5] = True
    spleen = np.zeros(shape, bool)
    spleen[3:5, 4:7, 6:9] = True
    path, reference = slicer_write(tmp_path / "s.seg.nrrd", [("liver", (1, 0, 0), liver), ("spleen", (0, 1, 0), spleen)])
    info = read_image_info(path)
    assert info.is_segmentation and info.geometry.size != reference.size  # Slicer cropped it
    assert label_mismatch(info.geometry, reference) is not None
    assert label_mismatch(info.geometry, reference, allow_subregion=True) is None
    label = read_image(path, kind="label")
    assert [s["name"] for s in label.metadata["segments"]] == ["liver", "spleen"]
    aligned = align_label_to_image(label, reference, allow_subregion=True)
    values = {s["name"]: s["label_value"] for s in label.metadata["segments"]}
    expected = np.zeros(shape, np.uint8)
    expected[liver] = values["liver"]
    expected[spleen] = values["spleen"]
    assert aligned.geometry == reference and np.array_equal(aligned.array, expected)


def test_overlapping_segments_are_refused(tmp_path):
    shape = (6, 8, 10)
    a = np.zeros(shape, bool)
    a[1:3, 2:4, 2:5] = True
    b = np.zeros(shape, bool)
    b[1:3, 2:4, 4:7] = True
    path, _ = slicer_write(tmp_path / "o.seg.nrrd", [("tumour", (1, 0, 0), a), ("edema", (0, 1, 0), b)])
    assert read_image_info(path).components == 2  # two layers
    with pytest.raises(DataError, match=r"segments 'tumour', 'edema' overlap \(4 voxels"):
        read_image(path, kind="label")


def test_layers_without_overlap_are_merged(tmp_path):
    layers = np.zeros((3, 4, 5, 2), np.uint8)
    layers[0, 0, :2, 0] = 1
    layers[2, 3, 3:, 1] = 1
    image = sitk.GetImageFromArray(layers, isVector=True)
    for index, name in enumerate(["a", "b"]):
        for key, value in {"ID": f"S{index}", "Name": name, "LabelValue": "1", "Layer": str(index), "Color": "1 0 0"}.items():
            image.SetMetaData(f"Segment{index}_{key}", value)
    sitk.WriteImage(image, str(tmp_path / "two.seg.nrrd"))
    label = read_image(tmp_path / "two.seg.nrrd", kind="label")
    assert label.array.shape == (3, 4, 5)
    assert label.array[0, 0, 0] == 1 and label.array[2, 3, 4] == 2 and label.array.sum() == 2 + 2 * 2
    assert [(s["name"], s["label_value"]) for s in label.metadata["segments"]] == [("a", 1), ("b", 2)]


def test_2d_label_as_seg_nrrd_round_trip(tmp_path):
    geometry = Geometry((12, 10), (0.1, 0.1), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    label = Image(label_for((10, 12), values=(1,)), geometry)
    path = write_seg_nrrd(label, tmp_path / "m.seg.nrrd")
    back = read_image(path, kind="label")
    assert back.array.shape == (1, 10, 12)  # Slicer has no 2D segmentations
    aligned = align_label_to_image(back, geometry, allow_subregion=True)
    assert aligned.array.shape == (10, 12) and np.array_equal(aligned.array, label.array)


def test_align_refuses_other_grids_and_voxels_outside(tmp_path):
    image = Geometry((10, 8, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    moved = Geometry((4, 4, 4), (1.0, 1.0, 1.0), (8.0, 0.0, 0.0), image.direction)
    array = np.zeros((4, 4, 4), np.uint8)
    array[0, 0, 3] = 1  # i = 8 + 3 = 11: outside the 10-voxel image
    with pytest.raises(DataError, match="1 labelled voxels lie outside"):
        align_label_to_image(Image(array, moved, tmp_path / "x.seg.nrrd"), image, allow_subregion=True)
    array[0, 0, 3] = 0
    array[0, 0, 1] = 1
    aligned = align_label_to_image(Image(array, moved), image, allow_subregion=True)
    assert aligned.array[0, 0, 9] == 1 and aligned.array.sum() == 1
    half = Geometry((4, 4, 4), (1.0, 1.0, 1.0), (0.5, 0.0, 0.0), image.direction)
    assert "origin" in label_mismatch(half, image, allow_subregion=True)
    finer = Geometry((10, 8, 6), (0.5, 1.0, 1.0), (0.0, 0.0, 0.0), image.direction)
    with pytest.raises(DataError, match=r"does not overlay its image: spacing \(0.5, 1, 1\) differs from \(1, 1, 1\)"):
        align_label_to_image(Image(np.zeros((6, 8, 10), np.uint8), finer), image)
