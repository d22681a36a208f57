"""Saving and loading a student's weights with what is needed to rebuild it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from tskd.engine.checkpoint import save_checkpoint, strip_prefixes
from tskd.errors import CheckpointError
from tskd.student.base import StudentModel, unwrap_student

__all__ = ["save_student", "load_student"]

logger = logging.getLogger(__name__)

FORMAT = "tskd-student-weights"


def save_student(model: torch.nn.Module, path: str | Path, **extra: Any) -> Path:
    """Write ``{format, spec, state_dict, **extra}`` atomically (the projector, if any, is dropped).

    Args:
        model: a :class:`StudentModel` or a wrapper of one (DDP, ``StudentWithProjector``).
        path: destination ``.pt`` file.
        extra: JSON-able facts to keep beside the weights (metrics, stage...).
    """
    student = unwrap_student(model)
    state = {k: v.detach().cpu() for k, v in student.state_dict().items()}
    return save_checkpoint({"format": FORMAT, "step": -1, "spec": student.spec(), "state_dict": state, **extra}, path)


def load_student(path: str | Path, *, device: str | torch.device = "cpu") -> StudentModel:
    """Rebuild the student saved by :func:`save_student` (eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: student weights not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or foreign file
        raise CheckpointError(f"{path}: cannot read student weights ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tskd student weights file")
    from tskd.student.networks import build_from_spec  # the networks: not for a stage that only saves

    spec = payload["spec"]
    try:
        model = build_from_spec(spec)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: the saved student description {spec} cannot be rebuilt ({exc}); "
                              "train this stage again") from None
    missing, unexpected = model.load_state_dict(strip_prefixes(payload["state_dict"]), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit student '{spec['name']}' (missing: {missing[:3]}, unexpected: {unexpected[:3]})"
        )
    return model.to(device).eval()
