"""Label maps and volumes between the MRML scene, numpy and files, voxel for voxel.

Every label map here lies on the grid of a *reference volume*: the same dimensions and the same
IJK-to-RAS matrix (and parent transform), so array index ``(k, j, i)`` of the label map is voxel
``(k, j, i)`` of the volume. The functions use Slicer's own machinery: the segmentations logic
(``ExportSegmentsToLabelmapNode`` with the volume as reference geometry,
``ImportLabelmapToSegmentationNode``), ``slicer.util``'s array helpers and the volume storage node
for files. ``slicer`` and ``vtk`` are imported inside the functions (this file is logic: it is
imported outside Slicer too), and every temporary node is removed again.

Segment order defines label indices: the label map exported for segment ids ``[a, b, c]`` holds
1 for ``a``, 2 for ``b``, 3 for ``c``, and importing an index array for ``[a, b, c]`` fills them so.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "SceneError",
    "arrayFromMatrix",
    "matrixFromArray",
    "ijkToRasArray",
    "ijkToWorldArray",
    "volumeArrayCopy",
    "volumeSliceCopy",
    "isColourVolume",
    "colourNote",
    "LUMINANCE_WEIGHTS",
    "segmentList",
    "ensureSegments",
    "TERMINOLOGY_TAG",
    "segmentTerminology",
    "DEFAULT_TERMINOLOGY",
    "exportSegmentsAsIndexArray",
    "importIndexArray",
    "addHiddenNode",
    "newSegmentationFor",
    "VOLUME_SELECTOR",
    "writeVolumeFile",
    "volumeSnapshot",
    "writeLabelFile",
    "readLabelFile",
    "sharedLabelmapArray",
    "labelmapModified",
]

TEMPORARY_NODE_NAME = "__SlicerTSKD_temporary__"


class SceneError(Exception):
    """A scene operation failed in a way the user can fix (the message says how)."""


def arrayFromMatrix(matrix: Any) -> np.ndarray:
    """A ``vtkMatrix4x4`` as a 4 x 4 numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def matrixFromArray(array: np.ndarray) -> Any:
    """A 4 x 4 array as a ``vtkMatrix4x4``."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijkToRasArray(volumeNode: Any) -> np.ndarray:
    """The volume's IJK-to-RAS matrix (its own coordinates, without parent transforms), 4 x 4."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return arrayFromMatrix(matrix)


def volumeSnapshot(volumeNode: Any) -> "VolumeSnapshot":
    """A copy of the voxels and the node's own IJK-to-RAS (what :func:`writeVolumeFile` writes), for a worker.

    The copy is a memory copy on the GUI thread; the slow part (compressing, writing) is
    :func:`SlicerTSKDLib.volumeFiles.writeNrrd`, in a worker thread.
    """
    from .volumeFiles import VolumeSnapshot

    return VolumeSnapshot(volumeArrayCopy(volumeNode), ijkToRasArray(volumeNode), volumeNode.GetName(), copy=False)


def ijkToWorldArray(volumeNode: Any) -> np.ndarray:
    """IJK to world RAS, through the volume's (linear) parent transforms.

    Raises:
        SceneError: the volume is under a non-linear transform (harden it first).
    """
    ijkToRas = ijkToRasArray(volumeNode)
    parent = volumeNode.GetParentTransformNode()
    if parent is None:
        return ijkToRas
    if not parent.IsTransformToWorldLinear():
        raise SceneError("'{}' is under a non-linear transform: harden the transform on the volume first "
                         "(Data module, right-click, 'Harden transform').".format(volumeNode.GetName()))
    import vtk

    toWorld = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(toWorld)
    return arrayFromMatrix(toWorld) @ ijkToRas


#: RGB(A) to grey as ``vtkImageLuminance`` and Slicer's "Vector to Scalar Volume" module do it
#: (``Modules/Scripted/VectorToScalarVolume/VectorToScalarVolume.py`` l. 70, 89: 0.30 R + 0.59 G + 0.11 B).
LUMINANCE_WEIGHTS = (0.30, 0.59, 0.11)


