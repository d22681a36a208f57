"""The geometry of box prompts for SAM-family models: one 2D image in, one mask out.

MedSAM / LiteMedSAM see a square input: the image scaled to ``[0, 1]`` by its own minimum and
maximum, resized so that its longest side is the model's input size, and padded with zeros on the
bottom and right. A box drawn on the original image moves into that frame by the same scale; the
model's mask logits come back by cropping the padding and resizing to the original size. The
backend's torch predictor and the Slicer module's ONNX predictor both use these functions, so a
box gives the same mask in both.

Numpy-only, Python 3.9 syntax: this module is shipped into Slicer.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from .resize import resize_bilinear

__all__ = ["PromptFrame", "prompt_input", "box_to_input", "mask_from_logits", "box_from_mask", "jitter_box"]


class PromptFrame:
    """Where an image sits in the model's square input.

    Args:
        height, width: the original image's size in pixels.
        size: the model's input side ``S``.

    Attributes:
        scale: input pixels per original pixel (``S / max(height, width)``).
        inner_height, inner_width: the resized image's size inside the input (the rest is padding).
    """

    def __init__(self, height: int, width: int, size: int) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"an image needs at least one pixel, got {height} x {width}")
        if size < 1:
            raise ValueError(f"the input size must be positive, got {size}")
        self.height = int(height)
        self.width = int(width)
        self.size = int(size)
        self.scale = float(size) / float(max(height, width))
        self.inner_height = max(1, int(round(height * self.scale)))
        self.inner_width = max(1, int(round(width * self.scale)))

    def __repr__(self) -> str:
        return f"PromptFrame({self.height}x{self.width} -> {self.inner_height}x{self.inner_width} in {self.size})"


def prompt_input(image: np.ndarray, size: int) -> Tuple[np.ndarray, PromptFrame]:
    """The model's input for a 2D image.

    Args:
        image: ``(H, W)`` intensities, any real dtype (NaN and infinity are treated as the minimum).
        size: the model's input side ``S``.

    Returns:
        float32 ``(S, S)`` in ``[0, 1]`` (zero padding on the bottom and right) and its frame.

    Raises:
        ValueError: ``image`` is not 2D.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image (H, W), got shape {image.shape}")
    data = image.astype(np.float32)
    finite = np.isfinite(data)
    if not finite.all():
        data = np.where(finite, data, np.float32(data[finite].min()) if finite.any() else np.float32(0.0))
    low, high = float(data.min()), float(data.max())
    data = (data - np.float32(low)) / np.float32(max(high - low, 1e-8))
    frame = PromptFrame(image.shape[0], image.shape[1], size)
    inner = resize_bilinear(data, (frame.inner_height, frame.inner_width))
    pixels = np.zeros((size, size), dtype=np.float32)
    pixels[: frame.inner_height, : frame.inner_width] = np.clip(inner, 0.0, 1.0)
    return pixels, frame


def box_to_input(frame: PromptFrame, box: Sequence[float]) -> np.ndarray:
    """A box ``x1, y1, x2, y2`` in original pixels (``x`` along the last axis), in input pixels.

    The corners are ordered and clipped to the image first.

    Raises:
        ValueError: not four finite numbers.
    """
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.size != 4 or not np.isfinite(values).all():
        raise ValueError(f"a box is four numbers x1, y1, x2, y2, got {list(np.asarray(box).reshape(-1))}")
    x1, x2 = sorted((values[0], values[2]))
    y1, y2 = sorted((values[1], values[3]))
    x1, x2 = np.clip([x1, x2], 0, frame.width - 1)
    y1, y2 = np.clip([y1, y2], 0, frame.height - 1)
    return (np.array([x1, y1, x2, y2]) * frame.scale).astype(np.float32)


def mask_from_logits(frame: PromptFrame, logits: np.ndarray) -> np.ndarray:
    """The mask on the original image from the model's ``(S, S)`` logits (foreground where > 0)."""
    logits = np.asarray(logits, dtype=np.float32)
    if logits.shape != (frame.size, frame.size):
        raise ValueError(f"expected logits of shape ({frame.size}, {frame.size}), got {logits.shape}")
    inner = logits[: frame.inner_height, : frame.inner_width]
    return resize_bilinear(inner, (frame.height, frame.width)) > 0


def box_from_mask(mask: np.ndarray, margin: float = 0.0) -> "np.ndarray | None":
    """The bounding box ``x1, y1, x2, y2`` of a 2D mask's foreground, grown by ``margin`` pixels on
    every side (clipped to the image); ``None`` for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    box = np.array([cols[0] - margin, rows[0] - margin, cols[-1] + margin, rows[-1] + margin], dtype=np.float64)
    box[[0, 2]] = np.clip(box[[0, 2]], 0, mask.shape[1] - 1)
    box[[1, 3]] = np.clip(box[[1, 3]], 0, mask.shape[0] - 1)
    return box


def jitter_box(box: Sequence[float], error: float, rng: np.random.Generator) -> np.ndarray:
    """A box as a person might draw it: each side ``x1, y1, x2, y2`` moved by a uniform amount in
    ``[-error, error]`` of the box's width (x) or height (y); at least one pixel wide and high. The
    labelling benchmark's box error and the box decoder's training boxes (not clipped to an image)."""
    box = np.asarray(box, dtype=np.float64)
    width, height = box[2] - box[0] + 1, box[3] - box[1] + 1
    moved = box + rng.uniform(-error, error, size=4) * np.array([width, height, width, height])
    moved[2] = max(moved[2], moved[0] + 1)
    moved[3] = max(moved[3], moved[1] + 1)
    return moved
