"""Where to run: the training loop's device and precision, and inference outside the loop."""

from __future__ import annotations

import torch

__all__ = ["inference_device", "training_device"]


def inference_device(preference: str = "auto") -> torch.device:
    """``cuda`` when asked for or available (``auto``), else ``cpu``."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from tskd.errors import ConfigError

        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available to torch")
    return torch.device("cuda")


def training_device(device: str = "auto", mixed_precision: str = "auto") -> tuple[str, str]:
    """The training loop's ``(device, precision)`` for :class:`~tskd.engine.EngineConfig`'s settings.

    Args:
        device: ``auto`` (a GPU when torch sees one), ``cpu`` or ``cuda``.
        mixed_precision: ``auto`` (bf16 on a GPU that has it, else fp16; none on a CPU), ``no``,
            ``fp16`` or ``bf16``.

    Returns:
        ``("cpu" or "cuda", "no", "fp16" or "bf16")``; a ``ConfigError`` when ``cuda`` is asked for
        and torch sees no GPU.
    """
    use_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        from tskd.errors import ConfigError

        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available to torch")
    precision = mixed_precision
    if precision == "auto":
        if use_cpu:
            precision = "no"
        else:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return ("cpu" if use_cpu else "cuda"), precision
