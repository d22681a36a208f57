"""Builder registry of the students: a name maps to a network size (like segment-anything's ``build_sam``).

Sizes live in :mod:`tskd.student.specs` (``VIT_SPECS``, ``UNET_SPECS``); this
module only maps names to them. The ViT code (built on MONAI's blocks, whose import takes seconds)
is imported when a ViT student is built, so the U-Net path never imports MONAI. ``build_student("vit_tiny", num_classes=2, input_size=256)``;
:func:`build_from_spec` rebuilds a saved student from its :meth:`~StudentModel.spec`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from tskd.student.base import StudentModel, count_parameters
from tskd.student.ensemble import ENSEMBLE_NAME, StudentEnsemble
from tskd.student.specs import UNET_SPECS, VIT_SPECS
from tskd.student.unet import LAYOUT, LEGACY_LAYOUT, UNetStudent

__all__ = ["STUDENT_BUILDERS", "available_students", "build_student", "build_from_spec", "count_parameters"]

logger = logging.getLogger(__name__)


def _vit_builder(name: str) -> Callable[..., StudentModel]:
    def build(*, num_classes: int, input_size: int, in_channels: int = 1, layout: str | None = None) -> StudentModel:
        if layout is not None:
            raise ValueError(f"student '{name}' has one layout; got layout={layout!r}")
        from tskd.student.vit import ViTStudent  # lazy: MONAI's blocks (seconds to import)

        return ViTStudent(
            name=name, num_classes=num_classes, input_size=input_size, in_channels=in_channels, spec=VIT_SPECS[name]
        )

    return build


def _unet_builder(name: str) -> Callable[..., StudentModel]:
    def build(*, num_classes: int, input_size: int, in_channels: int = 1, layout: str | None = None) -> StudentModel:
        return UNetStudent(
            name=name, num_classes=num_classes, input_size=input_size, in_channels=in_channels, spec=UNET_SPECS[name],
            layout=layout or LAYOUT,
        )

    return build


STUDENT_BUILDERS: dict[str, Callable[..., StudentModel]] = {
    **{name: _vit_builder(name) for name in VIT_SPECS},
    **{name: _unet_builder(name) for name in UNET_SPECS},
}


def available_students() -> list[str]:
    """Registered student names."""
    return sorted(STUDENT_BUILDERS)


def build_student(name: str, *, num_classes: int, input_size: int, in_channels: int = 1,
                  layout: str | None = None) -> StudentModel:
    """Build a student network by registry name.

    Args:
        name: one of :func:`available_students` (``vit_tiny`` is the paper's student,
            ``unet_small`` the fast CPU one, ``unet_base`` its twice-as-wide sibling; ``vit_nano`` /
            ``unet_tiny`` are for tests).
        num_classes: K, output classes including background (>= 2).
        input_size: S, side of the square input slices (a multiple of 16 for a ViT; even for a U-Net).
        in_channels: input channels (1 for this project's normalised slices).
        layout: a U-Net's layout (default: the current one; see :mod:`tskd.student.unet`).

    Returns:
        the student; ``model(x)`` maps ``(B, in_channels, S, S)`` to logits ``(B, K, S, S)``.
    """
    if name not in STUDENT_BUILDERS:
        raise ValueError(f"unknown student '{name}'; available students: {', '.join(available_students())}")
    model = STUDENT_BUILDERS[name](num_classes=num_classes, input_size=input_size, in_channels=in_channels,
                                   layout=layout)
    logger.info(
        "built student %s (K=%d, input %dx%d): %s parameters",
        name, num_classes, input_size, input_size, f"{count_parameters(model):,}",
    )
    return model


def build_from_spec(spec: Mapping[str, Any]) -> StudentModel:
    """Rebuild a student from the :meth:`~tskd.student.base.StudentModel.spec` it was saved with.

    A U-Net spec without ``layout`` comes from tskd 0.1 and is rebuilt in that layout; an
    ``ensemble`` spec lists its members' specs (:class:`tskd.student.ensemble.StudentEnsemble`).

    Raises:
        ValueError: an unknown name, or numbers the network does not accept.
        KeyError: a field is missing.
    """
    spec = dict(spec)
    name = spec.pop("name")
    if name == ENSEMBLE_NAME:
        return StudentEnsemble([build_from_spec(member) for member in spec["members"]])
    if name in UNET_SPECS:
        spec.setdefault("layout", LEGACY_LAYOUT)
    return build_student(name, num_classes=int(spec["num_classes"]), input_size=int(spec["input_size"]),
                         in_channels=int(spec.get("in_channels", 1)), layout=spec.get("layout"))
