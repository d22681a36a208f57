"""Several students trained on the same labels, averaged: one network, one ONNX graph.

The run's supervised reference may train ``reference.members`` students that differ only in their
training seed (initialisation, batch order); :class:`StudentEnsemble` holds them and answers with
the mean of their class probabilities (as nnU-Net averages its folds' softmax outputs), returned as
its logarithm so that everything downstream (argmax, softmax, the package's verification) treats it
as logits. It is exported, stored and loaded like any student: its :meth:`~StudentEnsemble.spec`
lists the members' specs, :func:`tskd.student.networks.build_from_spec` rebuilds it, and the package
holds one ONNX graph that runs every member on the same input. Measured on the hippocampus
(docs/benchmarks.md, "An ensemble of labels-only students").
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from tskd.student.base import StudentModel

__all__ = ["ENSEMBLE_NAME", "StudentEnsemble"]

ENSEMBLE_NAME = "ensemble"

_MIN_PROBABILITY = 1e-6
"""Floor of the mean probability before its logarithm (a class no member gives any weight)."""


class StudentEnsemble(StudentModel):
    """Students of one architecture, input and label set, averaged.

    Args:
        members: two or more students with the same ``num_classes``, ``input_size`` and ``in_channels``.
    """

    def __init__(self, members: Sequence[StudentModel]) -> None:
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        first = members[0]
        for index, member in enumerate(members[1:], start=1):
            if isinstance(member, StudentEnsemble):
                raise ValueError("an ensemble's members must be single students, not ensembles")
            for field in ("num_classes", "input_size", "in_channels"):
                if getattr(member, field) != getattr(first, field):
                    raise ValueError(f"ensemble member {index} has {field} {getattr(member, field)}, member 0 has "
                                     f"{getattr(first, field)}: members must take the same input and labels")
        super().__init__(name=ENSEMBLE_NAME, num_classes=first.num_classes, input_size=first.input_size,
                         in_channels=first.in_channels, feature_channels=first.feature_channels,
                         size_multiple=max(m.size_multiple for m in members))
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The log of the members' mean class probabilities ``(B, K, H, W)``."""
        self.check_input(x)
        probabilities = torch.stack([torch.softmax(member(x), dim=1) for member in self.members]).mean(dim=0)
        return torch.log(probabilities.clamp_min(_MIN_PROBABILITY))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise TypeError("an ensemble of students is not distilled or trained further: train its members "
                        "(reference.members) and let the run build the ensemble")

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "members": [member.spec() for member in self.members]}
