"""Model-agnostic slice-by-slice segmentation of a volume (or a 2D image).

Any object with the small :class:`SliceModel` interface can segment: the ONNX student
(:class:`tskd.runtime.session.OnnxSegmenter`), a torch student, or the torch teacher behind an
adapter. The steps repeat training's preprocessing exactly (see ``docs/student-package.md``):

1. normalisation statistics from the *whole* volume (:func:`tskd.preprocess.resolve_normalization`,
   computed once, without a float copy of the volume);
2. 2D slices along the model's slice axis, normalised a batch at a time, resized to S x S (bilinear);
3. the model's logits ``(B, K, S, S)`` resized back to each slice's size (bilinear), arg-max over
   the classes, channel indices mapped to label values;
4. the package's post-processing, when it chose one on its validation cases (keep the largest
   connected component: :mod:`.postprocess`), on the whole segmented box: :func:`segment_volume`
   only (:class:`VolumeSegmenter` segments single slices, which have no 3D components).

Memory stays at the input, the output label map and one batch: a 512 x 512 x 600 int16 CT
segments in well under 1 GB besides the volume itself.

Numpy and :mod:`tskd.preprocess` only, Python 3.9 syntax: shipped into Slicer.
"""

from __future__ import annotations

import logging
from typing import Callable, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from ..errors import CancelledError
from .postprocess import apply_postprocessing, check_postprocessing
from ..preprocess import (
    NormalizationSpec,
    apply_normalization,
    context_positions,
    resize_bilinear,
    resolve_normalization,
    slices_along,
)

__all__ = ["SliceModel", "VolumeSegmenter", "segment_volume", "resolve_roi", "effective_axis", "label_dtype",
           "context_slices", "gather_slices", "slice_logits"]

logger = logging.getLogger(__name__)

Roi = Sequence[Tuple[Optional[int], Optional[int]]]
#: Bytes of upsampled logits handled at once when resizing them back to a slice's size.
_BACK_RESIZE_BYTES = 64 << 20


class SliceModel(Protocol):
    """What :func:`segment_volume` needs from a model.

    Attributes:
        input_size: S, the square input side in pixels.
        num_classes: K, output channels (channel 0 = background).
        label_values: the label value of each channel (K integers, the first 0).
        normalization: the intensity normalisation training used.
        slice_axis: numpy axis of the ``(k, j, i)`` volume to slice along.

    A model may also have ``postprocessing``, one of :data:`.postprocess.POSTPROCESSING_METHODS`
    (the ONNX student's comes from its package); without it :func:`segment_volume` applies none.
    A model with ``context_slices`` ``c`` > 0 is given each slice between its ``c`` neighbours on
    either side: :meth:`logits` then takes ``(B, 2c + 1, S, S)`` (see
    :func:`tskd.preprocess.context_positions`).
    """

    input_size: int
    num_classes: int
    label_values: List[int]
    normalization: NormalizationSpec
    slice_axis: int

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(B, 1, S, S)`` normalised slices -> float32 ``(B, K, S, S)`` logits."""
        ...  # pragma: no cover


def label_dtype(values: Sequence[int]) -> np.dtype:
    """uint8 when every label value fits, else uint16."""
    high = max(int(v) for v in values)
    if high >= 1 << 16:
        raise ValueError(f"label values must be below 65536, got {high}")
    return np.dtype(np.uint8 if high < 256 else np.uint16)


def context_slices(model: SliceModel) -> int:
    """The model's ``context_slices`` (0 for a model without the attribute: single slices)."""
    return int(getattr(model, "context_slices", 0) or 0)


def gather_slices(slices: np.ndarray, start: int, stop: int, context: int) -> np.ndarray:
    """Raw slices ``start..stop-1`` of ``slices`` ``(n, h, w)``; with ``context`` c > 0 each between its
    c neighbours on either side, ``(stop - start, 2c + 1, h, w)`` (:func:`tskd.preprocess.context_positions`)."""
    if not context:
        return slices[start:stop]
    return slices[context_positions(np.arange(start, stop), slices.shape[0], context)]


