"""Box-to-mask inside Slicer (issue 33): a box (markups ROI) on a slice gives that slice's mask in a
segment, with a SAM-family box model run by ``tskd.runtime`` on onnxruntime in Slicer's Python; then
optionally the mask walks through the neighbouring slices.

- :func:`boxModelChoices`: the zero-shot LiteMedSAM, and first the chosen model's task-tuned box
  model when its run exported one (the model list's ``box_model``).
- :class:`BoxModelCache`: box models downloaded once from the backend (``GET /checkpoints/{name}/
  box-model``, ``GET /models/{id}/box-model``) into a per-user folder, unpacked safely
  (``tskd.runtime.unpack_box_model``), loaded once; the zero-shot model is keyed by its weights'
  SHA-256, so new weights on the backend give a new download, and a cached one works offline.
  LiteMedSAM missing on the backend is downloaded there first (the Train panel's
  :class:`~SlicerTSKDLib.train.foundationLogic.WeightsDownload`).
- :class:`CachedBoxPredictor`: an ``OnnxBoxPredictor`` that keeps the embeddings of the last slices
  it encoded (keyed by the slice's pixels), so moving the box on a slice runs only the decoder.
- :func:`boxOnSlice` / :func:`roiNodeBox`: the ROI (any orientation, under any transform) as a slice
  of the volume (numpy ``axis`` and ``index``) and a box ``x1, y1, x2, y2`` on it.
- :func:`boxWriter` / :func:`writeBoxMasks`: masks written into one segment through the module's
  undo-able in-place write (:class:`~SlicerTSKDLib.segment.segmentationLogic.SliceWriter` with the
  box tool's own :class:`~SlicerTSKDLib.segment.segmentationLogic.LiveWrites` log), never over voxels
  the user painted or erased.
- :func:`segmentBox` and :func:`propagateBox`: the model calls (worker thread: numpy + onnxruntime).

Geometry: arrays are ``(k, j, i)``; a slice along numpy ``axis`` is ``np.take(volume, index, axis)``;
on it ``x`` runs along its last axis and ``y`` along its first (as :mod:`tskd.runtime.box_propagation`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .. import sceneData
from .segmentationLogic import (LiveWrites, SegmentationProblem, SliceWriter, roiCornersIjk, roiIjkBounds,
                                sliceIndexForView)

__all__ = [
    "ZERO_SHOT",
    "ZERO_SHOT_TITLE",
    "BOX_TOOL",
    "BoxProblem",
    "BoxModelChoice",
    "boxModelChoices",
    "BoxModelCache",
    "CachedBoxPredictor",
    "BoxPrompt",
    "boxOnSlice",
    "roiNodeBox",
    "boxSegmentIds",
    "boxWriter",
    "writeBoxMasks",
    "segmentBox",
    "propagateBox",
    "STOP_TEXT",
    "DEFAULT_SEGMENT",
    "segmentChoices",
    "propagationText",
    "BoxTool",
]

logger = logging.getLogger(__name__)

#: The zero-shot foundation model's catalog name on the backend.
ZERO_SHOT = "litemedsam"
ZERO_SHOT_TITLE = "LiteMedSAM (zero-shot)"
#: The box tool's name for its :class:`LiveWrites` log (``SegmentationLogic.liveWrites(node, BOX_TOOL)``).
BOX_TOOL = "box"
_USABLE = ("verified", "present")
_POLL_S = 0.5


class BoxProblem(SegmentationProblem):
    """The box tool cannot run as asked; the message says what to do."""


# ------------------------------------------------------------------------------------------- models
class BoxModelChoice(NamedTuple):
    """One entry of the box model chooser: ``kind`` ``"model"`` (a trained model's task-tuned teacher,
    ``name`` its id) or ``"foundation"`` (``name`` the backend's weights name)."""

    kind: str
    name: str
    title: str
    sha256: str = ""


def boxModelChoices(model: Optional[Dict[str, Any]], modelTitle: str = "") -> List[BoxModelChoice]:
    """The chooser's entries: the chosen model's task-tuned box model first when it has one, then the
    zero-shot LiteMedSAM (always)."""
    choices = []
    info = model.get("box_model") if isinstance(model, dict) else None
    if isinstance(info, dict) and model is not None and model.get("id"):
        title = "Task-tuned teacher of {}".format(modelTitle or "the chosen model")
        choices.append(BoxModelChoice("model", str(model["id"]), title, str(info.get("checkpoint_sha256") or "")))
    choices.append(BoxModelChoice("foundation", ZERO_SHOT, ZERO_SHOT_TITLE))
    return choices


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text)) or "_"


