"""Learning-rate schedules: linear warm-up, then cosine / linear decay or constant.

Torch is imported only by :func:`build_scheduler`, so the torch-free engine config can check its
schedule settings with :func:`check_schedule`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch.optim.lr_scheduler import LambdaLR

__all__ = ["SCHEDULES", "build_scheduler", "check_schedule", "lr_factor"]

SCHEDULES = ("cosine", "linear", "constant")


def check_schedule(*, max_steps: int, warmup_steps: int, schedule: str, min_lr_ratio: float) -> None:
    """Raise ``ValueError`` naming the setting when the schedule's settings make no sense.

    Args:
        max_steps: optimiser steps of the run (at least 1).
        warmup_steps: steps of linear warm-up (0: none; more than ``max_steps`` is allowed and
            means the run ends during the warm-up).
        schedule: ``cosine``, ``linear`` or ``constant``.
        min_lr_ratio: final multiplier of the base learning rate, in ``[0, 1]``.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be 0 or more, got {warmup_steps}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule '{schedule}' (use cosine, linear or constant)")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio}")


def lr_factor(step: int, *, max_steps: int, warmup_steps: int, schedule: str, min_lr_ratio: float) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Warm-up rises linearly to 1 over the first ``warmup_steps`` steps (``(step + 1) / warmup_steps``);
    the decay then runs from 1 at step ``warmup_steps`` to ``min_lr_ratio`` at step ``max_steps``
    and stays there. Raises ``ValueError`` for settings :func:`check_schedule` refuses.
    """
    check_schedule(max_steps=max_steps, warmup_steps=warmup_steps, schedule=schedule, min_lr_ratio=min_lr_ratio)
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # linear
        decay = 1.0 - progress
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, max_steps: int, warmup_steps: int, schedule: str, min_lr_ratio: float
) -> LambdaLR:
    """A ``LambdaLR`` that multiplies each group's base learning rate by :func:`lr_factor`.

    Raises ``ValueError`` at once for settings :func:`check_schedule` refuses.
    """
    from torch.optim.lr_scheduler import LambdaLR

    check_schedule(max_steps=max_steps, warmup_steps=warmup_steps, schedule=schedule, min_lr_ratio=min_lr_ratio)
    return LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, max_steps=max_steps, warmup_steps=warmup_steps, schedule=schedule, min_lr_ratio=min_lr_ratio
        ),
    )
