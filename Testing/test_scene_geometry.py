"""Training cases out of the scene and predictions back into it, voxel for voxel, on slicer-core's real
MRML scene and segmentations logic, with an oblique, anisotropic volume geometry."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import addImageToScene, importSlicer, rasFromLps
from SlicerTSKDLib import sceneData
from SlicerTSKDLib.train.projectLogic import ProjectProblem, exportTrainingCase, labelsFromSegments, uploadTrainingCase
from SlicerTSKDLib.segment.segmentationLogic import applyLabelsToSegmentation, packageLabels
from SlicerTSKDLib.selfTest import PHANTOM_SEGMENTS, addPhantomToScene, checkSceneRoundTrip, obliqueIjkToRas

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def expectedGeometry(ijkToRas: np.ndarray):
    """``(spacing, origin, direction)`` in ITK's LPS for a volume with this IJK-to-RAS matrix."""
    lps = LPS_FROM_RAS @ ijkToRas[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    return spacing, LPS_FROM_RAS @ ijkToRas[:3, 3], (lps / spacing).ravel()


def test_training_case_files_overlay_the_volume_voxel_for_voxel(slicerScene, tmp_path):
    from tskd.data.align import label_mismatch
    from tskd.data.image import read_image

    volume, segmentation, label = addPhantomToScene(slicerScene, "oblique", seed=1)
    matrix = sceneData.ijkToRasArray(volume)
    assert not np.allclose(matrix[:3, :3], np.diag(np.diag(matrix[:3, :3])))  # rotated, anisotropic, shifted
    projectLabels = [{"value": 0, "name": "background"}, {"value": 1, "name": "ORGAN_A"}, {"value": 7, "name": "organ_b"}]
    imagePath, labelPath = exportTrainingCase(volume, segmentation, projectLabels, "case 1/a", str(tmp_path))
    assert imagePath.endswith("case_1_a.nrrd") and labelPath.endswith("case_1_a-label.nrrd")

    image = read_image(imagePath)
    stored = read_image(labelPath, kind="label")
    spacing, origin, direction = expectedGeometry(matrix)
    assert np.allclose(image.geometry.spacing, spacing) and np.allclose(image.geometry.origin, origin)
    assert np.allclose(image.geometry.direction, direction, atol=1e-6)
    assert label_mismatch(stored.geometry, image.geometry) is None
    assert np.array_equal(image.array, importSlicer().util.arrayFromVolume(volume))
    expected = np.zeros(label.shape, np.uint8)
    expected[label == 1], expected[label == 2] = 1, 7
    assert np.array_equal(stored.array, expected)


def test_case_uploaded_to_a_real_backend_is_stored_on_the_volumes_grid(slicerScene, localBackend, tmp_path):
    from tskd.data.image import read_image

    client = localBackend.client()
    volume, segmentation, label = addPhantomToScene(slicerScene, "oblique", seed=11)
    project = client.create_project("geometry", labelsFromSegments(
        [(name, colour) for _, name, colour in sceneData.segmentList(segmentation)]))
    imagePath, labelPath = exportTrainingCase(volume, segmentation, project["labels"], "case", str(tmp_path / "out"))
    uploadTrainingCase(client, project["id"], "case", imagePath, labelPath)
    assert not (tmp_path / "out").exists()  # the temporary files are gone
    case = client.get_case(project["id"], "case")
    spacing, origin, direction = expectedGeometry(sceneData.ijkToRasArray(volume))
    assert np.allclose(case["spacing"], spacing) and np.allclose(case["origin"], origin)
    assert np.allclose(case["direction"], direction, atol=1e-6) and case["label_values"] == [0, 1, 2]
    storedImage = read_image(client.download_case_image(project["id"], "case", str(tmp_path / "image.nii.gz")))
    storedLabel = read_image(client.download_case_label(project["id"], "case", str(tmp_path / "label.nii.gz")), kind="label")
    assert storedLabel.geometry.mismatch(storedImage.geometry) is None
    assert np.array_equal(storedLabel.array, label)
    assert np.allclose(storedImage.array, importSlicer().util.arrayFromVolume(volume))


def test_segments_must_be_project_labels(slicerScene, tmp_path):
    volume, segmentation, _ = addPhantomToScene(slicerScene, "v", seed=2)
    with pytest.raises(ProjectProblem, match=r"'organ_b' are not labels of this project \(its labels: organ_a\)"):
        exportTrainingCase(volume, segmentation, [{"value": 1, "name": "organ_a"}], "c", str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_segmentation_on_another_grid_is_resampled_onto_the_volume(slicerScene, tmp_path):
    """A segmentation drawn on a coarser grid is exported on the volume's grid (reference geometry)."""
    slicer = importSlicer()
    volume, _, _ = addPhantomToScene(slicerScene, "fine", seed=4, ijkToRas=obliqueIjkToRas(spacing=(1.0, 1.0, 1.0)))
    coarse = slicerScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "coarse")
    slicer.util.updateVolumeFromArray(coarse, np.zeros((12, 24, 28), np.float32))
    coarse.SetIJKToRASMatrix(sceneData.matrixFromArray(obliqueIjkToRas(spacing=(2.0, 2.0, 2.0))))
    segmentation = slicerScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn on coarse")
    ids = sceneData.ensureSegments(segmentation, PHANTOM_SEGMENTS[:1])
    block = np.zeros((12, 24, 28), np.uint8)
    block[3:6, 5:10, 7:12] = 1
    sceneData.importIndexArray(block, coarse, segmentation, ids)
    index = sceneData.exportSegmentsAsIndexArray(segmentation, ids, volume)
    assert index.shape == (24, 48, 56)
    # each coarse voxel covers 2 x 2 x 2 fine voxels centred half a fine voxel further
    assert index.sum() > 0 and abs(int(index.sum()) - 8 * int(block.sum())) <= 0.3 * 8 * int(block.sum())
    k, j, i = np.nonzero(index)
    assert 5 <= k.min() and k.max() <= 12 and 9 <= j.min() and j.max() <= 20 and 13 <= i.min() and i.max() <= 24


def test_prediction_comes_back_as_named_coloured_segments_on_the_volume(slicerScene, studentPackage):
    slicer = importSlicer()
    from tskd.runtime import OnnxSegmenter, segment_volume

    folder, colours = studentPackage
    volume, _, _ = addPhantomToScene(slicerScene, "to segment", seed=5, withSegmentation=False)
    model = OnnxSegmenter(folder, threads=1)
    values = segment_volume(model, sceneData.volumeArrayCopy(volume))
    assert set(np.unique(values)) > {0}
    result = slicerScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "result")
    ids = applyLabelsToSegmentation(values, volume, result, packageLabels(model.package.labels))
    segments = sceneData.segmentList(result)
    assert [name for _, name, _ in segments] == ["organ_a", "organ_b"]
    for (segmentId, name, colour), value in zip(segments, (1, 2)):
        assert np.allclose(colour, colours[name], atol=1e-3)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(result, segmentId, volume)
        assert np.array_equal(mask > 0, values == value), name
    # again into the same node: segments are reused and their content replaced
    applyLabelsToSegmentation(np.zeros_like(values), volume, result, packageLabels(model.package.labels))
    assert result.GetSegmentation().GetNumberOfSegments() == 2
    assert not slicer.util.arrayFromSegmentBinaryLabelmap(result, ids[0], volume).any()