class BoxModelCache:
    """Box models on disk (``folder/<key>/``: the graphs and ``box_model.json``) and loaded in memory.

    Args:
        folder: per-user folder (created when needed).
        loader: ``loader(modelFolder) -> predictor`` (default: ``tskd.runtime.OnnxBoxPredictor``).
        keep: slices whose embeddings each loaded model keeps (:class:`CachedBoxPredictor`).
    """

    def __init__(self, folder: str, loader: Optional[Callable[[str], Any]] = None, keep: int = 16) -> None:
        self.folder = folder
        self.loader = loader
        self.keep = keep
        self._predictors: Dict[str, "CachedBoxPredictor"] = {}
        self._lock = threading.Lock()

    def modelFolder(self, key: str) -> str:
        return os.path.join(self.folder, _safe(key))

    def has(self, key: str) -> bool:
        return os.path.isfile(os.path.join(self.modelFolder(key), "box_model.json"))

    def cachedFoundation(self, name: str) -> Optional[str]:
        """The newest cached export of foundation weights ``name`` (for working without the backend)."""
        if not os.path.isdir(self.folder):
            return None
        prefix = _safe(name) + "-"
        found = [os.path.join(self.folder, entry) for entry in os.listdir(self.folder)
                 if entry.startswith(prefix) and self.has(entry)]
        return max(found, key=os.path.getmtime) if found else None

    def ensure(self, client: Any, choice: BoxModelChoice, cancel: Optional[Callable[[], bool]] = None,
               progress: Optional[Callable[[float, str], None]] = None) -> str:
        """The folder of ``choice``'s box model, downloaded from the backend unless cached (blocking: a worker
        thread). ``progress(fraction, text)`` follows the steps; ``cancel`` stops them.

        Raises:
            BoxProblem: no backend and nothing cached, or the weights cannot be had.
            TSKDClientError: the backend refused (its message says why).
        """
        cancel = cancel or (lambda: False)
        report = progress or (lambda fraction, text: None)
        if choice.kind == "model":
            key = "model-{}-{}".format(choice.name, (choice.sha256 or "unknown")[:12])
            if self.has(key):
                return self.modelFolder(key)
            if client is None:
                raise BoxProblem("The task-tuned model is not downloaded yet and no backend is connected: connect "
                                 "to the backend, or use {}.".format(ZERO_SHOT_TITLE))
            report(0.0, "Downloading the task-tuned box model...")
            return self._download(key, lambda path, **kw: client.download_model_box_model(choice.name, path, **kw),
                                  cancel, report)
        if client is None:
            cached = self.cachedFoundation(choice.name)
            if cached is None:
                raise BoxProblem("{} is not downloaded yet and no backend is connected: connect to the backend "
                                 "first.".format(ZERO_SHOT_TITLE))
            return cached
        row = self._weightsOnBackend(client, choice.name, cancel, report)
        key = "{}-{}".format(choice.name, str(row.get("sha256") or "unknown")[:12])
        if self.has(key):
            return self.modelFolder(key)
        report(0.3, "The backend prepares {} for Slicer (once, about a minute)...".format(ZERO_SHOT_TITLE))
        return self._download(key, lambda path, **kw: client.download_checkpoint_box_model(choice.name, path, **kw),
                              cancel, report)

    def _weightsOnBackend(self, client: Any, name: str, cancel: Callable[[], bool],
                          report: Callable[[float, str], None]) -> Dict[str, Any]:
        """The backend's row of weights ``name``, downloading them there first when it can."""
        from ..train.foundationLogic import WeightsDownload

        row = client.get_checkpoint(name)
        if row.get("state") in _USABLE:
            return row
        if row.get("state") != "absent" or not row.get("downloadable"):
            raise BoxProblem("{} on the backend cannot be used ({}): remove it and download it again in the Train "
                             "panel's Foundation model section.".format(ZERO_SHOT_TITLE, row.get("state")))
        download = WeightsDownload(client, name)
        status = download.start()
        while not status.finished:
            if cancel():
                download.cancel()
                raise BoxProblem("Cancelled while the backend downloaded {}.".format(ZERO_SHOT_TITLE))
            report(0.3 * (status.fraction or 0.0), status.text)
            time.sleep(_POLL_S)
            status = download.poll()
        if not status.ok:
            raise BoxProblem(status.text)
        return client.get_checkpoint(name)

    def _download(self, key: str, fetch: Callable[..., str], cancel: Callable[[], bool],
                  report: Callable[[float, str], None]) -> str:
        from tskd.runtime import unpack_box_model

        os.makedirs(self.folder, exist_ok=True)
        archive = os.path.join(self.folder, ".{}.zip".format(_safe(key)))

        def received(done: int, total: int) -> None:
            report(0.5 + 0.5 * (done / float(total) if total else 0.0), "Downloading the box model...")

        try:
            fetch(archive, cancel=cancel, progress=received)
            unpack_box_model(archive, self.modelFolder(key))
        finally:
            if os.path.exists(archive):
                os.remove(archive)
        return self.modelFolder(key)

    def predictor(self, modelFolder: str) -> "CachedBoxPredictor":
        """The loaded model of a box model folder (loaded once; thread-safe)."""
        with self._lock:
            if modelFolder in self._predictors:
                return self._predictors[modelFolder]
        loader = self.loader
        if loader is None:
            from tskd.runtime import OnnxBoxPredictor

            loader = OnnxBoxPredictor
        predictor = CachedBoxPredictor(loader(modelFolder), keep=self.keep)
        with self._lock:
            return self._predictors.setdefault(modelFolder, predictor)

    def forget(self) -> None:
        """Drop the loaded models (the files stay)."""
        with self._lock:
            self._predictors.clear()

    def remove(self, key: str) -> None:
        """Delete a cached box model."""
        with self._lock:
            self._predictors.pop(self.modelFolder(key), None)
        shutil.rmtree(self.modelFolder(key), ignore_errors=True)