def isColourVolume(volumeNode: Any) -> bool:
    """Whether the volume holds RGB or RGBA voxels (a ``vtkMRMLVectorVolumeNode``, e.g. an ultrasound PNG/JPEG:
    it derives from ``vtkMRMLScalarVolumeNode`` through ``vtkMRMLTensorVolumeNode``, ``Libs/MRML/Core/
    vtkMRMLVectorVolumeNode.h`` l. 25, ``vtkMRMLTensorVolumeNode.h`` l. 34, so scalar-volume selectors offer it)."""
    image = volumeNode.GetImageData() if volumeNode is not None else None
    return image is not None and image.GetNumberOfScalarComponents() in (3, 4)


def colourNote(volumeNode: Any) -> str:
    """What the panels add to their status for a colour volume (empty for a grey one)."""
    if volumeNode is None or not isColourVolume(volumeNode):
        return ""
    return "'{}' is a colour image: its brightness (luminance) is used.".format(volumeNode.GetName())


def volumeArrayCopy(volumeNode: Any) -> np.ndarray:
    """A copy of the volume's voxels ``(k, j, i)``, safe to hand to a worker thread.

    A colour (RGB/RGBA) volume gives its luminance (:data:`LUMINANCE_WEIGHTS`, float32; issue 32,
    item 3); a one-component vector volume its one component.

    Raises:
        SceneError: the node has no image data, or several components that are not a colour.
    """
    voxels = _voxels(volumeNode)
    return _greyCopy(voxels, voxels.ndim == 4, volumeNode)


def volumeSliceCopy(volumeNode: Any, axis: int, index: int) -> np.ndarray:
    """A copy of one slice (numpy ``axis`` of the ``(k, j, i)`` voxels, slice ``index``), grey as
    :func:`volumeArrayCopy` makes it: for a worker that needs one slice, without copying the volume.

    Raises:
        SceneError: as :func:`volumeArrayCopy`, or the slice is outside the volume.
    """
    voxels = _voxels(volumeNode)
    if axis not in (0, 1, 2) or not 0 <= int(index) < voxels.shape[axis]:
        raise SceneError("Slice {} along axis {} is outside '{}' (shape {}).".format(
            index, axis, volumeNode.GetName(), tuple(voxels.shape[:3])))
    return _greyCopy(np.take(voxels, int(index), axis=axis), voxels.ndim == 4, volumeNode)


def _voxels(volumeNode: Any) -> np.ndarray:
    """The voxels as ``slicer.util.arrayFromVolume`` gives them (a view; components last for a vector volume)."""
    import slicer

    if volumeNode is None or volumeNode.GetImageData() is None:
        raise SceneError("Select a volume that has image data.")
    try:
        return slicer.util.arrayFromVolume(volumeNode)
    except RuntimeError:
        raise SceneError("'{}' is not a scalar volume: choose a grey-level image.".format(volumeNode.GetName())) from None


def _greyCopy(voxels: np.ndarray, hasComponents: bool, volumeNode: Any) -> np.ndarray:
    """A grey copy of ``voxels`` (a volume or a slice of one; ``hasComponents``: the last axis holds the
    components of a vector volume)."""
    array = np.array(voxels, copy=True)
    if hasComponents:
        components = array.shape[-1]
        if components == 1:
            return np.ascontiguousarray(array[..., 0])
        if components in (3, 4):
            rgb = array[..., :3].astype(np.float32)
            return np.ascontiguousarray(rgb @ np.asarray(LUMINANCE_WEIGHTS, dtype=np.float32))
        raise SceneError("'{}' has {} values per voxel (a tensor or diffusion image): choose a grey-level or colour "
                         "image.".format(volumeNode.GetName(), components))
    return array


def segmentList(segmentationNode: Any) -> List[Tuple[str, str, Tuple[float, float, float]]]:
    """The segments in display order: ``[(segmentId, name, (r, g, b) in 0..1), ...]``."""
    segmentation = segmentationNode.GetSegmentation()
    out = []
    for index in range(segmentation.GetNumberOfSegments()):
        segmentId = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segmentId)
        out.append((segmentId, segment.GetName(), tuple(float(c) for c in segment.GetColor())))
    return out


#: The segment tag holding its terminology entry (``vtkSegment::GetTerminologyEntryTagName()``,
#: ``Libs/vtkSegmentationCore/vtkSegment.cxx`` l. 49-51; a serialized entry such as
#: ``Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~...``).
#: ``GetTag``/``SetTag`` are used: ``vtkSegment::SetTerminology`` exists only in newer Slicer.
TERMINOLOGY_TAG = "TerminologyEntry"

