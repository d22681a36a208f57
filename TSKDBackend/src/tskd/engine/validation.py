"""One pass of a model over validation data, shared by every training task's ``validate``.

:func:`evaluate_batches` is the loop: the model in eval mode without gradients (its previous mode
restored afterwards, also on errors), each batch's tensors on the model's device, a callback per
batch. :func:`mean_over_loader` is the sample-weighted mean of a per-batch number on top of it
(the diffusion, MAE and feature-distillation losses); the segmentation tasks accumulate
:class:`tskd.metrics.SegmentationDice` in the callback instead. :func:`device_of` is the one "which
device is this model on" helper. Validation data that yields no batch is an error (``ValueError``)
in every task alike; a task without validation data gets ``None`` and validates nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["ValData", "as_loader", "device_of", "evaluate_batches", "mean_over_loader", "move_to"]

#: What a task accepts as validation data: samples (a Dataset), batches (a DataLoader or any iterable of dicts).
ValData = Union[Dataset, DataLoader, Iterable[Mapping[str, Any]]]


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def as_loader(data: ValData, batch_size: int = 8) -> Iterable[Mapping[str, Any]]:
    """A DataLoader (no shuffling) over ``data`` when it is a Dataset; other iterables are used as they are."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
    return data


def move_to(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Copy of ``batch`` with its tensors on ``device`` (other values unchanged)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def evaluate_batches(
    model: nn.Module, data: ValData, step: Callable[[nn.Module, dict[str, Any]], None], *, batch_size: int = 8
) -> int:
    """Call ``step(model, batch)`` for every batch of ``data``, in eval mode and without gradients.

    Args:
        model: the model; put back into its previous (train / eval) mode afterwards.
        data: validation samples or batches (see :func:`as_loader`), dicts of tensors.
        step: called with each batch, its tensors moved to the model's device.
        batch_size: batch size when ``data`` is a Dataset.

    Returns:
        the number of batches.

    Raises:
        ValueError: ``data`` yields no batch.
    """
    was_training = model.training
    model.eval()
    device = device_of(model)
    count = 0
    try:
        with torch.no_grad():
            for batch in as_loader(data, batch_size):
                step(model, move_to(batch, device))
                count += 1
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("validation data is empty")
    return count


def mean_over_loader(
    model: nn.Module, data: ValData, measure: Callable[[nn.Module, dict[str, Any]], Any], *, batch_size: int = 8
) -> float:
    """Sample-weighted mean of ``measure(model, batch)`` (a float or 0-d tensor) over ``data``.

    A batch weighs as many samples as its ``image`` tensor has rows (without ``image``: its first
    tensor's rows).
    Runs as :func:`evaluate_batches` does and raises as it does.
    """
    totals = [0.0, 0]

    def step(model: nn.Module, batch: dict[str, Any]) -> None:
        rows = [batch["image"]] if isinstance(batch.get("image"), torch.Tensor) else batch.values()
        n = next((len(v) for v in rows if isinstance(v, torch.Tensor) and v.ndim), 1)
        totals[0] += float(measure(model, batch)) * n
        totals[1] += n

    evaluate_batches(model, data, step, batch_size=batch_size)
    if totals[1] == 0:
        raise ValueError("validation data is empty (its batches hold no sample)")
    return totals[0] / totals[1]
