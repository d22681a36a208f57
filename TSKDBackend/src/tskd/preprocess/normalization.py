"""Intensity normalisation: fitted once on the training set, applied identically at inference.

Three modes, described by a JSON-safe :class:`NormalizationSpec` that travels with the model:

``"ct"``
    Clip to a fixed window ``[lower, upper]`` (Hounsfield units), then z-score with a fixed
    dataset ``mean``/``std``. As in nnU-Net, the window is the 0.5-99.5 percentile range of the
    foreground (labelled) voxels of the training images, and mean/std are those of the clipped
    foreground voxels.
``"percentile"``
    Per image: clip to the image's own ``[p_low, p_high]`` percentiles, then z-score by the clipped
    image's own mean and std. The statistics come from the whole array passed in (the whole
    volume, before slicing), so inference on a volume repeats training exactly.
    :func:`resolve_normalization` computes them once and returns a *resolved* spec (the same mode
    with ``lower``/``upper``/``mean``/``std`` filled in) that normalises any part of the volume,
    slice by slice, exactly as the whole volume would be: inference never needs a float copy of
    the whole volume.
``"none"``
    Only a cast to float32.

Numpy-only, Python 3.9 syntax: this module is shipped into Slicer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional

import numpy as np

from .statistics import intensity_statistics

__all__ = [
    "MODES",
    "NormalizationSpec",
    "NormalizationFitter",
    "apply_normalization",
    "resolve_normalization",
    "fit_normalization",
    "looks_like_ct",
]

#: Normalisation modes a spec can have.
MODES = ("ct", "percentile", "none")
#: What ``modality`` may ask for when fitting.
FIT_MODALITIES = ("auto",) + MODES

_EPS = 1e-8


@dataclass
class NormalizationSpec:
    """How to turn raw intensities into model inputs.

    Args:
        mode: ``"ct"``, ``"percentile"`` or ``"none"``.
        lower: ``"ct"``: lower end of the clipping window (HU).
        upper: ``"ct"``: upper end of the clipping window (HU).
        mean: ``"ct"``: dataset mean subtracted after clipping.
        std: ``"ct"``: dataset standard deviation divided by after clipping (> 0).
        p_low: ``"percentile"``: lower clipping percentile of each image (0-100).
        p_high: ``"percentile"``: upper clipping percentile of each image (0-100).
        note: free text saying how the spec was obtained (shown in reports).

    A ``"percentile"`` spec leaves ``lower``/``upper``/``mean``/``std`` unset; a *resolved* one
    (from :func:`resolve_normalization`) has all four set to one image's statistics and applies
    them as fixed numbers. Only unresolved specs belong in a model package.
    """

    mode: str = "percentile"
    lower: Optional[float] = None
    upper: Optional[float] = None
    mean: Optional[float] = None
    std: Optional[float] = None
    p_low: float = 0.5
    p_high: float = 99.5
    note: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"normalization mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "ct":
            values = (self.lower, self.upper, self.mean, self.std)
            if any(v is None or not np.isfinite(v) for v in values):
                raise ValueError(f"'ct' normalization needs finite lower, upper, mean and std, got {values}")
            if not self.lower < self.upper:
                raise ValueError(f"'ct' window must have lower < upper, got [{self.lower}, {self.upper}]")
            if not self.std > 0:
                raise ValueError(f"'ct' normalization needs std > 0, got {self.std}")
        if self.mode == "percentile":
            values = (self.lower, self.upper, self.mean, self.std)
            if any(v is not None for v in values):
                if any(v is None or not np.isfinite(v) for v in values):
                    raise ValueError(
                        f"a resolved 'percentile' normalization needs finite lower, upper, mean and std "
                        f"(or none of them), got {values}"
                    )
                if not self.lower <= self.upper or not self.std > 0:
                    raise ValueError(
                        f"a resolved 'percentile' normalization needs lower <= upper and std > 0, got {values}"
                    )
        if not 0.0 <= self.p_low < self.p_high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= p_low < p_high <= 100, got {self.p_low}, {self.p_high}")

    @property
    def resolved(self) -> bool:
        """True when the spec holds fixed numbers (``"ct"``, ``"none"``, or a resolved ``"percentile"``)."""
        return self.mode != "percentile" or self.std is not None

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-safe dict (floats, strings, None)."""
        out = dataclasses.asdict(self)
        for key in ("lower", "upper", "mean", "std", "p_low", "p_high"):
            if out[key] is not None:
                out[key] = float(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> NormalizationSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ValueError(f"a normalization spec must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown normalization field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**data)


def resolve_normalization(array: np.ndarray, spec: NormalizationSpec) -> NormalizationSpec:
    """The fixed numbers that normalise ``array`` as ``spec`` says (statistics computed once).

    ``apply_normalization(part, resolve_normalization(volume, spec))`` equals
    ``apply_normalization(volume, spec)[part]`` exactly for any part (slice, block, box) of
    ``volume``: the normalisation is element-wise once the statistics are fixed.

    Args:
        array: the whole volume (any shape, real dtype); not copied to float (see
            :mod:`tskd.preprocess.statistics`).
        spec: the normalisation; ``"ct"``, ``"none"`` and resolved specs are returned unchanged.

    Returns:
        A resolved :class:`NormalizationSpec`.
    """
    if not isinstance(spec, NormalizationSpec):
        raise ValueError(f"spec must be a NormalizationSpec, got {type(spec).__name__}")
    if spec.resolved:
        return spec
    array = np.asarray(array)
    if array.size == 0:
        raise ValueError("cannot normalise an empty array")
    lower, upper, mean, std = intensity_statistics(array, spec.p_low, spec.p_high)
    return dataclasses.replace(
        spec,
        lower=lower,
        upper=upper,
        mean=mean,
        std=std if std > _EPS else 1.0,
        note=f"statistics of a {'x'.join(str(n) for n in array.shape)} array "
        f"(percentiles [{spec.p_low}, {spec.p_high}])",
    )


def apply_normalization(array: np.ndarray, spec: NormalizationSpec) -> np.ndarray:
    """Normalise ``array`` (any dimension) as ``spec`` says.

    Args:
        array: raw intensities, any shape and real dtype. For an unresolved ``"percentile"`` spec
            the statistics are computed over the whole array, so pass the whole volume, not single
            slices (or resolve the spec on the volume first: :func:`resolve_normalization`).
        spec: the normalisation to apply.

    Returns:
        float32 array of the same shape (a new array; the input is never modified).
    """
    if not isinstance(spec, NormalizationSpec):
        raise ValueError(f"spec must be a NormalizationSpec, got {type(spec).__name__}")
    if np.size(array) == 0:
        raise ValueError("cannot normalise an empty array")
    spec = resolve_normalization(array, spec)
    data = np.array(array, dtype=np.float32, copy=True)
    if spec.mode == "none":
        return data
    np.clip(data, np.float32(spec.lower), np.float32(spec.upper), out=data)
    data -= np.float32(spec.mean)
    data /= np.float32(spec.std)
    return data


def looks_like_ct(minimum: float, samples: np.ndarray) -> bool:
    """True when intensities look like Hounsfield units.

    CT images hold air near -1000 HU and nearly all voxels within [-1200, 4000]; a scanner's
    padding outside the field of view (-2048, -3024) may take up the rest.

    Args:
        minimum: the smallest intensity of the images.
        samples: a sample of the images' voxel values.
    """
    samples = np.asarray(samples, dtype=np.float64).ravel()
    if samples.size == 0 or minimum > -500:
        return False
    in_range = np.mean((samples >= -1200) & (samples <= 4000))
    return bool(in_range >= 0.6)


class NormalizationFitter:
    """Fits a :class:`NormalizationSpec` from images added one at a time (streaming).

    Each image contributes a fixed-size random sample of its voxels and of its foreground voxels
    (label > 0), drawn with a generator seeded by ``(seed, image number)``, so the result depends
    only on the images and their order.

    Args:
        modality: ``"auto"`` (CT when :func:`looks_like_ct`, else ``"percentile"``), ``"ct"``,
            ``"percentile"`` or ``"none"``.
        samples_per_image: voxels sampled per image (all voxels and foreground voxels each).
        seed: seed of the sampling.
        p_low: lower percentile for the ``"percentile"`` mode and for the CT window.
        p_high: upper percentile for the ``"percentile"`` mode and for the CT window.
    """

    def __init__(
        self,
        modality: str = "auto",
        *,
        samples_per_image: int = 20000,
        seed: int = 0,
        p_low: float = 0.5,
        p_high: float = 99.5,
    ) -> None:
        if modality not in FIT_MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(FIT_MODALITIES)}, got {modality!r}")
        if samples_per_image < 1:
            raise ValueError(f"samples_per_image must be positive, got {samples_per_image}")
        self.modality = modality
        self.samples_per_image = int(samples_per_image)
        self.seed = int(seed)
        self.p_low = float(p_low)
        self.p_high = float(p_high)
        self.count = 0
        self.minimum = np.inf
        self._all: List[np.ndarray] = []
        self._foreground: List[np.ndarray] = []

    def add(self, image: np.ndarray, label: Optional[np.ndarray] = None) -> None:
        """Add one image (any shape) and optionally its label map (same shape)."""
        image = np.asarray(image)
        if image.size == 0:
            raise ValueError("cannot fit a normalization on an empty image")
        if label is not None and np.shape(label) != image.shape:
            raise ValueError(f"label shape {np.shape(label)} differs from image shape {image.shape}")
        rng = np.random.default_rng([self.seed, self.count])
        self.count += 1
        flat = image.reshape(-1)
        self.minimum = min(self.minimum, float(flat.min()))
        n = min(self.samples_per_image, flat.size)
        self._all.append(flat[rng.choice(flat.size, size=n, replace=False)].astype(np.float64))
        if label is not None:
            foreground = np.flatnonzero(np.asarray(label).reshape(-1) > 0)
            if foreground.size:
                n = min(self.samples_per_image, foreground.size)
                picked = foreground[rng.choice(foreground.size, size=n, replace=False)]
                self._foreground.append(flat[picked].astype(np.float64))

    def result(self) -> NormalizationSpec:
        """The fitted spec."""
        if self.modality == "none":
            return NormalizationSpec(mode="none", note="no normalization requested")
        if self.count == 0 and self.modality != "percentile":
            raise ValueError("no images were added: cannot fit a normalization")
        all_samples = np.concatenate(self._all) if self._all else np.zeros(0)
        mode = self.modality
        if mode == "auto":
            mode = "ct" if looks_like_ct(self.minimum, all_samples) else "percentile"
        if mode == "percentile":
            return NormalizationSpec(
                mode="percentile",
                p_low=self.p_low,
                p_high=self.p_high,
                note=f"per-image percentiles [{self.p_low}, {self.p_high}] (chosen from {self.count} images)",
            )
        if self._foreground:
            values = np.concatenate(self._foreground)
            source = "foreground"
        else:
            values = all_samples
            source = "all (no labels given)"
        lower, upper = (float(v) for v in np.percentile(values, [self.p_low, self.p_high]))
        if upper <= lower:
            upper = lower + 1.0
        clipped = np.clip(values, lower, upper)
        std = float(clipped.std())
        return NormalizationSpec(
            mode="ct",
            lower=lower,
            upper=upper,
            mean=float(clipped.mean()),
            std=std if std > _EPS else 1.0,
            p_low=self.p_low,
            p_high=self.p_high,
            note=f"CT window from {values.size} {source} voxels of {self.count} images",
        )


def fit_normalization(
    images: Iterable[np.ndarray],
    labels: Optional[Iterable[Optional[np.ndarray]]] = None,
    *,
    modality: str = "auto",
    samples_per_image: int = 20000,
    seed: int = 0,
) -> NormalizationSpec:
    """Fit a normalisation on training images (deterministic).

    Args:
        images: intensity arrays (any shapes).
        labels: matching label maps (or None entries), used for the CT foreground statistics.
        modality: ``"auto"``, ``"ct"``, ``"percentile"`` or ``"none"``.
        samples_per_image: voxels sampled per image, for speed.
        seed: sampling seed.

    Returns:
        The :class:`NormalizationSpec` to use for training and inference.
    """
    fitter = NormalizationFitter(modality, samples_per_image=samples_per_image, seed=seed)
    images = list(images)
    label_list = list(labels) if labels is not None else [None] * len(images)
    if len(label_list) != len(images):
        raise ValueError(f"got {len(images)} images but {len(label_list)} labels")
    for image, label in zip(images, label_list):
        fitter.add(image, label)
    return fitter.result()
