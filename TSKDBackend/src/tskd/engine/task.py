"""What a stage gives the training loop: its loss on a batch and its validation.

Stages' tasks (the teacher's, the diffusion model's, the students') subclass :class:`TrainingTask`
to inherit its declared defaults; any object with the two methods works as well (duck typing) and
gets those defaults.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

__all__ = ["TrainingTask", "finds_unused_parameters"]


class TrainingTask(Protocol):
    """The stage-specific part of training.

    ``training_step`` must call the model only through ``model(...)`` (its forward): under
    distributed training the model is wrapped and other methods are not synchronised.

    Attributes:
        find_unused_parameters: True when a training step can leave some trainable parameter
            without a gradient (a head the loss never reaches). Under several processes DDP then
            searches the graph for unused parameters after every forward pass, which costs time,
            so it is on only for the tasks that declare it; with it off, a parameter left without
            a gradient makes DDP fail at the next step. A wrapper task passes on its inner task's flag.
    """

    find_unused_parameters: bool = False

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one micro-batch (already on the model's device) and float logs."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics of the unwrapped model (empty dict when the stage has none)."""


def finds_unused_parameters(task: Any) -> bool:
    """The task's :attr:`TrainingTask.find_unused_parameters`, its default for a task that does not declare it."""
    return bool(getattr(task, "find_unused_parameters", TrainingTask.find_unused_parameters))