class CachedBoxPredictor:
    """A box predictor (``OnnxBoxPredictor``) that keeps the embeddings of the last ``keep`` images it
    encoded, keyed by their pixels: an image seen again (the same slice, a box moved on it, a walk
    through slices segmented before) costs only the decoder.

    Its ``set_image`` / ``predict`` are what :func:`tskd.runtime.box_propagation.propagate_box` calls;
    hold :attr:`lock` around a ``set_image`` and the ``predict`` calls that belong to it.

    Attributes:
        encoderRuns, decoderRuns: how many times each graph ran.
    """

    def __init__(self, predictor: Any, keep: int = 16) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1, got {}".format(keep))
        self.predictor = predictor
        self.keep = int(keep)
        self.lock = threading.RLock()
        self.encoderRuns = 0
        self.decoderRuns = 0
        self._embeddings: "OrderedDict[str, Tuple[np.ndarray, Any]]" = OrderedDict()

    @staticmethod
    def imageKey(image: np.ndarray) -> str:
        image = np.ascontiguousarray(image)
        digest = hashlib.blake2b(image.tobytes(), digest_size=16)
        digest.update("{}{}".format(image.shape, image.dtype.str).encode("ascii"))
        return digest.hexdigest()

    def set_image(self, image: np.ndarray) -> None:  # noqa: N802 - the predictors' interface
        key = self.imageKey(image)
        with self.lock:
            kept = self._embeddings.get(key)
            if kept is not None:
                self._embeddings.move_to_end(key)
                self.predictor.set_encoded(kept[0], kept[1])
                return
            self.predictor.set_image(image)
            self.encoderRuns += 1
            self._embeddings[key] = (self.predictor.embedding, self.predictor.frame)
            while len(self._embeddings) > self.keep:
                self._embeddings.popitem(last=False)

    def predict(self, box: Sequence[float]) -> np.ndarray:
        with self.lock:
            self.decoderRuns += 1
            return self.predictor.predict(box)

    def knows(self, image: np.ndarray) -> bool:
        """Whether ``image``'s embedding is kept (a box on it runs only the decoder)."""
        with self.lock:
            return self.imageKey(image) in self._embeddings


