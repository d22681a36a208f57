"""Mapping between the pipeline's normalised intensities and the diffusion model's range.

Prepared slices hold z-score-normalised intensities (mostly within -3..3, sometimes beyond). The
diffusion model works in ``[-1, 1]``: intensities are clipped to ``[-c, c]`` and divided by ``c``;
generated samples are multiplied back by ``c``. In ``joint`` mode a label map travels with the
image as ``K`` extra channels holding its one-hot encoding scaled to ``[-1, 1]``; a generated label
map is the arg-max over those channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

__all__ = ["IntensityMapping", "encode_labels", "decode_labels"]


@dataclass(frozen=True)
class IntensityMapping:
    """Clip-and-scale map from normalised intensities to ``[-1, 1]``.

    Args:
        clip: the clip range ``c``: values outside ``[-c, c]`` are clipped before scaling.
    """

    clip: float = 3.0

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise ValueError(f"IntensityMapping.clip must be positive, got {self.clip}")

    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised intensities (any shape) to the model range ``[-1, 1]``."""
        return images.clamp(-self.clip, self.clip) / self.clip

    def from_model(self, samples: torch.Tensor) -> torch.Tensor:
        """Model-range samples (any shape) back to normalised intensities in ``[-c, c]``."""
        return samples.clamp(-1.0, 1.0) * self.clip

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "clip_scale", "clip": float(self.clip)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IntensityMapping:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` for an unknown kind."""
        kind = data.get("kind", "clip_scale")
        if kind != "clip_scale":
            raise ValueError(f"unknown intensity mapping kind {kind!r} (expected 'clip_scale')")
        return cls(clip=float(data["clip"]))


def encode_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot label channels in ``[-1, 1]``.

    Args:
        labels: integer label maps ``(B, H, W)`` with values ``0..num_classes-1``.
        num_classes: ``K``, including background.

    Returns:
        float32 tensor ``(B, K, H, W)``: 1 on the pixel's class channel, -1 elsewhere.
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be (B, H, W), got shape {tuple(labels.shape)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"label values must lie in 0..{num_classes - 1}, got {int(labels.min())}..{int(labels.max())}"
        )
    onehot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()
    return onehot * 2.0 - 1.0


def decode_labels(channels: torch.Tensor) -> torch.Tensor:
    """Label maps from (generated) label channels.

    Args:
        channels: ``(B, K, H, W)`` label channels.

    Returns:
        int64 tensor ``(B, H, W)`` with values ``0..K-1`` (arg-max over channels).
    """
    if channels.dim() != 4:
        raise ValueError(f"label channels must be (B, K, H, W), got shape {tuple(channels.shape)}")
    return channels.argmax(dim=1)
