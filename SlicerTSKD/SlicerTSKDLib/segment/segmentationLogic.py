"""Segmenting volumes in Slicer with a trained student (``tskd.runtime`` on onnxruntime).

- :class:`ModelCache`: downloaded student packages, one ``<model id>.tskd.zip`` per model in a
  per-user folder (unpacked next to it by ``StudentPackage.load``), and loaded models kept in memory.
- :func:`segmentArray`: the whole volume (or an ROI of it) slice by slice, in batches; pure numpy
  + onnxruntime, so it runs in a worker thread on a copy of the volume's voxels.
- :func:`applyLabelsToSegmentation`: the label values of the package written into a segmentation
  node on the volume's grid, one named, coloured segment per label (GUI thread).
- :class:`LiveSegmentation`: live mode; segments the one slice the red view shows, when the view
  is aligned with the model's slicing axis (:func:`sliceIndexForView`), and writes it into the
  segments' shared labelmap in place.
- :func:`roiIjkBounds`: a markups ROI (any orientation) as the numpy index box ``segment_volume``
  takes.

Geometry: arrays are ``(k, j, i)``; a model's ``slice_axis`` is a numpy axis (0 = ``k``), i.e.
IJK axis ``2 - slice_axis``. Matrices are 4 x 4 numpy arrays (IJK to world RAS, slice to RAS).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import sceneData

__all__ = [
    "SegmentationProblem",
    "ModelCache",
    "packageLabels",
    "valuesToIndices",
    "segmentArray",
    "applyLabelsToSegmentation",
    "sliceIndexForView",
    "roiIjkBounds",
    "roiNodeBounds",
    "LiveSegmentation",
    "LiveWrites",
    "SliceWriter",
    "editorEffectActive",
    "liveSegmenter",
    "SegmentationLogic",
    "HERE",
    "BACKEND",
    "ASK",
    "INSTALLING",
    "ONNX_PROMPT",
    "NEW_SEGMENTATION",
    "INTO_SELECTED",
    "ASK_REPLACE",
    "outputChoice",
    "replaceQuestion",
]

logger = logging.getLogger(__name__)

Roi = Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]


class SegmentationProblem(Exception):
    """Segmentation cannot run as asked; the message says what to do."""


class ModelCache:
    """Student packages on disk (``folder/<model id>.tskd.zip``) and loaded models in memory.

    Args:
        folder: per-user cache folder (created when needed).
        loader: ``loader(path) -> model`` (default: ``tskd.runtime.OnnxSegmenter``); tests may pass another.
    """

    def __init__(self, folder: str, loader: Optional[Callable[[str], Any]] = None) -> None:
        self.folder = folder
        self.loader = loader
        self._models: Dict[str, Any] = {}
        self._lock = threading.Lock()

    def packagePath(self, modelId: str) -> str:
        """Where the package of ``modelId`` is (or will be) stored."""
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(modelId))
        if not safe:
            raise ValueError("modelId must not be empty")
        return os.path.join(self.folder, safe + ".tskd.zip")

    def has(self, modelId: str) -> bool:
        return os.path.isfile(self.packagePath(modelId))

    def download(self, client: Any, modelId: str, cancel: Optional[Callable[[], bool]] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> str:
        """Download the package unless it is cached (blocking: worker thread); returns its path. ``cancel``
        stops it at its next 1 MiB chunk (nothing is kept); ``progress(received, total)`` follows it."""
        path = self.packagePath(modelId)
        if not os.path.isfile(path):
            os.makedirs(self.folder, exist_ok=True)
            client.download_model(modelId, path, cancel=cancel, progress=progress)  # written atomically by the client
        return path

    def model(self, modelId: str) -> Any:
        """The loaded model of a cached package (loaded once; thread-safe).

        Raises:
            SegmentationProblem: the package is not downloaded.
        """
        with self._lock:
            if modelId in self._models:
                return self._models[modelId]
        path = self.packagePath(modelId)
        if not os.path.isfile(path):
            raise SegmentationProblem("The model {} is not downloaded yet.".format(modelId))
        loader = self.loader
        if loader is None:
            from tskd.runtime import OnnxSegmenter

            loader = OnnxSegmenter
        model = loader(path)
        with self._lock:
            self._models.setdefault(modelId, model)
            return self._models[modelId]

    def forget(self, modelId: str) -> None:
        """Drop the loaded model (the file stays)."""
        with self._lock:
            self._models.pop(modelId, None)


def packageLabels(labels: Sequence[Any]) -> List[Tuple[int, str, Tuple[float, float, float]]]:
    """Foreground labels ``[(value, name, colour)]`` of a package's labels or a model's ``labels`` JSON.

    Accepts ``PackageLabel`` tuples or ``{"value", "name", "color"}`` dictionaries; background (0) dropped.
    """
    out = []
    for label in labels:
        if isinstance(label, dict):
            value, name, color = label["value"], label["name"], label.get("color") or (0.5, 0.5, 0.5)
        else:
            value, name, color = label[0], label[1], label[2]
        if int(value) > 0:
            out.append((int(value), str(name), tuple(float(c) for c in color)))
    return out


def valuesToIndices(labelValues: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Label values -> segment indices (``values[n]`` -> ``n + 1``, anything else -> 0), uint8."""
    if len(values) > 254:
        raise ValueError("at most 254 segments are supported, got {}".format(len(values)))
    top = max(int(labelValues.max(initial=0)), max(values) if values else 0)
    lookup = np.zeros(top + 1, dtype=np.uint8)
    for index, value in enumerate(values):
        lookup[int(value)] = index + 1
    return lookup[labelValues]