def slice_logits(model: SliceModel, raw: np.ndarray, spec: NormalizationSpec) -> np.ndarray:
    """The model's logits ``(n, K, S, S)`` of raw slices ``(n, h, w)``, or ``(n, C, h, w)`` (each slice
    between its neighbours, :func:`gather_slices`): normalised with ``spec``, resized to its ``S``."""
    stacked = raw if raw.ndim == 4 else raw[:, None]
    n, channels, height, width = stacked.shape
    size = int(model.input_size)
    x = apply_normalization(stacked.reshape(n * channels, height, width), spec)
    if (height, width) != (size, size):
        x = resize_bilinear(x, (size, size))
    logits = np.asarray(model.logits(x.reshape(n, channels, size, size)))
    expected = (n, int(model.num_classes), size, size)
    if logits.shape != expected:
        raise ValueError(f"the model returned logits of shape {logits.shape}; expected {expected}")
    return logits


def effective_axis(shape: Sequence[int], axis: int) -> int:
    """The axis to slice a volume of ``shape`` along: ``axis``, unless exactly one axis has a
    single voxel (a 2D image stored as a one-slice volume), which is then used instead."""
    if len(shape) == 2:
        return 0
    singles = [a for a, n in enumerate(shape) if n == 1]
    if len(singles) == 1 and singles[0] != axis:
        logger.info("volume %s has one single-voxel axis: slicing along axis %d instead of %d",
                    tuple(shape), singles[0], axis)
        return singles[0]
    return axis


def resolve_roi(roi: Optional[Roi], shape: Sequence[int]) -> Tuple[slice, ...]:
    """Numpy index bounds ``((k0, k1), (j0, j1), (i0, i1))`` as slices, checked against ``shape``.

    ``None`` for a bound means the start/end of the axis; ends beyond the array are clipped to it
    (like Python slicing). Negative bounds and empty ranges are errors.
    """
    shape = tuple(int(n) for n in shape)
    if roi is None:
        return tuple(slice(0, n) for n in shape)
    roi = list(roi)
    if len(roi) != len(shape):
        raise ValueError(f"roi needs {len(shape)} (start, end) pairs for an array of shape {shape}, got {len(roi)}")
    out = []
    for axis, (bounds, n) in enumerate(zip(roi, shape)):
        try:
            start, end = bounds
        except (TypeError, ValueError):
            raise ValueError(f"roi axis {axis}: expected (start, end), got {bounds!r}") from None
        start = 0 if start is None else int(start)
        end = n if end is None else min(int(end), n)
        if start < 0 or end < 0:
            raise ValueError(f"roi axis {axis}: bounds must not be negative, got ({start}, {end})")
        if start >= end:
            raise ValueError(f"roi axis {axis}: empty range {start}:{end} for size {n}")
        out.append(slice(start, end))
    return tuple(out)


def _check_volume(volume: np.ndarray) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim not in (2, 3):
        raise ValueError(f"expected a 2D image (j, i) or a volume (k, j, i), got shape {volume.shape}")
    if volume.size == 0:
        raise ValueError(f"cannot segment an empty array of shape {volume.shape}")
    if volume.dtype.kind not in "biuf":
        raise ValueError(f"expected real intensities, got dtype {volume.dtype}")
    return volume


def _check_model(model: SliceModel) -> Tuple[int, int, np.ndarray]:
    size, classes = int(model.input_size), int(model.num_classes)
    values = np.asarray(list(model.label_values), dtype=np.int64)
    if values.shape != (classes,):
        raise ValueError(f"the model has {classes} classes but {values.size} label values")
    return size, classes, values.astype(label_dtype(values))


