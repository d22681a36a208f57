"""The supervised segmentation loss of every model the project trains (teacher and students).

One definition, so that a teacher and a student trained on the same labels optimise the same thing:
the values of MONAI's ``DiceCELoss`` with softmax and one-hot targets, the Dice part over the
foreground classes and pooled over the batch (``include_background=False, batch=True``, as nnU-Net
does), plus cross-entropy over every pixel; written out here (one pooled Dice, :func:`_pooled_dice`)
so that its sums can be added across processes under distributed training. Pooling over the batch keeps slices without foreground, and
slices where a class is absent, from producing extreme per-slice Dice terms.

:func:`soft_dice_loss` is the same Dice part against soft targets (a teacher's probabilities),
used by distillation so that the foreground weighs as much in the teacher's targets as it does in
the labels (a pixel-averaged KL divergence alone is dominated by the background: measured in
docs/benchmarks.md, "Student training").
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn

from tskd.errors import DataError

__all__ = ["SupervisedLoss", "soft_dice_loss"]


class SupervisedLoss(nn.Module):
    """Dice (foreground classes, pooled over the batch) + cross-entropy, on the labelled samples.

    Under ``torch.distributed`` training (several processes) the Dice sums are added over every
    process before the ratio (with gradients), so the Dice is that of the whole global batch and
    N processes train exactly as one process with the N-times larger batch would (the gradient
    average of DDP then gives the global Dice's gradient; the cross-entropy is a per-pixel mean).

    Args:
        lambda_dice: weight of the Dice part.
        lambda_ce: weight of the cross-entropy part.
    """

    def __init__(self, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> None:
        super().__init__()
        if lambda_dice < 0 or lambda_ce < 0 or lambda_dice + lambda_ce == 0:
            raise ValueError(f"lambda_dice and lambda_ce must be >= 0 and not both 0, got {lambda_dice}, {lambda_ce}")
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)

    def forward(
        self, logits: torch.Tensor, label: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss over the samples with ``labelled`` True (all when None); 0 (with a graph) when none are.

        Args:
            logits: ``(B, K, S, S)``.
            label: ``(B, S, S)`` integer labels ``0..K-1`` (meaningless where not labelled).
            labelled: ``(B,)`` bool.

        Raises:
            DataError: label values outside ``0..K-1``.
        """
        if label.ndim != 3 or label.shape[0] != logits.shape[0] or label.shape[-2:] != logits.shape[-2:]:
            raise ValueError(f"label {tuple(label.shape)} does not match logits {tuple(logits.shape)} as (B, S, S)")
        label = label.to(logits.device).long()
        if labelled is None:
            labelled = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
        labelled = labelled.to(device=logits.device, dtype=torch.bool).reshape(-1)
        if labelled.shape[0] != logits.shape[0]:
            raise ValueError(f"labelled has {labelled.shape[0]} entries for a batch of {logits.shape[0]}")
        picked = label[labelled]
        if picked.numel() and (int(picked.min()) < 0 or int(picked.max()) >= logits.shape[1]):
            raise DataError(
                f"label values must be in 0..{logits.shape[1] - 1} for {logits.shape[1]} classes, got "
                f"{int(picked.min())}..{int(picked.max())}; check the dataset's label map"
            )
        logits = logits.float()
        weight = labelled.float()
        target = F.one_hot(label.clamp(0, logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2).float()
        loss = logits.sum() * 0.0  # keeps the graph (DDP) and never NaN
        if self.lambda_dice:
            # every process reaches the all-reduce, with or without labelled samples
            loss = loss + self.lambda_dice * _pooled_dice(logits.softmax(1), target, weight)
        if self.lambda_ce and bool(labelled.any()):
            ce = F.cross_entropy(logits[labelled], label[labelled])
            loss = loss + self.lambda_ce * ce
        return loss


def _pooled_dice(probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1 - Dice per foreground class, sums pooled over the (weighted) batch and all processes, mean over classes.

    The smoothing terms are MONAI's ``DiceLoss`` defaults (1e-5): a class absent from both the
    prediction and the target scores Dice 1.
    """
    w = weight.view(-1, 1, 1, 1)
    probs, target = probs[:, 1:] * w, target[:, 1:] * w
    sums = torch.stack([(probs * target).sum((0, 2, 3)), probs.sum((0, 2, 3)) + target.sum((0, 2, 3))])
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        sums = dist_nn.all_reduce(sums)
    intersection, denominator = sums[0], sums[1]
    return (1.0 - (2.0 * intersection + _SMOOTH) / (denominator + _SMOOTH)).mean()


_SMOOTH = 1e-5


def soft_dice_loss(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Soft Dice between ``softmax(logits)`` and target probabilities, foreground classes, pooled over the batch.

    Args:
        logits: ``(B, K, S, S)``.
        target_probs: ``(B, K, S, S)`` class probabilities on the same grid.
    """
    if logits.shape != target_probs.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target probabilities {tuple(target_probs.shape)} differ")
    logits = logits.float()
    weight = torch.ones(logits.shape[0], device=logits.device)
    return _pooled_dice(logits.softmax(1), target_probs.float().to(logits.device), weight)
