"""Cutting a volume into 2D slices along one axis, and stacking them back.

Arrays are in SimpleITK/Slicer order ``(k, j, i)``; spacing and size in ITK order ``(i, j, k)``.
A *slice axis* is a numpy axis of the array: 0 cuts along ``k`` (axial slices of a standard CT),
1 along ``j``, 2 along ``i``. The 2D slices keep the remaining two axes in their array order:

=========  ==================  ====================
axis       slices shape        one slice's axes
=========  ==================  ====================
0          ``(K, J, I)``       ``(j, i)``
1          ``(J, K, I)``       ``(k, i)``
2          ``(I, K, J)``       ``(k, j)``
=========  ==================  ====================

A 2D image ``(J, I)`` is a single slice ``(1, J, I)`` whatever the axis.

Numpy-only, Python 3.9 syntax: this module is shipped into Slicer.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["choose_slice_axis", "slices_along", "stack_slices", "context_positions"]


def choose_slice_axis(spacing_ijk: Sequence[float], size_ijk: Optional[Sequence[int]] = None) -> int:
    """The numpy axis to cut a volume along: the one with the coarsest spacing.

    Slicing along the coarsest axis gives 2D slices with the finest, most isotropic pixels (axial
    slices of a CT with 1 x 1 x 2.5 mm voxels). Spacings within 1 % count as equal; ties go to the
    lowest numpy axis, so an isotropic volume is cut along axis 0 (``k``). When ``size_ijk`` is
    given, an axis with a single voxel (a 2D image stored as a one-slice volume) wins outright.

    Args:
        spacing_ijk: voxel spacing in ITK order ``(i, j, k)`` (2 or 3 values).
        size_ijk: optional voxel counts in ITK order.

    Returns:
        A numpy axis of the ``(k, j, i)`` array (0 for 2D images).
    """
    spacing = [float(s) for s in spacing_ijk]
    if len(spacing) not in (2, 3):
        raise ValueError(f"spacing must have 2 or 3 values, got {spacing_ijk!r}")
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise ValueError(f"spacing values must be positive, got {spacing_ijk!r}")
    if len(spacing) == 2:
        return 0
    per_axis = spacing[::-1]  # numpy order (k, j, i)
    if size_ijk is not None:
        if len(size_ijk) != len(spacing):
            raise ValueError(f"size {size_ijk!r} and spacing {spacing_ijk!r} differ in length")
        sizes = [int(s) for s in size_ijk][::-1]
        singles = [axis for axis, n in enumerate(sizes) if n == 1]
        if len(singles) == 1:
            return singles[0]
    coarsest = max(per_axis)
    for axis, value in enumerate(per_axis):
        if value >= coarsest * 0.99:
            return axis
    return 0  # pragma: no cover - the loop always returns


def slices_along(array: np.ndarray, axis: int) -> np.ndarray:
    """The 2D slices of ``array`` along ``axis``, as a view of shape ``(n, h, w)``.

    Args:
        array: a volume ``(K, J, I)`` or a 2D image ``(J, I)``.
        axis: numpy axis to cut along (0, 1 or 2; ignored for 2D images).

    Returns:
        A view (no copy) with the slice index first; see the module docstring for the axis order.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise ValueError(f"expected a 2D or 3D array, got shape {array.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"slice axis must be 0, 1 or 2, got {axis!r}")
    return np.moveaxis(array, axis, 0)


def stack_slices(slices: np.ndarray, axis: int, shape: Sequence[int]) -> np.ndarray:
    """Put slices from :func:`slices_along` back into an array of the volume's ``shape``.

    Args:
        slices: array ``(n, h, w)`` (e.g. a predicted label per slice).
        axis: the axis the slices were cut along.
        shape: the volume's numpy shape (2 or 3 values).

    Returns:
        A contiguous array of shape ``shape`` with ``slices``' dtype; exactly inverts
        :func:`slices_along`.
    """
    slices = np.asarray(slices)
    shape = tuple(int(s) for s in shape)
    if slices.ndim != 3:
        raise ValueError(f"expected slices of shape (n, h, w), got {slices.shape}")
    if len(shape) == 2:
        if slices.shape != (1,) + shape:
            raise ValueError(f"a 2D image of shape {shape} needs slices of shape {(1,) + shape}, got {slices.shape}")
        return np.ascontiguousarray(slices[0])
    if len(shape) != 3:
        raise ValueError(f"shape must have 2 or 3 values, got {shape!r}")
    if axis not in (0, 1, 2):
        raise ValueError(f"slice axis must be 0, 1 or 2, got {axis!r}")
    expected = (shape[axis],) + tuple(s for a, s in enumerate(shape) if a != axis)
    if slices.shape != expected:
        raise ValueError(
            f"slices of shape {slices.shape} do not fill a volume {shape} along axis {axis}; expected {expected}"
        )
    return np.ascontiguousarray(np.moveaxis(slices, 0, axis))


def context_positions(positions: Sequence[int], count: int, context: int) -> np.ndarray:
    """Slice positions of each slice with its ``context`` neighbours on either side ("2.5D" input).

    Args:
        positions: slice positions along the axis.
        count: number of slices along the axis; positions beyond ``0..count-1`` are clipped to
            it (the volume's first or last slice is repeated).
        context: neighbours on each side, ``c >= 0``.

    Returns:
        int64 ``(n, 2c + 1)``: per slice, positions ``p - c .. p + c`` in slice order (clipped);
        column ``c`` is the slice itself. Training (:func:`tskd.data.prepared.prepare_slices`) and
        inference (:func:`tskd.runtime.segment_volume`) both take the neighbours from here.
    """
    if context < 0:
        raise ValueError(f"context must not be negative, got {context}")
    offsets = np.arange(-context, context + 1, dtype=np.int64)
    return np.clip(np.asarray(positions, dtype=np.int64).reshape(-1, 1) + offsets[None, :], 0, max(count - 1, 0))
