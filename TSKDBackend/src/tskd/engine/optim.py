"""The optimiser and learning-rate schedule a stage trains with: AdamW over parameter groups (by
default no weight decay on biases and 1-D parameters) and the schedule of
:mod:`tskd.engine.schedule`, built from the loop's :class:`~tskd.engine.config.EngineConfig`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tskd.engine.config import EngineConfig
from tskd.engine.schedule import build_scheduler
from tskd.errors import ConfigError

__all__ = ["default_param_groups", "build_optimizer"]


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The trainable parameters in two groups: with ``weight_decay``, and without it (biases, norms).

    Raises:
        ConfigError: the model has no trainable parameter.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    if not decay and not no_decay:
        raise ConfigError("the model has no trainable parameters; nothing to train")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: EngineConfig,
                    param_groups: list[dict[str, Any]] | None = None) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over ``param_groups`` (default :func:`default_param_groups`) and its schedule."""
    groups = param_groups or default_param_groups(model, config.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    scheduler = build_scheduler(optimizer, max_steps=config.max_steps, warmup_steps=config.warmup_steps,
                                schedule=config.schedule, min_lr_ratio=config.min_lr_ratio)
    return optimizer, scheduler
