"""Builder registry of the students: a name maps to a network size (like segment-anything's ``build_sam``).

Sizes live in :data:`tskd.student.vit.VIT_SPECS` and :data:`tskd.student.unet.UNET_SPECS`; this
module only maps names to them. ``build_student("vit_tiny", num_classes=2, input_size=256)``.
"""

from __future__ import annotations

import logging
from typing import Callable

from tskd.student.base import StudentModel, count_parameters
from tskd.student.unet import UNET_SPECS, UNetStudent
from tskd.student.vit import VIT_SPECS, ViTStudent

__all__ = ["STUDENT_BUILDERS", "available_students", "build_student", "count_parameters"]

logger = logging.getLogger(__name__)


def _vit_builder(name: str) -> Callable[..., StudentModel]:
    def build(*, num_classes: int, input_size: int, in_channels: int = 1) -> StudentModel:
        return ViTStudent(
            name=name, num_classes=num_classes, input_size=input_size, in_channels=in_channels, spec=VIT_SPECS[name]
        )

    return build


def _unet_builder(name: str) -> Callable[..., StudentModel]:
    def build(*, num_classes: int, input_size: int, in_channels: int = 1) -> StudentModel:
        return UNetStudent(
            name=name, num_classes=num_classes, input_size=input_size, in_channels=in_channels, spec=UNET_SPECS[name]
        )

    return build


STUDENT_BUILDERS: dict[str, Callable[..., StudentModel]] = {
    **{name: _vit_builder(name) for name in VIT_SPECS},
    **{name: _unet_builder(name) for name in UNET_SPECS},
}


def available_students() -> list[str]:
    """Registered student names."""
    return sorted(STUDENT_BUILDERS)


def build_student(name: str, *, num_classes: int, input_size: int, in_channels: int = 1) -> StudentModel:
    """Build a student network by registry name.

    Args:
        name: one of :func:`available_students` (``vit_tiny`` is the paper's student,
            ``unet_small`` the fast CPU one; ``vit_nano`` / ``unet_tiny`` are for tests).
        num_classes: K, output classes including background (>= 2).
        input_size: S, side of the square input slices (a multiple of 16).
        in_channels: input channels (1 for this project's normalised slices).

    Returns:
        the student; ``model(x)`` maps ``(B, in_channels, S, S)`` to logits ``(B, K, S, S)``.
    """
    if name not in STUDENT_BUILDERS:
        raise ValueError(f"unknown student '{name}'; available students: {', '.join(available_students())}")
    model = STUDENT_BUILDERS[name](num_classes=num_classes, input_size=input_size, in_channels=in_channels)
    logger.info(
        "built student %s (K=%d, input %dx%d): %s parameters",
        name, num_classes, input_size, input_size, f"{count_parameters(model):,}",
    )
    return model