def test_backend_label_file_is_read_back_onto_the_volume(slicerScene, tmp_path):
    """The server's prediction (written by the backend's data layer with the uploaded geometry) is read back."""
    from tskd.data.image import Image, read_image, write_image

    volume, _, label = addPhantomToScene(slicerScene, "sent", seed=6, withSegmentation=False)
    sent = sceneData.writeVolumeFile(volume, str(tmp_path / "image.nrrd"))
    image = read_image(sent)
    assert np.allclose(rasFromLps(image.geometry), sceneData.ijkToRasArray(volume), atol=1e-6)
    predicted = write_image(Image(label, image.geometry), tmp_path / "prediction.nrrd")
    assert np.array_equal(sceneData.readLabelFile(str(predicted), volume), label)
    moved = Image(label, image.geometry.__class__(image.geometry.size, image.geometry.spacing,
                                                  tuple(o + 5.0 for o in image.geometry.origin), image.geometry.direction))
    with pytest.raises(sceneData.SceneError, match="does not lie on the grid"):
        sceneData.readLabelFile(str(write_image(moved, tmp_path / "moved.nrrd")), volume)


def test_phantom_from_the_backend_goes_into_the_scene_with_its_geometry(slicerScene):
    from tskd.data.phantom import PhantomConfig, make_phantom

    image, label = make_phantom(PhantomConfig(size=(20, 18, 8), rotation_deg=(10.0, 0.0, 25.0), origin=(5.0, -3.0, 2.0)))
    volume = addImageToScene(slicerScene, image, "phantom")
    segmentation = slicerScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "phantom labels")
    ids = sceneData.ensureSegments(segmentation, [(e["name"], e["color"]) for e in labelsFromSegments(PHANTOM_SEGMENTS)])
    sceneData.importIndexArray(np.where(label.array <= 2, label.array, 0), volume, segmentation, ids)
    assert np.array_equal(sceneData.exportSegmentsAsIndexArray(segmentation, ids, volume), np.where(label.array <= 2, label.array, 0))
    assert np.allclose(sceneData.ijkToRasArray(volume), rasFromLps(image.geometry))


def test_temporary_nodes_are_removed(slicerScene, tmp_path):
    volume, segmentation, _ = addPhantomToScene(slicerScene, "v", seed=7)
    before = slicerScene.GetNumberOfNodes()
    exportTrainingCase(volume, segmentation, [{"value": 1, "name": "organ_a"}, {"value": 2, "name": "organ_b"}], "c", str(tmp_path))
    sceneData.readLabelFile(str(tmp_path / "c-label.nrrd"), volume)
    assert slicerScene.GetNumberOfNodes() == before


def test_self_test_of_the_slicer_module_passes_on_the_real_scene(slicerScene, tmp_path):
    checkSceneRoundTrip(slicerScene, str(tmp_path))
