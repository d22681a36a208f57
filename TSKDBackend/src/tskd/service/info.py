"""What a client needs to know about this server: version, compute device, base checkpoints, presets."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from tskd.service.errors import Unprocessable

__all__ = ["device_info", "list_checkpoints", "find_checkpoint", "list_presets", "gpu_count"]

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = {".pth": "pth", ".pt": "pth", ".safetensors": "safetensors"}


@functools.lru_cache(maxsize=1)
def device_info() -> dict[str, Any]:
    """The device training would use and the GPUs torch sees (name, memory); computed once.

    Reading GPU properties does not allocate memory on the GPUs.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return {"type": "cpu", "torch": None, "cuda": None, "gpus": []}
    gpus = []
    cuda = torch.cuda.is_available()
    if cuda:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "memory_mb": int(props.total_memory // (1024 * 1024))})
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return {
        "type": "cuda" if cuda else ("mps" if mps else "cpu"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "gpus": gpus,
    }


def gpu_count() -> int:
    return len(device_info()["gpus"])


def _is_hf_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (
        any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))
    )


def list_checkpoints(folder: Path) -> list[dict[str, Any]]:
    """Base weights found in ``folder``: ``.pth``/``.pt``, ``.safetensors`` files, Hugging Face folders.

    Only names and sizes are read (the files can be gigabytes); the architecture is detected when
    a job loads one.
    """
    found = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() in _WEIGHT_SUFFIXES:
            found.append({"name": path.name, "kind": _WEIGHT_SUFFIXES[path.suffix.lower()],
                          "size_bytes": path.stat().st_size})
        elif path.is_dir() and _is_hf_folder(path):
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            found.append({"name": path.name, "kind": "huggingface", "size_bytes": size})
    return found


def find_checkpoint(folder: Path, name: str) -> Path:
    """The path of the base checkpoint called ``name`` in ``folder``.

    Raises:
        Unprocessable: no such checkpoint (the message lists those found).
    """
    for item in list_checkpoints(folder):
        if item["name"] == name:
            return folder / name
    names = [item["name"] for item in list_checkpoints(folder)]
    listed = ", ".join(names) if names else (
        "none; copy SAM or MedSAM weights into the server's workspace 'checkpoints' folder")
    raise Unprocessable(f"base: no checkpoint named {name!r}; available: {listed}")


def list_presets() -> list[str]:
    """Preset names of :func:`tskd.config.available_presets` (empty when none are installed)."""
    try:
        from tskd.config import available_presets

        return list(available_presets())
    except Exception:  # a missing presets folder must not break the service
        logger.debug("no presets found", exc_info=True)
        return []
