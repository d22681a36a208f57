"""The "Label next" list of the Segment panel: the backend's suggestions as rows, and what a click does.

The backend ranks the slices of the project's unlabelled cases (``client.suggestions``, the
``tskd-suggestions`` JSON; while it computes, the answer's ``status`` is ``computing`` and the
panel asks again after :data:`POLL_MS`). Each row is ``case, slice, score, why``. A click:

- the case is the current volume (or a volume of that name is in the scene): the slice views jump
  to that slice (:func:`jumpSliceViews`, the slice index converted to RAS with the volume's
  IJK-to-world matrix by :func:`slicePositionRas`);
- else the case is one the backend holds (every suggested case is a project case): its image is
  downloaded (``client.download_case_image``, worker thread) into the per-user cases folder,
  loaded into the scene (GUI thread) and then jumped to.

Only cases uploaded without a label are ranked: "Add volume to rank" uploads the selected volume so
(:meth:`LabelNextLogic.uploadUnlabelled`).

The first time a volume is visited from the list the student's prediction is shown as the
starting point to correct (the panel's own "Segment volume"); later visits only jump, so
corrections already made are never overwritten (:meth:`LabelNextLogic.needsPrediction`).

Geometry: arrays are ``(k, j, i)``; a suggestion's ``axis`` is a numpy axis (0 = ``k``), i.e. IJK
axis ``2 - axis``, as in :func:`SlicerTSKDLib.segment.segmentationLogic.sliceIndexForView`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "COMPUTING",
    "DONE",
    "FAILED",
    "POLL_MS",
    "SuggestionRow",
    "suggestionRows",
    "answerMessage",
    "sliceCenterIjk",
    "slicePositionRas",
    "jumpSliceViews",
    "alignView",
    "answerError",
    "LabelNextLogic",
]

logger = logging.getLogger(__name__)

COMPUTING, DONE, FAILED = "computing", "done", "failed"
#: How long the panel waits before asking again while the backend computes (its Retry-After is 2 s).
POLL_MS = 2000


class SuggestionRow(NamedTuple):
    """One row of the list."""

    rank: int
    case: str
    sliceIndex: int
    axis: int
    score: float
    why: str

    def texts(self) -> List[str]:
        """The table's cells: case, slice, score, why."""
        return [self.case, str(self.sliceIndex), "{:.3f}".format(self.score), self.why]