def segmentArray(model: Any, volume: np.ndarray, roi: Optional[Roi] = None, batchSize: int = 16,
                 cancel: Optional[Callable[[], bool]] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """Label values of ``volume`` ``(k, j, i)`` (only the ROI box, the rest 0); numpy + onnxruntime only.

    Safe to call from a worker thread on a copy of the volume's voxels.
    """
    from tskd.runtime import segment_volume

    return segment_volume(model, volume, batch_size=batchSize, roi=roi, cancel=cancel, progress=progress)


def applyLabelsToSegmentation(labelValues: np.ndarray, volumeNode: Any, segmentationNode: Any,
                              labels: Sequence[Tuple[int, str, Sequence[float]]],
                              terminology: Optional[Dict[str, str]] = None) -> List[str]:
    """Write label values ``(k, j, i)`` on the volume's grid into the segmentation (GUI thread).

    One segment per label (found by name, or added), coloured as the package says and tagged with
    the project's ``terminology`` (``{name: entry}``); their content is replaced. Returns the segment
    ids in the order of ``labels``.
    """
    segmentIds = sceneData.ensureSegments(segmentationNode, [(name, color) for _, name, color in labels], terminology)
    indices = valuesToIndices(labelValues, [value for value, _, _ in labels])
    sceneData.importIndexArray(indices, volumeNode, segmentationNode, segmentIds)
    return segmentIds


def sliceIndexForView(sliceToRas: np.ndarray, ijkToWorld: np.ndarray, shape: Sequence[int], axis: int,
                      maxAngleDeg: float = 1.0) -> Optional[int]:
    """The volume slice a slice view shows, when the view lies in a plane of slices along ``axis``.

    Args:
        sliceToRas: the slice node's SliceToRAS (column 2: the plane's normal, column 3: a point of it).
        ijkToWorld: the volume's IJK to world RAS matrix.
        shape: the volume's array shape ``(k, j, i)``.
        axis: the model's slicing axis (numpy axis; IJK axis ``2 - axis``).
        maxAngleDeg: how far the view may be tilted from the volume's slices.

    Returns:
        The slice index along ``axis``, or None when the view is tilted or outside the volume.
    """
    if axis not in (0, 1, 2):
        raise ValueError("axis must be 0, 1 or 2, got {}".format(axis))
    sliceToRas = np.asarray(sliceToRas, dtype=np.float64)
    ijkToWorld = np.asarray(ijkToWorld, dtype=np.float64)
    ijkAxis = 2 - axis
    normal = sliceToRas[:3, 2] / max(np.linalg.norm(sliceToRas[:3, 2]), 1e-12)
    limit = math.sin(math.radians(maxAngleDeg))
    for other in range(3):
        if other == ijkAxis:
            continue
        direction = ijkToWorld[:3, other] / max(np.linalg.norm(ijkToWorld[:3, other]), 1e-12)
        if abs(float(np.dot(normal, direction))) > limit:
            return None  # the view's plane is not spanned by the two in-slice axes
    point = np.linalg.inv(ijkToWorld) @ np.append(sliceToRas[:3, 3], 1.0)
    index = int(math.floor(point[ijkAxis] + 0.5))
    count = int(shape[axis])
    return index if 0 <= index < count else None


def roiCornersIjk(roiToWorld: np.ndarray, size: Sequence[float], worldToIjk: np.ndarray) -> np.ndarray:
    """A box ROI's eight corners in a volume's continuous IJK coordinates ``(8, 3)`` (``i, j, k``; voxel
    centres are whole numbers): the ROI is centred at ``roiToWorld``'s origin, its axes are the
    matrix's columns and ``size`` is in mm along them."""
    roiToWorld = np.asarray(roiToWorld, dtype=np.float64)
    half = [0.5 * float(s) for s in size]
    corners = []
    for sx in (-1.0, 1.0):
        for sy in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                local = np.array([sx * half[0], sy * half[1], sz * half[2], 1.0])
                corners.append((worldToIjk @ (roiToWorld @ local))[:3])
    return np.array(corners)


def roiIjkBounds(roiToWorld: np.ndarray, size: Sequence[float], ijkToWorld: np.ndarray,
                 shape: Sequence[int]) -> Optional[Roi]:
    """A box ROI as numpy index bounds ``((k0, k1), (j0, j1), (i0, i1))`` (ends exclusive).

    The ROI (centred at ``roiToWorld``'s origin, axes its columns, ``size`` in mm along them) may be
    rotated against the volume: the bounds hold every voxel whose centre lies in the bounding box
    of the ROI's corners in IJK (at least the voxel nearest to the ROI's centre along each axis).
    None when the ROI misses the volume.
    """
    worldToIjk = np.linalg.inv(np.asarray(ijkToWorld, dtype=np.float64))
    corners = roiCornersIjk(roiToWorld, size, worldToIjk)
    low, high = corners.min(axis=0), corners.max(axis=0)
    boundsIjk = []
    eps = 1e-6
    for ijk in range(3):
        count = int(shape[2 - ijk])
        if high[ijk] < -0.5 or low[ijk] > count - 0.5:
            return None
        start, end = int(math.ceil(low[ijk] - eps)), int(math.floor(high[ijk] + eps)) + 1
        if start >= end:  # thinner than a voxel: the voxel nearest to its middle
            start = int(math.floor(0.5 * (low[ijk] + high[ijk]) + 0.5))
            end = start + 1
        start, end = max(0, start), min(count, end)
        if start >= end:
            return None
        boundsIjk.append((start, end))
    return (boundsIjk[2], boundsIjk[1], boundsIjk[0])


def roiNodeBounds(roiNode: Any, volumeNode: Any) -> Optional[Roi]:
    """:func:`roiIjkBounds` of a markups ROI node (``vtkMRMLMarkupsROINode``) over a volume node."""
    matrix = roiNode.GetObjectToWorldMatrix()
    roiToWorld = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    size = [float(value) for value in roiNode.GetSize()]  # vtkGetVector3Macro: a tuple in Python
    shape = tuple(reversed(volumeNode.GetImageData().GetDimensions()))
    return roiIjkBounds(roiToWorld, size, sceneData.ijkToWorldArray(volumeNode), shape)


def liveSegmenter(model: Any, volume: np.ndarray) -> Any:
    """The ``VolumeSegmenter`` of live mode (whole-volume normalisation statistics): worker-thread safe.

    ``volume`` is a copy of the voxels taken on the GUI thread (:func:`sceneData.volumeArrayCopy`);
    computing the statistics of a large CT takes a while, so live mode does it in a worker.
    """
    from tskd.runtime import VolumeSegmenter

    return VolumeSegmenter(model, volume)


class LiveWrites:
    """What live mode wrote into one segmentation, slice by slice (issue 32, item 2).

    A voxel may be written only while it still holds what live mode wrote there last; on a slice
    live mode never wrote, only empty voxels. So a correction (a voxel painted, erased or given to
    another segment since) and anything drawn before live mode came to the slice are never
    overwritten, however often the view comes back. Kept per segmentation by
    :meth:`SegmentationLogic.liveWrites`, so a restarted live mode still knows.
    """

    def __init__(self) -> None:
        self._slices: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}

    def merge(self, axis: int, index: int, current: np.ndarray, proposed: np.ndarray) -> Tuple[np.ndarray, int]:
        """The slice's new content (``proposed`` where live mode may write, ``current`` elsewhere) and how
        many voxels were kept for the user; remembers what was written."""
        entry = self._slices.get((axis, index))
        if entry is None or entry[0].shape != current.shape:
            free = current == 0
        else:
            owned, written = entry
            free = owned & (current == written)
        result = np.where(free, proposed, current).astype(current.dtype, copy=False)
        self._slices[(axis, index)] = (free, result.copy())
        kept = int(np.count_nonzero(~free & (current != proposed)))
        return result, kept

    def forget(self) -> None:
        """The segments were replaced as a whole (Segment volume): nothing of this log holds any more."""
        self._slices.clear()


