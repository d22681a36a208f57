"""Running a trained teacher on batches of normalised 2D slices."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tskd.teacher.model import SamSegmenter

__all__ = ["teacher_probabilities", "teacher_logits"]


@torch.no_grad()
def teacher_logits(model: SamSegmenter, images: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` at the images' own size, the teacher running at its input size.

    Args:
        model: the teacher (on its device, eval mode).
        images: normalised intensities ``(B, 1, H, W)`` on the teacher's device.
    """
    size = model.input_size
    height, width = images.shape[-2:]
    x = images if (height, width) == (size, size) else F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False
    )
    logits = model(x)
    if logits.shape[-2:] != (height, width):
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    return logits


def teacher_probabilities(
    model: SamSegmenter, images: np.ndarray, *, device: torch.device | str = "cpu", batch_size: int = 16
) -> np.ndarray:
    """Class probabilities ``(n, K, H, W)`` (float32) of normalised slices ``(n, [1,] H, W)``."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] != 1:
        raise ValueError(f"images must be (n, H, W) or (n, 1, H, W), got {array.shape}")
    model = model.to(device).eval()
    out = []
    for first in range(0, len(array), batch_size):
        batch = torch.from_numpy(array[first : first + batch_size]).to(device)
        out.append(torch.softmax(teacher_logits(model, batch).float(), dim=1).cpu().numpy())
    if not out:
        return np.zeros((0, model.num_classes) + array.shape[-2:], np.float32)
    return np.concatenate(out)