#: The entry every new segment gets (``vtkSegment``'s constructor, ``vtkSegment.cxx`` l. 70-71 at HEAD, l. 69 in
#: v5.6.2): "Tissue", i.e. nothing chosen.
DEFAULT_TERMINOLOGY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^85756007^Tissue"
                       "~SCT^85756007^Tissue~^^~Anatomic codes - DICOM master list~^^~^^")


def segmentTerminology(segment: Any) -> str:
    """The segment's chosen terminology entry ("" when it has none, or only Slicer's default "Tissue")."""
    import vtk

    value = vtk.reference("")
    entry = str(value) if segment.GetTag(TERMINOLOGY_TAG, value) else ""
    return "" if entry == DEFAULT_TERMINOLOGY else entry


def ensureSegments(segmentationNode: Any, labels: Sequence[Tuple[str, Sequence[float]]],
                   terminology: Optional[Dict[str, str]] = None) -> List[str]:
    """The segment ids for ``labels`` (``[(name, (r, g, b)), ...]``, background excluded), in that order.

    Segments are found by name (case-insensitive); missing ones are added empty. Colours are set
    from ``labels``. ``terminology`` (``{label name: serialized entry}``, the project's) tags the
    segments that have no terminology yet, so Slicer shows and exports the structure's codes (issue 32,
    item 13; as SlicerMONAIAuto3DSeg tags its segments with SNOMED codes).
    """
    segmentation = segmentationNode.GetSegmentation()
    byName = {name.strip().lower(): segmentId for segmentId, name, _ in segmentList(segmentationNode)}
    codes = {str(k).strip().lower(): str(v) for k, v in (terminology or {}).items() if v}
    ids = []
    for name, color in labels:
        segmentId = byName.get(str(name).strip().lower())
        if segmentId is None:
            segmentId = segmentation.AddEmptySegment("", str(name), [float(c) for c in color])
        else:
            segmentation.GetSegment(segmentId).SetColor(*[float(c) for c in color])
        entry = codes.get(str(name).strip().lower())
        segment = segmentation.GetSegment(segmentId)
        if entry and not segmentTerminology(segment):
            segment.SetTag(TERMINOLOGY_TAG, entry)
        ids.append(segmentId)
    return ids


def _stringArray(values: Sequence[str]) -> Any:
    import vtk

    array = vtk.vtkStringArray()
    for value in values:
        array.InsertNextValue(value)
    return array


def addHiddenNode(scene: Any, className: str, name: str = TEMPORARY_NODE_NAME) -> Any:
    """A new node of ``className`` added to ``scene`` already hidden from editors and selectors.

    ``HideFromEditors`` is set before ``AddNode``: the node selectors (``qMRMLNodeComboBox``) filter
    hidden nodes as they are added (Slicer ``Libs/MRML/Widgets/qMRMLSortFilterProxyModel.cxx``:
    ``if (!d->ShowHidden && node->GetHideFromEditors())``), while ``AddNewNodeByClass`` would announce
    a visible node first.
    """
    import slicer

    node = getattr(slicer, className)()
    node.SetName(name)
    node.SetHideFromEditors(True)
    return scene.AddNode(node)


def _temporaryLabelmapNode(volumeNode: Any) -> Any:
    """A hidden labelmap node with the volume's geometry and parent transform (caller removes it)."""
    node = addHiddenNode(volumeNode.GetScene(), "vtkMRMLLabelMapVolumeNode")
    node.CopyOrientation(volumeNode)
    node.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    return node


#: The volume selector's settings: scalar volumes without their label map subclass
#: (``vtkMRMLLabelMapVolumeNode`` is a ``vtkMRMLScalarVolumeNode``; ``qMRMLNodeComboBox.hideChildNodeTypes``).
#: Diffusion images are hidden too (many values per voxel; ``qMRMLSortFilterProxyModel.cxx`` l. 283-288 hides
#: every node that ``IsA`` one of these); colour (vector) volumes stay: their luminance is used.
VOLUME_SELECTOR = {"nodeTypes": ["vtkMRMLScalarVolumeNode"],
                   "hideChildNodeTypes": ["vtkMRMLLabelMapVolumeNode", "vtkMRMLDiffusionWeightedVolumeNode",
                                          "vtkMRMLDiffusionImageVolumeNode"]}


