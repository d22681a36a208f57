"""Validation of a segmentation student: the project's one validation Dice (:mod:`tskd.metrics`) of
its argmax predictions, over the data by the engine's one validation loop
(:func:`tskd.engine.validation.evaluate_batches`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tskd.engine.validation import ValData, device_of, evaluate_batches
from tskd.errors import DataError
from tskd.metrics import SegmentationDice

__all__ = ["evaluate_dice"]


def evaluate_dice(model: nn.Module, data: ValData, *, num_classes: int, batch_size: int = 8) -> dict[str, float]:
    """Validation Dice of ``model``'s argmax predictions over ``data``.

    Args:
        model: maps images ``(B, C, S, S)`` to logits ``(B, K, S, S)``; evaluated in eval mode, and
            put back into its previous mode afterwards.
        data: samples / batches with ``image`` ``(C, S, S)`` / ``(B, C, S, S)`` float and ``label``
            ``(S, S)`` / ``(B, S, S)`` integer arrays or tensors, optionally ``labelled`` (samples
            flagged False are skipped).
        num_classes: K, including background.
        batch_size: batch size when ``data`` is a Dataset.

    Returns:
        ``val_dice``, ``val_dice_global`` and ``val_dice_class{k}`` per foreground class ``k``
        (:class:`tskd.metrics.SegmentationDice`).

    Raises:
        ValueError: ``data`` holds no (labelled) sample.
        DataError: a batch without ``image`` or ``label``, or labels outside ``0..K-1``.
    """
    dice = SegmentationDice(num_classes)

    def step(model: nn.Module, batch: dict[str, Any]) -> None:
        if "image" not in batch or "label" not in batch:
            raise DataError(f"a validation batch needs 'image' and 'label'; keys present: {', '.join(sorted(batch))}")
        device = device_of(model)  # batches of arrays (not tensors) are not moved by the loop
        image = torch.as_tensor(batch["image"]).to(device).float()
        label = torch.as_tensor(batch["label"]).to(device).long()
        labelled = batch.get("labelled")
        if image.ndim == 3:  # a single sample
            image, label = image.unsqueeze(0), label.unsqueeze(0)
            labelled = None if labelled is None else torch.as_tensor(labelled).reshape(1)
        dice.update(model(image).argmax(dim=1), label, labelled)

    evaluate_batches(model, data, step, batch_size=batch_size)
    return dice.scores()
