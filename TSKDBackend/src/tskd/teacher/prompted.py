"""Box-to-mask on one 2D image with a SAM-family model: the stateful predictor, apart from the module.

:class:`BoxPredictor` runs the image encoder once per image (:meth:`BoxPredictor.set_image`) and
the prompt encoder + mask decoder per box (:meth:`BoxPredictor.predict`), as segment-anything's
``SamPredictor`` does, so moving a box costs only the decoder. The geometry (scale to ``[0, 1]``,
longest side to the input size, zero padding; boxes in, masks out) is :mod:`tskd.preprocess.prompt`,
shared with the Slicer module's ONNX predictor.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from tskd.preprocess.prompt import PromptFrame, box_to_input, mask_from_logits, prompt_input
from tskd.teacher.model import SamSegmenter

__all__ = ["BoxPredictor"]

logger = logging.getLogger(__name__)


class BoxPredictor:
    """Masks from boxes on one image at a time.

    Args:
        model: a segmenter on foundation weights (its first mask token is SAM's single-mask output).
        device: where to run (default: the model's).
    """

    def __init__(self, model: SamSegmenter, device: torch.device | str | None = None) -> None:
        self.model = model.eval()
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self._embedding: torch.Tensor | None = None
        self._frame: PromptFrame | None = None

    @property
    def input_size(self) -> int:
        return self.model.input_size

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        """Encode a 2D image ``(H, W)`` (any real dtype); later boxes refer to its pixels."""
        pixels, frame = prompt_input(image, self.input_size)
        tensor = torch.from_numpy(pixels)[None, None].to(self.device)
        self._embedding = self.model.image_embeddings(tensor)
        self._frame = frame

    @torch.no_grad()
    def predict_logits(self, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """Input-frame logits ``(N, S, S)`` for ``N`` boxes ``x1, y1, x2, y2`` in the image's pixels."""
        if self._embedding is None or self._frame is None:
            raise RuntimeError("call set_image before predict")
        frame = self._frame
        scaled = np.stack([box_to_input(frame, box) for box in boxes])
        tensor = torch.from_numpy(scaled)[None].to(self.device)
        return self.model.box_masks(self._embedding, tensor)[0].float().cpu().numpy()

    def predict(self, box: Sequence[float]) -> np.ndarray:
        """The mask ``(H, W)`` bool of one box ``x1, y1, x2, y2`` (``x`` along the image's last axis)."""
        return mask_from_logits(self._frame, self.predict_logits([box])[0])  # type: ignore[arg-type]

    def predict_many(self, boxes: Sequence[Sequence[float]]) -> list[np.ndarray]:
        """One mask per box, decoded together."""
        return [mask_from_logits(self._frame, logits) for logits in self.predict_logits(boxes)]  # type: ignore[arg-type]
