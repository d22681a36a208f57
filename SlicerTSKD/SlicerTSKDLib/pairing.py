"""Which segmentation belongs to which volume (issue 32, items 1 and 4).

The module's volume and segmentation selectors are independent Qt widgets, yet every write and
export pairs them: Slicer's ``ImportLabelmapToSegmentationNode`` clears the listed segments before
writing (``Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentationsModuleLogic.cxx``,
``ClearSegment(segmentId)`` at line 1804 on v5.10.0 / HEAD, 1775 on v5.8.1, 1643 on v5.6.2; no
undo), and ``ExportSegmentsToLabelmapNode`` resamples any segmentation onto the reference volume by
world coordinates (``Libs/vtkSegmentationCore/vtkSegmentation.cxx`` ~1649-1656,
``ResampleOrientedImageToReferenceGeometry``), so case A's labels would silently be replaced by B's
prediction, or uploaded as B's ground truth where the scans overlap.

A segmentation names its volume: ``SetReferenceImageGeometryParameterFromVolumeNode`` stores the
volume's serialized geometry as the ``ReferenceImageGeometry`` conversion parameter and a node
reference with role ``referenceImageGeometryRef`` to the volume (``Libs/MRML/Core/
vtkMRMLSegmentationNode.cxx`` lines 746-782 at HEAD; the Segment Editor and :func:`sceneData.
newSegmentationFor` call it). :func:`owner` reads that: :data:`SAME` (this volume, or no reference
node but exactly this volume's grid), :data:`OTHER` (another volume or grid) or :data:`UNKNOWN`
(no reference geometry at all: a segmentation just made with the selector's "Create new").

:class:`SegmentationPairs` is what the selectors do with it: when the volume changes, the
segmentation last used with that volume (still in the scene), else the newest one made for it, else
none (a new one is made when something is written). Node objects are held, never node IDs: IDs
restart after *Close scene* (``Libs/MRML/Core/vtkMRMLScene.cxx``, ``Clear`` empties ``UniqueIDs`` at line 366,
HEAD), so an ID kept across a close names another node.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["sameNode", "SAME", "OTHER", "UNKNOWN", "owner", "ownerText", "parseGeometry", "hasContent", "segmentationsFor",
           "SegmentationPairs", "inScene"]

SAME, OTHER, UNKNOWN = "same", "other", "unknown"

_ROLE = "referenceImageGeometryRef"  # vtkMRMLSegmentationNode::GetReferenceImageGeometryReferenceRole()


def sameNode(a: Any, b: Any) -> bool:
    """Whether two node wrappers are the same node (the same object, or the same ID in the same scene)."""
    if a is None or b is None:
        return False
    return a is b or (a.GetID() == b.GetID() and a.GetScene() is not None and a.GetScene() is b.GetScene())


def inScene(node: Any, scene: Any = None) -> bool:
    """Whether ``node`` is still in a scene (``scene`` when given); a removed node has none."""
    if node is None:
        return False
    current = node.GetScene()
    if current is None:
        return False
    if scene is not None and current is not scene:
        return False
    return current.IsNodePresent(node) != 0


def parseGeometry(text: str) -> Optional[Tuple[np.ndarray, Tuple[int, ...]]]:
    """The ``(4 x 4 image-to-world matrix, extent)`` of a serialized reference geometry (16 matrix
    elements row by row, then the 6 extent values, ``;``-separated: ``vtkSegmentationConverter::
    SerializeImageGeometry``, ``Libs/vtkSegmentationCore/vtkSegmentationConverter.cxx`` l. 131-150);
    None when it is empty or malformed."""
    parts = [part for part in str(text or "").split(";") if part.strip()]
    if len(parts) < 22:
        return None
    try:
        matrix = np.array([float(value) for value in parts[:16]], dtype=np.float64).reshape(4, 4)
        extent = tuple(int(round(float(value))) for value in parts[16:22])
    except ValueError:
        return None
    return matrix, extent


def _referenceNode(segmentationNode: Any) -> Any:
    return segmentationNode.GetNodeReference(_ROLE)


def _referenceGeometry(segmentationNode: Any) -> str:
    """The serialized reference geometry ("" when none; asked only when present: ``GetConversionParameter``
    logs an error for a missing one)."""
    import slicer

    segmentation = segmentationNode.GetSegmentation()
    if segmentation is None:
        return ""
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()  # "Reference image geometry"
    if name not in segmentation.SerializeAllConversionParameters():
        return ""
    return segmentation.GetConversionParameter(name)


def _sameGrid(geometry: Tuple[np.ndarray, Tuple[int, ...]], volumeNode: Any, tolerance: float = 1e-4) -> bool:
    from . import sceneData

    matrix, extent = geometry
    image = volumeNode.GetImageData()
    if image is None or tuple(image.GetExtent()) != tuple(extent):
        return False
    ours = sceneData.ijkToRasArray(volumeNode)
    return bool(np.allclose(matrix, ours, atol=tolerance * max(float(np.abs(ours[:3, :3]).max()), 1e-6)))


def owner(segmentationNode: Any, volumeNode: Any) -> Tuple[str, str]:
    """Whether ``segmentationNode`` was made for ``volumeNode``: ``(SAME | OTHER | UNKNOWN, whose)``
    where ``whose`` names the other volume (or says "another image grid")."""
    reference = _referenceNode(segmentationNode)
    if reference is not None:
        if sameNode(reference, volumeNode):
            return SAME, volumeNode.GetName()
        return OTHER, reference.GetName() or "another image"
    geometry = parseGeometry(_referenceGeometry(segmentationNode))
    if geometry is None:
        return UNKNOWN, ""
    if _sameGrid(geometry, volumeNode):
        return SAME, volumeNode.GetName()
    return OTHER, "another image grid"


def ownerText(segmentationNode: Any, volumeNode: Any) -> Optional[str]:
    """The question to ask before exporting ``segmentationNode`` as the label of ``volumeNode`` (None: it
    is that volume's, or says nothing about its volume)."""
    state, whose = owner(segmentationNode, volumeNode)
    if state != OTHER:
        return None
    return ("The segmentation '{}' was drawn on '{}', not on '{}'. Used as the label of '{}', it would be moved onto "
            "this image by position alone and may label the wrong anatomy.\n\nUse it anyway?".format(
                segmentationNode.GetName(), whose, volumeNode.GetName(), volumeNode.GetName()))


def hasContent(segmentationNode: Any, segmentIds: Optional[Sequence[str]] = None) -> bool:
    """Whether any of the segments (default: all) holds a voxel (what a write would replace)."""
    from vtk.util import numpy_support

    segmentation = segmentationNode.GetSegmentation()
    if segmentation is None:
        return False
    ids = list(segmentIds) if segmentIds is not None else [segmentation.GetNthSegmentID(n)
                                                          for n in range(segmentation.GetNumberOfSegments())]
    for segmentId in ids:
        segment = segmentation.GetSegment(segmentId)
        if segment is None:
            continue
        image = segmentationNode.GetBinaryLabelmapInternalRepresentation(segmentId)
        if image is None or image.GetPointData().GetScalars() is None:
            if segment.GetRepresentation("Closed surface") is not None:
                return True  # drawn as a surface: content, even without a labelmap
            continue
        values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
        if values.size and bool((values == segment.GetLabelValue()).any()):
            return True
    return False


def segmentationsFor(scene: Any, volumeNode: Any) -> List[Any]:
    """The scene's segmentations made for ``volumeNode`` (:data:`SAME`), oldest first; those that name it
    by reference come after those that only share its grid (two series can share one grid)."""
    nodes = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    byGrid, byReference = [], []
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.GetHideFromEditors() or owner(node, volumeNode)[0] != SAME:
            continue
        (byGrid if _referenceNode(node) is None else byReference).append(node)
    return byGrid + byReference


class SegmentationPairs:
    """The segmentation to show with each volume: the one last used with it, else the newest made for it.

    Holds node objects (not IDs): a pair whose node left the scene is forgotten.
    """

    def __init__(self) -> None:
        self._pairs: List[Tuple[Any, Any]] = []

    def remember(self, volumeNode: Any, segmentationNode: Any) -> None:
        """``segmentationNode`` was chosen (or made) for ``volumeNode``; one of another volume is not kept."""
        if volumeNode is None or segmentationNode is None:
            return
        if owner(segmentationNode, volumeNode)[0] == OTHER:
            return
        self._pairs = [(v, s) for v, s in self._pairs if v is not volumeNode and inScene(v) and inScene(s)]
        self._pairs.append((volumeNode, segmentationNode))

    def recall(self, volumeNode: Any) -> Any:
        """The segmentation remembered for ``volumeNode`` that is still in its scene and still its own."""
        for volume, segmentation in reversed(self._pairs):
            if volume is volumeNode and inScene(segmentation, volumeNode.GetScene()) \
                    and owner(segmentation, volumeNode)[0] != OTHER:
                return segmentation
        return None

    def segmentationFor(self, volumeNode: Any) -> Any:
        """What the segmentation selector shows when ``volumeNode`` becomes current (None: none yet)."""
        if volumeNode is None or volumeNode.GetScene() is None:
            return None
        remembered = self.recall(volumeNode)
        if remembered is not None:
            return remembered
        made = segmentationsFor(volumeNode.GetScene(), volumeNode)
        return made[-1] if made else None

    def forgetAll(self) -> None:
        """The scene was closed."""
        self._pairs = []
