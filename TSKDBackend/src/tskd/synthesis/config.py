"""Configuration of the synthetic-expansion stage: the diffusion model and the quality gate.

The defaults are small enough to train on a laptop CPU (64 px, three resolution levels); the
``gpu`` preset raises image size, widths and steps. All numbers used by the stage live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from tskd.config.base import ConfigBase
from tskd.engine.config import EngineConfig

__all__ = ["DiffusionConfig", "QualityGateConfig"]


@dataclass
class QualityGateConfig(ConfigBase):
    """Which synthetic images are dropped before they enter the transfer set.

    Args:
        thumbnail_size: side of the mean-centred thumbnails compared for near-duplicates.
        duplicate_threshold: drop an image whose normalised cross-correlation with any training
            image (on thumbnails) reaches this value (1.0 = identical up to brightness/contrast);
            ``None`` disables the memorisation check.
        min_std: drop an image whose standard deviation (normalised intensities) is below this.
        max_saturated_fraction: drop an image when more than this fraction of its pixels sit at
            the clip range of the intensity mapping (the diffusion model ran out of range).
        max_entropy: drop an image whose mean pixel entropy of the teacher's softmax, divided by
            ``log(K)`` (so 0 = certain, 1 = uniform), exceeds this; ``None`` disables the check.
    """

    thumbnail_size: int = 32
    duplicate_threshold: Optional[float] = 0.97
    min_std: float = 0.05
    max_saturated_fraction: float = 0.5
    max_entropy: Optional[float] = 0.35

    def __post_init__(self) -> None:
        if self.thumbnail_size < 4:
            raise ValueError(f"thumbnail_size must be at least 4, got {self.thumbnail_size}")
        if self.duplicate_threshold is not None and not 0.0 < self.duplicate_threshold <= 1.0:
            raise ValueError(f"duplicate_threshold must be in (0, 1], got {self.duplicate_threshold}")
        if not 0.0 <= self.max_saturated_fraction <= 1.0:
            raise ValueError(f"max_saturated_fraction must be in [0, 1], got {self.max_saturated_fraction}")
        if self.max_entropy is not None and not 0.0 < self.max_entropy <= 1.0:
            raise ValueError(f"max_entropy must be in (0, 1], got {self.max_entropy}")
        if self.min_std < 0:
            raise ValueError(f"min_std must not be negative, got {self.min_std}")


@dataclass
class DiffusionConfig(ConfigBase):
    """The diffusion model, its training numbers and how it is sampled.

    Args:
        enabled: grow the transfer set with synthetic images (False: the "without synthetic data"
            ablation; the transfer set holds the real images only).
        pretrained: a diffusers pipeline folder (e.g. a stronger model trained elsewhere) to sample
            from instead of training one on the task's images.
        image_size: side of the square images the model makes; prepared slices are resized to it.
        block_out_channels: channels per resolution level of the U-Net (one level per entry).
        layers_per_block: residual blocks per level.
        attention_levels: per level, whether its blocks carry self-attention (same length as
            ``block_out_channels``; attention is costly at high resolution, keep it low).
        attention_head_dim: channels per attention head.
        norm_num_groups: groups of the GroupNorm layers (must divide every width).
        num_train_timesteps: length of the forward noising process.
        beta_schedule: noise schedule of the DDPM scheduler.
        prediction_type: what the network predicts: the noise, the velocity or the clean sample.
        sampler: ``ddim`` or ``dpm`` (DPM-Solver++ multistep, good with 20-25 steps).
        sampling_steps: denoising steps when generating.
        mode: ``image`` makes images only; ``joint`` also makes a label map as ``K`` extra
            channels (trained on labelled slices only).
        intensity_clip: normalised intensities are clipped to ``[-c, c]`` and divided by ``c``
            to reach the model's range ``[-1, 1]``.
        train: the training loop's settings (steps, batch, learning rate...), this stage's defaults.
        val_images / val_timesteps: the cheap validation: denoising loss of at most
            ``val_images`` held-out images at ``val_timesteps`` fixed noise levels.
        num_synthetic: synthetic images to keep in the transfer set (after the quality gate).
        sample_batch_size: images denoised together when generating.
        seed: seed of the first synthetic image (image ``i`` uses ``seed + i``).
        gate: the quality gate.
    """

    enabled: bool = True
    pretrained: Optional[str] = None
    image_size: int = 64
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention_levels: tuple[bool, ...] = (False, False, True)
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
    sampler: Literal["ddim", "dpm"] = "ddim"
    sampling_steps: int = 25
    mode: Literal["image", "joint"] = "image"
    intensity_clip: float = 3.0
    train: EngineConfig = field(
        default_factory=lambda: EngineConfig(
            lr=2e-4, weight_decay=0.0, batch_size=8, max_steps=1000, warmup_steps=50, clip_grad_norm=1.0,
            validate_every=250, checkpoint_every=250, best_metric="min:val_loss",
        )
    )
    val_images: int = 8
    val_timesteps: int = 4
    num_synthetic: int = 64
    sample_batch_size: int = 8
    seed: int = 0
    gate: QualityGateConfig = field(default_factory=QualityGateConfig)

    def __post_init__(self) -> None:
        levels = len(self.block_out_channels)
        if levels < 1:
            raise ValueError("block_out_channels needs at least one level")
        if len(self.attention_levels) != levels:
            raise ValueError(
                f"attention_levels has {len(self.attention_levels)} entries but block_out_channels "
                f"has {levels}; give one true/false per level"
            )
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"norm_num_groups={self.norm_num_groups} must divide every entry of "
                f"block_out_channels={list(self.block_out_channels)}"
            )
        factor = 2 ** (levels - 1)
        if self.image_size < factor or self.image_size % factor:
            raise ValueError(
                f"image_size={self.image_size} must be a multiple of {factor} (the U-Net halves it "
                f"{levels - 1} times)"
            )
        if self.intensity_clip <= 0:
            raise ValueError(f"intensity_clip must be positive, got {self.intensity_clip}")
        for name in ("layers_per_block", "num_train_timesteps", "sampling_steps", "sample_batch_size",
                     "val_timesteps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.sampling_steps > self.num_train_timesteps:
            raise ValueError(
                f"sampling_steps={self.sampling_steps} exceeds num_train_timesteps={self.num_train_timesteps}"
            )
        for name in ("val_images", "num_synthetic", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