class SliceWriter:
    """Writes slices in place into the one labelmap layer of ``segmentIds`` on the volume's grid, only where
    a :class:`LiveWrites` log allows (issue 32, item 2): live mode and the box tool (issue 33) write
    through it, each with its own log, so neither overwrites what the user painted or erased.

    Args:
        segmentationNode, segmentIds, volumeNode: the segments (label value ``n + 1`` is ``segmentIds[n]``,
            as :func:`sceneData.sharedLabelmapArray` gives them) on the volume's grid.
        writes: the tool's log of what it wrote.
        beforeWrite: called once before a write that changes something (the Segment Editor's undo step).
        tool: the tool's name for the message when the segmentation cannot take the write.
    """

    def __init__(self, segmentationNode: Any, segmentIds: Sequence[str], volumeNode: Any, writes: LiveWrites,
                 beforeWrite: Optional[Callable[[], None]] = None, tool: str = "Live mode") -> None:
        self.segmentationNode = segmentationNode
        self.segmentIds = list(segmentIds)
        self.volumeNode = volumeNode
        self.writes = writes
        self.beforeWrite = beforeWrite
        self.tool = tool

    def write(self, axis: int, slices: Dict[int, Callable[[np.ndarray], np.ndarray]]) -> int:
        """Write the slices ``{index: propose}`` along numpy ``axis``, where ``propose(current)`` gives a
        slice's wanted index values from its current ones; returns the voxels kept as the user had them.
        One undo step (``beforeWrite``) and one modified event for all of them."""
        target = self.sharedArray()
        kept, changes = 0, []
        for index, propose in slices.items():
            where = [slice(None)] * 3
            where[axis] = index
            view = target[tuple(where)]
            # only voxels the tool wrote last (or empty ones of a slice it never wrote) change: corrections,
            # earlier drawings and other segments' voxels stay (issue 32, item 2)
            result, slicesKept = self.writes.merge(axis, index, view, propose(view))
            kept += slicesKept
            if not np.array_equal(result, view):
                changes.append((view, result))
        if changes:
            if self.beforeWrite is not None:
                self.beforeWrite()
            for view, result in changes:
                view[...] = result
            sceneData.labelmapModified(self.segmentationNode, self.segmentIds)
        return kept

    def sharedArray(self) -> np.ndarray:
        """The writable layer (the segments are put into one layer on the volume's grid first if needed)."""
        array = sceneData.sharedLabelmapArray(self.segmentationNode, self.segmentIds, self.volumeNode)
        if array is None:
            # put the segments (keeping what they hold) into one layer on the volume's grid
            current = sceneData.exportSegmentsAsIndexArray(self.segmentationNode, self.segmentIds, self.volumeNode)
            sceneData.importIndexArray(current, self.volumeNode, self.segmentationNode, self.segmentIds)
            array = sceneData.sharedLabelmapArray(self.segmentationNode, self.segmentIds, self.volumeNode)
            if array is None:
                raise SegmentationProblem(
                    "{} cannot write into '{}': put the segmentation under the same transform as the volume "
                    "(or none), or choose a new segmentation.".format(self.tool, self.segmentationNode.GetName()))
        return array


