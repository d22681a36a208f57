"""3D Slicer segmentation files (``.seg.nrrd``): segment names, label values, layers, writing.

A ``.seg.nrrd`` is a NRRD label map whose header describes the segments, one group of fields per
segment index ``N`` (as Slicer's ``vtkMRMLSegmentationStorageNode`` writes them)::

    Segment0_ID:=Segment_1            unique id; Slicer counts segments by these
    Segment0_Name:=liver
    Segment0_Color:=0.9 0.1 0.1       RGB in 0..1
    Segment0_LabelValue:=1            voxel value of the segment in its layer
    Segment0_Layer:=0                 which layer (4th axis, "list" kind) holds it
    Segment0_Extent:=0 33 0 51 0 34   voxel bounding box in the file's grid ("0 -1 0 -1 0 -1" if empty)
    Segmentation_ReferenceImageExtentOffset:=0 0 0
    Segmentation_MasterRepresentation:=Binary labelmap

Segments that overlap go to separate layers, so a multi-layer file has several values per voxel
(SimpleITK reads it as a vector image). tskd needs one label per voxel: layers are merged when the
segments do not overlap. Slicer may also crop the file to the segments' extent with its own
origin; :func:`tskd.data.align.align_label_to_image` puts such a label back on its image's grid.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from tskd.atomic import atomic_write
from tskd.errors import DataError

__all__ = ["SEGMENT_KEY", "segments_from_metadata", "merge_segment_layers", "match_segments", "write_seg_nrrd"]

logger = logging.getLogger(__name__)

SEGMENT_KEY = "Segment"
_EMPTY_EXTENT = "0 -1 0 -1 0 -1"


def segments_from_metadata(metadata: dict[str, str]) -> list[dict[str, Any]]:
    """The segments a Slicer segmentation header declares, in file order.

    Args:
        metadata: header key/value pairs (SimpleITK's ``GetMetaData``).

    Returns:
        One dict per segment: ``name``, ``label_value`` (int), ``color`` ([r, g, b] in 0..1 or
        None when the header has none), ``layer`` (int), ``id``.
    """
    segments = []
    index = 0
    while f"{SEGMENT_KEY}{index}_ID" in metadata or f"{SEGMENT_KEY}{index}_LabelValue" in metadata:

        def field(name: str, default: str = "") -> str:
            return metadata.get(f"{SEGMENT_KEY}{index}_{name}", default).strip()

        segment_id = field("ID") or f"Segment_{index + 1}"
        color = _parse_color(field("Color") or field("DefaultColor"))
        try:
            label_value = int(float(field("LabelValue", "1")))
            layer = int(float(field("Layer", str(index))))
        except ValueError:
            raise DataError(
                f"segment {index} ('{field('Name')}') has an invalid LabelValue or Layer field in its header"
            ) from None
        segments.append(
            {"name": field("Name") or segment_id, "label_value": label_value, "color": color,
             "layer": layer, "id": segment_id}
        )
        index += 1
    return segments


def _parse_color(text: str) -> list[float] | None:
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        return None
    if len(values) != 3:
        return None
    if max(values) > 1.0:  # some writers use 0..255
        values = [v / 255.0 for v in values]
    return [min(max(v, 0.0), 1.0) for v in values]


def merge_segment_layers(
    array: np.ndarray, segments: list[dict[str, Any]], path: Path
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Merge the layers of a multi-layer segmentation into one label map.

    Args:
        array: ``(k, j, i, L)`` (or ``(j, i, L)``) voxel values, one last-axis entry per layer.
        segments: from :func:`segments_from_metadata`.
        path: the file, for messages.

    Returns:
        The label map ``(k, j, i)`` and the segments with their label values in it (kept when
        unique across layers, else renumbered 1..N in segment order).

    Raises:
        DataError: two segments share voxels.
    """
    layers = array.shape[-1]
    masks = []
    for segment in segments:
        layer = segment["layer"]
        if not 0 <= layer < layers:
            raise DataError(f"{path}: segment '{segment['name']}' is in layer {layer}, but the file has "
                            f"{layers} layers")
        masks.append(array[..., layer] == segment["label_value"])
    if masks:
        count = np.sum(masks, axis=0, dtype=np.int32)
        if count.max() > 1:
            where = np.argwhere(count > 1)
            first = tuple(where[0])
            names = [s["name"] for s, m in zip(segments, masks) if m[first]]
            raise DataError(
                f"{path}: segments {', '.join(repr(n) for n in names)} overlap ({len(where)} voxels belong to "
                "more than one segment); tskd needs one label per voxel. In Slicer's Segment Editor, set "
                "'Modify other segments' to 'Overwrite all' and repaint, or remove the overlap"
            )
    values = [s["label_value"] for s in segments]
    renumber = len(set(values)) != len(values) or 0 in values
    merged = np.zeros(array.shape[:-1], dtype=np.uint8 if len(segments) < 256 and max(values + [0]) < 256 else np.int32)
    out = []
    for number, (segment, mask) in enumerate(zip(segments, masks), start=1):
        value = number if renumber else segment["label_value"]
        merged[mask] = value
        out.append({**segment, "label_value": value, "layer": 0})
    if renumber:
        logger.info("%s: segment label values renumbered 1..%d while merging %d layers", path, len(segments), layers)
    return merged, out


def match_segments(
    segments_by_case: dict[str, list[dict[str, Any]]], declared: Any = None
) -> tuple[Any, dict[str, dict[int, int]]]:
    """Give segments of the same name the same label value in every file.

    Slicer numbers segments per file in the order they were created, so "liver" may be 1 in one
    file and 2 in the next. Names decide: a declared table's value for the name when there is one,
    else the value the name had in the first file (case ids in sorted order) that used it.

    Args:
        segments_by_case: case id -> segments of its ``.seg.nrrd`` (:func:`segments_from_metadata`).
        declared: the dataset's declared :class:`~tskd.data.labels.LabelTable`, if any.

    Returns:
        ``(table, remaps)``: a label table named after the segments (None when there are none or a
        table was declared) and, per case, file value -> dataset value where they differ.
    """
    from tskd.data.labels import Label, LabelTable

    by_name: dict[str, Any] = {}
    used: set[int] = set()
    remaps: dict[str, dict[int, int]] = {}
    for case_id, segments in sorted(segments_by_case.items()):
        remap = {}
        for segment in segments:
            name, value = str(segment["name"]), int(segment["label_value"])
            key = name.strip().lower()
            if declared is not None:
                target = declared.value_of(name)
                target = value if target is None else target
            elif key in by_name:
                target = by_name[key].value
            else:
                target = value if value not in used else max(used | {0}) + 1
                color = segment.get("color")
                by_name[key] = Label(target, name, tuple(color) if color else None)
                used.add(target)
            if target != value:
                remap[value] = target
        if remap:
            remaps[case_id] = remap
    table = LabelTable(by_name.values(), source="seg.nrrd segment names", declared=False) if by_name else None
    return table, remaps


def write_seg_nrrd(image: Any, path: str | Path) -> Path:
    """Write a label map as a Slicer segmentation (``.seg.nrrd``) with named, coloured segments.

    The file keeps the image's full grid (no cropping), so it overlays its source exactly in any
    reader; 2D label maps become one-slice volumes (Slicer has no 2D segmentations).

    Args:
        image: a :class:`~tskd.data.image.Image` with integer label values; its
            ``metadata["segments"]`` (``name``, ``label_value``, optional ``color`` in 0..1) names
            the values; values without an entry get ``label_<v>`` and a palette colour.
        path: where to write (written atomically: temporary file, then rename).

    Returns:
        The path written.

    Raises:
        DataError: the array holds negative or non-integer values.
    """
    from tskd.data.labels import (
        default_color,  # the palette lives with the label tables
    )

    path = Path(path)
    array = np.asarray(image.array)
    if array.dtype.kind == "f":
        if not np.array_equal(array, np.rint(array)):
            raise DataError(f"{path}: a segmentation needs integer label values; got {array.dtype} with fractions")
    if array.size and array.min() < 0:
        raise DataError(f"{path}: a segmentation cannot hold negative label values (min {array.min()})")
    high = int(array.max()) if array.size else 0
    dtype = np.uint8 if high < 256 else (np.uint16 if high < 65536 else np.int32)
    array = array.astype(dtype)
    geometry = image.geometry
    spacing, origin, direction = list(geometry.spacing), list(geometry.origin), list(geometry.direction)
    if array.ndim == 2:
        array = array[np.newaxis]
        spacing, origin = spacing + [1.0], origin + [0.0]
        direction = [direction[0], direction[1], 0.0, direction[2], direction[3], 0.0, 0.0, 0.0, 1.0]
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.SetSpacing(spacing)
    out.SetOrigin(origin)
    out.SetDirection(direction)

    declared = {int(s["label_value"]): s for s in (image.metadata or {}).get("segments", [])}
    present = [int(v) for v in np.unique(array) if v != 0]
    values = sorted(set(declared) | set(present))
    for index, value in enumerate(values):
        segment = declared.get(value, {})
        color = segment.get("color")
        fields = {
            "ID": f"Segment_{value}",
            "Name": str(segment.get("name") or f"label_{value}"),
            "NameAutoGenerated": "0" if segment.get("name") else "1",
            "Color": " ".join(f"{c:.6g}" for c in (color or default_color(value))),
            "ColorAutoGenerated": "0" if color else "1",
            "LabelValue": str(value),
            "Layer": "0",
            "Extent": _extent(array == value),
        }
        for key, text in fields.items():
            out.SetMetaData(f"{SEGMENT_KEY}{index}_{key}", text)
    out.SetMetaData("Segmentation_MasterRepresentation", "Binary labelmap")
    out.SetMetaData("Segmentation_ContainedRepresentationNames", "Binary labelmap|")
    out.SetMetaData("Segmentation_ReferenceImageExtentOffset", "0 0 0")

    def write(tmp: Path) -> None:
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(tmp))
        writer.SetUseCompression(True)
        try:
            writer.Execute(out)
        except RuntimeError as exc:
            raise DataError(f"{path}: cannot write the segmentation: {str(exc).splitlines()[-1]}") from None

    return atomic_write(path, write, suffix=".tmp.seg.nrrd")


def _extent(mask: np.ndarray) -> str:
    """Voxel bounding box ``imin imax jmin jmax kmin kmax`` of a ``(k, j, i)`` mask."""
    if not mask.any():
        return _EMPTY_EXTENT
    bounds = []
    for axis in (2, 1, 0):  # i, j, k
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        bounds += [int(hit[0]), int(hit[-1])]
    return " ".join(str(b) for b in bounds)
