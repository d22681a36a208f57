"""Training-step "tasks" of the student stages, handed as built objects to the engine's training loop.

Every task has ``training_step(model, batch) -> (loss, metrics)`` and ``validate(model) -> metrics``,
plus ``best_metric`` / ``best_mode`` naming which validation number decides the best checkpoint.
Batches are dicts of tensors: ``image`` ``(B, 1, S, S)``, ``label`` ``(B, S, S)`` int64,
``labelled`` ``(B,)`` bool, and for distillation ``soft`` ``(B, K, S_t, S_t)`` teacher probabilities
and optionally ``teacher_embedding`` ``(B, C_t, H_t, W_t)``. Tensors are moved to the model's device.

* :class:`DistillationTask`: TS-KD (logit KD + supervised on labelled + optional feature KD).
* :class:`SupervisedTask`: Dice + CE on labelled samples (fine-tuning; the labelled-only baseline).
* :class:`FeatureDistillationTask`: task-agnostic KD baseline (MobileSAM-style encoder feature MSE).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from tskd.engine.task import TrainingTask
from tskd.engine.validation import ValData as _Data
from tskd.engine.validation import device_of, mean_over_loader, move_to
from tskd.errors import DataError
from tskd.student.base import StudentWithProjector
from tskd.student.config import DistillConfig
from tskd.losses import SupervisedLoss
from tskd.student.losses import DistillationLoss, feature_kd_loss
from tskd.student.validation import evaluate_dice

__all__ = ["DistillationTask", "SupervisedTask", "FeatureDistillationTask"]

ValData = _Data | None


def _inner(model: nn.Module) -> nn.Module:
    """``model`` without DDP (``.module``) or ``torch.compile`` (``._orig_mod``) wrappers."""
    for _ in range(4):
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        else:
            break
    return model


def _forward_with_projection(model: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(_inner(model), StudentWithProjector):
        raise ValueError(
            f"feature distillation needs a StudentWithProjector (student + FeatureProjector), got {type(_inner(model)).__name__}"
        )
    return model(image, return_features=True)


def _image(batch: Mapping[str, Any]) -> torch.Tensor:
    if "image" not in batch:
        raise DataError(f"batch has no 'image'; keys present: {', '.join(sorted(batch))}")
    return batch["image"].float()


class SupervisedTask(TrainingTask):
    """Dice + CE on the labelled samples of each batch; validation by mean foreground Dice.

    Args:
        num_classes: K, including background.
        val_data: validation samples / batches with ``image`` and ``label`` (None: no validation).
        val_batch_size: batch size when ``val_data`` is a Dataset.
    """

    best_metric = "val_dice"
    best_mode = "max"

    def __init__(self, *, num_classes: int, val_data: ValData = None, val_batch_size: int = 8) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.val_data = val_data
        self.val_batch_size = val_batch_size
        self.loss = SupervisedLoss()

    def training_step(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch (``labelled`` absent: every sample counts as labelled)."""
        batch = move_to(batch, device_of(model))
        logits = model(_image(batch))
        labelled = batch.get("labelled")
        loss = self.loss(logits, batch["label"], labelled)
        metrics = {"loss": float(loss.detach())}
        if labelled is not None:
            metrics["labelled"] = float(labelled.float().mean())
        return loss, metrics

    def validate(self, model: nn.Module) -> dict[str, float]:
        """``val_dice`` and friends (see :func:`tskd.student.validation.evaluate_dice`); {} without val data."""
        if self.val_data is None:
            return {}
        return evaluate_dice(model, self.val_data, num_classes=self.num_classes, batch_size=self.val_batch_size)


class DistillationTask(SupervisedTask):
    """TS-KD distillation: ``w_kd`` logit KD + ``w_sup`` Dice-CE on labelled + ``w_feat`` feature KD.

    With ``config.w_feat > 0`` the model must be a :class:`StudentWithProjector` (the engine then
    optimises the student and the projector together) and batches must hold ``teacher_embedding``.

    Args:
        config: weights, temperature and optimisation numbers.
        num_classes: K, including background.
        val_data: validation samples / batches with ``image`` and ``label`` (None: no validation).
        val_batch_size: batch size when ``val_data`` is a Dataset.
    """

    def __init__(
        self, *, config: DistillConfig, num_classes: int, val_data: ValData = None, val_batch_size: int = 8
    ) -> None:
        super().__init__(num_classes=num_classes, val_data=val_data, val_batch_size=val_batch_size)
        self.config = config
        self.distill_loss = DistillationLoss(config)

    @property
    def find_unused_parameters(self) -> bool:
        """True for feature KD alone (``w_kd``, ``w_kd_dice``, ``w_sup`` all 0): the decoder gets no gradient."""
        cfg = self.config
        return cfg.w_kd == 0 and cfg.w_kd_dice == 0 and cfg.w_sup == 0

    def training_step(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted distillation loss of one transfer-set batch and its parts (``loss``, ``kd``, ``sup``, ``feat``)."""
        batch = move_to(batch, device_of(model))
        image = _image(batch)
        if self.distill_loss.uses_features:
            logits, projected = _forward_with_projection(model, image)
        else:
            logits, projected = model(image), None
        return self.distill_loss(logits, batch, projected)


class FeatureDistillationTask(TrainingTask):
    """Task-agnostic KD baseline: MSE between projected student features and frozen-teacher embeddings.

    The teacher is the foundation model's image encoder *before* task fine-tuning; its embeddings
    come in the batch as ``teacher_embedding``. Only the student's encoder and the projector get
    gradients; the decoder is trained afterwards by supervised fine-tuning.

    Args:
        val_data: validation samples / batches with ``image`` and ``teacher_embedding`` (None: no validation).
        val_batch_size: batch size when ``val_data`` is a Dataset.
    """

    best_metric = "val_feat_mse"
    best_mode = "min"
    find_unused_parameters = True  # the student's decoder gets no gradient

    def __init__(self, *, val_data: ValData = None, val_batch_size: int = 8) -> None:
        self.val_data = val_data
        self.val_batch_size = val_batch_size

    def _loss(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        if "teacher_embedding" not in batch:
            raise DataError(
                "batch has no 'teacher_embedding' (the foundation model's image embeddings); "
                "compute them for the transfer set before feature distillation"
            )
        _, projected = _forward_with_projection(model, _image(batch))
        return feature_kd_loss(projected, batch["teacher_embedding"])

    def training_step(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Feature MSE of one batch (``loss`` and ``feat``)."""
        loss = self._loss(model, move_to(batch, device_of(model)))
        value = float(loss.detach())
        return loss, {"loss": value, "feat": value}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Sample-weighted mean feature MSE over ``val_data`` as ``val_feat_mse``; {} without val data."""
        if self.val_data is None:
            return {}
        return {"val_feat_mse": mean_over_loader(model, self.val_data, self._loss, batch_size=self.val_batch_size)}