def editorEffectActive(scene: Any, segmentationNode: Any) -> Optional[str]:
    """The name of a Segment Editor effect that is active on ``segmentationNode`` (None: none).

    The Segment Editor keeps its state in a ``vtkMRMLSegmentEditorNode`` (``ActiveEffectName``,
    ``GetSegmentationNode()``: ``Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentEditorNode.h``
    l. 110-124; ``qMRMLSegmentEditorWidget::setActiveEffect`` sets it, ``qMRMLSegmentEditorWidget.cxx``
    l. 1020), so an effect chosen in any editor shows here.
    """
    from .. import pairing

    nodes = scene.GetNodesByClass("vtkMRMLSegmentEditorNode")
    for index in range(nodes.GetNumberOfItems()):
        editor = nodes.GetItemAsObject(index)
        name = editor.GetActiveEffectName()
        if name and pairing.sameNode(editor.GetSegmentationNode(), segmentationNode):
            return str(name)
    return None


class LiveSegmentation:
    """Live mode for one volume, model and segmentation (GUI thread; one model call per slice).

    Args:
        model: a loaded student (``SliceModel``).
        volumeNode: the volume being viewed.
        segmentationNode: where the result goes.
        labels: ``[(value, name, colour)]`` of the model (see :func:`packageLabels`).

    Normalisation statistics come from the whole volume once (``VolumeSegmenter``), so a live
    slice equals the same slice of "Segment volume".
    """

    def __init__(self, model: Any, volumeNode: Any, segmentationNode: Any,
                 labels: Sequence[Tuple[int, str, Sequence[float]]], segmenter: Any = None,
                 writes: Optional[LiveWrites] = None, beforeWrite: Optional[Callable[[], None]] = None,
                 terminology: Optional[Dict[str, str]] = None) -> None:
        self.writes = writes if writes is not None else LiveWrites()
        self.beforeWrite = beforeWrite  # e.g. the Segment Editor's saveStateForUndo (Slicer only)
        self.kept = 0  # voxels of the last slice left as the user had them
        self.model = model
        self.volumeNode = volumeNode
        self.segmentationNode = segmentationNode
        self.labels = list(labels)
        if segmenter is None:  # else made in a worker by :func:`liveSegmenter` from a copy taken earlier
            segmenter = liveSegmenter(model, sceneData.volumeArrayCopy(volumeNode))
        self.segmenter = segmenter
        self.volume = segmenter.volume
        if tuple(self.volume.shape) != tuple(reversed(volumeNode.GetImageData().GetDimensions())):
            raise SegmentationProblem("'{}' changed size while live mode was starting: start it again.".format(
                volumeNode.GetName()))
        self.ijkToWorld = sceneData.ijkToWorldArray(volumeNode)
        self.segmentIds = sceneData.ensureSegments(segmentationNode, [(name, color) for _, name, color in self.labels],
                                                   terminology)
        self.lastIndex: Optional[int] = None

    @property
    def axis(self) -> int:
        """Numpy axis the slices are taken along."""
        return int(self.segmenter.axis)

    def indexForView(self, sliceToRas: np.ndarray) -> Optional[int]:
        return sliceIndexForView(sliceToRas, self.ijkToWorld, self.volume.shape, self.axis)

    def updateForView(self, sliceToRas: np.ndarray) -> Optional[int]:
        """Segment the slice the view shows; returns its index, or None when the view is not aligned."""
        index = self.indexForView(sliceToRas)
        if index is None:
            return None
        if index != self.lastIndex:
            self.segmentSlice(index)
        return index

    def segmentSlice(self, index: int) -> np.ndarray:
        """Segment slice ``index`` along the axis, write it into the segments; returns its label values."""
        values = self.segmenter.segment_slice(index)
        indices = valuesToIndices(values, [value for value, _, _ in self.labels])
        writer = SliceWriter(self.segmentationNode, self.segmentIds, self.volumeNode, self.writes, self.beforeWrite,
                             "Live mode")
        self.kept = writer.write(self.axis, {index: lambda current: indices.astype(current.dtype, copy=False)})
        self.lastIndex = index
        return values