def segmentBox(predictor: CachedBoxPredictor, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The bool mask of one slice ``image`` from a box on it (worker thread; the encoder only for a new image).

    Raises:
        BoxProblem: the box does not fit the image.
    """
    from tskd.runtime.box_propagation import check_box

    try:
        check_box(box, image.shape[0], image.shape[1])
    except ValueError as exc:
        raise BoxProblem("The box does not fit the slice ({}).".format(exc)) from None
    with predictor.lock:
        predictor.set_image(image)
        return predictor.predict(box)


def propagateBox(predictor: CachedBoxPredictor, volume: np.ndarray, prompt: "BoxPrompt",
                 settings: Any = None, progress: Optional[Callable[[int, int], None]] = None,
                 cancelled: Optional[Callable[[], bool]] = None) -> Any:
    """:func:`tskd.runtime.box_propagation.propagate_box` from ``prompt`` (worker thread): the box's slice,
    then the neighbours in both directions until the mask vanishes or its area jumps. Returns its
    ``PropagationResult`` (``mask``, ``slices``, ``stopped``)."""
    from tskd.runtime.box_propagation import propagate_box

    with predictor.lock:
        return propagate_box(predictor, volume, prompt.box, prompt.index, prompt.axis, settings=settings,
                             progress=progress, cancelled=cancelled)


# ----------------------------------------------------------------------------------------- geometry
class BoxPrompt(NamedTuple):
    """A box on one slice: numpy ``axis`` and slice ``index`` of the ``(k, j, i)`` volume, and ``box``
    ``(x1, y1, x2, y2)`` in the slice's pixels (``x`` along its last axis)."""

    axis: int
    index: int
    box: Tuple[float, float, float, float]


def _viewAxis(views: Sequence[np.ndarray], ijkToWorld: np.ndarray, shape: Sequence[int],
              centre: np.ndarray) -> Optional[int]:
    """The numpy axis of the first view lying in a slice of the volume that holds the ROI's centre
    (the view the box was drawn in: a box placed with two clicks is centred on the view's plane)."""
    for sliceToRas in views:
        for axis in range(3):
            index = sliceIndexForView(sliceToRas, ijkToWorld, shape, axis)
            if index is not None and abs(float(centre[axis]) - index) <= 0.5 + 1e-6:
                return axis
    return None


def boxOnSlice(roiToWorld: np.ndarray, size: Sequence[float], ijkToWorld: np.ndarray, shape: Sequence[int],
               views: Sequence[np.ndarray] = ()) -> BoxPrompt:
    """The slice a box ROI was drawn on and the box on it.

    The slice's axis: a volume with one slice along an axis (a 2D image) uses that axis; otherwise the
    first of ``views`` (slice views' SliceToRAS, red first) that lies in a slice of the volume holding the
    ROI's centre; otherwise the axis along which the ROI covers the fewest voxels (numpy axis 0 on a tie:
    Slicer gives a box placed with two clicks the thickness of its shorter side,
    ``vtkMRMLMarkupsROINode::UpdateBoxROIFromControlPoints``). The index is the ROI's centre rounded,
    the box the bounding box of its corners on that slice, clipped to the volume.

    Args:
        roiToWorld: the ROI's object-to-world matrix (centre and axes; its parent transforms included).
        size: the ROI's side lengths in mm along its axes.
        ijkToWorld: the volume's IJK to world matrix (its parent transforms included).
        shape: the volume's array shape ``(k, j, i)``.
        views: SliceToRAS matrices of the slice views, in order of preference.

    Raises:
        BoxProblem: the ROI misses the volume, or is thinner than a voxel across the slice.
    """
    roiToWorld = np.asarray(roiToWorld, dtype=np.float64)
    ijkToWorld = np.asarray(ijkToWorld, dtype=np.float64)
    shape = tuple(int(n) for n in shape)
    bounds = roiIjkBounds(roiToWorld, size, ijkToWorld, shape)
    if bounds is None or min(float(s) for s in size) < 0:
        raise BoxProblem("The box does not overlap the volume: place it on the image.")
    worldToIjk = np.linalg.inv(ijkToWorld)
    corners = roiCornersIjk(roiToWorld, size, worldToIjk)[:, ::-1]  # as numpy (k, j, i)
    centre = (worldToIjk @ roiToWorld[:, 3])[2::-1]
    single = [a for a in range(3) if shape[a] == 1]
    axis = single[0] if single else _viewAxis(views, ijkToWorld, shape, centre)
    if axis is None:
        extents = [bounds[a][1] - bounds[a][0] for a in range(3)]
        axis = extents.index(min(extents))
    low, high = bounds[axis]
    index = int(min(max(int(math.floor(centre[axis] + 0.5)), low), high - 1))
    row, col = [a for a in range(3) if a != axis]
    x1, x2 = np.clip([corners[:, col].min(), corners[:, col].max()], 0, shape[col] - 1)
    y1, y2 = np.clip([corners[:, row].min(), corners[:, row].max()], 0, shape[row] - 1)
    if x2 - x1 < 1.0 or y2 - y1 < 1.0:
        raise BoxProblem("The box is narrower than two pixels on the slice: draw it around the structure.")
    return BoxPrompt(axis, index, (float(x1), float(y1), float(x2), float(y2)))


def roiNodeBox(roiNode: Any, volumeNode: Any, views: Sequence[np.ndarray] = ()) -> BoxPrompt:
    """:func:`boxOnSlice` of a ``vtkMRMLMarkupsROINode`` over a volume node (``GetObjectToWorldMatrix``:
    centre and axes in world coordinates, the ROI's parent transforms included; ``GetSize``: side lengths,
    ``vtkMRMLMarkupsROINode.h`` l. 90 and 131 at HEAD, l. 94 and 138 in v5.6.2)."""
    if roiNode is None:
        raise BoxProblem("Place a box first.")
    roiToWorld = sceneData.arrayFromMatrix(roiNode.GetObjectToWorldMatrix())
    size = [float(value) for value in roiNode.GetSize()]  # vtkGetVector3Macro: a tuple in Python
    image = volumeNode.GetImageData() if volumeNode is not None else None
    if image is None:
        raise BoxProblem("Select a volume that has image data.")
    shape = tuple(reversed(image.GetDimensions()))
    return boxOnSlice(roiToWorld, size, sceneData.ijkToWorldArray(volumeNode), shape, views)


# ------------------------------------------------------------------------------------------ writing
def boxSegmentIds(segmentationNode: Any, segmentId: str) -> List[str]:
    """The segments written together with ``segmentId``: those sharing its labelmap layer, in the order of
    their label values (Slicer adds new segments to the first segment's layer, ``vtkSegmentation.cxx``
    ``AddEmptySegment``), so the box sees, and keeps, what the user drew in the other segments of
    that layer. Segments in other layers are neither seen nor changed."""
    segmentation = segmentationNode.GetSegmentation()
    layer = segmentation.GetLayerIndex(segmentId)
    mates = []
    for other, _, _ in sceneData.segmentList(segmentationNode):
        if other == segmentId or segmentation.GetLayerIndex(other) == layer:
            mates.append((int(segmentation.GetSegment(other).GetLabelValue()), other))
    return [other for _, other in sorted(mates)] or [segmentId]


def boxWriter(segmentationNode: Any, segmentId: str, volumeNode: Any, writes: LiveWrites,
              beforeWrite: Optional[Callable[[], None]] = None) -> Tuple[SliceWriter, int]:
    """The :class:`SliceWriter` for ``segmentId`` and the index value the segment has in it."""
    segmentIds = boxSegmentIds(segmentationNode, segmentId)
    writer = SliceWriter(segmentationNode, segmentIds, volumeNode, writes, beforeWrite, "The box tool")
    return writer, segmentIds.index(segmentId) + 1


def _proposal(mask: np.ndarray, value: int) -> Callable[[np.ndarray], np.ndarray]:
    """A slice's wanted content: the segment exactly ``mask``, everything else as it is (the log decides
    which voxels may change: :meth:`LiveWrites.merge`)."""

    def propose(current: np.ndarray) -> np.ndarray:
        if mask.shape != current.shape:
            raise BoxProblem("The mask has shape {} but the slice {}.".format(mask.shape, current.shape))
        out = current.copy()
        out[current == value] = 0
        out[mask] = value
        return out

    return propose


def writeBoxMasks(segmentationNode: Any, segmentId: str, volumeNode: Any, writes: LiveWrites, axis: int,
                  masks: Dict[int, np.ndarray], beforeWrite: Optional[Callable[[], None]] = None) -> int:
    """Write 2D bool masks ``{slice index: mask}`` along numpy ``axis`` into segment ``segmentId`` in place
    (GUI thread): only voxels the box tool wrote last, or empty ones of a slice it never wrote, change
    (earlier box results there are replaced; what the user painted or erased stays). One undo step for all
    (``beforeWrite``). Returns how many voxels were kept as the user had them.

    Raises:
        SegmentationProblem: the segmentation cannot take an in-place write (another transform).
    """
    writer, value = boxWriter(segmentationNode, segmentId, volumeNode, writes, beforeWrite)
    return writer.write(axis, {int(index): _proposal(np.asarray(mask, dtype=bool), value)
                               for index, mask in masks.items()})


# -------------------------------------------------------------------------------------- the panel's
#: Why the walk through the slices stopped, in the clinician's words (``PropagationResult.stopped``).
STOP_TEXT = {
    "vanished": "the structure ended",
    "area jump": "the mask grew suddenly (probably into a neighbour)",
    "end": "the volume ended",
    "cancelled": "cancelled",
}
DEFAULT_SEGMENT = ("Box", (0.9, 0.6, 0.2))


def segmentChoices(project: Optional[Dict[str, Any]], segmentationNode: Any) -> List[Tuple[str, Tuple[float, ...]]]:
    """The segments the box can write into, ``[(name, colour)]``: the project's labels, then the other
    segments of the segmentation (names compared without case), else one new segment "Box"."""
    from .segmentationLogic import packageLabels

    out: List[Tuple[str, Tuple[float, ...]]] = []
    seen = set()
    labels = (project or {}).get("labels") or []
    for _, name, color in packageLabels(labels):
        if name.strip().lower() not in seen:
            seen.add(name.strip().lower())
            out.append((name, tuple(color)))
    if segmentationNode is not None:
        for _, name, color in sceneData.segmentList(segmentationNode):
            if name.strip().lower() not in seen:
                seen.add(name.strip().lower())
                out.append((name, tuple(color)))
    return out or [DEFAULT_SEGMENT]


def propagationText(result: Any, axis: int) -> str:
    """What a finished walk did: its slices and why it stopped each way."""
    slices = sorted(result.slices)
    if not slices:
        return "Nothing found in the box's slice: move or enlarge the box."
    ways = []
    for direction, word in (("up", "up"), ("down", "down")):
        reason = result.stopped.get(direction)
        if reason:
            ways.append("{}: {}".format(word, STOP_TEXT.get(reason, reason)))
    return "{} slices along {} ({} to {}); stopped {}.".format(len(slices), "KJI"[axis], slices[0], slices[-1],
                                                              ", ".join(ways))


class BoxTool:
    """The box tool's decisions and state, without Qt (one per Segment panel).

    Args:
        cache: the box models on disk and in memory.
        writesFor: ``writesFor(segmentationNode) -> LiveWrites``, the box tool's log of a segmentation
            (``SegmentationLogic.liveWrites(node, BOX_TOOL)``).
    """

    def __init__(self, cache: BoxModelCache, writesFor: Callable[[Any], LiveWrites]) -> None:
        self.cache = cache
        self.writesFor = writesFor
        self.choices: List[BoxModelChoice] = boxModelChoices(None)

    def setModel(self, model: Optional[Dict[str, Any]], title: str = "") -> List[BoxModelChoice]:
        """The choices for the chosen trained model (its task-tuned box model first when it has one)."""
        self.choices = boxModelChoices(model, title)
        return self.choices

    def prepare(self, client: Any, choice: BoxModelChoice, cancel: Optional[Callable[[], bool]] = None,
                progress: Optional[Callable[[float, str], None]] = None) -> CachedBoxPredictor:
        """The loaded model of ``choice`` (downloaded first when needed; worker thread)."""
        return self.cache.predictor(self.cache.ensure(client, choice, cancel=cancel, progress=progress))

    def write(self, segmentationNode: Any, segment: Tuple[str, Sequence[float]], volumeNode: Any, axis: int,
              masks: Dict[int, np.ndarray], beforeWrite: Optional[Callable[[], None]] = None,
              terminology: Optional[Dict[str, str]] = None) -> Tuple[str, int]:
        """Write masks into the segment named ``segment[0]`` (found by name or added with colour ``segment[1]``);
        returns its id and the voxels kept as the user had them (GUI thread)."""
        segmentId = sceneData.ensureSegments(segmentationNode, [segment], terminology)[0]
        kept = writeBoxMasks(segmentationNode, segmentId, volumeNode, self.writesFor(segmentationNode), axis, masks,
                             beforeWrite)
        return segmentId, kept
