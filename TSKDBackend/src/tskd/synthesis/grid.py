"""A picture of real next to synthetic images, for a person to judge the diffusion model.

The PNG holds the real images in the top rows and the synthetic ones below, ``columns`` per row,
each tile ``tile`` pixels square with ``pad`` pixels between tiles, and a ``label_width`` strip on
the left naming the rows. Both groups are shown with the same grey window (1st..99th percentile of
the real images) so that brightness and contrast can be compared. Label maps, when given, are
tinted over their images (class 0 left untinted).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tskd.atomic import atomic_write

__all__ = ["save_grid", "grid_size"]

logger = logging.getLogger(__name__)

_COLOURS = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
     (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)],
    dtype=np.float32,
)


def grid_size(n_real: int, n_synthetic: int, *, columns: int = 8, tile: int = 96, pad: int = 4,
              label_width: int = 80) -> tuple[int, int]:
    """``(width, height)`` in pixels of the PNG :func:`save_grid` writes for these counts."""
    cols = max(1, min(columns, max(n_real, n_synthetic, 1)))
    rows = math.ceil(n_real / cols) + math.ceil(n_synthetic / cols)
    return label_width + cols * tile + (cols + 1) * pad, rows * tile + (rows + 1) * pad


def save_grid(
    real_images: np.ndarray,
    synthetic_images: np.ndarray,
    path: str | Path,
    *,
    masks: np.ndarray | None = None,
    real_masks: np.ndarray | None = None,
    columns: int = 8,
    tile: int = 96,
    pad: int = 4,
    label_width: int = 80,
) -> Path:
    """Writes one PNG with rows of real and rows of synthetic images.

    Args:
        real_images: ``(n, 1, H, W)`` or ``(n, H, W)`` normalised intensities.
        synthetic_images: ``(m, 1, H', W')`` or ``(m, H', W')``.
        path: the PNG file to write (its folder is created).
        masks: optional label maps ``(m, H', W')`` of the synthetic images (``joint`` mode).
        real_masks: optional label maps ``(n, H, W)`` of the real images.
        columns / tile / pad / label_width: layout, see :func:`grid_size`.

    Returns:
        the path written.
    """
    real = _grey(real_images, "real_images")
    synthetic = _grey(synthetic_images, "synthetic_images")
    if len(real) + len(synthetic) == 0:
        raise ValueError("save_grid needs at least one image")
    for name, group, group_masks in (("masks", synthetic, masks), ("real_masks", real, real_masks)):
        if group_masks is not None and np.asarray(group_masks).shape != group.shape:
            raise ValueError(f"{name} must have shape {group.shape}, got {np.asarray(group_masks).shape}")
    if min(columns, tile) < 1 or pad < 0 or label_width < 0:
        raise ValueError("columns and tile must be positive, pad and label_width not negative")
    reference = real if len(real) else synthetic
    finite = reference[np.isfinite(reference)]
    low, high = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    if high - low < 1e-6:
        high = low + 1.0

    width, height = grid_size(len(real), len(synthetic), columns=columns, tile=tile, pad=pad, label_width=label_width)
    cols = (width - label_width - pad) // (tile + pad)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    row = 0
    for title, group, group_masks in (("real", real, real_masks), ("synthetic", synthetic, masks)):
        group_rows = math.ceil(len(group) / cols)
        for i in range(len(group)):
            r, c = row + i // cols, i % cols
            mask = None if group_masks is None else np.asarray(group_masks[i])
            canvas.paste(_tile(group[i], mask, low, high, tile),
                         (label_width + pad + c * (tile + pad), pad + r * (tile + pad)))
        if group_rows and label_width:
            draw.text((4, pad + row * (tile + pad) + tile // 2 - 6), title, fill=(0, 0, 0))
        row += group_rows
    path = atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))
    logger.info("wrote %s (%d real, %d synthetic)", path, len(real), len(synthetic))
    return path


def _grey(images: np.ndarray, name: str) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"{name} must be (n, 1, H, W) or (n, H, W), got shape {images.shape}")
    return images


def _tile(image: np.ndarray, mask: np.ndarray | None, low: float, high: float, size: int) -> Image.Image:
    grey = np.clip((np.nan_to_num(image, nan=low) - low) / (high - low), 0.0, 1.0) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if mask is not None:
        labelled = mask > 0
        colours = _COLOURS[(mask.astype(np.int64) - 1) % len(_COLOURS)]
        rgb[labelled] = 0.6 * rgb[labelled] + 0.4 * colours[labelled]
    picture = Image.fromarray(rgb.round().astype(np.uint8))
    return picture.resize((size, size), Image.Resampling.NEAREST)
