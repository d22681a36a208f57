"""Post-processing of a student's label map: keep only the largest connected component.

A slice-by-slice student sometimes labels small islands away from the structure (a bright vessel
two slices off the hippocampus). nnU-Net's answer, which we follow, is to remove all but the largest
connected component, of the foreground as a whole or of each class, and only where that raised the
Dice on the validation cases: the export stage tries each method on them and records the one it
chose in the package (``tskd-model.json``, field ``postprocessing``; see docs/student-package.md and
:func:`tskd.pipeline.export_stage.choose_postprocessing`); :func:`tskd.runtime.segment_volume`
applies it.

Components are face-connected (6 neighbours in 3D, 4 in 2D: ``scipy.ndimage.label``'s default), in
the label map's own array, so a 3D volume's islands are found in 3D, whichever axis it was sliced
along. Only the foreground's bounding box is labelled (an int32 array of its size).

scipy is imported when a method other than ``none`` is applied; Slicer ships it (Slicer's
``CMakeLists.txt`` line 434: option ``Slicer_USE_SCIPY`` "Build Slicer with SciPy" ON, and
``SuperBuild.cmake`` lines 128-129 add ``python-scipy``). Where it is missing, the label map is
returned unchanged with a warning naming the package to install.

Numpy only at import time, Python 3.9 syntax: shipped into Slicer.
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional, Tuple

import numpy as np

__all__ = ["POSTPROCESSING_METHODS", "check_postprocessing", "apply_postprocessing"]

logger = logging.getLogger(__name__)

#: The methods, in the order the export stage tries them: nothing; the largest connected component of
#: all foreground classes together; the largest connected component of each class on its own.
POSTPROCESSING_METHODS = ("none", "largest_foreground", "largest_per_class")

_warned_no_scipy = []


def check_postprocessing(method: object, where: str = "postprocessing") -> str:
    """``method`` if it is one of :data:`POSTPROCESSING_METHODS`, else ValueError naming ``where``."""
    if method not in POSTPROCESSING_METHODS:
        raise ValueError(f"{where} must be one of {', '.join(POSTPROCESSING_METHODS)}, got {method!r}")
    return str(method)


def _bounding_box(mask: np.ndarray) -> Optional[Tuple[slice, ...]]:
    """The smallest box holding every True of ``mask``; None when there is none."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _largest_component(mask: np.ndarray, ndimage) -> np.ndarray:
    """``mask`` with only its largest face-connected component (ties: the first found)."""
    box = _bounding_box(mask)
    if box is None:
        return mask
    components, count = ndimage.label(mask[box])
    if count <= 1:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = np.zeros_like(mask)
    keep[box] = components == int(np.argmax(sizes))
    return keep


def _scipy_ndimage():
    try:
        from scipy import ndimage
    except ImportError:
        if not _warned_no_scipy:
            _warned_no_scipy.append(True)
            logger.warning("post-processing skipped: scipy is not installed in this Python "
                           "(install it with pip install scipy; Slicer ships it)")
        return None
    return ndimage


def apply_postprocessing(label_map: np.ndarray, method: str, label_values: Iterable[int]) -> np.ndarray:
    """``label_map`` post-processed by ``method`` (a new array; ``none`` gives the input itself).

    Args:
        label_map: label values, 2D ``(j, i)`` or 3D ``(k, j, i)``.
        method: one of :data:`POSTPROCESSING_METHODS`.
        label_values: the foreground label values (0 is the background; removed voxels become 0).
    """
    method = check_postprocessing(method)
    if method == "none":
        return label_map
    ndimage = _scipy_ndimage()
    if ndimage is None:
        return label_map
    label_map = np.asarray(label_map)
    values = [int(v) for v in label_values if int(v) != 0]
    if method == "largest_foreground":
        foreground = label_map != 0
        keep = _largest_component(foreground, ndimage)
        return np.where(keep, label_map, np.zeros((), dtype=label_map.dtype)).astype(label_map.dtype, copy=False)
    out = np.zeros_like(label_map)
    for value in values:
        keep = _largest_component(label_map == value, ndimage)
        out[keep] = value
    return out
