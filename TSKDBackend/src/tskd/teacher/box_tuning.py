"""The task-tuned box model: the foundation decoder fine-tuned on this task's boxes.

The published LiteMedSAM / MedSAM decoder turns a box into a mask zero-shot (HC18 heads: Dice
0.94), but it has never seen this task's structures: a hippocampus box is mostly other tissue, and
the zero-shot mask fills part of every box. Tuning the decoder on the labelled cases, with boxes
taken from their labels as a person would draw them, teaches it what this task's boxes contain.
It is the model a box on the next case should use (the Slicer box tool, ``tskd segment-box
--model RUN``, the box-prompted teacher), and what the run exports beside its student
(``package/box_model/``).

Training (:class:`BoxTuningTask`): for each labelled sample one connected component of one class,
chosen at random, gives a box: the component's bounding box with each side moved by up to
``jitter`` of the box's width or height (:func:`tskd.preprocess.prompt.jitter_box`, the labelling
benchmark's box error); the target is that component's mask, the output the decoder's single-mask
logits (:meth:`~tskd.teacher.model.SamSegmenter.box_masks`, SAM's own use of a box). The loss is the
project's one supervised loss on the two-class logits ``(0, l)`` (their softmax is ``sigmoid(l)``).
The encoder is frozen: the embeddings the teacher already computed for these images are reused.

Validation: the Dice of every component's box mask on the validation samples, the boxes moved by
the same error drawn from a fixed seed (the same boxes at every validation): ``val_dice``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tskd.engine.validation import device_of, evaluate_batches
from tskd.losses import SupervisedLoss
from tskd.metrics import SegmentationDice
from tskd.preprocess.prompt import jitter_box

__all__ = ["BoxTuningTask", "label_components", "two_class_logits"]

logger = logging.getLogger(__name__)


def label_components(labels: np.ndarray, num_classes: int, *, min_pixels: int = 8) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Each class's connected components of a label map with their tight boxes.

    Args:
        labels: ``(H, W)`` ints ``0..K-1``.
        num_classes: ``K``.
        min_pixels: smaller components are taken for noise and left out.

    Returns:
        ``(class, mask, box)`` triples: the component's boolean ``(H, W)`` mask and its bounding box
        ``x1, y1, x2, y2`` in pixels (float32).
    """
    out: list[tuple[int, np.ndarray, np.ndarray]] = []
    for cls in range(1, num_classes):
        components, count = ndimage.label(labels == cls)
        for index, where in enumerate(ndimage.find_objects(components), start=1):
            if where is None:
                continue
            mask = components == index
            if int(mask[where].sum()) < min_pixels:
                continue
            rows, cols = where
            box = np.array([cols.start, rows.start, cols.stop - 1, rows.stop - 1], dtype=np.float32)
            out.append((cls, mask, box))
    return out


def two_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """``(N, S, S)`` single-mask logits as ``(N, 2, S, S)`` background/foreground logits ``(0, l)``,
    whose softmax is ``(1 - sigmoid(l), sigmoid(l))``: the project's one loss and metric take them."""
    return torch.stack([torch.zeros_like(logits), logits], dim=1)


class BoxTuningTask:
    """Loss and validation of the box decoder's tuning (see the module docstring).

    Args:
        num_classes: ``K`` of the labels, background included.
        val_data: validation samples (a ``Dataset`` of sample dicts or a ``DataLoader``), or None.
        jitter: each side of a training or validation box moves by up to this share of the box's size.
        seed: seed of the training boxes' draws (the validation boxes use ``seed + 1``, fresh each time).
        dice_weight, ce_weight: the loss's weights.
        val_batch_size: batch size when ``val_data`` is a ``Dataset``.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        val_data: Dataset | DataLoader | None = None,
        jitter: float = 0.1,
        seed: int = 0,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        val_batch_size: int = 8,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= jitter < 0.5:
            raise ValueError(f"jitter must be in [0, 0.5), got {jitter}")
        self.num_classes = int(num_classes)
        self.jitter = float(jitter)
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        self.loss = SupervisedLoss(lambda_dice=dice_weight, lambda_ce=ce_weight)
        if val_data is None or isinstance(val_data, DataLoader):
            self.val_loader = val_data
        else:
            self.val_loader = DataLoader(val_data, batch_size=val_batch_size, shuffle=False)

    def _box(self, box: np.ndarray, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        moved = jitter_box(box, self.jitter, rng) if self.jitter > 0 else box.astype(np.float64)
        moved[[0, 2]] = np.clip(moved[[0, 2]], 0, width - 1)
        moved[[1, 3]] = np.clip(moved[[1, 3]], 0, height - 1)
        return moved.astype(np.float32)

    def training_step(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch: one box per labelled sample that has a component (see the module docstring)."""
        from tskd.teacher.task import _unpack

        device = device_of(model)
        image, label, labelled = _unpack(batch, device)
        labels = label.cpu().numpy()
        chosen, boxes, targets = [], [], []
        for index in range(image.shape[0]):
            if not bool(labelled[index]):
                continue
            components = label_components(labels[index], self.num_classes)
            if not components:
                continue
            _, mask, box = components[int(self.rng.integers(len(components)))]
            chosen.append(index)
            boxes.append(self._box(box, self.rng, *mask.shape))
            targets.append(mask)
        if not chosen:  # nothing to learn from: a zero that still touches every trainable weight
            zero = sum((p.sum() * 0.0 for p in model.parameters() if p.requires_grad), torch.zeros((), device=device))
            return zero, {"loss": 0.0, "boxes": 0.0}
        net = getattr(model, "module", model)
        embeddings = net.image_embeddings(image[chosen])
        logits = net.box_masks(embeddings, torch.from_numpy(np.stack(boxes))[:, None].to(device))[:, 0]
        target = torch.from_numpy(np.stack(targets)).to(device=device, dtype=torch.long)
        loss = self.loss(two_class_logits(logits), target)
        return loss, {"loss": float(loss.detach()), "boxes": float(len(chosen))}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Dice of every validation component's box mask (:class:`~tskd.metrics.SegmentationDice` of the
        two-class masks, so ``val_dice`` is the box masks' mean Dice); ``{}`` without validation components."""
        if self.val_loader is None:
            return {}
        dice = SegmentationDice(2)
        rng = np.random.default_rng(self.seed + 1)
        net = getattr(model, "module", model)

        def step(model: nn.Module, batch: dict[str, Any]) -> None:
            from tskd.teacher.task import _unpack

            image, label, labelled = _unpack(batch, device_of(model))
            labels = label.cpu().numpy()
            for index in range(image.shape[0]):
                components = label_components(labels[index], self.num_classes) if bool(labelled[index]) else []
                if not components:
                    continue
                boxes = np.stack([self._box(box, rng, *mask.shape) for _, mask, box in components])
                embeddings = net.image_embeddings(image[index : index + 1])
                logits = net.box_masks(embeddings, torch.from_numpy(boxes)[None].to(image.device))[0]
                target = torch.from_numpy(np.stack([mask for _, mask, _ in components])).to(image.device).long()
                dice.update((logits > 0).long(), target)

        evaluate_batches(model, self.val_loader, step)
        return dice.scores() if dice.samples else {}
