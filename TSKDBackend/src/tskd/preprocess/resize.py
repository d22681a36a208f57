"""2D resizing in numpy that reproduces PyTorch's ``interpolate`` exactly.

Training resizes slices with these functions and so does inference (in the backend and inside
Slicer, where torch is not available), so a model sees the same pixels in both. The results match
``torch.nn.functional.interpolate`` with ``mode="bilinear", align_corners=False, antialias=False``
and with ``mode="nearest"`` (PyTorch's legacy nearest, not ``"nearest-exact"``).

Numpy-only, Python 3.9 syntax: this module is shipped into Slicer.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

__all__ = ["resize_bilinear", "resize_nearest"]


def _check_size(array: np.ndarray, out_hw: Sequence[int]) -> Tuple[int, int]:
    if array.ndim < 2:
        raise ValueError(f"expected an array of shape (..., H, W), got shape {array.shape}")
    if len(out_hw) != 2:
        raise ValueError(f"out_hw must be (height, width), got {tuple(out_hw)!r}")
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive, got {(out_h, out_w)}")
    if array.shape[-2] < 1 or array.shape[-1] < 1:
        raise ValueError(f"cannot resize an empty image of shape {array.shape}")
    return out_h, out_w


def _linear_weights(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of 1D linear interpolation, as PyTorch computes them.

    PyTorch (align_corners=False) maps output pixel ``d`` to the source coordinate
    ``scale * (d + 0.5) - 0.5`` with ``scale = in / out`` in float32, clamps negative coordinates
    to 0, takes ``i0 = floor``, ``i1 = min(i0 + 1, in - 1)`` and ``w1 = src - i0``.
    """
    if in_size == out_size:
        index = np.arange(in_size)
        return index, index, np.zeros(in_size, dtype=np.float32)
    scale = np.float32(in_size) / np.float32(out_size)
    half = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)).astype(np.float64)
    # PyTorch's CPU build evaluates ``scale * (d + 0.5) - 0.5`` as one fused multiply-add; the
    # float32 product is exact in float64, so this rounds once, like the FMA (matters for large
    # down-scaling factors, where the source coordinate is large).
    src = (np.float64(scale) * half - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    w1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, w1


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """PyTorch's legacy nearest index: ``min(floor(d * (in / out)), in - 1)`` in float32."""
    if in_size == out_size:
        return np.arange(in_size)
    if out_size == 2 * in_size:
        return np.arange(out_size) >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def resize_bilinear(array: np.ndarray, out_hw: Sequence[int]) -> np.ndarray:
    """Bilinear resize of the last two axes.

    Args:
        array: image(s) of shape ``(..., H, W)``; any real dtype (computed in float32).
        out_hw: output ``(height, width)``.

    Returns:
        float32 array of shape ``(..., out_h, out_w)``, equal (to float32 rounding) to
        ``torch.nn.functional.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)``.
    """
    array = np.asarray(array)
    out_h, out_w = _check_size(array, out_hw)
    data = array.astype(np.float32, copy=False)
    in_h, in_w = data.shape[-2:]
    # Width first, then height: the same operation order as PyTorch's kernel
    # (h0 * (w0 * x00 + w1 * x01) + h1 * (w0 * x10 + w1 * x11)).
    if in_w != out_w:
        i0, i1, w1 = _linear_weights(in_w, out_w)
        w0 = np.float32(1.0) - w1
        data = data[..., i0] * w0 + data[..., i1] * w1
    if in_h != out_h:
        i0, i1, w1 = _linear_weights(in_h, out_h)
        w0 = (np.float32(1.0) - w1)[:, None]
        data = data[..., i0, :] * w0 + data[..., i1, :] * w1[:, None]
    if data is array:
        data = data.copy()
    return np.ascontiguousarray(data, dtype=np.float32)


def resize_nearest(array: np.ndarray, out_hw: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes (for label maps); keeps the dtype.

    Args:
        array: label map(s) of shape ``(..., H, W)``, any dtype.
        out_hw: output ``(height, width)``.

    Returns:
        array of shape ``(..., out_h, out_w)`` with the input's dtype, equal to
        ``torch.nn.functional.interpolate(x, size=out_hw, mode="nearest")``.
    """
    array = np.asarray(array)
    out_h, out_w = _check_size(array, out_hw)
    rows = _nearest_index(array.shape[-2], out_h)
    cols = _nearest_index(array.shape[-1], out_w)
    return np.ascontiguousarray(array[..., rows[:, None], cols[None, :]])
