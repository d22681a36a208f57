"""The teacher stage's part of training: loss on a batch and validation Dice, for the engine.

The engine owns the loop (devices, optimiser, schedule, checkpoints); it calls
:meth:`TeacherTask.training_step` for each batch and :meth:`TeacherTask.validate` at validation
time. Batches are dicts of ``image`` float32 ``(B, 1, S, S)``, ``label`` int64 ``(B, S, S)`` with
values ``0..K-1`` and ``labelled`` bool ``(B,)`` (all ``True`` when absent).

Loss: the project's one supervised loss (:class:`tskd.losses.SupervisedLoss`, the students' too) on
the labelled samples. In box-prompt
mode the boxes are built from the labels (:func:`~tskd.teacher.model.boxes_from_labels`), in
training and in validation alike.

Validation: the project's one validation Dice (:class:`tskd.metrics.SegmentationDice`, the students'
too) of the argmax prediction on the labelled validation samples: ``val_dice``, ``val_dice_global``
and ``val_dice_class{k}``, over the engine's one validation loop.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tskd.engine.task import TrainingTask
from tskd.engine.validation import device_of, evaluate_batches
from tskd.losses import SupervisedLoss
from tskd.metrics import SegmentationDice
from tskd.teacher.config import TeacherConfig
from tskd.teacher.model import boxes_from_labels

__all__ = ["TeacherTask"]

logger = logging.getLogger(__name__)


class TeacherTask(TrainingTask):
    """Loss and validation of the teacher.

    Args:
        num_classes: ``K`` including background.
        val_data: validation samples (a ``Dataset`` of sample dicts, or a ``DataLoader`` of
            batches); ``None`` makes :meth:`validate` return ``{}``.
        prompt_mode: ``"none"`` or ``"box"`` (boxes from labels).
        dice_weight: weight of the Dice term.
        ce_weight: weight of the cross-entropy term.
        val_batch_size: batch size when ``val_data`` is a ``Dataset``.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        val_data: Dataset | DataLoader | None = None,
        prompt_mode: str = "none",
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        val_batch_size: int = 8,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if prompt_mode not in ("none", "box"):
            raise ValueError(f"prompt_mode must be 'none' or 'box', got {prompt_mode!r}")
        if val_batch_size < 1:
            raise ValueError(f"val_batch_size must be >= 1, got {val_batch_size}")
        self.num_classes = int(num_classes)
        self.prompt_mode = prompt_mode
        self.loss = SupervisedLoss(lambda_dice=dice_weight, lambda_ce=ce_weight)
        if val_data is None or isinstance(val_data, DataLoader):
            self.val_loader = val_data
        else:
            self.val_loader = DataLoader(val_data, batch_size=val_batch_size, shuffle=False)

    @classmethod
    def from_config(
        cls, config: TeacherConfig, *, num_classes: int, val_data: Dataset | DataLoader | None = None
    ) -> "TeacherTask":
        """The task as ``config`` describes it (prompt mode, loss weights, validation batch size)."""
        return cls(
            num_classes=num_classes,
            val_data=val_data,
            prompt_mode=config.prompt_mode,
            dice_weight=config.dice_weight,
            ce_weight=config.ce_weight,
            val_batch_size=config.train.micro_batch_size,
        )

    def _forward(self, model: nn.Module, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.prompt_mode == "box":
            return model(image, boxes=boxes_from_labels(label, self.num_classes))
        return model(image)

    def training_step(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch.

        Args:
            model: the teacher (possibly wrapped by DDP / accelerate), in train mode.
            batch: ``image`` ``(B, 1, S, S)``, ``label`` ``(B, S, S)``, optional ``labelled`` ``(B,)``.

        Returns:
            the scalar loss to back-propagate and float logs (``loss``, ``labelled``: samples used).
        """
        device = device_of(model)
        image, label, labelled = _unpack(batch, device)
        if not bool(labelled.any()):
            # nothing to learn from: a zero that still touches every trainable weight (DDP-safe)
            zero = sum((p.sum() * 0.0 for p in model.parameters() if p.requires_grad), torch.zeros((), device=device))
            return zero, {"loss": 0.0, "labelled": 0.0}
        image, label = image[labelled], label[labelled]
        _check_labels(label, self.num_classes)
        logits = self._forward(model, image, label)
        loss = self.loss(logits, label)
        return loss, {"loss": float(loss.detach()), "labelled": float(label.shape[0])}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation Dice over the labelled validation samples (model left in its previous mode).

        Returns:
            ``val_dice``, ``val_dice_global`` and ``val_dice_class{k}`` per foreground class ``k``
            (:class:`tskd.metrics.SegmentationDice`, which also says what a class absent from every
            validation label scores); ``{}`` without validation data.

        Raises:
            ValueError: the validation data holds no labelled sample, or labels outside ``0..K-1``.
        """
        if self.val_loader is None:
            return {}
        dice = SegmentationDice(self.num_classes)

        def step(model: nn.Module, batch: dict[str, Any]) -> None:
            image, label, labelled = _unpack(batch, device_of(model))
            if bool(labelled.any()):
                image, label = image[labelled], label[labelled]
                _check_labels(label, self.num_classes)
                dice.update(self._forward(model, image, label).argmax(dim=1), label)

        evaluate_batches(model, self.val_loader, step)
        return dice.scores()


def _unpack(batch: Mapping[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    try:
        image = torch.as_tensor(batch["image"]).to(device=device, dtype=torch.float32)
        label = torch.as_tensor(batch["label"]).to(device=device, dtype=torch.long)
    except KeyError as exc:
        raise ValueError(f"a teacher batch needs 'image' and 'label', got keys {sorted(batch)}") from exc
    if image.ndim != 4 or image.shape[1] != 1 or label.shape != (image.shape[0], *image.shape[2:]):
        raise ValueError(
            f"expected image (B, 1, S, S) and label (B, S, S), got {tuple(image.shape)} and {tuple(label.shape)}"
        )
    if "labelled" in batch:
        labelled = torch.as_tensor(batch["labelled"]).to(device=device, dtype=torch.bool).reshape(-1)
    else:
        labelled = torch.ones(image.shape[0], dtype=torch.bool, device=device)
    return image, label, labelled


def _check_labels(label: torch.Tensor, num_classes: int) -> None:
    low, high = int(label.min()), int(label.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, found values {low}..{high}")
