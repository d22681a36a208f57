"""Putting a label map on its image's voxel grid.

A label must overlay its image voxel for voxel. Two harmless differences are repaired here:
Slicer saves a ``.seg.nrrd`` cropped to the segments' extent (same spacing and direction, origin
shifted by whole voxels), and Slicer treats 2D pictures as one-slice volumes, so a segmentation of
a PNG is 3D with one slice. Anything else is a mismatch, described in words.
"""

from __future__ import annotations

import numpy as np

from tskd.data.image import Geometry, Image
from tskd.errors import DataError

__all__ = ["squeeze_to_2d", "subregion_offset", "label_mismatch", "align_label_to_image"]

_INDEX_TOLERANCE = 0.01  # voxels


def squeeze_to_2d(geometry: Geometry) -> Geometry | None:
    """The 2D geometry of a one-slice 3D grid whose slice axis is orthogonal to the plane, else None."""
    if geometry.dimension != 3 or geometry.size[2] != 1:
        return None
    d = np.asarray(geometry.direction).reshape(3, 3)
    if abs(d[2, 0]) > 1e-3 or abs(d[2, 1]) > 1e-3 or abs(d[0, 2]) > 1e-3 or abs(d[1, 2]) > 1e-3:
        return None
    return Geometry(
        size=geometry.size[:2],
        spacing=geometry.spacing[:2],
        origin=geometry.origin[:2],
        direction=tuple(float(v) for v in d[:2, :2].ravel()),
    )


def subregion_offset(label: Geometry, image: Geometry) -> tuple[int, ...] | None:
    """Whole-voxel index of ``label``'s first voxel in ``image``'s grid when both grids coincide.

    The grids coincide when spacing and direction agree and the origins differ by whole voxels.
    Returns None otherwise.
    """
    if label.dimension != image.dimension:
        return None
    spacing = np.asarray(image.spacing)
    if not np.allclose(label.spacing, spacing, rtol=1e-3, atol=1e-3 * spacing.max()):
        return None
    if not np.allclose(label.direction, image.direction, atol=1e-3):
        return None
    direction = np.asarray(image.direction).reshape(image.dimension, image.dimension)
    index = np.linalg.solve(direction, np.asarray(label.origin) - np.asarray(image.origin)) / spacing
    rounded = np.rint(index)
    if not np.allclose(index, rounded, atol=_INDEX_TOLERANCE):
        return None
    return tuple(int(v) for v in rounded)


def label_mismatch(label: Geometry, image: Geometry, *, allow_subregion: bool = False) -> str | None:
    """Why ``label`` cannot be put on ``image``'s grid (None when it can), from headers alone.

    Args:
        label: the label's geometry.
        image: the image's geometry.
        allow_subregion: accept a label on the same grid covering part of it (Slicer's cropped
            ``.seg.nrrd``).
    """
    if image.dimension == 2 and label.dimension == 3:
        squeezed = squeeze_to_2d(label)
        if squeezed is None:
            return f"the label is 3D (size {label.size}) but the image is 2D (size {image.size})"
        label = squeezed
    if label.dimension != image.dimension:
        return (f"the label is {label.dimension}D (size {label.size}) but the image is {image.dimension}D "
                f"(size {image.size})")
    exact = image.mismatch(label)
    if exact is None:
        return None
    if allow_subregion:
        offset = subregion_offset(label, image)
        if offset is not None:
            end = [o + s for o, s in zip(offset, label.size)]
            if all(e > 0 for e in end) and all(o < s for o, s in zip(offset, image.size)):
                return None
            return "the label lies entirely outside the image (no voxel in common)"
        # say what keeps it off the grid rather than that the (cropped) sizes differ
        same_size = Geometry(image.size, label.spacing, label.origin, label.direction)
        reason = image.mismatch(same_size)
        if reason is None or reason.startswith("origin"):
            return f"origin {_fmt(label.origin)} is not on the image's voxel grid (off by a fraction of a voxel)"
        return reason
    return exact


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def align_label_to_image(label: Image, image: Geometry, *, allow_subregion: bool = False) -> Image:
    """``label`` on ``image``'s grid: one-slice 3D squeezed to 2D, sub-regions pasted into zeros.

    Args:
        label: a label map (integer values).
        image: the geometry of the image it belongs to.
        allow_subregion: accept a cropped label on the same grid (Slicer ``.seg.nrrd``).

    Returns:
        A label :class:`Image` with exactly ``image``'s geometry (metadata kept).

    Raises:
        DataError: the grids differ, or labelled voxels fall outside the image.
    """
    name = label.path.name if label.path else "label"
    array, geometry = label.array, label.geometry
    if image.dimension == 2 and geometry.dimension == 3:
        squeezed = squeeze_to_2d(geometry)
        if squeezed is not None:
            array, geometry = array[0], squeezed
    problem = label_mismatch(geometry, image, allow_subregion=allow_subregion)
    if problem is not None:
        raise DataError(f"{label.path or name}: does not overlay its image: {problem}")
    if image.mismatch(geometry) is None:
        return Image(array=array, geometry=image, path=label.path, metadata=label.metadata)
    offset = subregion_offset(geometry, image)
    assert offset is not None  # label_mismatch accepted it as a sub-region
    out = np.zeros(image.array_shape, dtype=array.dtype)
    # numpy axes run (k, j, i): reverse the ITK-order offset and sizes
    src, dst = [], []
    for off, lsize, isize in zip(reversed(offset), array.shape, image.array_shape):
        start, stop = max(off, 0), min(off + lsize, isize)
        dst.append(slice(start, stop))
        src.append(slice(start - off, stop - off))
    inside = int(np.count_nonzero(array[tuple(src)]))
    total = int(np.count_nonzero(array))
    if inside != total:
        raise DataError(
            f"{label.path or name}: {total - inside} labelled voxels lie outside its image's extent; "
            "the segmentation was made on a different (larger) image"
        )
    out[tuple(dst)] = array[tuple(src)]
    return Image(array=out, geometry=image, path=label.path, metadata=label.metadata)
