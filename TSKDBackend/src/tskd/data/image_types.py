"""The types and suffix rules of single images, without any reading or writing: :class:`Geometry`,
:class:`Image`, which file endings are images.

Arrays are in SimpleITK's numpy order: ``(k, j, i)`` for a volume, ``(j, i)`` for a 2D image (the
same order Slicer's ``arrayFromVolume`` uses). Geometry (spacing, origin, direction) is kept in
ITK's ``(i, j, k)`` order and travels with the array through every step, so that a prediction can
be written back aligned with its input.

This is the data layer's ground floor for images: :mod:`tskd.data.readers` (the formats) builds
on it, and :mod:`tskd.data.image` (the public face, ``read_image``/``write_image``) on both. Most
code imports these names from :mod:`tskd.data.image`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from tskd.data.dicom import series_ids

__all__ = [
    "Geometry",
    "Image",
    "IMAGE_SUFFIXES",
    "RASTER_SUFFIXES",
    "image_suffix",
    "is_image_path",
]


#: File name endings SimpleITK reads for us, longest first so ``.seg.nrrd`` wins over ``.nrrd``.
IMAGE_SUFFIXES = (
    ".seg.nrrd",
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".mha",
    ".mhd",
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".dcm",
)
#: 2D picture formats: colour read as grey, whole values 0..65535 only when written, no physical pixel size.
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def image_suffix(path: str | Path) -> str:
    """The recognised suffix of ``path`` (lower case), or ``""``."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def is_image_path(path: str | Path) -> bool:
    """True for a file with an image suffix, or a folder that holds a DICOM series."""
    path = Path(path)
    if path.is_dir():
        return bool(_dicom_series(path))
    return bool(image_suffix(path)) and not path.name.startswith(".")


@dataclass(frozen=True)
class Geometry:
    """Where an image's voxels lie in physical space (ITK conventions, LPS, millimetres).

    Args:
        size: voxels per axis in ``(i, j, k)`` order.
        spacing: voxel size per axis, ``(i, j, k)`` order.
        origin: physical position of the first voxel's centre.
        direction: the direction cosine matrix, row-major, ``dim * dim`` values.
    """

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def dimension(self) -> int:
        return len(self.size)

    @property
    def array_shape(self) -> tuple[int, ...]:
        """Shape of the matching numpy array (reversed size)."""
        return tuple(reversed(self.size))

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Geometry:
        return cls(
            size=tuple(int(s) for s in image.GetSize()),
            spacing=tuple(float(s) for s in image.GetSpacing()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    @classmethod
    def default(cls, array_shape: tuple[int, ...], spacing: tuple[float, ...] | None = None) -> Geometry:
        """Identity geometry for an array of the given numpy shape."""
        dim = len(array_shape)
        return cls(
            size=tuple(reversed([int(s) for s in array_shape])),
            spacing=tuple(spacing) if spacing else (1.0,) * dim,
            origin=(0.0,) * dim,
            direction=tuple(float(v) for v in np.eye(dim).ravel()),
        )

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Set spacing, origin and direction on a SimpleITK image of the same size."""
        if tuple(image.GetSize()) != self.size:
            raise ValueError(f"image size {image.GetSize()} differs from geometry size {self.size}")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def mismatch(self, other: Geometry, tolerance: float = 1e-3) -> str | None:
        """Why ``other`` does not overlay this geometry (None when it does).

        Spacing and origin are compared relative to the spacing; direction cosines absolutely.
        """
        if self.size != other.size:
            return f"size {other.size} differs from {self.size}"
        scale = max(max(self.spacing), 1e-6)
        if not np.allclose(self.spacing, other.spacing, rtol=tolerance, atol=tolerance * scale):
            return f"spacing {_fmt(other.spacing)} differs from {_fmt(self.spacing)}"
        if not np.allclose(self.origin, other.origin, atol=tolerance * scale * 10):
            return f"origin {_fmt(other.origin)} differs from {_fmt(self.origin)}"
        if not np.allclose(self.direction, other.direction, atol=tolerance):
            return f"direction {_fmt(other.direction)} differs from {_fmt(self.direction)}"
        return None

    def to_dict(self) -> dict[str, list]:
        return {
            "size": list(self.size),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        return cls(
            size=tuple(int(v) for v in data["size"]),
            spacing=tuple(float(v) for v in data["spacing"]),
            origin=tuple(float(v) for v in data["origin"]),
            direction=tuple(float(v) for v in data["direction"]),
        )


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


@dataclass
class Image:
    """A scalar image: numpy array in ``(k, j, i)`` / ``(j, i)`` order and its geometry.

    Args:
        array: pixel values; for label images an integer array of label values.
        geometry: physical placement; its ``array_shape`` equals ``array.shape``.
        path: the file it was read from, when it was read from one.
        metadata: extra information read with the file, e.g. ``segments`` for a ``.seg.nrrd``
            (a list of ``{"name", "label_value", "color"}``), ``rgb_folded`` for colour masks.
    """

    array: np.ndarray
    geometry: Geometry
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if tuple(self.array.shape) != self.geometry.array_shape:
            raise ValueError(
                f"array shape {self.array.shape} does not match geometry size {self.geometry.size}"
            )

    @property
    def dimension(self) -> int:
        return self.array.ndim

    def with_array(self, array: np.ndarray) -> Image:
        """Same geometry, new pixel values (e.g. a label map predicted for this image)."""
        return Image(array=array, geometry=self.geometry, path=None, metadata={})

    def to_sitk(self) -> sitk.Image:
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        return self.geometry.apply_to(image)

    @classmethod
    def from_sitk(cls, image: sitk.Image, path: Path | None = None, metadata: dict | None = None) -> Image:
        return cls(sitk.GetArrayFromImage(image), Geometry.from_sitk(image), path, dict(metadata or {}))


def _dicom_series(folder: Path) -> list[str]:
    try:
        return series_ids(folder)
    except RuntimeError:
        return []
