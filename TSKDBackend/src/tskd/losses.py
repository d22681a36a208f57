"""The supervised segmentation loss of every model the project trains (teacher and students).

One definition, so that a teacher and a student trained on the same labels optimise the same thing:
MONAI's ``DiceCELoss`` with softmax and one-hot targets, the Dice part over the foreground classes
and pooled over the batch (``include_background=False, batch=True``, as nnU-Net does), plus
cross-entropy over every pixel. Pooling over the batch keeps slices without foreground, and
slices where a class is absent, from producing extreme per-slice Dice terms.

:func:`soft_dice_loss` is the same Dice part against soft targets (a teacher's probabilities),
used by distillation so that the foreground weighs as much in the teacher's targets as it does in
the labels (a pixel-averaged KL divergence alone is dominated by the background: measured in
docs/benchmarks.md, "Student training").
"""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

from tskd.errors import DataError

__all__ = ["SupervisedLoss", "soft_dice_loss"]


class SupervisedLoss(nn.Module):
    """Dice (foreground classes, pooled over the batch) + cross-entropy, on the labelled samples.

    Args:
        lambda_dice: weight of the Dice part.
        lambda_ce: weight of the cross-entropy part.
    """

    def __init__(self, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> None:
        super().__init__()
        if lambda_dice < 0 or lambda_ce < 0 or lambda_dice + lambda_ce == 0:
            raise ValueError(f"lambda_dice and lambda_ce must be >= 0 and not both 0, got {lambda_dice}, {lambda_ce}")
        self.dice_ce = DiceCELoss(
            include_background=False,
            to_onehot_y=True,
            softmax=True,
            batch=True,
            lambda_dice=lambda_dice,
            lambda_ce=lambda_ce,
        )

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
        if labelled is not None:
            labelled = labelled.to(device=logits.device, dtype=torch.bool).reshape(-1)
            if labelled.shape[0] != logits.shape[0]:
                raise ValueError(f"labelled has {labelled.shape[0]} entries for a batch of {logits.shape[0]}")
            if not bool(labelled.any()):
                return logits.sum() * 0.0  # keeps the graph (DDP) and never NaN
            logits, label = logits[labelled], label[labelled]
        label = label.to(logits.device).long()
        if label.numel() and (int(label.min()) < 0 or int(label.max()) >= logits.shape[1]):
            raise DataError(
                f"label values must be in 0..{logits.shape[1] - 1} for {logits.shape[1]} classes, got "
                f"{int(label.min())}..{int(label.max())}; check the dataset's label map"
            )
        return self.dice_ce(logits.float(), label.unsqueeze(1))


_SOFT_DICE = DiceLoss(include_background=False, softmax=True, batch=True)


def soft_dice_loss(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Soft Dice between ``softmax(logits)`` and target probabilities, foreground classes, pooled over the batch.

    Args:
        logits: ``(B, K, S, S)``.
        target_probs: ``(B, K, S, S)`` class probabilities on the same grid.
    """
    if logits.shape != target_probs.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target probabilities {tuple(target_probs.shape)} differ")
    return _SOFT_DICE(logits.float(), target_probs.float().to(logits.device))
