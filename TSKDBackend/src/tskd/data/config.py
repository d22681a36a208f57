"""The data layer's settings: how volumes become training slices, and their augmentation.

Plain dataclasses without numpy, torch or MONAI, so that whoever only reads or checks a
configuration (the service validating a job's settings) imports nothing heavy. The code that
uses them is :mod:`tskd.data.prepared` and :mod:`tskd.data.augment`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from tskd.config import ConfigBase

__all__ = ["AugmentConfig", "PreparedSpec"]


@dataclass
class AugmentConfig(ConfigBase):
    """Random augmentation of 2D training slices (normalised intensities).

    Args:
        affine_prob: probability of the random affine transform.
        rotate_deg: rotation drawn from ``[-rotate_deg, rotate_deg]`` degrees.
        scale: zoom factor drawn from ``[1 - scale, 1 + scale]`` per axis.
        translate: shift drawn from ``[-translate, translate]`` times the image size, per axis.
        flip_prob: probability of flipping each axis (0 = off; anatomy is lateralised).
        intensity_prob: probability of each of the intensity scale and shift.
        intensity_scale: intensities multiplied by ``1 + f``, ``f`` in ``[-intensity_scale, intensity_scale]``.
        intensity_shift: offset drawn from ``[-intensity_shift, intensity_shift]`` (normalised units).
        noise_prob: probability of additive Gaussian noise.
        noise_std: the noise's standard deviation is drawn from ``[0, noise_std]``.
        gamma_prob: probability of a gamma (contrast) change, mean and std kept.
        gamma: range of the gamma exponent.
    """

    affine_prob: float = 0.8
    rotate_deg: float = 15.0
    scale: float = 0.1
    translate: float = 0.05
    flip_prob: float = 0.0
    intensity_prob: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    noise_prob: float = 0.2
    noise_std: float = 0.05
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)

    def __post_init__(self) -> None:
        for name in ("affine_prob", "flip_prob", "intensity_prob", "noise_prob", "gamma_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1, got {value}")
        for name in ("rotate_deg", "scale", "translate", "intensity_scale", "intensity_shift", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.scale >= 1:
            raise ValueError(f"scale must be below 1 (a zoom factor range around 1), got {self.scale}")
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError(f"gamma must be a range (low, high) with 0 < low <= high, got {self.gamma}")


@dataclass
class PreparedSpec(ConfigBase):
    """How volumes become 2D training slices.

    Args:
        input_size: side ``S`` of the square slices (the model's input size).
        slice_axis: numpy axis of the ``(k, j, i)`` arrays to cut along; None chooses it from the
            first volume's spacing (the coarsest axis) and keeps it for all cases.
        normalization: ``"auto"`` (CT when intensities look like HU, else per-image percentiles),
            ``"ct"``, ``"percentile"`` or ``"none"``; fitted on the labelled images.
        keep_empty_fraction: fraction of labelled slices without foreground that are kept (chosen
            by a hash of case id and slice index, so deterministic and order-independent).
        min_foreground_pixels: a labelled slice counts as foreground when at least this many of its
            pixels (at the original resolution) are non-zero.
        fit_to_data: when true, ``input_size`` is an upper bound: the slices are written at
            :meth:`planned_size` of the largest in-plane side found in the cases, so that small
            images (a 35x50 hippocampus slice) are not blown up to 128 pixels and trained at
            four times the cost. The size used is recorded in the folder's ``index.json``.
        context_slices: ``c`` neighbouring slices on each side of a slice of a volume are given to the
            student with it, as ``2c + 1`` input channels in slice order ("2.5D"; the slice itself in
            the middle, the volume's first or last slice repeated beyond its ends). 0: single slices.
            2D images have no neighbours and are always prepared with 0; the teacher always sees the
            middle slice alone. The number used is recorded in the folder's ``index.json``.
    """

    input_size: int = 256
    slice_axis: Optional[int] = None
    normalization: Literal["auto", "ct", "percentile", "none"] = "auto"
    keep_empty_fraction: float = 0.1
    min_foreground_pixels: int = 1
    fit_to_data: bool = False
    context_slices: int = 0

    def planned_size(self, largest_side: int) -> int:
        """The slice side for data whose largest in-plane side is ``largest_side`` pixels: with
        ``fit_to_data``, the smallest multiple of 16 (the models' total stride) of at least 32
        that holds it, never more than ``input_size``; else ``input_size``."""
        if not self.fit_to_data:
            return self.input_size
        fitted = max(32, -(-int(largest_side) // 16) * 16)
        return min(self.input_size, fitted)

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ValueError(f"input_size must be at least 8 pixels, got {self.input_size}")
        if self.slice_axis is not None and self.slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1, 2 or null (automatic), got {self.slice_axis}")
        if not 0.0 <= self.keep_empty_fraction <= 1.0:
            raise ValueError(f"keep_empty_fraction must be between 0 and 1, got {self.keep_empty_fraction}")
        if not 0 <= self.context_slices <= 8:
            raise ValueError(f"context_slices must be between 0 and 8, got {self.context_slices}")
        if self.min_foreground_pixels < 1:
            raise ValueError(f"min_foreground_pixels must be at least 1, got {self.min_foreground_pixels}")
