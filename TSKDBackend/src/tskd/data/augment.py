"""2D training augmentation built from MONAI transforms, deterministic per sample.

Spatial transforms (a small random affine: rotation, scaling, translation; optional flips) move the
image and its label together (bilinear for the image, nearest for the label). Intensity
transforms (scale, shift, Gaussian noise, gamma) touch the image only. Flips are off by default
because anatomy is lateralised (a left kidney flipped looks like a right kidney).

Determinism: the augmentation is called with a per-sample seed, ``augment(sample, rng_seed)``,
and draws every random number from it, so the same seed gives the same output in any process.
:class:`tskd.data.prepared.SliceDataset` takes the seed of each draw from the engine's sampler
(``SliceDataset.sample(position, seed)``) or derives it with :func:`sample_seed` from
``(dataset seed, epoch, slice index)``; either way a resumed training run sees exactly the samples
an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from tskd.data.config import AugmentConfig

__all__ = ["AugmentConfig", "SliceAugmentation", "build_augmentation", "sample_seed"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of slice ``index`` in ``epoch`` of a run seeded with ``seed``.

    Args:
        seed: the dataset's (run's) seed.
        epoch: epoch number, or any other counter the training loop advances (e.g. the step).
        index: the slice's index in the prepared slices.

    Returns:
        An integer in ``[0, 2**32)``, well mixed (a :class:`numpy.random.SeedSequence` hash).
    """
    values = [int(seed), int(epoch), int(index)]
    if min(values) < 0:
        raise ValueError(f"seed, epoch and index must not be negative, got {values}")
    return int(np.random.SeedSequence(values).generate_state(1, dtype=np.uint32)[0])


class SliceAugmentation:
    """Callable ``augment(sample, rng_seed) -> sample`` over ``{"image": (1, H, W), "label": (H, W)}``.

    ``image`` is a float tensor ``(1, H, W)``, ``label`` an integer tensor ``(H, W)``; other keys are
    passed through. The result holds a float32 image ``(1, H, W)`` and an int64 label ``(H, W)``.
    Build it with :func:`build_augmentation`.
    """

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config
        self._pipelines: dict[tuple[int, int], Compose] = {}

    def _pipeline(self, height: int, width: int) -> Compose:
        key = (height, width)
        if key not in self._pipelines:
            self._pipelines[key] = self._build(height, width)
        return self._pipelines[key]

    def _build(self, height: int, width: int) -> Compose:
        c = self.config
        both = ("image", "label")
        transforms: list[Any] = []
        if c.affine_prob > 0:
            transforms.append(
                RandAffined(
                    keys=both,
                    prob=c.affine_prob,
                    rotate_range=(math.radians(c.rotate_deg),),
                    scale_range=(c.scale, c.scale),
                    translate_range=(c.translate * height, c.translate * width),
                    mode=("bilinear", "nearest"),
                    padding_mode=("border", "zeros"),
                )
            )
        if c.flip_prob > 0:
            transforms.append(RandFlipd(keys=both, prob=c.flip_prob, spatial_axis=0))
            transforms.append(RandFlipd(keys=both, prob=c.flip_prob, spatial_axis=1))
        if c.intensity_prob > 0 and c.intensity_scale > 0:
            transforms.append(RandScaleIntensityd(keys="image", factors=c.intensity_scale, prob=c.intensity_prob))
        if c.intensity_prob > 0 and c.intensity_shift > 0:
            transforms.append(RandShiftIntensityd(keys="image", offsets=c.intensity_shift, prob=c.intensity_prob))
        if c.noise_prob > 0 and c.noise_std > 0:
            transforms.append(RandGaussianNoised(keys="image", prob=c.noise_prob, std=c.noise_std))
        if c.gamma_prob > 0:
            transforms.append(
                RandAdjustContrastd(keys="image", prob=c.gamma_prob, gamma=tuple(c.gamma), retain_stats=True)
            )
        return Compose(transforms)

    def __call__(self, sample: dict[str, Any], rng_seed: int) -> dict[str, Any]:
        """Augment one sample with the random numbers of ``rng_seed``.

        Args:
            sample: ``{"image": float (1, H, W), "label": int (H, W), ...}`` tensors or arrays.
            rng_seed: integer in ``[0, 2**32)``; the same seed gives the same result.
        """
        image = torch.as_tensor(sample["image"], dtype=torch.float32)
        label = torch.as_tensor(sample["label"])
        if image.ndim != 3 or image.shape[0] != 1:
            raise ValueError(f"expected an image of shape (1, H, W), got {tuple(image.shape)}")
        if tuple(label.shape) != tuple(image.shape[1:]):
            raise ValueError(f"label shape {tuple(label.shape)} differs from image shape {tuple(image.shape[1:])}")
        if not 0 <= int(rng_seed) < 2**32:
            raise ValueError(f"rng_seed must be in [0, 2**32), got {rng_seed}")
        pipeline = self._pipeline(int(image.shape[1]), int(image.shape[2]))
        pipeline.set_random_state(seed=int(rng_seed))
        data = pipeline({"image": image, "label": label[None].to(torch.float32)})
        out = dict(sample)
        out["image"] = _plain(data["image"]).to(torch.float32).contiguous()
        out["label"] = torch.round(_plain(data["label"])[0]).to(torch.int64).contiguous()
        return out


def _plain(tensor: Any) -> torch.Tensor:
    if isinstance(tensor, MetaTensor):
        return tensor.as_tensor()
    return torch.as_tensor(tensor)


def build_augmentation(config: AugmentConfig | None = None) -> SliceAugmentation:
    """The training augmentation described by ``config`` (defaults: :class:`AugmentConfig`)."""
    return SliceAugmentation(config or AugmentConfig())
