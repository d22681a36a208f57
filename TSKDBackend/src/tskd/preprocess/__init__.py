"""Preprocessing shared by training and inference: normalisation, 2D resizing, slicing.

Numpy-only and Python 3.9 syntax, because it is shipped into 3D Slicer (imports inside the package are
relative so it can be vendored under another name); the same functions prepare
training slices in the backend and model inputs in Slicer, so both see identical pixels.
"""

from __future__ import annotations

from .normalization import (
    MODES,
    NormalizationFitter,
    NormalizationSpec,
    apply_normalization,
    fit_normalization,
    looks_like_ct,
    resolve_normalization,
)
from .resize import resize_bilinear, resize_nearest
from .slicing import choose_slice_axis, context_positions, slices_along, stack_slices
from .statistics import intensity_statistics

__all__ = [
    "MODES",
    "NormalizationFitter",
    "NormalizationSpec",
    "apply_normalization",
    "resolve_normalization",
    "intensity_statistics",
    "fit_normalization",
    "looks_like_ct",
    "resize_bilinear",
    "resize_nearest",
    "choose_slice_axis",
    "context_positions",
    "slices_along",
    "stack_slices",
]
