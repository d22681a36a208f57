"""Typed configs of the student stages: distillation, supervised fine-tuning, MAE pre-training.

The defaults here are the single source of truth (presets override a few numbers per section:
``distill``, ``finetune``, ``mae``). They are this project's choices for small CPU/GPU budgets,
not numbers copied from the TS-KD paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tskd.config import ConfigBase
from tskd.engine.config import EngineConfig

__all__ = ["DistillConfig", "FinetuneConfig", "MAEConfig"]


@dataclass
class DistillConfig(ConfigBase):
    """Distilling the fine-tuned teacher into the student on the transfer set.

    Args:
        student: registry name of the student (``vit_tiny``, ``unet_small``; see
            :func:`tskd.student.available_students`).
        temperature: softening temperature T of the logit KD term (loss scaled by T^2).
        w_kd: weight of the logit KD term (KL between softened teacher and student).
        w_kd_dice: weight of the soft Dice between the student's and the teacher's class
            probabilities (foreground classes, pooled over the batch): keeps the foreground from
            being drowned by the background in the pixel-averaged KL.
        w_sup: weight of the supervised Dice + CE term on the labelled samples of each batch.
        w_feat: weight of the feature KD term (MSE to the teacher's image embedding); 0 disables
            it, otherwise the transfer set must hold ``teacher_embedding``.
        mae_pretrain: initialise a ViT student's encoder from MAE pre-training on the task images.
        train: the training loop's settings, with this stage's defaults.
    """

    student: str = "vit_tiny"
    temperature: float = 2.0
    w_kd: float = 1.0
    w_kd_dice: float = 1.0
    w_sup: float = 1.0
    w_feat: float = 0.0
    mae_pretrain: bool = False
    train: EngineConfig = field(
        default_factory=lambda: EngineConfig(
            lr=5e-4, weight_decay=0.05, warmup_steps=200, max_steps=5000, batch_size=16,
            validate_every=250, checkpoint_every=250,
        )
    )

    def __post_init__(self) -> None:
        from tskd.student.specs import student_names  # sizes only: no torch

        if self.student not in student_names():
            raise ValueError(f"unknown student '{self.student}'; available: {', '.join(student_names())}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("w_kd", "w_kd_dice", "w_sup", "w_feat"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.w_kd == 0 and self.w_kd_dice == 0 and self.w_sup == 0 and self.w_feat == 0:
            raise ValueError("at least one of w_kd, w_kd_dice, w_sup, w_feat must be > 0")


@dataclass
class FinetuneConfig(ConfigBase):
    """Supervised fine-tuning of the distilled student on the labelled cases (Dice + CE).

    Args:
        train: the training loop's settings, with a lower learning rate than distillation so that
            fine-tuning refines rather than overwrites the distilled weights.
    """

    train: EngineConfig = field(
        default_factory=lambda: EngineConfig(
            lr=1e-4, weight_decay=0.05, warmup_steps=50, max_steps=1500, batch_size=8,
            validate_every=100, checkpoint_every=100,
        )
    )


@dataclass
class MAEConfig(ConfigBase):
    """Masked-autoencoder pre-training of the ViT student's encoder on all task images.

    Args:
        masking_ratio: fraction of patches hidden from the encoder.
        decoder_hidden_size / decoder_mlp_dim / decoder_num_layers / decoder_num_heads: the
            (thrown-away) MAE decoder; small, as in MAE's light-decoder design.
        norm_pix_loss: reconstruct per-patch normalised pixels (MAE's better-feature variant).
        train: the training loop's settings, with this stage's defaults.
    """

    masking_ratio: float = 0.75
    decoder_hidden_size: int = 128
    decoder_mlp_dim: int = 512
    decoder_num_layers: int = 2
    decoder_num_heads: int = 4
    norm_pix_loss: bool = True
    train: EngineConfig = field(
        default_factory=lambda: EngineConfig(
            lr=1.5e-4, weight_decay=0.05, warmup_steps=200, max_steps=5000, batch_size=32,
            validate_every=500, checkpoint_every=500, best_metric="min:val_mae_loss",
        )
    )

    def __post_init__(self) -> None:
        if not 0 < self.masking_ratio < 1:
            raise ValueError(f"masking_ratio must be in (0, 1), got {self.masking_ratio}")
        if self.decoder_hidden_size % self.decoder_num_heads:
            raise ValueError(
                f"decoder_hidden_size ({self.decoder_hidden_size}) must be divisible by "
                f"decoder_num_heads ({self.decoder_num_heads})"
            )
