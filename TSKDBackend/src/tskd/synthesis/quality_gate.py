"""The quality gate: which synthetic images may enter the transfer set.

Each synthetic image is checked, in this order, for:

1. ``degenerate``: NaN/inf values, (almost) no contrast (standard deviation below ``min_std``), or
   a large fraction of pixels stuck at the clip range of the intensity mapping;
2. ``duplicate``: memorisation of a training image, measured as the highest normalised
   cross-correlation between mean-centred ``thumbnail_size`` thumbnails of the image and of every
   training image (one matrix product; 1.0 = identical up to brightness and contrast);
3. ``uncertain``: the teacher cannot segment it, measured as the mean over pixels of the entropy
   of the teacher's softmax divided by ``log(K)`` (0 = certain, 1 = uniform). The gate is handed
   the teacher's probabilities; it never runs the teacher.

The first failed check is the reason an image is dropped.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from tskd.synthesis.config import QualityGateConfig

__all__ = ["QualityGate", "GateDecision", "GateResult", "REASONS", "thumbnails", "normalised_entropy"]

logger = logging.getLogger(__name__)

#: Reasons for dropping an image, in the order they are checked.
REASONS = ("degenerate", "duplicate", "uncertain")


@dataclass
class GateDecision:
    """The verdict on one image.

    Args:
        keep: whether the image enters the transfer set.
        reason: ``""`` when kept, else one of :data:`REASONS`.
        detail: what failed, in words (``"std 0.001 < 0.05"``).
        similarity: highest thumbnail correlation with a training image (NaN if not checked).
        entropy: normalised mean pixel entropy of the teacher (NaN if not checked).
    """

    keep: bool
    reason: str = ""
    detail: str = ""
    similarity: float = float("nan")
    entropy: float = float("nan")


@dataclass
class GateResult:
    """Decisions on a batch of images, in order."""

    decisions: list[GateDecision] = field(default_factory=list)

    @property
    def keep(self) -> np.ndarray:
        """bool ``(n,)``: which images are kept."""
        return np.array([d.keep for d in self.decisions], dtype=bool)

    def summary(self) -> dict[str, object]:
        """``{"kept": n, "dropped": {"duplicate": a, "degenerate": b, "uncertain": c}}``."""
        return _summary(self.decisions)


class QualityGate:
    """Decides per synthetic image whether it is kept.

    Args:
        config: thresholds.
        training_images: the diffusion model's training images, normalised intensities
            ``(N, 1, H, W)`` or ``(N, H, W)`` (a memory-mapped array is read in chunks).
        clip: the clip range ``c`` of the intensity mapping; pixels with ``|x| >= c`` count as saturated.
    """

    def __init__(self, config: QualityGateConfig, training_images: np.ndarray | None = None, *, clip: float = 3.0) -> None:
        if clip <= 0:
            raise ValueError(f"clip must be positive, got {clip}")
        self.config = config
        self.clip = float(clip)
        self._train: torch.Tensor | None = None
        if config.duplicate_threshold is not None and training_images is not None and len(training_images):
            parts = [thumbnails(np.asarray(training_images[i:i + 512]), config.thumbnail_size)
                     for i in range(0, len(training_images), 512)]
            self._train = torch.cat(parts)
        self._kept = 0
        self._dropped = {reason: 0 for reason in REASONS}

    @property
    def num_training_images(self) -> int:
        return 0 if self._train is None else len(self._train)

    def evaluate(self, images: np.ndarray, teacher_probs: np.ndarray | None = None) -> GateResult:
        """Decisions on a batch of synthetic images.

        Args:
            images: normalised intensities ``(n, 1, H, W)`` or ``(n, H, W)``.
            teacher_probs: the teacher's softmax ``(n, K, H', W')`` on these images, or ``None`` to
                skip the uncertainty check.

        Returns:
            a :class:`GateResult`; the gate's running :meth:`summary` includes it.
        """
        images = _as_batch(images, "images")
        n = len(images)
        if teacher_probs is not None:
            teacher_probs = np.asarray(teacher_probs)
            if teacher_probs.ndim != 4 or len(teacher_probs) != n or teacher_probs.shape[1] < 2:
                raise ValueError(
                    f"teacher_probs must be (n={n}, K>=2, H, W), got shape {teacher_probs.shape}"
                )
        flat = images.reshape(n, -1).astype(np.float64)
        finite = np.isfinite(flat).all(axis=1)
        safe = np.where(np.isfinite(flat), flat, 0.0)
        std = safe.std(axis=1)
        saturated = (np.abs(safe) >= self.clip * (1 - 1e-4)).mean(axis=1)
        similarity = np.full(n, np.nan)
        if self._train is not None and n:
            thumbs = thumbnails(np.where(np.isfinite(images), images, 0.0), self.config.thumbnail_size)
            similarity = (thumbs @ self._train.T).max(dim=1).values.numpy().astype(np.float64)
        entropy = np.full(n, np.nan)
        if teacher_probs is not None and n:
            entropy = normalised_entropy(teacher_probs)

        cfg = self.config
        decisions = []
        for i in range(n):
            if not finite[i]:
                decision = GateDecision(False, "degenerate", "NaN or infinite values")
            elif std[i] < cfg.min_std:
                decision = GateDecision(False, "degenerate", f"std {std[i]:.3g} < {cfg.min_std:g}")
            elif saturated[i] > cfg.max_saturated_fraction:
                decision = GateDecision(
                    False, "degenerate", f"{saturated[i]:.0%} of pixels at the clip range (max {cfg.max_saturated_fraction:.0%})"
                )
            elif cfg.duplicate_threshold is not None and similarity[i] >= cfg.duplicate_threshold:
                decision = GateDecision(
                    False, "duplicate", f"correlation {similarity[i]:.3f} with a training image >= {cfg.duplicate_threshold:g}"
                )
            elif cfg.max_entropy is not None and entropy[i] > cfg.max_entropy:
                decision = GateDecision(False, "uncertain", f"teacher entropy {entropy[i]:.3f} > {cfg.max_entropy:g}")
            else:
                decision = GateDecision(True)
            decision.similarity = float(similarity[i])
            decision.entropy = float(entropy[i])
            decisions.append(decision)
        result = GateResult(decisions)
        summary = result.summary()
        self._kept += summary["kept"]
        for reason, count in summary["dropped"].items():
            self._dropped[reason] += count
        logger.info("quality gate: kept %d of %d (dropped %s)", summary["kept"], n, summary["dropped"])
        return result

    def summary(self) -> dict[str, object]:
        """Counts over every image evaluated by this gate so far."""
        return {"kept": self._kept, "dropped": {r: self._dropped[r] for r in ("duplicate", "degenerate", "uncertain")}}


def thumbnails(images: np.ndarray, size: int) -> torch.Tensor:
    """Mean-centred, unit-norm, area-downsampled thumbnails.

    Args:
        images: ``(n, 1, H, W)`` or ``(n, H, W)``.
        size: thumbnail side.

    Returns:
        float32 ``(n, size*size)``; the dot product of two rows is their normalised
        cross-correlation (0 for a constant image).
    """
    batch = torch.as_tensor(_as_batch(images, "images"), dtype=torch.float32)
    if batch.shape[-2:] != (size, size):
        batch = F.interpolate(batch, size=(size, size), mode="area")
    flat = batch.reshape(len(batch), -1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    norm = flat.norm(dim=1, keepdim=True)
    return torch.where(norm > 1e-6, flat / norm.clamp_min(1e-6), torch.zeros_like(flat))


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Mean pixel entropy of ``(n, K, H, W)`` probabilities divided by ``log(K)``, ``(n,)`` in [0, 1]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=1)
    return entropy.reshape(len(p), -1).mean(axis=1) / math.log(p.shape[1])


def _as_batch(images: np.ndarray, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"{name} must be (n, 1, H, W) or (n, H, W), got shape {images.shape}")
    return images


def _summary(decisions: list[GateDecision]) -> dict[str, object]:
    dropped = {reason: 0 for reason in ("duplicate", "degenerate", "uncertain")}
    for decision in decisions:
        if not decision.keep:
            dropped[decision.reason] += 1
    return {"kept": sum(d.keep for d in decisions), "dropped": dropped}
