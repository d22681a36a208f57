"""Exact intensity statistics of large arrays without a float copy: percentiles, clipped moments.

The per-image normalisation needs the ``p_low``/``p_high`` percentiles of a whole volume and the
mean and standard deviation of the volume clipped to them. A 512 x 512 x 600 CT has 157 million
voxels; copying it to float32 takes 600 MB and sorting it seconds. These functions avoid both:

* integer (and boolean) arrays are summarised by a histogram of their values, counted in blocks,
  from which percentiles (numpy's default ``"linear"`` method) and clipped moments are exact;
* floating-point arrays use ``np.percentile`` (one copy in the array's own dtype) and clipped
  moments accumulated block by block in float64 (Chan et al.'s pairwise update).

Training (:mod:`tskd.data.prepared`, through :func:`tskd.preprocess.apply_normalization`) and
inference (:mod:`tskd.runtime`) both call :func:`intensity_statistics`, so they agree exactly.

Numpy-only, Python 3.9 syntax: this module is shipped into Slicer.
"""

from __future__ import annotations

from typing import Iterator, Sequence, Tuple

import numpy as np

__all__ = ["intensity_statistics", "percentiles", "clipped_moments"]

#: Elements handled at once (blocks of the first axis hold about this many voxels).
BLOCK_ELEMENTS = 1 << 22
#: Integer arrays whose value range is at most this wide are summarised by a histogram.
MAX_HISTOGRAM_BINS = 1 << 24


def _blocks(array: np.ndarray) -> Iterator[np.ndarray]:
    """Flat blocks of ``array`` (slabs of its first axis), each a copy of at most a few MB."""
    if array.ndim == 0:
        yield array.reshape(1)
        return
    per_row = max(1, int(np.prod(array.shape[1:], dtype=np.int64)))
    rows = max(1, BLOCK_ELEMENTS // per_row)
    for start in range(0, array.shape[0], rows):
        yield array[start : start + rows].reshape(-1)


def _histogram(array: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(values, counts)`` of an integer array, values ascending, only values that occur."""
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    if array.dtype.itemsize <= 2:
        # every 8/16-bit value gets a bin: offset to unsigned and count without a wide copy
        # (np.bincount converts its input to intp block by block anyway)
        unsigned = np.dtype("u%d" % array.dtype.itemsize)
        offset = 0 if array.dtype.kind == "u" else 1 << (8 * array.dtype.itemsize - 1)
        counts = np.zeros(1 << (8 * array.dtype.itemsize), dtype=np.int64)
        for block in _blocks(array):
            raw = block.view(unsigned) ^ unsigned.type(offset) if offset else block
            counts += np.bincount(raw, minlength=counts.size)
        present = np.flatnonzero(counts)
        return present.astype(np.float64) - offset, counts[present]
    low, high = int(array.min()), int(array.max())
    counts = np.zeros(high - low + 1, dtype=np.int64)
    for block in _blocks(array):
        counts += np.bincount(block.astype(np.int64) - low, minlength=counts.size)
    present = np.flatnonzero(counts)
    return present.astype(np.float64) + low, counts[present]


def _use_histogram(array: np.ndarray) -> bool:
    if array.dtype == np.bool_:
        return True
    if array.dtype.kind not in "iu":
        return False
    return int(array.max()) - int(array.min()) < MAX_HISTOGRAM_BINS


def _histogram_percentiles(values: np.ndarray, counts: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """numpy's ``"linear"`` percentiles of the sorted sample described by a histogram."""
    n = int(counts.sum())
    ends = np.cumsum(counts)  # the sorted sample's positions < ends[b] hold values[b]
    out = []
    for q in qs:
        position = float(q) / 100.0 * (n - 1)
        below = int(np.floor(position))
        above = min(below + 1, n - 1)
        fraction = position - below
        v_below = values[np.searchsorted(ends, below, side="right")]
        v_above = values[np.searchsorted(ends, above, side="right")]
        out.append(v_below + (v_above - v_below) * fraction)
    return np.asarray(out, dtype=np.float64)


def percentiles(array: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Percentiles ``qs`` (0-100) of all values of ``array`` (numpy's ``"linear"`` method).

    Args:
        array: any shape, a real or boolean dtype; not modified.
        qs: percentiles in 0..100.

    Returns:
        float64 array with one value per entry of ``qs``.
    """
    array = np.asarray(array)
    if array.size == 0:
        raise ValueError("cannot compute percentiles of an empty array")
    if _use_histogram(array):
        return _histogram_percentiles(*_histogram(array), qs)
    return np.asarray(np.percentile(array, list(qs)), dtype=np.float64)


def _histogram_moments(values: np.ndarray, counts: np.ndarray, low: float, high: float) -> Tuple[float, float]:
    clipped = np.clip(values, low, high)
    weights = counts.astype(np.float64)
    total = weights.sum()
    mean = float(np.dot(weights, clipped) / total)
    variance = float(np.dot(weights, (clipped - mean) ** 2) / total)
    return mean, float(np.sqrt(max(variance, 0.0)))


def clipped_moments(array: np.ndarray, low: float, high: float) -> Tuple[float, float]:
    """Mean and (population) standard deviation of ``array`` clipped to ``[low, high]``, in float64."""
    array = np.asarray(array)
    if array.size == 0:
        raise ValueError("cannot compute statistics of an empty array")
    if _use_histogram(array):
        return _histogram_moments(*_histogram(array), low, high)
    count, mean, m2 = 0, 0.0, 0.0
    for block in _blocks(array):
        data = np.clip(block.astype(np.float64), low, high)
        n_b = data.size
        mean_b = float(data.mean())
        m2_b = float(np.square(data - mean_b).sum())
        total = count + n_b
        delta = mean_b - mean
        mean += delta * n_b / total
        m2 += m2_b + delta * delta * count * n_b / total
        count = total
    return mean, float(np.sqrt(max(m2 / count, 0.0)))


def intensity_statistics(array: np.ndarray, p_low: float, p_high: float) -> Tuple[float, float, float, float]:
    """``(lower, upper, mean, std)``: the percentile window of ``array`` and its clipped moments.

    Args:
        array: raw intensities, any shape; the statistics cover all of it (pass the whole volume).
        p_low: lower percentile (0-100).
        p_high: upper percentile (0-100).
    """
    array = np.asarray(array)
    if array.size == 0:
        raise ValueError("cannot compute statistics of an empty array")
    if _use_histogram(array):
        values, counts = _histogram(array)
        lower, upper = (float(v) for v in _histogram_percentiles(values, counts, [p_low, p_high]))
        mean, std = _histogram_moments(values, counts, lower, upper)
        return lower, upper, mean, std
    lower, upper = (float(v) for v in percentiles(array, [p_low, p_high]))
    mean, std = clipped_moments(array, lower, upper)
    return lower, upper, mean, std
