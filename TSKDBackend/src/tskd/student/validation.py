"""Validation of a segmentation student: mean foreground Dice with MONAI's ``DiceMetric``.

Two numbers are reported because validation sets of 2D slices contain many slices without
foreground: ``val_dice`` is MONAI's per-slice Dice averaged over the slices where a class is present
(then over classes); ``val_dice_global`` pools all pixels of the set per class (so false positives
on empty slices count). ``val_dice`` falls back to the global value when no slice has foreground.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import torch
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["as_loader", "evaluate_dice", "move_to"]


def as_loader(data: Dataset | DataLoader | Iterable[Mapping[str, Any]], batch_size: int = 8) -> Iterable[Mapping[str, Any]]:
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


@torch.no_grad()
def evaluate_dice(
    model: nn.Module,
    data: Dataset | DataLoader | Iterable[Mapping[str, Any]],
    *,
    num_classes: int,
    batch_size: int = 8,
) -> dict[str, float]:
    """Mean foreground Dice of ``model``'s argmax predictions over ``data``.

    Args:
        model: maps images ``(B, C, S, S)`` to logits ``(B, K, S, S)``; evaluated in eval mode, and
            put back into its previous mode afterwards.
        data: samples / batches with ``image`` ``(C, S, S)`` / ``(B, C, S, S)`` float and ``label``
            ``(S, S)`` / ``(B, S, S)`` integer arrays or tensors.
        num_classes: K, including background.
        batch_size: batch size when ``data`` is a Dataset.

    Returns:
        ``val_dice`` (mean over foreground classes), ``val_dice_global``, and ``val_dice_class{k}``
        per foreground class ``k``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    metric = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True, get_not_nans=True)
    inter = torch.zeros(num_classes - 1, dtype=torch.float64)
    total = torch.zeros(num_classes - 1, dtype=torch.float64)
    seen = 0
    try:
        for batch in as_loader(data, batch_size):
            image = torch.as_tensor(batch["image"]).to(device).float()
            label = torch.as_tensor(batch["label"]).to(device).long()
            if image.ndim == 3:  # a single sample
                image, label = image.unsqueeze(0), label.unsqueeze(0)
            pred = model(image).argmax(dim=1, keepdim=True)
            pred_1h = one_hot(pred, num_classes, dim=1)
            label_1h = one_hot(label.unsqueeze(1), num_classes, dim=1)
            metric(y_pred=pred_1h, y=label_1h)
            dims = (0, 2, 3)
            inter += (pred_1h[:, 1:] * label_1h[:, 1:]).sum(dim=dims).double().cpu()
            total += (pred_1h[:, 1:].sum(dim=dims) + label_1h[:, 1:].sum(dim=dims)).double().cpu()
            seen += image.shape[0]
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("validation data is empty")
    per_class, counted = (t.float().cpu() for t in metric.aggregate())
    metric.reset()
    per_class[counted == 0] = float("nan")  # MONAI reports 0 for a class absent from every slice
    # pooled Dice; a class absent from both prediction and labels everywhere counts as perfect
    global_dice = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
    results = {"val_dice_global": float(global_dice.mean())}
    present = per_class[~torch.isnan(per_class)]
    results["val_dice"] = float(present.mean()) if present.numel() else results["val_dice_global"]
    for k in range(num_classes - 1):
        value = float(per_class[k])
        results[f"val_dice_class{k + 1}"] = value if not math.isnan(value) else float(global_dice[k])
    return results
