"""Sampling synthetic images from a diffusion model, deterministically per image.

Image ``i`` of a run starts from noise drawn from its own generator seeded with ``seed + i`` and is
denoised with a deterministic sampler (DDIM with ``eta = 0`` or DPM-Solver++), so an image depends
only on its seed: not on the batch it was made in, nor on the images made before it. A generation
can therefore stop after any batch and continue later with the seeds that are still missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from tskd.synthesis.intensity import decode_labels
from tskd.synthesis.model import DiffusionModel, sampling_scheduler

__all__ = ["GeneratedSamples", "generate", "iter_generate", "initial_noise"]

logger = logging.getLogger(__name__)


@dataclass
class GeneratedSamples:
    """Images made by :func:`generate`.

    Args:
        images: float32 ``(n, 1, S, S)`` in the pipeline's normalised intensity range.
        labels: int64 ``(n, S, S)`` with values ``0..K-1`` in ``joint`` mode, else ``None``.
        seeds: the seed of each image.
    """

    images: np.ndarray
    labels: np.ndarray | None
    seeds: list[int]

    def __len__(self) -> int:
        return len(self.seeds)


def initial_noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The starting noise of the image with ``seed`` (float32, CPU, same on every machine)."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def iter_generate(
    model: DiffusionModel,
    seeds: Sequence[int],
    *,
    steps: int | None = None,
    sampler: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[GeneratedSamples]:
    """Generates the images of ``seeds``, one batch at a time.

    Args:
        model: the diffusion model (its U-Net is moved to ``device``).
        seeds: one seed per image to make.
        steps: denoising steps; ``model.config.sampling_steps`` by default.
        sampler: ``ddim`` or ``dpm``; ``model.config.sampler`` by default.
        device: where to run the U-Net.
        batch_size: images denoised together; ``model.config.sample_batch_size`` by default.
        progress: called with ``(images done, images total)`` after each batch.

    Yields:
        :class:`GeneratedSamples` of at most ``batch_size`` images, in the order of ``seeds``.
    """
    config = model.config
    steps = int(steps or config.sampling_steps)
    sampler = sampler or config.sampler
    batch_size = int(batch_size or config.sample_batch_size)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be at least 1, got {steps} and {batch_size}")
    seeds = [int(s) for s in seeds]
    unet = model.unet.to(device)
    was_training = unet.training
    unet.eval()
    channels = unet.config.in_channels
    size = config.image_size
    done = 0
    try:
        for first in range(0, len(seeds), batch_size):
            batch_seeds = seeds[first:first + batch_size]
            noise = torch.stack([initial_noise(s, (channels, size, size)) for s in batch_seeds])
            with torch.no_grad():
                sample = _denoise(model, noise, steps=steps, sampler=sampler, device=device)
            done += len(batch_seeds)
            yield _to_output(model, sample, batch_seeds)
            if progress is not None:
                progress(done, len(seeds))
    finally:
        unet.train(was_training)


def generate(
    model: DiffusionModel,
    n: int,
    *,
    seed: int = 0,
    steps: int | None = None,
    sampler: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
) -> GeneratedSamples:
    """``n`` images with seeds ``seed, seed + 1, ..., seed + n - 1`` (see :func:`iter_generate`).

    Returns:
        :class:`GeneratedSamples` with ``images (n, 1, S, S)`` and, in ``joint`` mode, ``labels (n, S, S)``.
    """
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    parts = list(iter_generate(model, range(seed, seed + n), steps=steps, sampler=sampler,
                               device=device, batch_size=batch_size))
    size = model.config.image_size
    if not parts:
        labels = np.zeros((0, size, size), np.int64) if model.mode == "joint" else None
        return GeneratedSamples(np.zeros((0, 1, size, size), np.float32), labels, [])
    labels = np.concatenate([p.labels for p in parts]) if model.mode == "joint" else None
    return GeneratedSamples(
        images=np.concatenate([p.images for p in parts]),
        labels=labels,
        seeds=[s for p in parts for s in p.seeds],
    )


def _denoise(model: DiffusionModel, noise: torch.Tensor, *, steps: int, sampler: str,
             device: str | torch.device) -> torch.Tensor:
    """Runs the reverse process from ``noise`` ``(B, C, S, S)``; returns model-range samples on the CPU."""
    scheduler = sampling_scheduler(model.scheduler_config, sampler)  # fresh: multistep state is per batch
    scheduler.set_timesteps(steps, device=device)
    dtype = model.unet.dtype
    sample = noise.to(device) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(sample, t)
        prediction = model.unet(model_input.to(dtype), t).sample.float()
        sample = scheduler.step(prediction, t, sample).prev_sample
    return sample.float().cpu()


def _to_output(model: DiffusionModel, sample: torch.Tensor, seeds: list[int]) -> GeneratedSamples:
    image = sample[:, : model.image_channels]
    if model.image_channels != 1:
        image = image.mean(dim=1, keepdim=True)  # RGB pretrained model: grey = mean of channels
    images = model.intensity.from_model(image).numpy().astype(np.float32)
    labels = None
    if model.mode == "joint":
        labels = decode_labels(sample[:, model.image_channels:]).numpy().astype(np.int64)
    return GeneratedSamples(images=images, labels=labels, seeds=list(seeds))
