"""Checks that run inside Slicer (``Slicer --testing``, ``SlicerTSKDTest``) on the real scene.

They are also run by the pytest suite on slicer-core's scene (``Testing/test_self_test.py``).

- :func:`checkSceneRoundTrip`: a phantom volume with an oblique, anisotropic geometry and its
  segmentation go out as training-case files and come back voxel for voxel; a label array goes
  into a segmentation and comes back per segment; live mode writes one slice.
- :func:`runBackendLoop`: with a backend (``SLICERTSKD_TEST_BACKEND_URL`` and
  ``SLICERTSKD_TEST_BACKEND_TOKEN``), the whole loop: project from the segments, cases, training
  with the ``tiny`` preset, the student inside Slicer (or on the backend), Dice on a held-out case.

Numpy phantoms (no SimpleITK), ``slicer`` imported inside the functions.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from . import sceneData
from .train.projectLogic import exportTrainingCase, labelsFromSegments, uploadTrainingCase

__all__ = ["PHANTOM_SEGMENTS", "obliqueIjkToRas", "phantomArrays", "addPhantomToScene", "dice",
           "checkSceneRoundTrip", "runBackendLoop"]

#: Segment names and colours of the phantoms.
PHANTOM_SEGMENTS = (("organ_a", (0.85, 0.40, 0.31)), ("organ_b", (0.50, 0.68, 0.50)))


def obliqueIjkToRas(spacing: Sequence[float] = (0.8, 1.1, 2.5), angles: Sequence[float] = (12.0, -8.0, 30.0),
                    origin: Sequence[float] = (-95.5, 130.25, -40.0)) -> np.ndarray:
    """An IJK-to-RAS matrix with rotation, anisotropic spacing and an origin (4 x 4)."""
    ax, ay, az = (math.radians(a) for a in angles)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ rx @ np.diag([float(s) for s in spacing])
    matrix[:3, 3] = [float(o) for o in origin]
    return matrix


def phantomArrays(shape: Sequence[int] = (24, 48, 56), seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """A small MR-like phantom ``(k, j, i)``: float32 image and uint8 labels (1 organ_a, 2 organ_b)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.linspace(-1.0, 1.0, int(n)) for n in shape], indexing="ij")
    label = np.zeros(tuple(int(n) for n in shape), dtype=np.uint8)
    body = (i / 0.9) ** 2 + (j / 0.75) ** 2 < 1.0
    centreA, centreB = rng.uniform(-0.05, 0.05, 2), rng.uniform(-0.05, 0.05, 2)
    organA = ((i + 0.35 + centreA[0]) / 0.3) ** 2 + ((j - centreA[1]) / 0.4) ** 2 + (k / 0.9) ** 4 < 1.0
    organB = ((i - 0.4 + centreB[0]) / 0.22) ** 2 + ((j - 0.05 - centreB[1]) / 0.3) ** 2 + (k / 0.8) ** 4 < 1.0
    label[organA & body] = 1
    label[organB & body] = 2
    image = np.where(body, 0.45, 0.02) + 0.35 * (label == 1) - 0.25 * (label == 2)
    image = image + rng.normal(0.0, 0.04, label.shape)
    return image.astype(np.float32), label


