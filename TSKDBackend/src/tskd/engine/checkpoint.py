"""Training checkpoints: written atomically, holding everything needed to resume a stage.

A checkpoint stores only the *trainable* state of the model (parameters that require gradients and
persistent buffers), so a LoRA-tuned ViT-H teacher checkpoints in megabytes rather than gigabytes.
The frozen rest is rebuilt by the stage from its base weights before loading.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tskd.atomic import atomic_write
from tskd.errors import CheckpointError

__all__ = [
    "trainable_state_dict", "load_trainable_state", "save_checkpoint", "load_checkpoint", "strip_prefixes",
    "check_fingerprint", "rng_state", "set_rng_state",
]

logger = logging.getLogger(__name__)

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Remove DDP / torch.compile wrapper prefixes from state-dict keys."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    changed = True
        out[key] = value
    return out


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that require gradients, plus persistent buffers (e.g. norm statistics), on CPU."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name for name, _ in model.named_buffers()}
    state = model.state_dict()
    return strip_prefixes(
        {k: v.detach().cpu().clone() for k, v in state.items() if k in trainable or k in buffers}
    )


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Load a :func:`trainable_state_dict` into ``model``; every stored key must exist in the model."""
    state = strip_prefixes(state)
    own = model.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise CheckpointError(
            f"{source}: {len(unknown)} stored weight(s) do not exist in this model "
            f"(first: {', '.join(unknown[:3])}); the checkpoint was made for a different model"
        )
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"{source}: weight '{k}' has shape {tuple(state[k].shape)}, the model expects {tuple(own[k].shape)}"
        )
    model.load_state_dict(state, strict=False)


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (on CPU), with a clear error when corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        raise CheckpointError(
            f"{path}: cannot read this checkpoint ({type(exc).__name__}: {exc}); delete it to start the stage again"
        ) from exc
    if not isinstance(payload, dict) or "step" not in payload:
        raise CheckpointError(f"{path}: not a tskd training checkpoint")
    return payload


def rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python RNG states, for a resumable checkpoint."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (the CUDA part only where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_fingerprint(payload: dict[str, Any], fingerprint: dict[str, Any], path: Path) -> None:
    """Refuse the checkpoint ``payload`` (read from ``path``) when it was made with another ``fingerprint``."""
    stored = payload.get("fingerprint", {})
    if stored != fingerprint:
        keys = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
        raise CheckpointError(
            f"{path}: this checkpoint was made with different settings or data "
            f"(differences in: {', '.join(keys) or 'unknown'}). Run again with the original settings, "
            f"or delete {path.parent} to start this stage afresh."
        )
