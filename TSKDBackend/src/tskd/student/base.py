"""The common face of every student network, the feature projector, and parameter counting.

A student maps a batch of normalised slices ``(B, C_in, S, S)`` to class logits ``(B, K, S, S)``
(:meth:`StudentModel.forward`, the part that is exported to ONNX) and can also return its encoder
features for feature distillation (:meth:`StudentModel.forward_with_features`): a ViT's at 1/16 of
the input (its patch size), a U-Net's at its bottleneck (1/16 from 64 pixels up, see
:mod:`tskd.student.unet`). The feature projector resizes them to the teacher's embedding grid.
:class:`StudentWithProjector` bundles a student with the 1x1-convolution :class:`FeatureProjector`
that maps those features into the teacher's image-embedding space, so one optimiser trains both.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "StudentModel",
    "FeatureProjector",
    "StudentWithProjector",
    "count_parameters",
    "parameter_summary",
    "unwrap_student",
]

FEATURE_STRIDE = 16
"""The default input-size multiple (a ViT's patch size; a U-Net's total downsampling at 64 px and up)."""


class StudentModel(nn.Module, abc.ABC):
    """Base class of the students: logits for ONNX, logits plus encoder features for distillation.

    Args:
        name: registry name the student was built with (``vit_tiny``, ``unet_small``...).
        num_classes: K, number of output classes including background (>= 2).
        input_size: S, the side length the network was built for (ViT position embeddings are
            made for this grid and interpolated for other sizes).
        in_channels: channels of the input image (1 for the normalised slices of this project).
        feature_channels: C_s, channels of the features returned by :meth:`forward_with_features`.
        size_multiple: input sides must be a multiple of this number.
    """

    def __init__(
        self,
        *,
        name: str,
        num_classes: int,
        input_size: int,
        in_channels: int,
        feature_channels: int,
        size_multiple: int = FEATURE_STRIDE,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + at least one class), got {num_classes}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if input_size < size_multiple or input_size % size_multiple:
            raise ValueError(f"input_size must be a positive multiple of {size_multiple}, got {input_size}")
        self.name = name
        self.num_classes = int(num_classes)
        self.input_size = int(input_size)
        self.in_channels = int(in_channels)
        self.feature_channels = int(feature_channels)
        self.size_multiple = int(size_multiple)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, H, W)`` with sides multiples of ``size_multiple``."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return  # shapes are fixed while tracing; the checks ran on the real call before export
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name}: expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple or height == 0 or width == 0:
            raise ValueError(
                f"{self.name}: input sides must be positive multiples of {self.size_multiple} "
                f"(the patch size / total downsampling), got {height}x{width}; resize or pad the slices"
            )

    @abc.abstractmethod
    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, K, H, W)`` and encoder features ``(B, C_s, h, w)`` (h = H / 16 for a ViT)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` for an input ``(B, C_in, H, W)``."""
        return self.forward_with_features(x)[0]

    def spec(self) -> dict[str, Any]:
        """What :func:`tskd.student.build_from_spec` needs to rebuild this network (JSON-safe)."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "in_channels": self.in_channels,
        }


class FeatureProjector(nn.Module):
    """A 1x1 convolution from the student's feature channels to the teacher's embedding channels.

    Args:
        c_student: C_s, channels of the student's features.
        c_teacher: C_t, channels of the teacher's image embedding (256 for SAM / MedSAM).
    """

    def __init__(self, c_student: int, c_teacher: int) -> None:
        super().__init__()
        if c_student < 1 or c_teacher < 1:
            raise ValueError(f"channel counts must be >= 1, got c_student={c_student}, c_teacher={c_teacher}")
        self.c_student = int(c_student)
        self.c_teacher = int(c_teacher)
        self.proj = nn.Conv2d(c_student, c_teacher, kernel_size=1)

    def forward(self, features: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Project ``(B, C_s, h, w)`` to ``(B, C_t, h, w)``, then resize bilinearly to ``size`` if given."""
        if features.ndim != 4 or features.shape[1] != self.c_student:
            raise ValueError(f"expected features (B, {self.c_student}, h, w), got {tuple(features.shape)}")
        out = self.proj(features)
        if size is not None and tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return out


class StudentWithProjector(nn.Module):
    """A student and its feature projector as one trainable module.

    ``model(x)`` returns the student's logits (so validation and export treat it like the student);
    ``model(x, return_features=True)`` returns ``(logits, projected_features)``, the call the
    distillation tasks make (through ``__call__``, so wrappers such as DDP see it).

    Args:
        student: the student network.
        projector: maps the student's features into the teacher's embedding space.
    """

    def __init__(self, *, student: StudentModel, projector: FeatureProjector) -> None:
        super().__init__()
        if projector.c_student != student.feature_channels:
            raise ValueError(
                f"projector expects {projector.c_student} feature channels but student "
                f"'{student.name}' has {student.feature_channels}"
            )
        self.student = student
        self.projector = projector

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, K, H, W)``; with ``return_features`` also projected features ``(B, C_t, H/16, W/16)``."""
        if not return_features:
            return self.student(x)
        logits, features = self.student.forward_with_features(x)
        return logits, self.projector(features)


def unwrap_student(model: nn.Module) -> StudentModel:
    """The :class:`StudentModel` inside ``model`` (itself, or inside DDP / :class:`StudentWithProjector`)."""
    inner = model
    for _ in range(4):
        if isinstance(inner, StudentModel):
            return inner
        if isinstance(inner, StudentWithProjector):
            inner = inner.student
        elif hasattr(inner, "module") and isinstance(inner.module, nn.Module):
            inner = inner.module
        else:
            break
    raise ValueError(f"expected a StudentModel (or a wrapper of one), got {type(model).__name__}")


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter values in ``model`` (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        if id(param) in seen or (trainable_only and not param.requires_grad):
            continue
        seen.add(id(param))
        total += param.numel()
    return total


def parameter_summary(model: nn.Module) -> dict[str, int]:
    """Parameter counts for logs and reports: ``total``, ``trainable`` and one entry per top-level child."""
    summary = {"total": count_parameters(model), "trainable": count_parameters(model, trainable_only=True)}
    for name, child in model.named_children():
        summary[name] = count_parameters(child)
    return summary