#: Where "Segment volume" (and live mode) runs: :meth:`SegmentationLogic.whereToRun`.
HERE = "here"  # tskd.runtime on onnxruntime inside Slicer
BACKEND = "backend"  # client.predict
ASK = "ask"  # onnxruntime missing: ask the user (ONNX_PROMPT) and call answerInstall
INSTALLING = "installing"  # onnxruntime is being installed: wait (Segment and Live disabled)

ONNX_PROMPT = ("Segmenting inside Slicer needs the 'onnxruntime' Python package (about 15 MB), which is not installed. "
               "Install it now?\n\nCancel: the backend segments instead (the image is sent to it).")
ONNX_FAILED = "onnxruntime could not be installed ({}): the backend segments instead."


#: Where a result is written (:func:`outputChoice`).
NEW_SEGMENTATION = "new"  # a new segmentation made for the volume
INTO_SELECTED = "selected"  # the selected segmentation (it is the volume's, and the segments written are empty)
ASK_REPLACE = "ask"  # the selected segmentation is the volume's and holds something there: ask (replaceQuestion)


def _labelNames(labels: Sequence[Any]) -> List[str]:
    return [name for _, name, _ in packageLabels(labels)] if labels else []


def _segmentsNamed(segmentationNode: Any, names: Sequence[str]) -> Optional[List[str]]:
    """The ids of the segments a write of ``names`` replaces (found by name as ``ensureSegments`` does);
    None: the names are not known (every segment counts)."""
    if not names:
        return None
    wanted = {str(name).strip().lower() for name in names}
    return [segmentId for segmentId, name, _ in sceneData.segmentList(segmentationNode) if name.strip().lower() in wanted]


