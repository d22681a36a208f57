"""Settings of the training loop shared by every stage (teacher, diffusion, students)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from tskd.config.base import ConfigBase
from tskd.engine.schedule import check_schedule

__all__ = ["EngineConfig"]


@dataclass
class EngineConfig(ConfigBase):
    """How to run a training stage; each stage config holds one of these as its ``train`` field.

    Args:
        max_steps: optimiser steps of the stage.
        batch_size: samples per optimiser step, summed over processes and accumulation steps
            (the *global* batch). Runs with different process counts but the same ``batch_size``
            see the same samples at each step.
        grad_accum_steps: micro-batches per optimiser step (``batch_size`` must divide evenly).
        lr, weight_decay: AdamW settings (no decay on biases and norm weights).
        warmup_steps, schedule, min_lr_ratio: learning-rate warm-up then decay to ``min_lr_ratio * lr``.
        clip_grad_norm: gradient clipping (None: off).
        mixed_precision: ``auto`` uses bf16 (or fp16) on a GPU and full precision on a CPU.
        checkpoint_every, validate_every, log_every: in optimiser steps (validation and a checkpoint
            also happen at the last step).
        best_metric: validation metric used to keep ``best.pt``; prefix ``min:`` when lower is better.
        seed: seeds data order, augmentation and initialisation.
        num_workers: data-loading processes (0 loads in the training process).
        device: ``auto`` (GPU when available), ``cpu`` or ``cuda``.
    """

    max_steps: int = 1000
    batch_size: int = 8
    grad_accum_steps: int = 1
    lr: float = 1e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.01
    clip_grad_norm: Optional[float] = 1.0
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    checkpoint_every: int = 100
    validate_every: int = 100
    log_every: int = 10
    best_metric: str = "val_dice"
    seed: int = 0
    num_workers: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        check_schedule(max_steps=self.max_steps, warmup_steps=self.warmup_steps, schedule=self.schedule,
                       min_lr_ratio=self.min_lr_ratio)
        if self.batch_size < 1 or self.grad_accum_steps < 1:
            raise ValueError("batch_size and grad_accum_steps must be at least 1")
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of grad_accum_steps ({self.grad_accum_steps})"
            )
        for name in ("checkpoint_every", "validate_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def micro_batch_size(self) -> int:
        """Samples per forward pass, summed over processes."""
        return self.batch_size // self.grad_accum_steps