def addPhantomToScene(scene: Any, name: str, seed: int = 0, shape: Sequence[int] = (24, 48, 56),
                      ijkToRas: Optional[np.ndarray] = None, withSegmentation: bool = True):
    """A phantom volume (and its segmentation) in ``scene``; returns ``(volume, segmentation or None, labels)``."""
    import slicer

    image, label = phantomArrays(shape, seed)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(volume, image)
    volume.SetIJKToRASMatrix(sceneData.matrixFromArray(obliqueIjkToRas() if ijkToRas is None else ijkToRas))
    segmentation = None
    if withSegmentation:
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name + " segmentation")
        ids = sceneData.ensureSegments(segmentation, PHANTOM_SEGMENTS)
        sceneData.importIndexArray(label, volume, segmentation, ids)
    return volume, segmentation, label


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def checkSceneRoundTrip(scene: Any, folder: Optional[str] = None) -> None:
    """Export to files and import from arrays keep every voxel in place (raises AssertionError)."""
    import slicer

    from .segment.segmentationLogic import valuesToIndices

    folder = folder or tempfile.mkdtemp(prefix="SlicerTSKD-selftest-")
    try:
        volume, segmentation, label = addPhantomToScene(scene, "TSKD phantom", seed=3)
        projectLabels = [{"value": 0, "name": "background"}] + [
            dict(entry, value=entry["value"] * 2) for entry in labelsFromSegments(PHANTOM_SEGMENTS)]  # values 2 and 4
        imagePath, labelPath = exportTrainingCase(volume, segmentation, projectLabels, "phantom", folder)
        back = sceneData.readLabelFile(labelPath, volume)
        _check(back.shape == label.shape and np.array_equal(back, label.astype(np.uint16) * 2),
               "the exported label map does not overlay the volume voxel for voxel")
        _check(os.path.getsize(imagePath) > 0, "the volume was not written")

        target = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "TSKD result")
        ids = sceneData.ensureSegments(target, PHANTOM_SEGMENTS)
        sceneData.importIndexArray(valuesToIndices(label * 2, [2, 4]), volume, target, ids)
        for index, segmentId in enumerate(ids):
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(target, segmentId, volume)
            _check(np.array_equal(mask > 0, label == index + 1), "segment {} moved on import".format(segmentId))
        names = [name for _, name, _ in sceneData.segmentList(target)]
        _check(names == [name for name, _ in PHANTOM_SEGMENTS], "segment names changed: {}".format(names))

        shared = sceneData.sharedLabelmapArray(target, ids, volume)
        _check(shared is not None, "the imported segments do not share a labelmap on the volume's grid")
        shared[5] = 0
        shared[5, 10:20, 10:20] = 2
        sceneData.labelmapModified(target, ids)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(target, ids[1], volume)
        _check(bool(mask[5, 10:20, 10:20].all()) and int(mask[5].sum()) == 100, "a slice written in place was lost")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def runBackendLoop(scene: Any, url: str, token: Optional[str], moduleDir: str, cases: int = 6,
                   wait: Callable[[float], None] = time.sleep, timeout: float = 1800.0,
                   modelId: Optional[str] = None) -> float:
    """Project, cases, training (``tiny``), student download and segmentation of a held-out case.

    Args:
        modelId: a student already trained on phantoms by this backend: skip the project, the
            cases and the training, and only segment the held-out phantom with it.

    Returns:
        The mean Dice of the held-out phantom's two structures.
    """
    from .backend.client import TSKDClient
    from .install.runtimeSetup import ensureRuntimeImportable, onnxruntimeAvailable
    from .segment.segmentationLogic import ModelCache, applyLabelsToSegmentation, packageLabels, segmentArray

    client = TSKDClient(url, token=token)
    project = None
    try:
        if modelId is None:
            labels = labelsFromSegments(PHANTOM_SEGMENTS)
            project = client.create_project("slicer-selftest-{}".format(int(time.time())), labels)
            for index in range(cases):
                volume, segmentation, _ = addPhantomToScene(scene, "case_{:03d}".format(index), seed=index)
                paths = exportTrainingCase(volume, segmentation, project["labels"], "case_{:03d}".format(index))
                uploadTrainingCase(client, project["id"], "case_{:03d}".format(index), *paths)
            job = client.start_job(project["id"], preset="tiny")
            deadline = time.monotonic() + timeout
            status = client.job_status(job["id"])
            while status["state"] in ("queued", "running"):
                _check(time.monotonic() < deadline, "training did not finish within {:g} s".format(timeout))
                wait(2.0)
                status = client.job_status(job["id"])
            _check(status["state"] == "done", "training ended {}: {}".format(status["state"], status.get("error")))
            modelId = status["model_id"]
        volume, _, truth = addPhantomToScene(scene, "held_out", seed=cases, withSegmentation=False)
        result = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "held_out TS-KD")
        ensureRuntimeImportable(moduleDir)
        if onnxruntimeAvailable():
            folder = tempfile.mkdtemp(prefix="SlicerTSKD-models-")
            try:
                cache = ModelCache(folder)
                cache.download(client, modelId)
                model = cache.model(modelId)
                values = segmentArray(model, sceneData.volumeArrayCopy(volume))
                modelLabels = packageLabels(model.package.labels)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        else:
            folder = tempfile.mkdtemp(prefix="SlicerTSKD-predict-")
            try:
                image = sceneData.writeVolumeFile(volume, os.path.join(folder, "image.nrrd"))
                values = sceneData.readLabelFile(client.predict(modelId, image, os.path.join(folder, "l.nrrd")), volume)
                modelLabels = packageLabels(client.get_model(modelId)["labels"])
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        ids = applyLabelsToSegmentation(values, volume, result, modelLabels)
        import slicer

        scores = [dice(slicer.util.arrayFromSegmentBinaryLabelmap(result, ids[n], volume), truth == n + 1)
                  for n in range(len(ids))]
        return float(np.mean(scores))
    finally:
        if project is not None:
            try:
                client.delete_project(project["id"])
            except Exception:
                pass