def outputChoice(volumeNode: Any, segmentationNode: Any, labels: Sequence[Any] = ()) -> Tuple[str, str]:
    """Where "Segment volume" writes its result (issue 32, item 1): ``(decision, note)``.

    Slicer's import clears the segments it writes, with no undo
    (``vtkSlicerSegmentationsModuleLogic.cxx`` l. 1804 at HEAD), so a result never goes into a
    segmentation drawn on another volume (:data:`NEW_SEGMENTATION`, the note says why), and into the
    volume's own one only when the segments it would replace are empty (:data:`INTO_SELECTED`), else
    after asking (:data:`ASK_REPLACE`, :func:`replaceQuestion`). ``labels``: the model's labels
    (``packageLabels`` input); without them every segment counts.
    """
    from .. import pairing

    if segmentationNode is None or not pairing.inScene(segmentationNode):
        return NEW_SEGMENTATION, ""
    state, whose = pairing.owner(segmentationNode, volumeNode)
    if state == pairing.OTHER:
        return NEW_SEGMENTATION, "'{}' belongs to '{}', so the result went into a new segmentation.".format(
            segmentationNode.GetName(), whose)
    if pairing.hasContent(segmentationNode, _segmentsNamed(segmentationNode, _labelNames(labels))):
        return ASK_REPLACE, ""
    return INTO_SELECTED, ""


def replaceQuestion(segmentationNode: Any, labels: Sequence[Any] = ()) -> str:
    """The question of :data:`ASK_REPLACE`: Yes replaces, No writes into a new segmentation."""
    names = _labelNames(labels)
    what = ", ".join(names) if names else "its segments"
    return ("'{}' already holds {} on this image (your drawing or an earlier result). Replace it with the model's "
            "result? Slicer cannot undo this.\n\nYes: replace. No: put the result into a new segmentation."
            .format(segmentationNode.GetName(), what))


