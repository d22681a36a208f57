"""From one box on one slice to a 3D mask: segment the slice, then walk to the neighbouring slices.

As in MedSAM's 3D inference, each next slice gets a box made from the mask of the slice before it,
grown by a margin; the walk in one direction stops when the mask vanishes, when its area jumps
(grows by more than a factor over the previous slice's: the model has leaked into a neighbour), at
the volume's end, or when the caller cancels. Works with any predictor that has ``set_image(image)``
and ``predict(box) -> bool mask`` (the ONNX :class:`tskd.runtime.OnnxBoxPredictor`, the backend's
torch ``BoxPredictor``).

Boxes are ``x1, y1, x2, y2`` in the pixels of a slice: ``x`` along the slice's last axis, ``y`` along
its first (for ``axis = 0`` of a numpy ``(k, j, i)`` volume: ``x = i``, ``y = j``).

Numpy only, Python 3.9 syntax: shipped into Slicer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..preprocess.prompt import box_from_mask

__all__ = ["PropagationSettings", "PropagationResult", "slice_of", "check_box", "segment_slice", "propagate_box"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PropagationSettings:
    """How a box walks through the slices.

    The defaults were the best of six tried on two hippocampus volumes (margin 0-10 % / 0-2 pixels,
    growth limit 2 or 3; docs/benchmarks.md): a wider margin lets the mask leak a little more on
    every slice.

    Args:
        margin_fraction: the next slice's box is the mask's bounding box grown on every side by this
            fraction of the box's larger side ...
        min_margin: ... and by at least this many pixels.
        max_area_growth: stop when a slice's mask is more than this many times the previous one's area.
        min_area: stop when a mask has fewer pixels than this (it has vanished).
    """

    margin_fraction: float = 0.05
    min_margin: float = 1.0
    max_area_growth: float = 2.0
    min_area: int = 1

    def __post_init__(self) -> None:
        if self.margin_fraction < 0 or self.min_margin < 0:
            raise ValueError("the margins must not be negative")
        if self.max_area_growth <= 1:
            raise ValueError(f"max_area_growth must be above 1, got {self.max_area_growth}")
        if self.min_area < 1:
            raise ValueError(f"min_area must be at least 1, got {self.min_area}")

    def next_box(self, mask: np.ndarray) -> Optional[np.ndarray]:
        """The box for the next slice from this slice's mask (``None`` when it is empty)."""
        tight = box_from_mask(mask)
        if tight is None:
            return None
        side = max(tight[2] - tight[0], tight[3] - tight[1]) + 1
        return box_from_mask(mask, margin=max(self.min_margin, self.margin_fraction * side))


@dataclass
class PropagationResult:
    """What :func:`propagate_box` did.

    Attributes:
        mask: bool volume, the shape of the input volume.
        slices: the slice indices that got a mask, in the order they were segmented.
        areas: pixels of each of those slices' masks.
        stopped: per direction (``"up"``: increasing index, ``"down"``), why the walk stopped:
            ``"vanished"``, ``"area jump"``, ``"end"`` or ``"cancelled"``.
    """

    mask: np.ndarray
    slices: List[int] = field(default_factory=list)
    areas: List[int] = field(default_factory=list)
    stopped: Dict[str, str] = field(default_factory=dict)


def slice_of(volume: np.ndarray, index: int, axis: int) -> np.ndarray:
    """Slice ``index`` of a 3D volume along ``axis`` (a view)."""
    return np.take(volume, index, axis=axis)


def check_box(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """The box as float64 ``x1, y1, x2, y2`` after checking it against a ``height`` x ``width`` slice.

    Raises:
        ValueError: not four finite numbers, ``x2 <= x1`` or ``y2 <= y1``, or no overlap with the slice
            (the message says which).
    """
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.size != 4 or not np.isfinite(values).all():
        raise ValueError(f"a box is four numbers x1, y1, x2, y2; got {list(np.asarray(box).reshape(-1))}")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"the box {x1:g},{y1:g},{x2:g},{y2:g} is empty: x2 must be greater than x1 and y2 greater than y1")
    if x2 < 0 or y2 < 0 or x1 > width - 1 or y1 > height - 1:
        raise ValueError(f"the box {x1:g},{y1:g},{x2:g},{y2:g} lies outside the image of {width} x {height} pixels "
                         f"(x from 0 to {width - 1}, y from 0 to {height - 1})")
    return values


def segment_slice(predictor: Any, volume: np.ndarray, box: Sequence[float], index: int, axis: int = 0) -> np.ndarray:
    """The mask of one slice of a 3D volume from a box on it, as a bool volume (zeros elsewhere)."""
    mask = np.zeros(volume.shape, dtype=bool)
    image = slice_of(volume, index, axis)
    predictor.set_image(image)
    out = np.moveaxis(mask, axis, 0)  # a view: writing into it writes the volume
    out[index] = predictor.predict(box)
    return mask


def propagate_box(
    predictor: Any,
    volume: np.ndarray,
    box: Sequence[float],
    index: int,
    axis: int = 0,
    settings: Optional[PropagationSettings] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    cancelled: Optional[Callable[[], bool]] = None,
) -> PropagationResult:
    """A 3D mask from a box on slice ``index`` along ``axis``.

    Args:
        predictor: ``set_image`` / ``predict`` (see the module's docstring).
        volume: a 3D array.
        box: ``x1, y1, x2, y2`` on slice ``index``.
        index, axis: the slice the box is drawn on.
        settings: margins and stopping rules (default :class:`PropagationSettings`).
        progress: called as ``progress(done, total)`` after each slice (``total``: the slices along the axis).
        cancelled: polled before each slice; when it returns True the walk stops, keeping what is done.

    Returns:
        a :class:`PropagationResult`.
    """
    settings = settings or PropagationSettings()
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {volume.shape}")
    count = volume.shape[axis]
    if not 0 <= index < count:
        raise ValueError(f"slice {index} is outside 0..{count - 1} along axis {axis}")
    result = PropagationResult(mask=np.zeros(volume.shape, dtype=bool))
    out = np.moveaxis(result.mask, axis, 0)
    done = 0

    def run(k: int, prompt: Sequence[float]) -> np.ndarray:
        nonlocal done
        predictor.set_image(slice_of(volume, k, axis))
        mask = predictor.predict(prompt)
        done += 1
        if progress is not None:
            progress(done, count)
        return mask

    if cancelled is not None and cancelled():
        result.stopped = {"up": "cancelled", "down": "cancelled"}
        return result
    first = run(index, box)
    area = int(first.sum())
    if area < settings.min_area:
        result.stopped = {"up": "vanished", "down": "vanished"}
        return result
    out[index] = first
    result.slices.append(index)
    result.areas.append(area)
    for direction, step in (("up", 1), ("down", -1)):
        previous, previous_area, k = first, area, index + step
        reason = "end"
        while 0 <= k < count:
            if cancelled is not None and cancelled():
                reason = "cancelled"
                break
            prompt = settings.next_box(previous)
            if prompt is None:
                reason = "vanished"
                break
            mask = run(k, prompt)
            mask_area = int(mask.sum())
            if mask_area < settings.min_area:
                reason = "vanished"
                break
            if mask_area > settings.max_area_growth * previous_area:
                reason = "area jump"
                break
            out[k] = mask
            result.slices.append(k)
            result.areas.append(mask_area)
            previous, previous_area, k = mask, mask_area, k + step
        result.stopped[direction] = reason
    logger.info("propagated a box from slice %d along axis %d to %d slices (stopped: %s)", index, axis,
                len(result.slices), result.stopped)
    return result