def newSegmentationFor(volumeNode: Any, name: str) -> Any:
    """A new segmentation node for ``volumeNode``: its display nodes, the volume's geometry as
    reference, and the volume's parent transform (so it overlays the volume and live mode can write
    in place; :func:`sharedLabelmapArray` requires the same transform)."""
    scene = volumeNode.GetScene()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    segmentation.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    return segmentation


def _removeNode(node: Any) -> None:
    scene = node.GetScene()
    if scene is None:
        return
    for index in range(node.GetNumberOfDisplayNodes()):
        display = node.GetNthDisplayNode(index)
        if display is None:
            continue
        color = display.GetColorNode()
        if color is not None and not color.GetSingletonTag():
            scene.RemoveNode(color)  # the colour table the export made for this labelmap
        scene.RemoveNode(display)
    storage = node.GetStorageNode()
    if storage is not None:
        scene.RemoveNode(storage)
    scene.RemoveNode(node)


def exportSegmentsAsIndexArray(segmentationNode: Any, segmentIds: Sequence[str], volumeNode: Any) -> np.ndarray:
    """The segments as one index map on the volume's grid: 0 outside, ``n + 1`` inside ``segmentIds[n]``.

    Uses ``ExportSegmentsToLabelmapNode`` with the volume as reference geometry, so the map overlays
    the volume voxel for voxel whatever the segmentation's own geometry (overlaps: later segments win).

    Raises:
        SceneError: the export failed.
    """
    import slicer

    if not segmentIds:
        raise SceneError("The segmentation '{}' has no segments.".format(segmentationNode.GetName()))
    labelNode = _temporaryLabelmapNode(volumeNode)
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentationNode, _stringArray(segmentIds), labelNode, volumeNode)
        if not ok:
            raise SceneError("Slicer could not export the segments of '{}' onto the grid of '{}'.".format(
                segmentationNode.GetName(), volumeNode.GetName()))
        array = np.array(slicer.util.arrayFromVolume(labelNode), copy=True)
    finally:
        _removeNode(labelNode)
    expected = tuple(reversed(volumeNode.GetImageData().GetDimensions()))
    if array.shape != expected:
        raise SceneError("The exported label map has shape {} instead of the volume's {}.".format(array.shape, expected))
    return array


def importIndexArray(indexArray: np.ndarray, volumeNode: Any, segmentationNode: Any, segmentIds: Sequence[str]) -> None:
    """Replace the content of ``segmentIds`` by an index map on the volume's grid (``n + 1`` -> ``segmentIds[n]``).

    The segmentation takes the volume as its reference geometry when it has none. All the segments
    end up sharing one labelmap layer with the volume's grid (label value ``n + 1``), which is
    what :func:`sharedLabelmapArray` (live mode) writes into.

    Raises:
        SceneError: the array does not have the volume's shape, or the import failed.
    """
    import slicer

    dims = tuple(reversed(volumeNode.GetImageData().GetDimensions()))
    if tuple(indexArray.shape) != dims:
        raise SceneError("The label map has shape {} but the volume '{}' has {}.".format(
            tuple(indexArray.shape), volumeNode.GetName(), dims))
    if int(indexArray.max(initial=0)) > len(segmentIds):
        raise SceneError("The label map has index {} but only {} segments were given.".format(
            int(indexArray.max()), len(segmentIds)))
    roleName = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    if segmentationNode.GetNodeReference(roleName) is None:
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    if segmentationNode.GetDisplayNode() is None:
        segmentationNode.CreateDefaultDisplayNodes()
    labelNode = _temporaryLabelmapNode(volumeNode)
    try:
        slicer.util.updateVolumeFromArray(labelNode, np.ascontiguousarray(indexArray, dtype=np.uint8))
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            labelNode, segmentationNode, _stringArray(segmentIds))
        if not ok:
            raise SceneError("Slicer could not import the label map into '{}'.".format(segmentationNode.GetName()))
    finally:
        _removeNode(labelNode)


def _writeNode(node: Any, path: str) -> str:
    import slicer

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    scene = node.GetScene()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    try:
        storage.SetFileName(path)
        storage.SetUseCompression(1)
        if not storage.WriteData(node):
            raise SceneError("Could not write '{}' to {}.".format(node.GetName(), path))
    finally:
        scene.RemoveNode(storage)
    return path


def writeVolumeFile(volumeNode: Any, path: str) -> str:
    """Write the volume (its own geometry) to ``path`` (``.nrrd`` or ``.nii.gz``); returns the path."""
    return _writeNode(volumeNode, path)


