"""Per-slice scores of a volume: the student's entropy and the teacher-student disagreement.

Numpy only (the models come in as :class:`tskd.runtime.SliceModel` objects, which may be the ONNX
student or a torch model behind :class:`tskd.inference.torch_model.TorchSliceModel`). Each model
sees the volume exactly as it does in :func:`tskd.runtime.segment_volume`: normalised with its own
statistics computed once on the whole volume, sliced along the student's axis and resized to its
input size. Scores are computed on the student's ``S x S`` grid (the teacher's probabilities are
resized to it), a batch at a time, so memory stays at one batch of probabilities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from tskd.errors import CancelledError
from tskd.preprocess import resize_bilinear, resolve_normalization, slices_along
from tskd.runtime import SliceModel, effective_axis
from tskd.runtime.inference import context_slices, gather_slices, slice_logits
from tskd.suggest.config import SuggestConfig

__all__ = [
    "VolumeScores",
    "softmax",
    "normalized_entropy",
    "total_variation_distance",
    "combine_scores",
    "score_volume",
    "teacher_matches",
]

logger = logging.getLogger(__name__)


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable softmax over ``axis`` (float32)."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """Mean over each slice's pixels of the entropy divided by ``log K``.

    Args:
        probs: class probabilities ``(B, K, H, W)`` (summing to 1 over K), K >= 2.

    Returns:
        float64 ``(B,)`` in 0..1.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 4 or probs.shape[1] < 2:
        raise ValueError(f"expected probabilities (B, K, H, W) with K >= 2, got shape {probs.shape}")
    clipped = np.clip(probs, 1e-12, 1.0)
    entropy = -(probs * np.log(clipped)).sum(axis=1)  # (B, H, W)
    return np.clip(entropy.mean(axis=(1, 2), dtype=np.float64) / np.log(probs.shape[1]), 0.0, 1.0)


def total_variation_distance(student: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """Mean over each slice's pixels of the total-variation distance of two models' class
    probabilities, ``0.5 * sum_k |p_k - q_k|``.

    Args:
        student, teacher: probabilities ``(B, K, H, W)`` on the same grid.

    Returns:
        float64 ``(B,)`` in 0..1 (0: the same probabilities everywhere, 1: certain of different
        classes everywhere).
    """
    student = np.asarray(student, dtype=np.float32)
    teacher = np.asarray(teacher, dtype=np.float32)
    if student.shape != teacher.shape or student.ndim != 4:
        raise ValueError(f"expected two (B, K, H, W) arrays of one shape, got {student.shape} and {teacher.shape}")
    distance = 0.5 * np.abs(student - teacher).sum(axis=1)  # (B, H, W)
    return np.clip(distance.mean(axis=(1, 2), dtype=np.float64), 0.0, 1.0)


def combine_scores(entropy: np.ndarray, disagreement: Optional[np.ndarray], teacher_weight: float) -> np.ndarray:
    """``(1 - w) * entropy + w * disagreement`` (just ``entropy`` without a teacher)."""
    entropy = np.asarray(entropy, dtype=np.float64)
    if disagreement is None:
        return entropy.copy()
    w = float(teacher_weight)
    return (1.0 - w) * entropy + w * np.asarray(disagreement, dtype=np.float64)


@dataclass
class VolumeScores:
    """The scores of every slice of one volume along ``axis``.

    Attributes:
        entropy: ``(n,)`` the student's normalised entropy per slice.
        disagreement: ``(n,)`` teacher-student total-variation distance per slice (None without a teacher).
        score: ``(n,)`` the combined score (:func:`combine_scores`).
        axis: the numpy axis the slices were cut along.
    """

    entropy: np.ndarray
    disagreement: Optional[np.ndarray]
    score: np.ndarray
    axis: int

    @property
    def num_slices(self) -> int:
        return int(self.score.shape[0])


def _probabilities(model: SliceModel, raw: np.ndarray, spec) -> np.ndarray:
    """Softmax of ``model`` on raw slices ``(n, h, w)``, or ``(n, C, h, w)`` (each slice between its neighbours)."""
    return softmax(slice_logits(model, raw, spec))


def teacher_matches(student: SliceModel, teacher: SliceModel) -> Optional[str]:
    """Why ``teacher`` cannot be compared with ``student`` (None when it can)."""
    if list(teacher.label_values) != list(student.label_values):
        return f"its label values {list(teacher.label_values)} differ from the student's {list(student.label_values)}"
    return None


def score_volume(
    student: SliceModel,
    volume: np.ndarray,
    *,
    teacher: Optional[SliceModel] = None,
    config: Optional[SuggestConfig] = None,
    cancel: Optional[Callable[[], bool]] = None,
) -> VolumeScores:
    """Score every slice of ``volume`` along the student's slice axis.

    Args:
        student: the run's student.
        volume: raw intensities ``(k, j, i)`` (or a 2D image ``(j, i)``: one slice).
        teacher: the run's teacher, for the disagreement term (same label values as the student).
        config: scoring settings (default :class:`SuggestConfig`).
        cancel: polled before each batch; True raises :class:`~tskd.errors.CancelledError`.

    Returns:
        :class:`VolumeScores`.
    """
    config = config or SuggestConfig()
    volume = np.asarray(volume)
    if volume.ndim not in (2, 3) or volume.size == 0:
        raise ValueError(f"expected a non-empty 2D image or 3D volume, got shape {volume.shape}")
    if teacher is not None:
        problem = teacher_matches(student, teacher)
        if problem:
            raise ValueError(f"the teacher cannot be compared with the student: {problem}")
    axis = effective_axis(volume.shape, int(student.slice_axis))
    slices = slices_along(volume, axis)
    size = int(student.input_size)
    student_spec = resolve_normalization(volume, student.normalization)
    teacher_spec = resolve_normalization(volume, teacher.normalization) if teacher is not None else None
    total = slices.shape[0]
    entropy = np.zeros(total)
    distance = np.zeros(total) if teacher is not None else None
    for start in range(0, total, config.batch_size):
        if cancel is not None and cancel():
            raise CancelledError("scoring cancelled")
        stop = min(start + config.batch_size, total)
        raw = slices[start:stop]
        p = _probabilities(student, gather_slices(slices, start, stop, context_slices(student)), student_spec)
        entropy[start:stop] = normalized_entropy(p)
        if teacher is not None:
            q = _probabilities(teacher, raw, teacher_spec)
            if q.shape[-1] != size:
                q = resize_bilinear(q, (size, size))
            distance[start:stop] = total_variation_distance(p, q)
    return VolumeScores(entropy, distance, combine_scores(entropy, distance, config.teacher_weight), axis)
