"""A trained (or pretrained) diffusion model with everything needed to use it.

:class:`DiffusionModel` bundles the denoising U-Net with its training scheduler's settings, the
intensity mapping, the mode (``image`` / ``joint``) and the number of classes, so that sampling
(:mod:`tskd.synthesis.sampler`), storage (:mod:`tskd.synthesis.storage`) and further training
(:mod:`tskd.synthesis.task`) agree on how its channels are to be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DModel,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from tskd.synthesis.config import DiffusionConfig
from tskd.synthesis.intensity import IntensityMapping
from tskd.synthesis.unet import build_unet, model_channels

__all__ = [
    "DiffusionModel",
    "build_diffusion_model",
    "training_scheduler",
    "sampling_scheduler",
    "plain_scheduler_config",
    "SAMPLERS",
]

#: Names accepted for ``sampler``, mapped to the diffusers scheduler class.
SAMPLERS: dict[str, type[SchedulerMixin]] = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler}


@dataclass
class DiffusionModel:
    """A denoising U-Net and how to read it.

    Args:
        unet: the network, ``(B, C, S, S)`` in and out.
        scheduler_config: the ``DDPMScheduler`` config it was trained with (plain dict).
        config: the diffusion config (sizes, mode, sampler defaults, intensity clip).
        intensity: map between normalised intensities and the model range.
        num_classes: ``K`` in ``joint`` mode, else ``None``.
        image_channels: 1, or 3 for an RGB pretrained model (grey input is repeated into the three
            channels for training and the generated channels are averaged back to grey).
        model_id: short identifier written into the provenance of generated images.
        data_fingerprint: fingerprint of the training data it was trained on (``""`` when unknown).
    """

    unet: UNet2DModel
    scheduler_config: dict[str, Any]
    config: DiffusionConfig
    intensity: IntensityMapping
    num_classes: int | None = None
    image_channels: int = 1
    model_id: str = ""
    data_fingerprint: str = ""

    def __post_init__(self) -> None:
        expected = model_channels(self.config.mode, self.num_classes, self.image_channels)
        in_ch, out_ch = self.unet.config.in_channels, self.unet.config.out_channels
        if in_ch != expected or out_ch != expected:
            raise ValueError(
                f"the U-Net has {in_ch} input / {out_ch} output channels but mode "
                f"{self.config.mode!r} with num_classes={self.num_classes} and "
                f"image_channels={self.image_channels} needs {expected}"
            )

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def training_scheduler(self) -> DDPMScheduler:
        """A fresh DDPM scheduler with the training settings."""
        return DDPMScheduler.from_config(self.scheduler_config)

    def to(self, device: str | torch.device) -> DiffusionModel:
        """Moves the U-Net to ``device`` (in place) and returns ``self``."""
        self.unet.to(device)
        return self


def training_scheduler(config: DiffusionConfig) -> DDPMScheduler:
    """The DDPM scheduler that defines the forward process for ``config``."""
    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=True,
        clip_sample_range=1.0,
    )


def plain_scheduler_config(config: Any) -> dict[str, Any]:
    """A scheduler config as a plain dict without diffusers' private ``_`` keys."""
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def sampling_scheduler(scheduler_config: dict[str, Any], sampler: str) -> SchedulerMixin:
    """A fresh DDIM or DPM-Solver++ scheduler built from the training scheduler's config.

    Timesteps are spaced ``trailing`` so that sampling starts from the noisiest training step
    (the default ``leading`` spacing never starts at pure noise with few steps).

    Args:
        scheduler_config: the training ``DDPMScheduler`` config.
        sampler: ``ddim`` or ``dpm``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    config = plain_scheduler_config(scheduler_config)
    config["timestep_spacing"] = "trailing"
    if sampler == "ddim":
        return DDIMScheduler.from_config(config)
    # Deterministic multistep DPM-Solver++ (no SDE noise), second order. Its clean-sample
    # predictions are clipped to the data range like DDIM's ``clip_sample``: without that, the first
    # step from t = T - 1 of a cosine schedule (alpha almost 0) divides by almost 0 and the sample
    # blows up. (Dynamic thresholding with ``sample_max_value`` = the clip range is a plain clip.)
    config.update(algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True)
    if config.get("clip_sample", True):
        config.update(thresholding=True, sample_max_value=float(config.get("clip_sample_range", 1.0)))
    return DPMSolverMultistepScheduler.from_config(config)


def build_diffusion_model(config: DiffusionConfig, *, num_classes: int | None = None) -> DiffusionModel:
    """A freshly initialised model for ``config``.

    Args:
        config: the diffusion config.
        num_classes: ``K`` (with background); required in ``joint`` mode, ignored otherwise.
    """
    classes = num_classes if config.mode == "joint" else None
    return DiffusionModel(
        unet=build_unet(config, num_classes=classes),
        scheduler_config=plain_scheduler_config(training_scheduler(config).config),
        config=config,
        intensity=IntensityMapping(config.intensity_clip),
        num_classes=classes,
    )