class _Runner:
    """Normalise, resize, run and map back a batch of 2D slices (shared by both entry points)."""

    def __init__(self, model: SliceModel, spec: NormalizationSpec) -> None:
        self.model = model
        self.spec = spec
        self.size, self.classes, self.lut = _check_model(model)

    def labels(self, raw_slices: np.ndarray) -> np.ndarray:
        """Label values ``(n, h, w)`` for raw slices ``(n, h, w)`` (any dtype), or ``(n, C, h, w)``:
        each slice between its neighbours (the model's ``context_slices``)."""
        n, height, width = raw_slices.shape[0], raw_slices.shape[-2], raw_slices.shape[-1]
        logits = slice_logits(self.model, raw_slices, self.spec)
        out = np.empty((n, height, width), dtype=self.lut.dtype)
        per_slice = max(1, self.classes * height * width * 4)
        step = max(1, _BACK_RESIZE_BYTES // per_slice)
        for start in range(0, n, step):
            chunk = logits[start : start + step]
            if (height, width) != (self.size, self.size):
                chunk = resize_bilinear(chunk, (height, width))
            out[start : start + step] = self.lut[np.argmax(chunk, axis=1)]
        return out


def segment_volume(
    model: SliceModel,
    volume: np.ndarray,
    *,
    batch_size: int = 16,
    roi: Optional[Roi] = None,
    axis: Optional[int] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    cancel: Optional[Callable[[], bool]] = None,
    postprocessing: Optional[str] = None,
) -> np.ndarray:
    """Segment a volume slice by slice.

    Args:
        model: a :class:`SliceModel` (e.g. ``OnnxSegmenter(package)``).
        volume: raw intensities, numpy order ``(k, j, i)`` or a 2D image ``(j, i)``; never copied
            whole (statistics are computed on it, batches are normalised on the fly).
        batch_size: slices per model call.
        roi: numpy index bounds ``((k0, k1), (j0, j1), (i0, i1))`` (2 pairs for 2D); only that box
            is segmented, the rest of the output is 0. Normalisation statistics still come from
            the whole volume. See :func:`resolve_roi`.
        axis: slice axis to use instead of the model's (default: :func:`effective_axis`).
        progress: called as ``progress(done, total)`` (slices) after each batch.
        cancel: polled before each batch; when it returns True a ``CancelledError`` is raised.
        postprocessing: one of :data:`.postprocess.POSTPROCESSING_METHODS`, applied to the
            segmented box (the ROI, else the volume); default the model's ``postprocessing``
            attribute (``none`` when it has none).

    Returns:
        Label values (uint8, or uint16 for values above 255) of the volume's shape.

    Raises:
        CancelledError: ``cancel()`` returned True.
    """
    volume = _check_volume(volume)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    box = resolve_roi(roi, volume.shape)
    if postprocessing is None:
        postprocessing = getattr(model, "postprocessing", None) or "none"
    postprocessing = check_postprocessing(postprocessing)
    axis = effective_axis(volume.shape, int(model.slice_axis)) if axis is None else int(axis)
    runner = _Runner(model, resolve_normalization(volume, model.normalization))
    out = np.zeros(volume.shape, dtype=runner.lut.dtype)
    context = context_slices(model)
    wide, first = list(box), 0
    if volume.ndim == 3:  # neighbours come from the whole volume along the slice axis, also beyond the ROI's slices
        wide[axis], first = slice(0, volume.shape[axis]), box[axis].start
    source = slices_along(volume[tuple(wide)], axis)
    target = slices_along(out[box], axis)  # a view: writing into it fills ``out``
    total = target.shape[0]
    for start in range(0, total, batch_size):
        if cancel is not None and cancel():
            raise CancelledError("segmentation cancelled")
        stop = min(start + batch_size, total)
        target[start:stop] = runner.labels(gather_slices(source, first + start, first + stop, context))
        if progress is not None:
            progress(stop, total)
    if postprocessing != "none":
        out[box] = apply_postprocessing(out[box], postprocessing, runner.lut[1:])
    return out


class VolumeSegmenter:
    """Segment single slices of one volume on demand (Slicer's live mode).

    The normalisation statistics are computed once, from the whole volume, when this object is
    made; :meth:`segment_slice` is then one model call, and gives exactly the slice that
    :func:`segment_volume` gives for the same index before post-processing (a package's
    largest-component step needs the whole volume, so live mode shows the raw arg-max).

    Args:
        model: a :class:`SliceModel`.
        volume: ``(k, j, i)`` or ``(j, i)`` raw intensities (kept by reference, not copied).
        axis: slice axis to use instead of the model's (default: :func:`effective_axis`).
    """

    def __init__(self, model: SliceModel, volume: np.ndarray, *, axis: Optional[int] = None) -> None:
        self.volume = _check_volume(volume)
        self.model = model
        self.axis = effective_axis(self.volume.shape, int(model.slice_axis)) if axis is None else int(axis)
        self.normalization = resolve_normalization(self.volume, model.normalization)
        self._runner = _Runner(model, self.normalization)
        self._slices = slices_along(self.volume, self.axis)

    @property
    def num_slices(self) -> int:
        """Number of slices along the axis."""
        return int(self._slices.shape[0])

    def segment_slice(self, index: int) -> np.ndarray:
        """Label values ``(h, w)`` of slice ``index`` along the axis (see :func:`tskd.preprocess.slices_along`)."""
        index = int(index)
        if not 0 <= index < self.num_slices:
            raise ValueError(f"slice index {index} is outside 0..{self.num_slices - 1}")
        return self._runner.labels(gather_slices(self._slices, index, index + 1, context_slices(self.model)))[0]
