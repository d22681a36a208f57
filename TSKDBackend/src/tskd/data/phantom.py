"""Synthetic phantoms: small labelled volumes to test and demonstrate the whole pipeline.

A phantom is a "torso" (an elliptic cylinder of textured tissue in air) holding a few organ-like
structures, each a randomly deformed, rotated ellipsoid with its own label and intensity: a bright
``organ_a``, a dark ``organ_b``, a very bright ``lesion`` inside ``organ_a`` and optionally a
tube-like ``organ_c``. Intensities carry texture, a smooth multiplicative bias field (MR) and noise
(Rician for MR, Gaussian in Hounsfield units for CT). Labels are exact integers.

Everything is drawn from ``numpy.random.default_rng([seed, case_index])``, so a case is identical
on every run, and it is fast (a 64 x 64 x 32 case takes a few milliseconds). The structures are
elongated along ``k`` so that every class appears in most slices through the middle of the volume.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tskd.atomic import replace_folder
from tskd.config import ConfigBase
from tskd.data.image import Geometry, Image, write_image
from tskd.errors import DataError

__all__ = [
    "PhantomConfig",
    "STRUCTURES",
    "OBLIQUE_ROTATION_DEG",
    "OBLIQUE_ORIGIN",
    "phantom_labels",
    "make_phantom",
    "write_phantom_dataset",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Structure:
    name: str
    color: tuple[int, int, int]
    center: tuple[float, float, float]  # normalised (u_i, u_j, u_k) in [-1, 1]
    radii: tuple[float, float, float]  # normalised semi-axes (i, j, k)
    mr: float  # mean intensity, arbitrary MR units
    ct: float  # mean intensity, HU
    texture: float  # texture amplitude relative to PhantomConfig.texture


#: The structures in label order (label value = position + 1); ``structures=N`` uses the first N.
STRUCTURES = (
    _Structure("organ_a", (216, 101, 79), (-0.36, 0.02, 0.0), (0.40, 0.46, 0.90), 0.80, 140.0, 1.5),
    _Structure("organ_b", (128, 174, 128), (0.42, 0.08, 0.04), (0.30, 0.36, 0.82), 0.20, -80.0, 1.0),
    _Structure("lesion", (241, 214, 145), (-0.32, -0.02, 0.0), (0.20, 0.20, 0.66), 1.20, 260.0, 0.5),
    _Structure("organ_c", (111, 184, 210), (0.04, -0.45, 0.0), (0.12, 0.12, 5.0), 1.05, 420.0, 0.5),
)
_BODY = _Structure("body", (0, 0, 0), (0.0, 0.04, 0.0), (0.86, 0.70, 5.0), 0.45, 40.0, 1.0)
_AIR = (0.02, -1000.0)
_CT_SCALE = 400.0  # HU per MR intensity unit, for noise and texture

#: Direction (Euler angles about i, j, k) and origin that ``--oblique`` uses.
OBLIQUE_ROTATION_DEG = (12.0, -8.0, 30.0)
OBLIQUE_ORIGIN = (-95.5, 130.25, -40.0)


@dataclass
class PhantomConfig(ConfigBase):
    """How phantoms look.

    Args:
        size: voxels per axis in ITK order ``(i, j, k)``; two values make 2D phantoms.
        spacing: voxel size in mm, ``(i, j, k)`` order (only the first two are used in 2D).
        origin: physical position of the first voxel, ``(i, j, k)`` order.
        rotation_deg: Euler angles (degrees, about ``i``, ``j`` then ``k``) of the direction
            matrix; all zero gives the identity direction. In 2D only the ``k`` angle is used.
        structures: number of foreground classes (1-4): organ_a, organ_b, lesion, organ_c.
        modality: ``"mr"`` (float32 intensities around 0-1, Rician noise, bias field) or ``"ct"``
            (int16 Hounsfield units, Gaussian noise, no bias field).
        noise: noise standard deviation relative to the intensity scale (MR units; x400 HU for CT).
        bias: strength of the smooth multiplicative bias field (MR only; 0 disables it).
        texture: amplitude of the smooth intensity texture inside each region.
        deformation: how far shapes deviate from ellipsoids (0 = perfect ellipsoids).
        seed: base seed; case ``n`` is drawn from ``(seed, n)``.
    """

    size: tuple[int, ...] = (64, 64, 32)
    spacing: tuple[float, ...] = (1.0, 1.0, 2.5)
    origin: tuple[float, ...] = (0.0, 0.0, 0.0)
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    structures: int = 3
    modality: Literal["mr", "ct"] = "mr"
    noise: float = 0.05
    bias: float = 0.2
    texture: float = 0.05
    deformation: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.size) not in (2, 3) or any(int(s) < 8 for s in self.size):
            raise ValueError(f"size must be 2 or 3 values of at least 8 voxels, got {self.size}")
        if len(self.spacing) < len(self.size) or any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing needs {len(self.size)} positive values, got {self.spacing}")
        if len(self.origin) < len(self.size):
            raise ValueError(f"origin needs {len(self.size)} values, got {self.origin}")
        if not 1 <= self.structures <= len(STRUCTURES):
            raise ValueError(f"structures must be between 1 and {len(STRUCTURES)}, got {self.structures}")
        if min(self.noise, self.bias, self.texture, self.deformation) < 0:
            raise ValueError("noise, bias, texture and deformation must not be negative")

    @property
    def dimension(self) -> int:
        return len(self.size)


def phantom_labels(config: PhantomConfig | None = None) -> list[dict]:
    """The ``labels.json`` entries of phantoms made with ``config``: background, then each structure."""
    config = config or PhantomConfig()
    entries: list[dict] = [{"value": 0, "name": "background"}]
    for value, structure in enumerate(STRUCTURES[: config.structures], start=1):
        entries.append({"value": value, "name": structure.name, "color": list(structure.color)})
    return entries


def _rotation_matrix(angles_deg: tuple[float, ...], dimension: int) -> np.ndarray:
    ax, ay, az = (math.radians(a) for a in angles_deg)
    if dimension == 2:
        c, s = math.cos(az), math.sin(az)
        return np.array([[c, -s], [s, c]])
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _axis_coordinates(n: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)


def _smooth_noise(rng: np.random.Generator, coords: list[np.ndarray], points: int) -> np.ndarray:
    """A smooth random field on the grid ``coords`` (k, j, i), zero mean and unit std.

    Random values on a coarse lattice of ``points`` per axis, interpolated with Gaussian weights.
    """
    grids = [np.linspace(-1.2, 1.2, points) for _ in coords]
    width = 2.4 / (points - 1)
    field = rng.standard_normal((points,) * len(coords))
    for axis, (c, g) in enumerate(zip(coords, grids)):
        weights = np.exp(-0.5 * ((c[:, None] - g[None, :]) / width) ** 2)
        weights /= weights.sum(axis=1, keepdims=True)
        field = np.moveaxis(np.tensordot(weights, field, axes=(1, axis)), 0, axis)
    field -= field.mean()
    std = field.std()
    return field / std if std > 1e-12 else field


def _shape_mask(
    structure: _Structure,
    rng: np.random.Generator,
    u: tuple[np.ndarray, np.ndarray, np.ndarray],
    coords: list[np.ndarray],
    deformation: float,
) -> np.ndarray:
    """Boolean mask of a randomly jittered, rotated and deformed blob (``(k, j, i)`` grid)."""
    center = np.array(structure.center) + rng.uniform(-0.06, 0.06, 3) * np.array([1.0, 1.0, 0.5])
    radii = np.array(structure.radii) * rng.uniform(0.85, 1.15, 3)
    angle = rng.uniform(-0.35, 0.35)  # in-plane rotation, radians
    ui, uj, uk = (u[0] - center[0], u[1] - center[1], u[2] - center[2])
    ri = math.cos(angle) * ui + math.sin(angle) * uj
    rj = -math.sin(angle) * ui + math.cos(angle) * uj
    # Power 4 along k: nearly constant cross-sections through the middle slices, round ends.
    level = (ri / radii[0]) ** 2 + (rj / radii[1]) ** 2 + (uk / radii[2]) ** 4
    if deformation > 0:
        level = level + deformation * 0.5 * _smooth_noise(rng, coords, 5)
    return level < 1.0


def make_phantom(config: PhantomConfig | None = None, case_index: int = 0) -> tuple[Image, Image]:
    """One phantom case: its image and its label map.

    Args:
        config: how phantoms look (defaults: 64 x 64 x 32 voxels of 1 x 1 x 2.5 mm, 3 structures).
        case_index: which case of the series seeded by ``config.seed``.

    Returns:
        ``(image, label)`` with the same geometry; arrays in ``(k, j, i)`` order (``(j, i)`` in 2D);
        image float32 (MR) or int16 (CT), label uint8 with values ``0..config.structures``.
    """
    config = config or PhantomConfig()
    if case_index < 0:
        raise ValueError(f"case_index must not be negative, got {case_index}")
    rng = np.random.default_rng([int(config.seed), int(case_index)])
    dim = config.dimension
    size = [int(s) for s in config.size] + ([1] if dim == 2 else [])
    coords = [_axis_coordinates(size[2]), _axis_coordinates(size[1]), _axis_coordinates(size[0])]
    # Sparse grids ((k, 1, 1), (1, j, 1), (1, 1, i)): the blobs' in-plane terms are computed on one slice
    # and broadcast, the same numbers as on full grids at a fraction of the work (every run of `tskd demo`
    # and most tests make phantoms).
    uk, uj, ui = np.meshgrid(*coords, indexing="ij", sparse=True)
    u = (ui, uj, uk)

    label = np.zeros(tuple(len(c) for c in coords), dtype=np.uint8)
    body = _shape_mask(_BODY, rng, u, coords, config.deformation * 0.3)
    ct = config.modality == "ct"
    air_value = _AIR[1] if ct else _AIR[0]
    scale = _CT_SCALE if ct else 1.0
    texture = _smooth_noise(rng, coords, 9)
    mean = np.where(body, _BODY.ct if ct else _BODY.mr, air_value).astype(np.float64)
    amplitude = np.where(body, _BODY.texture, 0.0)
    for value, structure in enumerate(STRUCTURES[: config.structures], start=1):
        mask = _shape_mask(structure, rng, u, coords, config.deformation) & body
        level = (structure.ct if ct else structure.mr) + rng.uniform(-0.03, 0.03) * scale
        label[mask] = value
        mean[mask] = level
        amplitude[mask] = structure.texture
    intensity = mean + config.texture * scale * amplitude * texture
    if ct:
        intensity += rng.standard_normal(intensity.shape) * config.noise * scale
        array = np.clip(np.round(intensity), -1024, 3071).astype(np.int16)
    else:
        if config.bias > 0:
            intensity *= np.exp(config.bias * 0.5 * _smooth_noise(rng, coords, 3))
        real = intensity + rng.standard_normal(intensity.shape) * config.noise
        imaginary = rng.standard_normal(intensity.shape) * config.noise
        array = np.sqrt(real**2 + imaginary**2).astype(np.float32)  # Rician magnitude
    if dim == 2:
        array, label = array[0], label[0]

    geometry = Geometry(
        size=tuple(int(s) for s in config.size),
        spacing=tuple(float(s) for s in config.spacing[:dim]),
        origin=tuple(float(o) for o in config.origin[:dim]),
        direction=tuple(float(v) for v in _rotation_matrix(config.rotation_deg, dim).ravel()),
    )
    return Image(array=array, geometry=geometry), Image(array=label, geometry=geometry)


def write_phantom_dataset(
    out_dir: str | Path,
    *,
    cases: int = 8,
    seed: int | None = None,
    config: PhantomConfig | None = None,
    unlabelled: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a phantom dataset in the standard folder layout.

    ::

        out_dir/
          images/case_000.nii.gz ...      labelled cases' images
          labels/case_000.nii.gz ...      their label maps (same names)
          unlabelled/case_008.nii.gz ...  images without labels (when ``unlabelled > 0``)
          labels.json                     {"labels": [{"value", "name", "color"}, ...]}
          phantom.json                    the generator settings, for provenance

    The dataset is written into a hidden temporary folder next to ``out_dir`` and renamed at the
    end, so an interrupted run never leaves a half-written dataset.

    Args:
        out_dir: the dataset folder to create.
        cases: number of labelled cases (``case_000`` ...).
        seed: overrides ``config.seed`` when given.
        config: phantom settings (defaults: :class:`PhantomConfig`).
        unlabelled: number of extra cases written without labels, numbered after the labelled ones.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: ``out_dir`` exists, is not empty and ``overwrite`` is false.
    """
    if cases < 1:
        raise ValueError(f"cases must be at least 1, got {cases}")
    if unlabelled < 0:
        raise ValueError(f"unlabelled must not be negative, got {unlabelled}")
    config = config or PhantomConfig()
    if seed is not None:
        config = config.replace(seed=int(seed))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise DataError(
            f"{out_dir}: the folder already exists and is not empty; choose another output folder or overwrite it"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for index in range(cases + unlabelled):
            image, label = make_phantom(config, index)
            name = f"case_{index:03d}.nii.gz"
            if index < cases:
                write_image(image, tmp / "images" / name)
                write_image(label, tmp / "labels" / name)
            else:
                write_image(image, tmp / "unlabelled" / name)
        (tmp / "labels.json").write_text(json.dumps({"labels": phantom_labels(config)}, indent=1), encoding="utf-8")
        info = {"generator": "tskd.data.phantom", "cases": cases, "unlabelled": unlabelled, "config": config.to_dict()}
        (tmp / "phantom.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %d labelled and %d unlabelled phantom cases to %s", cases, unlabelled, out_dir)
    return out_dir