def writeLabelFile(labelArray: np.ndarray, volumeNode: Any, path: str) -> str:
    """Write an integer label map ``(k, j, i)`` with the volume's geometry to ``path``; returns the path."""
    dims = tuple(reversed(volumeNode.GetImageData().GetDimensions()))
    if tuple(labelArray.shape) != dims:
        raise SceneError("The label map has shape {} but the volume has {}.".format(tuple(labelArray.shape), dims))
    import slicer

    labelNode = _temporaryLabelmapNode(volumeNode)
    try:
        slicer.util.updateVolumeFromArray(labelNode, np.ascontiguousarray(labelArray))
        return _writeNode(labelNode, path)
    finally:
        _removeNode(labelNode)


def readLabelFile(path: str, volumeNode: Any, tolerance: float = 1e-3) -> np.ndarray:
    """Read a label map written for ``volumeNode`` (e.g. the server's prediction); ``(k, j, i)`` array.

    Raises:
        SceneError: unreadable, or not on the volume's grid.
    """
    import slicer

    scene = volumeNode.GetScene()
    labelNode = addHiddenNode(scene, "vtkMRMLLabelMapVolumeNode")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    try:
        storage.SetFileName(path)
        if not storage.ReadData(labelNode) or labelNode.GetImageData() is None:
            raise SceneError("Could not read the label map {}.".format(path))
        array = np.array(slicer.util.arrayFromVolume(labelNode), copy=True)
        ours, theirs = ijkToRasArray(volumeNode), ijkToRasArray(labelNode)
        scale = max(float(np.abs(ours[:3, :3]).max()), 1e-6)
    finally:
        scene.RemoveNode(storage)
        _removeNode(labelNode)
    dims = tuple(reversed(volumeNode.GetImageData().GetDimensions()))
    if array.shape != dims or not np.allclose(ours, theirs, atol=tolerance * scale):
        raise SceneError("The label map {} does not lie on the grid of '{}'.".format(path, volumeNode.GetName()))
    return array


def sharedLabelmapArray(segmentationNode: Any, segmentIds: Sequence[str], volumeNode: Any,
                        tolerance: float = 1e-4) -> Optional[np.ndarray]:
    """A writable view of the one labelmap layer holding ``segmentIds`` (value ``n + 1`` = ``segmentIds[n]``).

    Returns None unless the segments share one layer that lies exactly on the volume's grid (full
    extent, same IJK-to-RAS, same parent transform) with those label values: then writing into the
    view changes the segments (call :func:`labelmapModified` after). :func:`importIndexArray`
    produces this layout.
    """
    if not segmentIds:
        return None
    segmentation = segmentationNode.GetSegmentation()
    layer = segmentation.GetLayerIndex(segmentIds[0])
    for index, segmentId in enumerate(segmentIds):
        segment = segmentation.GetSegment(segmentId)
        if segment is None or segmentation.GetLayerIndex(segmentId) != layer or segment.GetLabelValue() != index + 1:
            return None
    if segmentationNode.GetTransformNodeID() != volumeNode.GetTransformNodeID():
        return None
    image = segmentationNode.GetBinaryLabelmapInternalRepresentation(segmentIds[0])
    if image is None or image.GetPointData().GetScalars() is None:
        return None
    dims = volumeNode.GetImageData().GetDimensions()
    if tuple(image.GetExtent()) != (0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1):
        return None
    import vtk
    from vtk.util import numpy_support

    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    ours = ijkToRasArray(volumeNode)
    if not np.allclose(arrayFromMatrix(matrix), ours, atol=tolerance * max(float(np.abs(ours[:3, :3]).max()), 1e-6)):
        return None
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(tuple(reversed(dims)))


def labelmapModified(segmentationNode: Any, segmentIds: Sequence[str]) -> None:
    """Tell Slicer that the shared labelmap of ``segmentIds`` was changed in place (views update)."""
    if not segmentIds:
        return
    image = segmentationNode.GetBinaryLabelmapInternalRepresentation(segmentIds[0])
    if image is not None:
        image.GetPointData().GetScalars().Modified()
        image.Modified()
    segmentation = segmentationNode.GetSegmentation()
    for segmentId in segmentIds:
        segment = segmentation.GetSegment(segmentId)
        if segment is not None:
            segment.Modified()
