"""Distillation losses of the student stages; the supervised loss is the project's one
(:class:`tskd.losses.SupervisedLoss`, re-exported here).

* :func:`logit_kd_loss`: pixel-wise KL divergence between temperature-softened teacher and student
  class distributions, scaled by T^2 (Hinton et al.) so gradients keep their size across T.
* :func:`tskd.losses.soft_dice_loss` against the teacher's probabilities: the foreground-weighted
  part of the logit KD. A pixel-averaged KL alone is dominated by the background: on the MSD
  hippocampus (about 5% foreground) a student distilled with KL alone predicted no foreground at all
  (test Dice 0.00), with the soft Dice beside it 0.72 (docs/benchmarks.md, "Student training").
* :func:`feature_kd_loss`: MSE between projected student features and the teacher's image embedding.
* :class:`DistillationLoss`: the weighted sum used by distillation, with its parts for logging.

Resizing choices: teacher *probabilities* are resized bilinearly to the student's grid (a bilinear
mix of probability vectors is again a probability vector, whereas mixing log-probabilities gives an
unnormalised geometric mean), then clamped and re-normalised before taking logs. Student features
are resized bilinearly to the teacher's embedding grid.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from tskd.errors import DataError
from tskd.losses import SupervisedLoss, soft_dice_loss
from tskd.student.config import DistillConfig

__all__ = [
    "resize_probabilities",
    "soften_probabilities",
    "logit_kd_loss",
    "feature_kd_loss",
    "SupervisedLoss",
    "DistillationLoss",
]

PROB_EPS = 1e-6
"""Floor for teacher probabilities before taking logs (float16 soft labels hold exact zeros)."""


def resize_probabilities(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize class probabilities ``(B, K, h, w)`` to ``size`` bilinearly; the result sums to 1 over K."""
    probs = probs.float()
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    out = F.interpolate(probs, size=tuple(size), mode="bilinear", align_corners=False)
    out = out.clamp_min(0.0)
    return out / out.sum(dim=1, keepdim=True).clamp_min(PROB_EPS)


