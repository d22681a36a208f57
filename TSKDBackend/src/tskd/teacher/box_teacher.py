"""The box-prompted teacher: the fine-tuned teacher finds the objects, the foundation decoder draws them.

SAM-family models are made to segment what a box points at; prompt-free, the published LiteMedSAM
outputs nothing until its decoder is fine-tuned. :class:`BoxPromptedTeacher` combines both: the
prompt-free fine-tuned teacher (the *locator*) predicts the classes, each class's connected
components become boxes (grown by a margin), and a second decoder on the same foundation weights
(the *prompter*: zero-shot, i.e. the published decoder) turns each box into a mask, as it was
trained to. Where the locator finds nothing, there is no box and the image is background.

The class probabilities combine the boxes' masks: ``f_c`` is, per pixel, the largest mask
probability of class ``c``'s boxes; a pixel is background with probability ``prod_c (1 - f_c)``
and class ``c`` with ``f_c * prod_{d != c} (1 - f_d)``, normalised. ``forward`` returns their log,
so code that takes the softmax of a teacher's logits (the transfer set, ``tskd suggest``) gets these
probabilities and need not know which teacher it has.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from tskd.teacher.model import SamSegmenter

__all__ = ["BoxPromptedTeacher", "box_prompted_teacher", "component_boxes", "TEACHING_MODES"]

logger = logging.getLogger(__name__)

TEACHING_MODES = ("prompt_free", "boxes")


def component_boxes(
    labels: np.ndarray, num_classes: int, *, margin: float = 0.1, min_pixels: int = 8
) -> list[tuple[int, np.ndarray]]:
    """One box per class and connected component of a label map.

    Args:
        labels: ``(H, W)`` ints ``0..K-1``.
        num_classes: ``K``.
        margin: grown on every side by this share of the component's box size (at least one pixel).
        min_pixels: smaller components are taken for noise and get no box.

    Returns:
        ``(class, box)`` pairs, the box ``x1, y1, x2, y2`` in pixels (clipped to the image).
    """
    height, width = labels.shape
    out: list[tuple[int, np.ndarray]] = []
    for cls in range(1, num_classes):
        components, count = ndimage.label(labels == cls)
        if count == 0:
            continue
        for index, where in enumerate(ndimage.find_objects(components), start=1):
            if where is None or int((components[where] == index).sum()) < min_pixels:
                continue
            rows, cols = where
            y1, y2, x1, x2 = rows.start, rows.stop - 1, cols.start, cols.stop - 1
            grow_x = max(1.0, margin * (x2 - x1 + 1))
            grow_y = max(1.0, margin * (y2 - y1 + 1))
            box = np.array([max(0.0, x1 - grow_x), max(0.0, y1 - grow_y),
                            min(width - 1.0, x2 + grow_x), min(height - 1.0, y2 + grow_y)], dtype=np.float32)
            out.append((cls, box))
    return out


class BoxPromptedTeacher(nn.Module):
    """Class probabilities from boxes the locator finds and the prompter turns into masks.

    Args:
        locator: the prompt-free fine-tuned teacher (``K`` classes).
        prompter: a segmenter on the same foundation weights whose first mask token is the
            published single-mask output (loaded afresh from the base checkpoint).
        margin, min_pixels: see :func:`component_boxes`.

    Attributes mirror :class:`SamSegmenter`'s (``input_size``, ``num_classes``, ``architecture``,
    ``base``, ``has_foundation_weights``) so it stands wherever a teacher does; ``teaching`` is
    ``"boxes"``.
    """

    teaching = "boxes"

    def __init__(self, locator: SamSegmenter, prompter: SamSegmenter, *, margin: float = 0.1, min_pixels: int = 8) -> None:
        super().__init__()
        if locator.input_size != prompter.input_size:
            raise ValueError(f"locator ({locator.input_size} px) and prompter ({prompter.input_size} px) differ in size")
        self.locator = locator
        self.prompter = prompter
        self.margin = margin
        self.min_pixels = min_pixels
        for parameter in self.prompter.parameters():
            parameter.requires_grad_(False)

    input_size = property(lambda self: self.locator.input_size)
    num_classes = property(lambda self: self.locator.num_classes)
    architecture = property(lambda self: self.locator.architecture)
    base = property(lambda self: self.locator.base)
    has_foundation_weights = property(lambda self: self.locator.has_foundation_weights)
    embedding_dim = property(lambda self: self.locator.embedding_dim)

    def image_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        return self.locator.image_embeddings(x)

    def _shares_encoder(self) -> bool:
        return (self.locator.lora is None and self.locator.encoder_frozen and self.locator.base is not None
                and self.prompter.base is not None and self.locator.base.sha256 == self.prompter.base.sha256)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, K, S, S)`` class probabilities of normalised images ``(B, 1, S, S)``."""
        embeddings = self.locator.image_embeddings(x)
        found = self.locator.decode(embeddings).argmax(dim=1).cpu().numpy()
        prompt_embeddings = embeddings if self._shares_encoder() else self.prompter.image_embeddings(x)
        batch, size, classes = x.shape[0], self.input_size, self.num_classes
        foreground = torch.zeros(batch, classes, size, size, device=x.device)
        for index in range(batch):
            boxes = component_boxes(found[index], classes, margin=self.margin, min_pixels=self.min_pixels)
            if not boxes:
                continue
            tensor = torch.from_numpy(np.stack([box for _, box in boxes]))[None].to(x.device)
            masks = torch.sigmoid(self.prompter.box_masks(prompt_embeddings[index : index + 1], tensor)[0].float())
            for (cls, _), mask in zip(boxes, masks):
                foreground[index, cls] = torch.maximum(foreground[index, cls], mask)
        absent = 1.0 - foreground[:, 1:]
        probs = torch.empty_like(foreground)
        probs[:, 0] = absent.prod(dim=1)
        for cls in range(1, classes):
            others = torch.cat([absent[:, : cls - 1], absent[:, cls:]], dim=1).prod(dim=1)
            probs[:, cls] = foreground[:, cls] * others
        return probs / probs.sum(dim=1, keepdim=True).clamp(min=1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(B, K, S, S)`` (a softmax gives :meth:`probabilities` back)."""
        return torch.log(self.probabilities(x).clamp(min=1e-6))


def box_prompted_teacher(locator: SamSegmenter, *, embedding_cache_root=None, prompter: SamSegmenter | None = None,
                         **options) -> BoxPromptedTeacher:
    """Wrap a fine-tuned prompt-free teacher as a :class:`BoxPromptedTeacher`, the prompter (frozen)
    being ``prompter`` (the task-tuned box model, :mod:`tskd.teacher.box_tuning`) or, without one,
    loaded from the locator's own base checkpoint (its published decoder, zero-shot).

    Raises:
        ValueError: the locator has no foundation weights (a model trained from scratch has no
            published decoder to prompt).
    """
    from tskd.teacher.build import attach_embedding_cache
    from tskd.teacher.checkpoints import load_pretrained_segmenter

    if not locator.has_foundation_weights or locator.base is None:
        raise ValueError("the box-prompted teacher needs foundation weights (teacher.base); "
                         "a teacher trained from scratch has no published decoder to prompt")
    if prompter is None:
        prompter = load_pretrained_segmenter(locator.base.path, architecture=locator.architecture,
                                             input_size=locator.input_size, num_classes=locator.num_classes)
        prompter.freeze_encoder()
        attach_embedding_cache(prompter, embedding_cache_root)
    device = next(locator.parameters()).device
    return BoxPromptedTeacher(locator, prompter.to(device).eval(), **options)
