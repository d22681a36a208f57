"""Typed configs of the student stages: distillation, supervised fine-tuning, MAE pre-training.

The defaults here are the single source of truth (presets override a few numbers per section:
``distill``, ``finetune``, ``mae``). They are this project's choices for small CPU/GPU budgets,
not numbers copied from the TS-KD paper.
"""

from __future__ import annotations

from dataclasses import dataclass

from tskd.config import ConfigBase

__all__ = ["OptimConfig", "DistillConfig", "FinetuneConfig", "MAEConfig"]


def _check_optim(cfg: "OptimConfig") -> None:
    if cfg.lr <= 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if cfg.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {cfg.weight_decay}")
    if cfg.max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {cfg.max_steps}")
    if not 0 <= cfg.warmup_steps <= cfg.max_steps:
        raise ValueError(f"warmup_steps must be in [0, max_steps={cfg.max_steps}], got {cfg.warmup_steps}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.val_every < 1:
        raise ValueError(f"val_every must be >= 1, got {cfg.val_every}")


@dataclass
class OptimConfig(ConfigBase):
    """Optimisation numbers shared by the student stages (AdamW, linear warm-up, then cosine decay).

    Args:
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: steps of linear warm-up.
        max_steps: optimiser steps of the stage.
        batch_size: samples per step.
        val_every: steps between validations.
    """

    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 200
    max_steps: int = 5000
    batch_size: int = 16
    val_every: int = 250

    def __post_init__(self) -> None:
        _check_optim(self)


@dataclass
class DistillConfig(OptimConfig):
    """Distilling the fine-tuned teacher into the student on the transfer set.

    Args:
        student: registry name of the student (``vit_tiny``, ``unet_small``; see
            :func:`tskd.student.available_students`).
        temperature: softening temperature T of the logit KD term (loss scaled by T^2).
        w_kd: weight of the logit KD term (KL between softened teacher and student).
        w_sup: weight of the supervised Dice + CE term on the labelled samples of each batch.
        w_feat: weight of the feature KD term (MSE to the teacher's image embedding); 0 disables
            it, otherwise the transfer set must hold ``teacher_embedding``.
        mae_pretrain: initialise a ViT student's encoder from MAE pre-training on the task images.
    """

    student: str = "vit_tiny"
    temperature: float = 2.0
    w_kd: float = 1.0
    w_sup: float = 1.0
    w_feat: float = 0.0
    mae_pretrain: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        from tskd.student.networks import available_students  # heavy import (torch), only when checking

        if self.student not in available_students():
            raise ValueError(f"unknown student '{self.student}'; available: {', '.join(available_students())}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("w_kd", "w_sup", "w_feat"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.w_kd == 0 and self.w_sup == 0 and self.w_feat == 0:
            raise ValueError("at least one of w_kd, w_sup, w_feat must be > 0")


@dataclass
class FinetuneConfig(OptimConfig):
    """Supervised fine-tuning of the distilled student on the labelled cases (Dice + CE).

    Args:
        lr / weight_decay / warmup_steps / max_steps / batch_size / val_every: as :class:`OptimConfig`,
            with a lower learning rate so fine-tuning refines rather than overwrites the distilled weights.
    """

    lr: float = 1e-4
    warmup_steps: int = 50
    max_steps: int = 1500
    batch_size: int = 8
    val_every: int = 100


@dataclass
class MAEConfig(OptimConfig):
    """Masked-autoencoder pre-training of the ViT student's encoder on all task images.

    Args:
        masking_ratio: fraction of patches hidden from the encoder.
        decoder_hidden_size / decoder_mlp_dim / decoder_num_layers / decoder_num_heads: the
            (thrown-away) MAE decoder; small, as in MAE's light-decoder design.
        norm_pix_loss: reconstruct per-patch normalised pixels (MAE's better-feature variant).
    """

    lr: float = 1.5e-4
    warmup_steps: int = 200
    max_steps: int = 5000
    batch_size: int = 32
    val_every: int = 500
    masking_ratio: float = 0.75
    decoder_hidden_size: int = 128
    decoder_mlp_dim: int = 512
    decoder_num_layers: int = 2
    decoder_num_heads: int = 4
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.masking_ratio < 1:
            raise ValueError(f"masking_ratio must be in (0, 1), got {self.masking_ratio}")
        if self.decoder_hidden_size % self.decoder_num_heads:
            raise ValueError(
                f"decoder_hidden_size ({self.decoder_hidden_size}) must be divisible by "
                f"decoder_num_heads ({self.decoder_num_heads})"
            )