def soften_probabilities(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log of ``softmax(log(p) / T)`` over dim 1 for probabilities ``p`` stored at T = 1.

    Args:
        probs: ``(B, K, ...)`` class probabilities.
        temperature: T > 0; T > 1 flattens the distribution.

    Returns:
        log-probabilities ``(B, K, ...)`` of the softened distribution.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = torch.log(probs.float().clamp_min(PROB_EPS))
    return F.log_softmax(logits / temperature, dim=1)


def logit_kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2-scaled KL(teacher_T || student_T), summed over classes and averaged over pixels and batch.

    Args:
        student_logits: ``(B, K, S, S)`` raw student outputs.
        teacher_probs: ``(B, K, S_t, S_t)`` teacher class probabilities at T = 1 (any float dtype,
            any resolution; resized to ``S`` bilinearly on probabilities).
        temperature: T > 0 applied to both sides.

    Returns:
        a scalar tensor (0 when the softened distributions are equal).
    """
    if student_logits.ndim != 4 or teacher_probs.ndim != 4:
        raise ValueError(
            f"expected (B, K, H, W) tensors, got student {tuple(student_logits.shape)} "
            f"and teacher {tuple(teacher_probs.shape)}"
        )
    if student_logits.shape[:2] != teacher_probs.shape[:2]:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher probabilities "
            f"{tuple(teacher_probs.shape)} differ in batch size or number of classes"
        )
    teacher = resize_probabilities(teacher_probs.to(student_logits.device), tuple(student_logits.shape[-2:]))
    log_q = soften_probabilities(teacher, temperature)
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_p, log_q, reduction="none", log_target=True).sum(dim=1)
    return kl.mean() * (temperature**2)


def feature_kd_loss(projected_student_features: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
    """MSE between projected student features and the teacher's embedding, on the teacher's grid.

    Args:
        projected_student_features: ``(B, C_t, h, w)`` (already through the :class:`FeatureProjector`).
        teacher_embedding: ``(B, C_t, H_t, W_t)``; the student features are resized to ``(H_t, W_t)``.
    """
    student, teacher = projected_student_features, teacher_embedding
    if student.ndim != 4 or teacher.ndim != 4 or student.shape[:2] != teacher.shape[:2]:
        raise ValueError(
            f"projected student features {tuple(student.shape)} and teacher embedding "
            f"{tuple(teacher.shape)} must both be (B, C_t, h, w) with the same B and C_t"
        )
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(student, size=tuple(teacher.shape[-2:]), mode="bilinear", align_corners=False)
    return F.mse_loss(student.float(), teacher.to(student.device).float())


class DistillationLoss:
    """``w_kd * logit KD + w_kd_dice * soft Dice(teacher) + w_sup * Dice-CE(labelled) + w_feat * feature KD``,
    with its parts for logging.

    Args:
        config: weights and temperature (:class:`~tskd.student.config.DistillConfig`).
    """

    def __init__(self, config: DistillConfig) -> None:
        self.config = config
        self.supervised = SupervisedLoss()

    @property
    def uses_features(self) -> bool:
        return self.config.w_feat > 0

    def __call__(
        self,
        student_logits: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
        projected_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts.

        Args:
            student_logits: ``(B, K, S, S)``.
            batch: needs ``soft`` ``(B, K, S_t, S_t)`` when ``w_kd`` or ``w_kd_dice > 0``; ``label`` ``(B, S, S)`` and
                ``labelled`` ``(B,)`` when ``w_sup > 0``; ``teacher_embedding`` when ``w_feat > 0``.
            projected_features: ``(B, C_t, h, w)`` student features in the teacher's space
                (required when ``w_feat > 0``).

        Returns:
            the scalar total, and ``{"loss", "kd", "kd_dice", "sup", "feat", "labelled"}`` as floats (the
            active terms, unweighted; ``labelled`` is the fraction of labelled samples).
        """
        cfg = self.config
        total = student_logits.new_zeros(())
        parts: dict[str, float] = {}
        if cfg.w_kd > 0 or cfg.w_kd_dice > 0:
            soft = _require(batch, "soft", "teacher probabilities; build the transfer set with the teacher first, "
                            "or set w_kd and w_kd_dice to 0")
        if cfg.w_kd > 0:
            kd = logit_kd_loss(student_logits, soft, cfg.temperature)
            total = total + cfg.w_kd * kd
            parts["kd"] = float(kd.detach())
        if cfg.w_kd_dice > 0:
            teacher = resize_probabilities(soft.to(student_logits.device), tuple(student_logits.shape[-2:]))
            kd_dice = soft_dice_loss(student_logits, teacher)
            total = total + cfg.w_kd_dice * kd_dice
            parts["kd_dice"] = float(kd_dice.detach())
        if cfg.w_sup > 0:
            label = _require(batch, "label", "integer labels (B, S, S)")
            labelled = batch.get("labelled")
            sup = self.supervised(student_logits, label, labelled)
            total = total + cfg.w_sup * sup
            parts["sup"] = float(sup.detach())
            if labelled is not None:
                parts["labelled"] = float(labelled.float().mean())
        if cfg.w_feat > 0:
            embedding = _require(
                batch, "teacher_embedding", "teacher image embeddings; store them in the transfer set, or set w_feat: 0"
            )
            if projected_features is None:
                raise ValueError("w_feat > 0 needs the projected student features (use a StudentWithProjector)")
            feat = feature_kd_loss(projected_features, embedding)
            total = total + cfg.w_feat * feat
            parts["feat"] = float(feat.detach())
        parts["loss"] = float(total.detach())
        return total, parts


def _require(batch: Mapping[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in batch:
        raise DataError(f"batch has no '{key}' ({what}); keys present: {', '.join(sorted(batch))}")
    return batch[key]
