"""The project's one segmentation Dice: the validation Dice of every model it trains (teacher,
students, the MAE-initialised student's fine-tuning) and the per-class Dice of the evaluation.

Definitions, for integer class maps (class 0 is background, never scored):

- :func:`mask_dice`, one class on one image or volume: ``2 |P & R| / (|P| + |R|)``, and **1.0 when
  the class is absent from both** prediction and reference (nothing to find, nothing found); 0.0 when
  it is on one side only. ``tskd evaluate`` scores each case with it.
- :class:`SegmentationDice`, accumulated over the 2D samples of a validation set, gives the keys
  that training logs, the report plots and the Slicer module shows (the same for every stage):

  * ``val_dice_class{k}``: the mean over samples whose label contains class ``k`` of the sample's
    Dice for ``k`` (MONAI's ``DiceMetric(ignore_empty=True)``; samples without ``k`` in their label
    do not count, so many empty slices do not inflate the score);
  * ``val_dice``: the mean of ``val_dice_class{k}`` over the classes that occur in some label;
  * ``val_dice_global``: per class, the Dice of all pixels of the set pooled (:func:`mask_dice`'s
    rule over the whole set, so false positives on empty slices count), averaged over classes.

  **Fallback when a class has no foreground in any validation label**: its per-sample Dice is
  undefined, so ``val_dice_class{k}`` is its pooled Dice (1.0 when the model never predicts it,
  0.0 when it predicts it anywhere) and it does not enter ``val_dice``; when no class occurs at all,
  ``val_dice`` is ``val_dice_global``. (Before this module the teacher left such a class out and
  reported ``val_dice`` 0.0, the students did as above; the keys were ``val_dice_{c}`` and
  ``val_dice_class{k}``. A model that correctly finds nothing is no longer scored 0.)

Samples flagged unlabelled (``labelled`` False) are skipped. The sums are float64 on the CPU, so the
result does not depend on the batch size.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from tskd.errors import DataError

__all__ = ["DICE_KEY", "GLOBAL_DICE_KEY", "SegmentationDice", "class_dice_key", "mask_dice"]

logger = logging.getLogger(__name__)

#: The validation number every segmentation stage reports and keeps its best checkpoint by.
DICE_KEY = "val_dice"
#: The pooled (all pixels of the validation set) Dice, mean over foreground classes.
GLOBAL_DICE_KEY = "val_dice_global"


def class_dice_key(k: int) -> str:
    """The key of foreground class ``k``'s validation Dice: ``val_dice_class{k}``."""
    return f"{DICE_KEY}_class{int(k)}"


def mask_dice(prediction: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> float:
    """Dice of two binary masks of the same shape; 1.0 when both are empty.

    Args:
        prediction: boolean (or 0/1) mask, any shape.
        reference: boolean (or 0/1) mask of the same shape.
    """
    pred, ref = torch.as_tensor(prediction).bool(), torch.as_tensor(reference).bool()
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from reference shape {tuple(ref.shape)}")
    total = int(pred.sum()) + int(ref.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & ref).sum()) / total


class SegmentationDice:
    """Validation Dice accumulated batch by batch (see the module docstring for the definition).

    Args:
        num_classes: ``K`` including background (>= 2).
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.reset()

    def reset(self) -> None:
        """Forget every sample seen."""
        n = self.num_classes - 1
        self.samples = 0
        self._sample_sum = torch.zeros(n, dtype=torch.float64)
        self._sample_count = torch.zeros(n, dtype=torch.float64)
        self._intersection = torch.zeros(n, dtype=torch.float64)
        self._total = torch.zeros(n, dtype=torch.float64)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, label: torch.Tensor, labelled: torch.Tensor | None = None) -> None:
        """Add a batch.

        Args:
            prediction: ``(B, ...)`` predicted classes ``0..K-1`` (e.g. ``logits.argmax(1)``).
            label: ``(B, ...)`` true classes ``0..K-1`` (meaningless where not labelled).
            labelled: ``(B,)`` bool; samples with False are skipped (all count when None).

        Raises:
            DataError: label values outside ``0..K-1``.
        """
        prediction, label = torch.as_tensor(prediction), torch.as_tensor(label).to(prediction.device)
        if prediction.shape != label.shape or prediction.ndim < 2:
            raise ValueError(f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} must be the same (B, ...)")
        if labelled is not None:
            keep = torch.as_tensor(labelled).to(device=prediction.device, dtype=torch.bool).reshape(-1)
            if keep.shape[0] != prediction.shape[0]:
                raise ValueError(f"labelled has {keep.shape[0]} entries for a batch of {prediction.shape[0]}")
            prediction, label = prediction[keep], label[keep]
        if prediction.shape[0] == 0:
            return
        low, high = int(label.min()), int(label.max())
        if low < 0 or high >= self.num_classes:
            raise DataError(
                f"label values must be in 0..{self.num_classes - 1} for {self.num_classes} classes, got "
                f"{low}..{high}; check the dataset's label map"
            )
        dims = tuple(range(1, prediction.ndim))
        for k in range(1, self.num_classes):
            pred_k, label_k = prediction == k, label == k
            inter = (pred_k & label_k).sum(dims).double().cpu()
            pred_n, label_n = pred_k.sum(dims).double().cpu(), label_k.sum(dims).double().cpu()
            present = label_n > 0
            self._sample_sum[k - 1] += (2.0 * inter[present] / (pred_n[present] + label_n[present])).sum()
            self._sample_count[k - 1] += present.sum()
            self._intersection[k - 1] += inter.sum()
            self._total[k - 1] += pred_n.sum() + label_n.sum()
        self.samples += int(prediction.shape[0])

    def per_class(self) -> list[float]:
        """``val_dice_class{k}`` for ``k = 1..K-1`` (the pooled Dice where the class never occurs)."""
        pooled = self._pooled()
        return [float(self._sample_sum[i] / self._sample_count[i]) if self._sample_count[i] > 0 else pooled[i]
                for i in range(self.num_classes - 1)]

    def _pooled(self) -> list[float]:
        return [float(2.0 * self._intersection[i] / self._total[i]) if self._total[i] > 0 else 1.0
                for i in range(self.num_classes - 1)]

    def scores(self) -> dict[str, float]:
        """``val_dice``, ``val_dice_global`` and ``val_dice_class{k}`` of the samples seen.

        Raises:
            ValueError: no (labelled) sample was added.
        """
        if self.samples == 0:
            raise ValueError("no labelled validation sample was scored; the validation data is empty")
        per_class, pooled = self.per_class(), self._pooled()
        occurring = [per_class[i] for i in range(self.num_classes - 1) if self._sample_count[i] > 0]
        results = {GLOBAL_DICE_KEY: _mean(pooled)}
        if occurring:
            results[DICE_KEY] = _mean(occurring)
        else:
            logger.warning("validation: no foreground class in any validation label; %s is the pooled Dice (%s)",
                           DICE_KEY, GLOBAL_DICE_KEY)
            results[DICE_KEY] = results[GLOBAL_DICE_KEY]
        results.update({class_dice_key(i + 1): value for i, value in enumerate(per_class)})
        return results


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))
