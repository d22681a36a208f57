"""The diffusion model's training step and validation, handed to the engine's training loop.

:class:`DiffusionTask` turns a batch of prepared slices into the DDPM noise-prediction loss: the
images are resized to the model's size, mapped to ``[-1, 1]`` (plus one-hot label channels in
``joint`` mode), noised at random timesteps with ``DDPMScheduler.add_noise``, and the network's
prediction is compared with the target (noise, velocity or clean sample) by mean squared error.

Randomness (noise, timesteps) comes from torch's global CPU generator and is moved to the model's
device afterwards, so the engine restores it on resume by restoring torch's CPU RNG state, and a
run gives the same numbers on any device. Validation uses its own seeded generator and leaves the
global state untouched.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from tskd.engine.task import TrainingTask
from tskd.engine.validation import device_of, mean_over_loader
from tskd.synthesis.config import DiffusionConfig
from tskd.synthesis.intensity import IntensityMapping, encode_labels
from tskd.synthesis.model import (
    DiffusionModel,
    plain_scheduler_config,
    training_scheduler,
)
from tskd.synthesis.unet import build_unet, model_channels

__all__ = ["DiffusionTask"]

logger = logging.getLogger(__name__)

_VAL_SEED = 20240607


class DiffusionTask(TrainingTask):
    """Training step and validation of a denoising U-Net.

    Args:
        config: the diffusion config (image size, mode, prediction type, validation sizes).
        num_classes: ``K`` (with background), required in ``joint`` mode.
        image_channels: 1, or 3 for an RGB pretrained model (grey images are repeated).
        scheduler_config: the ``DDPMScheduler`` config of the model (a pretrained model brings its
            own); by default the one built from ``config``.
        intensity: map from normalised intensities to ``[-1, 1]``; by default ``config.intensity_clip``.
        val_batch: held-out samples for :meth:`validate` (``image (N,1,H,W)``, and in ``joint`` mode
            ``label (N,H,W)`` and ``labelled (N,)``); at most ``config.val_images`` are used.
    """

    name = "synthesis"

    def __init__(
        self,
        config: DiffusionConfig,
        *,
        num_classes: int | None = None,
        image_channels: int = 1,
        scheduler_config: Mapping[str, Any] | None = None,
        intensity: IntensityMapping | None = None,
        val_batch: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.num_classes = num_classes if config.mode == "joint" else None
        self.image_channels = image_channels
        self.channels = model_channels(config.mode, self.num_classes, image_channels)
        if scheduler_config is None:
            scheduler_config = training_scheduler(config).config
        self.scheduler = DDPMScheduler.from_config(plain_scheduler_config(scheduler_config))
        self.intensity = intensity or IntensityMapping(config.intensity_clip)
        self._val: torch.Tensor | None = None
        if val_batch is not None and config.val_images > 0:
            val = self.prepare(_first_usable(val_batch, config.val_images, config.mode == "joint"))
            self._val = val if len(val) else None
        self._warned_empty = False

    @classmethod
    def for_model(cls, model: DiffusionModel, *, val_batch: Mapping[str, Any] | None = None) -> DiffusionTask:
        """The task that trains ``model`` further (e.g. a loaded or pretrained one)."""
        return cls(
            model.config,
            num_classes=model.num_classes,
            image_channels=model.image_channels,
            scheduler_config=model.scheduler_config,
            intensity=model.intensity,
            val_batch=val_batch,
        )

    def build_model(self) -> UNet2DModel:
        """A freshly initialised U-Net for this task (grey, ``image_channels=1`` only)."""
        if self.image_channels != 1:
            raise ValueError("build_model makes grey models only; pass the pretrained U-Net to the engine")
        return build_unet(self.config, num_classes=self.num_classes)

    def prepare(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The clean model-range samples ``x0`` of a batch.

        Args:
            batch: ``image`` float ``(B, 1, H, W)`` normalised intensities; in ``joint`` mode also
                ``label`` int ``(B, H, W)`` and ``labelled`` bool ``(B,)`` (unlabelled samples are
                left out).

        Returns:
            float32 tensor ``(B', C, S, S)`` on the CPU or the batch's device, ``S = config.image_size``.
        """
        images = torch.as_tensor(batch["image"]).float()
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"batch['image'] must be (B, 1, H, W), got shape {tuple(images.shape)}")
        size = self.config.image_size
        labels = None
        if self.config.mode == "joint":
            labels = torch.as_tensor(batch["label"])
            labelled = torch.as_tensor(batch.get("labelled", torch.ones(len(images), dtype=torch.bool)))
            keep = labelled.bool().to(images.device)
            images, labels = images[keep], labels.to(images.device)[keep]
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x0 = self.intensity.to_model(images)
        if self.image_channels != 1:
            x0 = x0.repeat(1, self.image_channels, 1, 1)
        if labels is not None:
            if labels.shape[-2:] != (size, size):
                labels = F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest")[:, 0]
            x0 = torch.cat([x0, encode_labels(labels.long(), self.num_classes)], dim=1)
        return x0

    def target(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the network should predict for ``prediction_type``."""
        kind = self.scheduler.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return self.scheduler.get_velocity(x0, noise, timesteps)
        if kind == "sample":
            return x0
        raise ValueError(f"unsupported prediction_type {kind!r}")

    def training_step(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """The DDPM loss of one batch.

        Args:
            model: the U-Net (possibly wrapped by ``accelerate``), ``(B, C, S, S)`` in and out.
            batch: training samples, see :meth:`prepare`.

        Returns:
            ``(loss, logs)``: the scalar MSE loss to back-propagate and ``{"loss": ..., "samples": ...}``.
        """
        device = device_of(model)
        x0 = self.prepare(batch).to(device)
        if len(x0) == 0:
            # joint mode and no labelled sample in this batch: a zero loss that still touches every
            # parameter (so distributed training stays in step).
            if not self._warned_empty:
                logger.warning("a batch without labelled samples in joint mode; give the task labelled slices only")
                self._warned_empty = True
            zero = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            return zero, {"loss": 0.0, "samples": 0.0}
        noise = torch.randn(x0.shape).to(device)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(x0),)).to(device)
        noisy = self.scheduler.add_noise(x0, noise, timesteps)
        prediction = model(noisy, timesteps).sample
        loss = F.mse_loss(prediction.float(), self.target(x0, noise, timesteps).float())
        return loss, {"loss": float(loss.detach()), "samples": float(len(x0))}

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        """Fixed-seed denoising loss on the held-out samples (empty dict without them).

        Every held-out sample is noised at ``config.val_timesteps`` evenly spaced timesteps with
        noise from a fixed seed, so the number is comparable between calls and runs.
        """
        if self._val is None:
            return {}
        generator = torch.Generator().manual_seed(_VAL_SEED)
        total = self.scheduler.config.num_train_timesteps
        levels = np.linspace(0, total - 1, self.config.val_timesteps + 2)[1:-1].round().astype(int)
        # one batch per noise level, the whole held-out set in each (noise drawn in level order)
        batches = [{"x0": self._val, "noise": torch.randn(self._val.shape, generator=generator),
                    "timesteps": torch.full((len(self._val),), int(level), dtype=torch.long)} for level in levels]
        return {"val_loss": mean_over_loader(model, batches, self._denoising_loss)}

    def _denoising_loss(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> float:
        x0, noise, timesteps = batch["x0"], batch["noise"], batch["timesteps"]
        prediction = model(self.scheduler.add_noise(x0, noise, timesteps), timesteps).sample
        return float(F.mse_loss(prediction.float(), self.target(x0, noise, timesteps).float()))


def _first_usable(batch: Mapping[str, Any], n: int, labelled_only: bool) -> dict[str, Any]:
    """The first ``n`` samples of ``batch`` (labelled ones only when asked), without reading the rest."""
    count = len(batch["image"])
    if labelled_only and "labelled" in batch:
        flags = batch["labelled"]
        flags = flags.cpu().numpy() if isinstance(flags, torch.Tensor) else np.asarray(flags)
        rows = np.flatnonzero(flags.astype(bool))[:n]
    else:
        rows = np.arange(min(n, count))
    out = {}
    for key in ("image", "label", "labelled"):
        if key in batch:
            value = batch[key]
            if isinstance(value, torch.Tensor):
                out[key] = value[torch.as_tensor(rows, device=value.device)]
            else:
                out[key] = np.asarray(value[rows])
    return out
