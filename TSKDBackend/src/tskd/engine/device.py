"""Where to run inference outside the training loop."""

from __future__ import annotations

import torch

__all__ = ["inference_device"]


def inference_device(preference: str = "auto") -> torch.device:
    """``cuda`` when asked for or available (``auto``), else ``cpu``."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from tskd.errors import ConfigError

        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available to torch")
    return torch.device("cuda")
