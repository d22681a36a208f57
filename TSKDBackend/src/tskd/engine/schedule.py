"""Learning-rate schedules: linear warm-up, then cosine / linear decay or constant."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["build_scheduler", "lr_factor"]


def lr_factor(step: int, *, max_steps: int, warmup_steps: int, schedule: str, min_lr_ratio: float) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        decay = 1.0 - progress
    else:
        raise ValueError(f"unknown schedule '{schedule}' (use cosine, linear or constant)")
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, max_steps: int, warmup_steps: int, schedule: str, min_lr_ratio: float
) -> LambdaLR:
    lr_factor(0, max_steps=max_steps, warmup_steps=warmup_steps, schedule=schedule, min_lr_ratio=min_lr_ratio)
    return LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, max_steps=max_steps, warmup_steps=warmup_steps, schedule=schedule, min_lr_ratio=min_lr_ratio
        ),
    )