def suggestionRows(answer: Dict[str, Any]) -> List[SuggestionRow]:
    """The rows of a ``done`` answer of ``client.suggestions`` (empty for the other states).

    Raises:
        ValueError: the answer is not the suggestions JSON (names what is missing).
    """
    if not isinstance(answer, dict) or answer.get("status") != DONE:
        return []
    result = answer.get("result")
    if not isinstance(result, dict) or result.get("format") != "tskd-suggestions":
        raise ValueError("the backend's answer holds no 'tskd-suggestions' result; is the backend up to date?")
    rows = []
    for entry in result.get("suggestions") or []:
        try:
            rows.append(SuggestionRow(int(entry["rank"]), str(entry["case"]), int(entry["slice"]), int(entry["axis"]),
                                      float(entry["score"]), str(entry.get("why") or "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError("a suggestion of the backend lacks {} ({})".format(exc, entry)) from None
    return sorted(rows, key=lambda row: row.rank)


def answerMessage(answer: Dict[str, Any]) -> str:
    """What the panel says about an answer, for a person."""
    status = answer.get("status")
    cases = answer.get("case_names") or []
    if status == COMPUTING:
        return "Computing suggestions for {} unlabelled case(s)...".format(len(cases))
    if status == FAILED:
        return "The suggestions failed: {}".format(answer.get("error") or "no reason given")
    result = answer.get("result") or {}
    teacher = (result.get("teacher") or {}).get("used")
    how = "student entropy and teacher disagreement" if teacher else "student entropy"
    count = len(result.get("suggestions") or [])
    if not count:
        return "No suggestions: nothing to rank in the unlabelled cases."
    return ("{} slice(s) to label next from {} unlabelled case(s), ranked by {}. Click one to go to it."
            .format(count, len(cases), how))


def answerError(exc: BaseException) -> Optional[str]:
    """What the list says, instead of an error box, when the backend has nothing to rank (None: a real error)."""
    status = getattr(exc, "status", None)
    text = str(getattr(exc, "message", "") or exc).lower()
    if status == 409 and "unlabelled" in text:
        return ("Every case of the project is labelled: nothing left to rank. Add volumes to rank (no label) to get "
                "new suggestions.")
    if status == 409 and "no trained model" in text:
        return "This project has no trained model yet: train one first."
    return None


def sliceCenterIjk(shape: Sequence[int], axis: int, index: int) -> np.ndarray:
    """The IJK point (i, j, k) at the centre of slice ``index`` along numpy ``axis`` of a ``(k, j, i)`` array.

    Raises:
        ValueError: axis not 0, 1 or 2, or the index outside the volume.
    """
    if axis not in (0, 1, 2):
        raise ValueError("axis must be 0, 1 or 2, got {}".format(axis))
    count = int(shape[axis])
    if not 0 <= int(index) < count:
        raise ValueError("slice {} is outside the volume ({} slices along axis {})".format(index, count, axis))
    kji = [(int(n) - 1) / 2.0 for n in shape]
    kji[axis] = float(index)
    return np.array(kji[::-1], dtype=np.float64)


def slicePositionRas(ijkToWorld: np.ndarray, shape: Sequence[int], axis: int, index: int) -> Tuple[float, float, float]:
    """The world RAS position of the centre of slice ``index`` (the inverse of ``sliceIndexForView``)."""
    point = np.asarray(ijkToWorld, dtype=np.float64) @ np.append(sliceCenterIjk(shape, axis, index), 1.0)
    return float(point[0]), float(point[1]), float(point[2])


def jumpSliceViews(scene: Any, ras: Sequence[float]) -> None:
    """Centre every slice view of ``scene`` on ``ras``.

    ``vtkMRMLSliceNode.JumpAllSlices(scene, r, a, s, jumpMode, viewGroup, exclude)`` with
    ``CenteredJumpSlice`` calls ``JumpSliceByCentering`` on each slice node (Slicer/Slicer
    ``Libs/MRML/Core/vtkMRMLSliceNode.cxx``, ``JumpAllSlices`` at line 1357 and
    ``JumpSliceByCentering`` at line 1266, commit 583e9b3): the views keep their orientation and
    move so that their plane passes through the point, centred on it.
    """
    import slicer

    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, float(ras[0]), float(ras[1]), float(ras[2]),
                                          slicer.vtkMRMLSliceNode.CenteredJumpSlice)


def _loadWithSlicer(path: str, name: str) -> Any:
    import slicer

    return slicer.util.loadVolume(path, properties={"name": name})


def _showWithSlicer(volumeNode: Any, fit: bool) -> None:
    """Show the volume as the background of every slice view (fitted to it when ``fit``: another volume came)
    (``Base/Python/slicer/util.py``, ``setSliceViewerLayers(background=..., fit=...)``, l. 817 at HEAD):
    jumping alone only moves the planes, over whatever image the views show."""
    import slicer

    slicer.util.setSliceViewerLayers(background=volumeNode, fit=fit)


def alignView(scene: Any, volumeNode: Any, axis: int, maxAngleDeg: float = 1.0) -> Any:
    """A slice view that lies along the volume's slices across numpy ``axis``: one already aligned, else the
    view whose plane is closest, rotated onto the volume's axes with that axis as its normal
    (``vtkMRMLSliceNode::RotateToAxes(referenceToRAS, sliceNormalAxisIndex)``, ``Libs/MRML/Core/
    vtkMRMLSliceNode.h`` l. 446 v5.6.2, l. 456 HEAD; ``.cxx`` l. 1862). None when the scene has no view."""
    from .. import sceneData

    ijkToWorld = sceneData.ijkToWorldArray(volumeNode)
    direction = ijkToWorld[:3, 2 - axis]
    direction = direction / max(float(np.linalg.norm(direction)), 1e-12)
    best, bestCos = None, -1.0
    nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        normal = sceneData.arrayFromMatrix(node.GetSliceToRAS())[:3, 2]
        cosine = abs(float(np.dot(normal / max(float(np.linalg.norm(normal)), 1e-12), direction)))
        if cosine > bestCos:
            best, bestCos = node, cosine
    if best is None or bestCos >= np.cos(np.radians(maxAngleDeg)):
        return best
    best.RotateToAxes(sceneData.matrixFromArray(ijkToWorld), 2 - axis)
    best.UpdateMatrices()
    return best


class LabelNextLogic:
    """Where cases are downloaded, how they are loaded, which volumes were already predicted.

    Args:
        casesFolder: per-user folder of downloaded project cases (``<project>/<case>.nii.gz``).
        loader: ``loader(path, name) -> volume node`` (default: ``slicer.util.loadVolume``).
    """

    def __init__(self, casesFolder: str, loader: Optional[Callable[[str, str], Any]] = None,
                 show: Optional[Callable[[Any, bool], None]] = None) -> None:
        self.casesFolder = casesFolder
        self.loader = loader or _loadWithSlicer
        self.show = show or _showWithSlicer
        self._predicted: List[Any] = []

    # -- backend calls (worker thread) ---------------------------------------------------------
    @staticmethod
    def fetch(client: Any, projectId: str, modelId: Optional[str] = None, retry: bool = False) -> Dict[str, Any]:
        """``client.suggestions``: the answer (``status`` computing, done or failed); ``retry`` computes a
        failed one again (the user's click, never the poll)."""
        return client.suggestions(projectId, model_id=modelId, retry=retry)

    def casePath(self, projectId: str, caseName: str) -> str:
        """Where a downloaded case is kept: ``casesFolder/<project>/<case>.nii.gz``."""
        return os.path.join(self.casesFolder, _safeName(projectId), _safeName(caseName) + ".nii.gz")

    def download(self, task: Any, client: Any, projectId: str, caseName: str) -> str:
        """Worker-thread task (``passTask=True``): the case's image from the backend (kept: a later click loads
        the file again without downloading); Cancel stops it at its next chunk, ``task.progress`` follows it."""
        path = self.casePath(projectId, caseName)
        if not os.path.isfile(path):
            client.download_case_image(projectId, caseName, path, cancel=task.isCancelled,
                                       progress=_progressInto(task))
        return path

    @staticmethod
    def uploadUnlabelled(task: Any, client: Any, projectId: str, caseName: str, snapshot: Any) -> Dict[str, Any]:
        """Worker-thread task (``passTask=True``): write the volume (a :class:`VolumeSnapshot` taken on the
        GUI thread) and upload it as a case without a label, to be ranked; the file is removed after."""
        import tempfile

        from ..backgroundTasks import TaskCancelled
        from ..train.projectLogic import safeCaseName, uploadTrainingCase
        from ..volumeFiles import WriteCancelled, writeNrrd

        folder = tempfile.mkdtemp(prefix="SlicerTSKD-unlabelled-")
        try:
            imagePath = writeNrrd(snapshot, os.path.join(folder, safeCaseName(caseName) + ".nrrd"),
                                  cancel=task.isCancelled)
        except WriteCancelled:
            raise TaskCancelled("Uploading case") from None
        return uploadTrainingCase(client, projectId, caseName, imagePath, None, cancel=task.isCancelled,
                                  progress=_progressInto(task))

    # -- the scene (GUI thread) ----------------------------------------------------------------
    @staticmethod
    def findVolume(scene: Any, projectId: str, caseName: str, current: Any = None) -> Any:
        """The volume that is case ``caseName`` of the project: one tagged so (``projectLogic.tagCase``:
        downloaded from or uploaded to the project), the current volume first; else an untagged volume
        whose name the backend would store as that case (``safeCaseName``: a DICOM volume "3: AX T1" is
        the case "3_AX_T1"), which is then tagged; else None."""
        from ..train.projectLogic import caseOf, safeCaseName, tagCase

        volumes = [current] if current is not None else []
        nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
        for index in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(index)
            if not node.IsA("vtkMRMLLabelMapVolumeNode") and not node.GetHideFromEditors():
                volumes.append(node)
        for node in volumes:
            if caseOf(node, projectId) == caseName:
                return node
        for node in volumes:
            if caseOf(node, projectId) is None and safeCaseName(node.GetName()) == caseName:
                tagCase(node, projectId, caseName)
                return node
        return None

    def load(self, path: str, projectId: str, caseName: str) -> Any:
        """Load a downloaded case into the scene, named after the case and tagged as it.

        Raises:
            RuntimeError: Slicer could not read the file.
        """
        from ..train.projectLogic import tagCase

        node = self.loader(path, caseName)
        if node is None:
            raise RuntimeError("Slicer could not load the case '{}' from {}".format(caseName, path))
        tagCase(node, projectId, caseName)
        return node

    def jumpTo(self, scene: Any, volumeNode: Any, row: SuggestionRow) -> Tuple[float, float, float]:
        """Jump the slice views to the row's slice of ``volumeNode``; returns the RAS point.

        Raises:
            ValueError: the slice is outside this volume (another volume of the same name).
        """
        from .. import sceneData
        import slicer

        shape = slicer.util.arrayFromVolume(volumeNode).shape[:3]
        ras = slicePositionRas(sceneData.ijkToWorldArray(volumeNode), shape, row.axis, row.sliceIndex)
        alignView(scene, volumeNode, row.axis)  # a view shows exactly that slice, not a plane through it
        jumpSliceViews(scene, ras)
        return ras

    @staticmethod
    def shownInAView(scene: Any, volumeNode: Any, row: SuggestionRow) -> bool:
        """Whether some slice view now shows the row's slice (one lies across the slicing axis); False
        when every view is tilted against the volume's slices (the user may align one)."""
        from .. import sceneData
        from .segmentationLogic import sliceIndexForView
        import slicer

        shape = slicer.util.arrayFromVolume(volumeNode).shape[:3]
        ijkToWorld = sceneData.ijkToWorldArray(volumeNode)
        nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
        for n in range(nodes.GetNumberOfItems()):
            sliceToRas = sceneData.arrayFromMatrix(nodes.GetItemAsObject(n).GetSliceToRAS())
            if sliceIndexForView(sliceToRas, ijkToWorld, shape, row.axis) == row.sliceIndex:
                return True
        return False

    def needsPrediction(self, volumeNode: Any, hasSegmentation: bool) -> bool:
        """Whether to show the student's result on ``volumeNode`` as the starting point to correct: the
        first time a volume is visited from the list, unless a segmentation of it is already chosen;
        never again afterwards, so that corrections are not overwritten."""
        from ..pairing import inScene, sameNode

        self._predicted = [node for node in self._predicted if inScene(node)]  # node objects: IDs restart
        if any(sameNode(node, volumeNode) for node in self._predicted):
            return False
        self._predicted.append(volumeNode)
        return not hasSegmentation


def _progressInto(task: Any) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        if total:
            task.progress = min(done / float(total), 1.0)

    return progress


def _safeName(text: str) -> str:
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text)).lstrip(".")
    return name or "_"