class SegmentationLogic:
    """What the Segment panel decides, without Qt: where to run, the onnxruntime install, the ROI, temp folders.

    Args:
        moduleDir: folder of ``SlicerTSKD.py`` (to find ``tskd.runtime``).
        cache: the downloaded students.
        installer: an :class:`~SlicerTSKDLib.install.runtimeSetup.OnnxruntimeInstall` (None: never offer to install).
        runtimeImportable, onnxAvailable: checks (default: :mod:`runtimeSetup`'s), replaceable in tests.

    Signals (from the installer): ``installProgress(fraction)``, ``installFinished(ok, message)``;
    after a failed or cancelled install the user is not asked again this session (the backend segments).
    """

    def __init__(self, moduleDir: str, cache: ModelCache, installer: Any = None,
                 runtimeImportable: Optional[Callable[[str], Any]] = None,
                 onnxAvailable: Optional[Callable[[], bool]] = None) -> None:
        from ..install import runtimeSetup
        from ..signal import Signal

        self.moduleDir = moduleDir
        self.cache = cache
        self.installer = installer
        self._runtimeImportable = runtimeImportable or runtimeSetup.ensureRuntimeImportable
        self._onnxAvailable = onnxAvailable or runtimeSetup.onnxruntimeAvailable
        self.onnxDeclined = False
        self.installProgress = Signal("fraction")
        self.installFinished = Signal("ok", "message")
        self._folders: List[str] = []
        self._liveWrites: List[Tuple[Any, str, LiveWrites]] = []
        if installer is not None:
            installer.progress.connect(self.installProgress.emit)
            installer.finished.connect(self._onInstalled)

    # ------------------------------------------------------------ where it runs
    def runtimeUsable(self) -> bool:
        try:
            self._runtimeImportable(self.moduleDir)
        except Exception as exc:
            logger.warning("tskd.runtime is not usable inside Slicer: %s", exc)
            return False
        return True

    def installing(self) -> bool:
        return self.installer is not None and self.installer.isRunning()

    def whereToRun(self) -> str:
        """:data:`HERE`, :data:`BACKEND`, :data:`ASK` (then :meth:`answerInstall`) or :data:`INSTALLING`."""
        if self.installing():
            return INSTALLING
        if not self.runtimeUsable():
            return BACKEND
        if self._onnxAvailable():
            return HERE
        if self.onnxDeclined or self.installer is None:
            return BACKEND
        return ASK

    def answerInstall(self, install: bool) -> str:
        """The user's answer to :data:`ONNX_PROMPT`: :data:`INSTALLING` (pip started) or :data:`BACKEND`."""
        if not install or self.installer is None:
            self.onnxDeclined = True
            return BACKEND
        self.installer.start()  # ignored when one is already running
        return INSTALLING

    def liveWrites(self, segmentationNode: Any, tool: str = "live") -> LiveWrites:
        """The :class:`LiveWrites` of ``segmentationNode`` for ``tool`` (``"live"``, ``"box"``): one per node
        object and tool, kept while the module lives. Each tool has its own log, so live mode never takes
        back what the box tool wrote, nor the box tool what live mode wrote."""
        from .. import pairing

        self._liveWrites = [(node, name, log) for node, name, log in self._liveWrites if pairing.inScene(node)]
        for node, name, log in self._liveWrites:
            if name == tool and pairing.sameNode(node, segmentationNode):
                return log
        log = LiveWrites()
        self._liveWrites.append((segmentationNode, tool, log))
        return log

    def forgetWrites(self, segmentationNode: Any) -> None:
        """The segments were replaced as a whole (Segment volume): no tool's log holds any more."""
        from .. import pairing

        for node, _, log in self._liveWrites:
            if pairing.sameNode(node, segmentationNode):
                log.forget()

    def cancelInstall(self) -> None:
        if self.installing():
            self.installer.cancel()

    def _onInstalled(self, ok: bool, message: str) -> None:
        if not ok:
            self.onnxDeclined = True
        self.installFinished.emit(ok, message)

    # -------------------------------------------------------------------- ROI
    @staticmethod
    def region(roiNode: Any, volumeNode: Any) -> Tuple[Optional[Roi], Optional[str]]:
        """``(roi, None)``; ``(None, None)`` without an ROI node; ``(None, message)`` when it misses the volume."""
        if roiNode is None:
            return None, None
        roi = roiNodeBounds(roiNode, volumeNode)
        if roi is None:
            return None, "The region (ROI) does not overlap the volume."
        return roi, None

    # --------------------------------------------------------- temp folders
    def newPredictionFolder(self) -> str:
        """A temporary folder for a backend prediction's files (:meth:`removeFolder` when done)."""
        import tempfile

        folder = tempfile.mkdtemp(prefix="SlicerTSKD-predict-")
        self._folders.append(folder)
        return folder

    def removeFolder(self, folder: str) -> None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        if folder in self._folders:
            self._folders.remove(folder)

    def cleanup(self) -> None:
        """Cancel an install, remove the temporary folders left (module closed)."""
        self.cancelInstall()
        for folder in list(self._folders):
            self.removeFolder(folder)
