"""Issue 14, item 7: the training case's files (and the volume sent for a backend prediction) are written in a
worker thread from copies taken on the calling thread; the files are complete and on the volume's grid.

slicer-core's real scene and storage node read the files back; the backend's reader (SimpleITK) too.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from conftest import importSlicer
from SlicerTSKDLib import sceneData
from SlicerTSKDLib.backgroundTasks import TaskCancelled, TaskRunner
from SlicerTSKDLib.train.projectLogic import exportTrainingCase, prepareTrainingCase, writeAndUploadTrainingCase, writeTrainingCase
from SlicerTSKDLib.selfTest import addPhantomToScene
from SlicerTSKDLib.volumeFiles import VolumeSnapshot, WriteCancelled, writeNrrd

LABELS = [{"value": 0, "name": "background"}, {"value": 1, "name": "ORGAN_A"}, {"value": 7, "name": "organ_b"}]


def readWithSlicer(scene, path: str, label: bool = False):
    """``(array, ijkToRas)`` as Slicer's own reader (vtkMRMLVolumeArchetypeStorageNode) loads the file."""
    slicer = importSlicer()
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if label else "vtkMRMLScalarVolumeNode")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    try:
        storage.SetFileName(path)
        assert storage.ReadData(node)
        return np.array(slicer.util.arrayFromVolume(node), copy=True), sceneData.ijkToRasArray(node)
    finally:
        scene.RemoveNode(storage)
        scene.RemoveNode(node)


class Recorder:
    """An uploading client that records which thread uploads and what the files hold then."""

    def __init__(self, scene) -> None:
        self.scene = scene
        self.calls = []

    def upload_case(self, projectId, name, imagePath, labelPath, replace=False, **kwargs):
        self.calls.append((threading.current_thread(), readWithSlicer(self.scene, imagePath),
                           readWithSlicer(self.scene, labelPath, label=True)))
        return {"name": name}


def test_add_case_writes_its_files_in_the_worker_and_submit_returns_before_they_exist(slicerScene, tmp_path):
    volume, segmentation, label = addPhantomToScene(slicerScene, "oblique", seed=3)
    case = prepareTrainingCase(volume, segmentation, LABELS)  # calling ("GUI") thread: copies only
    original = np.array(importSlicer().util.arrayFromVolume(volume), copy=True)
    release, writing = threading.Event(), []

    def holdWrite(fraction):  # the first progress report comes from the writing thread, after the header
        writing.append(threading.current_thread())
        assert release.wait(30)

    runner = TaskRunner()
    folder = str(tmp_path / "case")
    task = runner.submit("Writing", writeTrainingCase, case, "case 1", folder, holdWrite)
    # submit returned while the write is held: neither file is complete, only the partial image
    for _ in range(500):
        if writing:
            break
        threading.Event().wait(0.01)
    assert writing and writing[0] is not threading.current_thread()
    assert not os.path.exists(os.path.join(folder, "case_1.nrrd")) and not os.path.exists(os.path.join(folder, "case_1-label.nrrd"))
    # the scene may change meanwhile: the worker writes the copy taken before
    importSlicer().util.arrayFromVolume(volume)[:] = 0
    release.set()
    assert runner.waitAll(30) and task.error is None
    imagePath, labelPath = task.result
    assert sorted(os.listdir(folder)) == ["case_1-label.nrrd", "case_1.nrrd"]  # no .part left
    image, imageMatrix = readWithSlicer(slicerScene, imagePath)
    stored, labelMatrix = readWithSlicer(slicerScene, labelPath, label=True)
    assert np.array_equal(image, original) and image.dtype == original.dtype
    expected = np.zeros(label.shape, np.uint8)
    expected[label == 1], expected[label == 2] = 1, 7
    assert np.array_equal(stored, expected)
    assert np.allclose(imageMatrix, sceneData.ijkToRasArray(volume), atol=1e-9)
    assert np.allclose(labelMatrix, imageMatrix, atol=1e-9)
    assert all(thread is writing[0] for thread in writing)


def test_files_equal_what_slicers_own_writer_gives_and_the_backend_reads_them(slicerScene, tmp_path):
    from tskd.data.image import read_image

    volume, segmentation, _ = addPhantomToScene(slicerScene, "oblique", seed=4)
    imagePath, labelPath = exportTrainingCase(volume, segmentation, LABELS, "c", str(tmp_path / "ours"))
    slicers = sceneData._writeNode(volume, str(tmp_path / "slicer.nrrd"))  # vtkMRMLVolumeArchetypeStorageNode
    ours, theirs = read_image(imagePath), read_image(slicers)
    assert np.array_equal(ours.array, theirs.array)
    assert np.allclose(ours.geometry.spacing, theirs.geometry.spacing)
    assert np.allclose(ours.geometry.origin, theirs.geometry.origin)
    assert np.allclose(ours.geometry.direction, theirs.geometry.direction, atol=1e-9)
    assert np.array_equal(sceneData.readLabelFile(labelPath, volume), read_image(labelPath, kind="label").array)


def test_upload_task_writes_then_uploads_in_the_worker_with_progress(slicerScene, tmp_path):
    volume, segmentation, _ = addPhantomToScene(slicerScene, "v", seed=5)
    case = prepareTrainingCase(volume, segmentation, LABELS)
    client, runner, seen = Recorder(slicerScene), TaskRunner(), []
    task = runner.submit("Uploading case", writeAndUploadTrainingCase, client, "p", "c", case,
                         onSuccess=seen.append, passTask=True)
    assert runner.waitAll(30) and seen == [{"name": "c"}] and task.progress == 1.0
    thread, (image, _), (stored, _) = client.calls[0]
    assert thread is not threading.current_thread()
    assert np.array_equal(image, case.image.array) and np.array_equal(stored, case.label.array)


def test_a_cancelled_write_leaves_no_file_and_the_task_reports_cancel(tmp_path):
    snapshot = VolumeSnapshot(np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    with pytest.raises(WriteCancelled):
        writeNrrd(snapshot, str(tmp_path / "x.nrrd"), cancel=lambda: True)
    assert os.listdir(str(tmp_path)) == []

    class Cancelled:
        progress = None

        def isCancelled(self):
            return True

    case = type("Case", (), {"image": snapshot, "label": snapshot.withArray(np.zeros((2, 3, 4), np.uint8))})()
    with pytest.raises(TaskCancelled):
        writeAndUploadTrainingCase(Cancelled(), None, "p", "c", case)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "int32", "float32", "float64"])
@pytest.mark.parametrize("compress", [True, False])
def test_every_voxel_type_round_trips_through_slicers_reader(slicerScene, tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.random((3, 5, 7)) * 100).astype(dtype)
    matrix = np.array([[0.0, -1.2, 0.3, 10.0], [0.9, 0.0, 0.1, -4.0], [0.0, 0.2, 2.5, 7.5], [0, 0, 0, 1]])
    path = writeNrrd(VolumeSnapshot(array, matrix), str(tmp_path / "v.nrrd"), compress=compress)
    back, backMatrix = readWithSlicer(slicerScene, path)
    assert np.array_equal(back, array) and back.dtype == array.dtype
    assert np.allclose(backMatrix, matrix, atol=1e-9)
