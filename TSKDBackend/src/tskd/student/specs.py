"""The students' sizes by name: plain numbers, no torch, so that a configuration naming a student
can be checked without loading model code (:class:`tskd.student.config.DistillConfig`).

The networks built from them are in :mod:`tskd.student.vit` and :mod:`tskd.student.unet`; the
name -> builder registry is :mod:`tskd.student.networks`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ViTSpec", "VIT_SPECS", "UNetSpec", "UNET_SPECS", "student_names"]


@dataclass(frozen=True)
class ViTSpec:
    """Numbers of one ViT student size (encoder and decoder).

    Args:
        hidden_size: token width (192 for ViT-Tiny).
        num_layers: transformer blocks (12); the decoder taps blocks at 1/4, 2/4, 3/4 depth.
        num_heads: attention heads (3).
        mlp_dim: hidden width of the transformer MLPs (768).
        patch_size: side of the square patches (16; the features are at 1/16 resolution).
        qkv_bias: bias in the attention's qkv projection.
        decoder_features: ``feature_size`` of the UNETR-style decoder (channels at full resolution).
    """

    hidden_size: int = 192
    num_layers: int = 12
    num_heads: int = 3
    mlp_dim: int = 768
    patch_size: int = 16
    qkv_bias: bool = True
    decoder_features: int = 16


VIT_SPECS: dict[str, ViTSpec] = {
    # The paper's student: ViT-Tiny (DeiT-Ti numbers) with a light UNETR decoder.
    "vit_tiny": ViTSpec(),
    # A few-hundred-thousand-parameter ViT for fast tests of the same code paths.
    "vit_nano": ViTSpec(hidden_size=48, num_layers=4, num_heads=2, mlp_dim=96, decoder_features=8),
}


@dataclass(frozen=True)
class UNetSpec:
    """Numbers of one U-Net student size.

    Args:
        channels: channels per level, top first; at most ``len(channels) - 1`` stride-2 levels are
            used (fewer for small inputs, see :func:`unet_levels`).
        num_res_units: residual units per block (0: plain conv blocks).
        norm: MONAI normalisation name (``instance`` does not depend on the batch size).
        dropout: dropout probability.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    num_res_units: int = 1
    norm: str = "instance"
    dropout: float = 0.0


UNET_SPECS: dict[str, UNetSpec] = {
    # ~0.85M parameters: a few milliseconds per 256x256 slice on a desktop CPU (onnxruntime).
    "unet_small": UNetSpec(),
    # ~3.4M parameters, twice unet_small's channels at every level: 3-4x unet_small's training time on a
    # CPU and no better test Dice there (docs/benchmarks.md, "A larger student and a longer schedule").
    "unet_base": UNetSpec(channels=(32, 64, 128, 256, 512)),
    # ~34k parameters, for tests.
    "unet_tiny": UNetSpec(channels=(8, 16, 16, 32, 32), num_res_units=0),
}


def student_names() -> list[str]:
    """Every student name, sorted (the keys of :func:`tskd.student.networks.available_students`)."""
    return sorted([*VIT_SPECS, *UNET_SPECS])
