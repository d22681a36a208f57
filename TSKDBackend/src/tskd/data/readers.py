"""Format-specific reading of images and label maps with SimpleITK.

:func:`tskd.data.image.read_image` is the public entry point; this module holds the details:
which files SimpleITK can open, colour pixels, multi-layer Slicer segmentations, DICOM series,
damaged files, and header-only reads (:func:`read_image_info`) for cheap dataset scans, with
:func:`parallel_map` to scan many files on a few threads.

The split: :mod:`tskd.data.image` is what the rest of the project uses (the ``Image`` and
``Geometry`` types, which suffixes are images, ``read_image``/``write_image``); this module sits
below it (on :mod:`tskd.data.image_types`, never importing it back) and is
what each file format needs when it is read (the header-only read and the label-table-aware
``read_sitk_image`` are used by the service's upload checks and by evaluation too).

Every failure a user can cause becomes a :class:`~tskd.errors.DataError` naming the file
("cannot be read as an image: <short reason>"), never a raw SimpleITK traceback.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import numpy as np
import SimpleITK as sitk

from tskd.data.dicom import series_files, series_ids
from tskd.data.image_types import RASTER_SUFFIXES, Geometry, Image, image_suffix
from tskd.data.seg_nrrd import (
    SEGMENT_KEY,
    merge_segment_layers,
    segments_from_metadata,
    write_seg_nrrd,
)
from tskd.errors import DataError

__all__ = [
    "ImageInfo",
    "parallel_map",
    "RASTER_SUFFIXES",
    "read_image_info",
    "read_sitk",
    "read_sitk_image",
    "to_scalar_image",
    "write_seg_nrrd",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: 2D formats without physical spacing (pixel size comes from a CSV or defaults to 1 mm).
_KINDS = ("image", "label")
_LUMINANCE = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights, as most image viewers use


@dataclass
class ImageInfo:
    """What a file's header says, read without decoding the pixels.

    Args:
        path: the file (or DICOM folder).
        geometry: size, spacing, origin and direction in ITK ``(i, j, k)`` order.
        components: values per pixel (1 = scalar, 3 = RGB, several layers for a seg.nrrd).
        pixel_type: SimpleITK's name of the pixel type, e.g. ``"32-bit float"``.
        metadata: the header's key/value pairs (``Segment0_Name`` ... for a seg.nrrd).
    """

    path: Path
    geometry: Geometry
    components: int
    pixel_type: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def dimension(self) -> int:
        return self.geometry.dimension

    @property
    def is_segmentation(self) -> bool:
        """True for a Slicer segmentation (segment fields in the header)."""
        return f"{SEGMENT_KEY}0_ID" in self.metadata or f"{SEGMENT_KEY}0_LabelValue" in self.metadata

    @property
    def segments(self) -> list[dict[str, Any]]:
        """Slicer segments declared in the header (empty for other files)."""
        return segments_from_metadata(self.metadata) if self.is_segmentation else []

    def channel_problem(self) -> str | None:
        """Why this file is not a usable single-channel 2D/3D image (None when it is)."""
        if self.dimension == 4:
            return (
                f"is a 4D image with {self.geometry.size[3]} volumes (e.g. several modalities or time "
                "points); only single-channel 3D images are supported. Save the channel to use as its "
                "own 3D file"
            )
        if self.dimension not in (2, 3):
            return f"has {self.dimension} dimensions; only 2D and 3D images are supported"
        if self.components > 1 and not self.is_segmentation and not (
            self.components in (2, 3, 4) and "integer" in self.pixel_type
        ):
            return (
                f"has {self.components} values per pixel ({self.pixel_type}); only single-channel "
                "images are supported"
            )
        return None


def read_image_info(path: str | Path) -> ImageInfo:
    """Read the header of an image file (or a DICOM series folder) without its pixels.

    A DICOM series has no single header, so its folder is read in full.

    Raises:
        DataError: missing, empty or unreadable file.
    """
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        image = _read_dicom_series(path)
        return ImageInfo(path, Geometry.from_sitk(image), image.GetNumberOfComponentsPerPixel(),
                         image.GetPixelIDTypeAsString(), {})
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _unreadable(path, exc) from None
    size = tuple(int(s) for s in reader.GetSize())
    geometry = Geometry(
        size=size,
        spacing=tuple(float(s) for s in reader.GetSpacing()),
        origin=tuple(float(o) for o in reader.GetOrigin()),
        direction=tuple(float(d) for d in reader.GetDirection()),
    )
    metadata = {key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()}
    components = int(reader.GetNumberOfComponents())
    geometry = _drop_trailing_unit_axis(geometry)
    return ImageInfo(path, geometry, components, sitk.GetPixelIDValueAsString(reader.GetPixelID()), metadata)


def read_sitk(path: str | Path) -> tuple[sitk.Image, dict[str, str]]:
    """Read a file or DICOM series folder as a SimpleITK image plus its header fields.

    Pixels are checked for completeness: truncated NIfTI files, which ITK silently pads with
    zeros, are reported as damaged.

    Raises:
        DataError: missing, empty, truncated or undecodable file.
    """
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return _read_dicom_series(path), {}
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise _unreadable(path, exc) from None
    metadata = {key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()}
    if image_suffix(path) in (".nii", ".nii.gz"):
        _check_nifti_complete(path, image)
    if image.GetDimension() == 4:
        image = _squeeze_4d(path, image)
    return image, metadata


def read_sitk_image(path: Path, kind: str = "image", *, label_table: Any = None, fold: Any = None) -> Image:
    """Read ``path`` as a scalar :class:`Image` (see :func:`tskd.data.image.read_image`).

    Args:
        path: image file or DICOM series folder.
        kind: ``"image"`` (colour becomes grey luminance) or ``"label"`` (colour masks are folded to
            integer labels, Slicer segment layers are merged, values must be integers).
        label_table: optional :class:`~tskd.data.labels.LabelTable` whose declared values and
            colours guide mask folding (``kind="label"`` only).
        fold: optional :class:`~tskd.data.folding.LabelFold` to apply instead of deciding from
            this file alone (used by datasets so that every mask is folded the same way).

    Raises:
        DataError: unreadable file, several channels that are not colour, non-integer labels,
            overlapping segments.
        ValueError: ``kind`` is not ``"image"`` or ``"label"``.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    path = Path(path)
    image, metadata = read_sitk(path)
    return to_scalar_image(image, metadata, path, kind, label_table=label_table, fold=fold)


def to_scalar_image(
    image: sitk.Image,
    metadata: dict[str, str],
    path: Path,
    kind: str,
    *,
    label_table: Any = None,
    fold: Any = None,
) -> Image:
    """Turn a SimpleITK image read from ``path`` into a scalar :class:`Image` of the given kind.

    Args:
        image: as read (scalar, colour, or a multi-layer segmentation).
        metadata: header fields read with it.
        path: the file, for messages.
        kind: ``"image"`` or ``"label"``.
        label_table / fold: see :func:`read_sitk_image`.
    """
    from tskd.data.folding import (
        fold_label_array,  # folding needs the label table module
    )

    components = image.GetNumberOfComponentsPerPixel()
    geometry = Geometry.from_sitk(image)
    array = sitk.GetArrayFromImage(image)
    info: dict[str, Any] = {}
    segmentation = f"{SEGMENT_KEY}0_ID" in metadata or f"{SEGMENT_KEY}0_LabelValue" in metadata
    if segmentation:
        segments = segments_from_metadata(metadata)
        if components > 1:
            array, segments = merge_segment_layers(array, segments, path)
        info["segments"] = [{k: v for k, v in s.items() if k != "layer"} for s in segments]
        if kind == "image":
            logger.debug("%s: segmentation read as an image", path)
    elif components > 1:
        if not _is_colour(image):
            raise DataError(
                f"{path}: has {components} values per pixel ({image.GetPixelIDTypeAsString()}); only "
                "single-channel images are supported. Save one channel per file (e.g. the first "
                "modality) and point tskd at those files"
            )
        if kind == "image":
            array = _luminance(array)
        else:
            array, fold_info = fold_label_array(array, channels=True, table=label_table, fold=fold)
            info.update(fold_info)
    elif kind == "label" and (image_suffix(path) in RASTER_SUFFIXES or fold is not None):
        array, fold_info = fold_label_array(array, channels=False, table=label_table, fold=fold)
        info.update(fold_info)
    if kind == "label":
        array = integer_labels(array, path)
    return Image(array=array, geometry=geometry, path=path, metadata=info)


def integer_labels(array: np.ndarray, path: Path) -> np.ndarray:
    """Label values as the smallest integer type that holds them.

    Raises:
        DataError: non-integer, negative or non-finite values.
    """
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise DataError(f"{path}: the label map contains NaN or infinite values; labels must be whole numbers")
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            bad = array[rounded != array].ravel()[:3]
            raise DataError(
                f"{path}: the label map has non-integer values (e.g. {', '.join(f'{v:g}' for v in bad)}); "
                "labels must be whole numbers 0, 1, 2, ... (was it resampled with linear interpolation?)"
            )
        array = rounded
    elif array.dtype.kind not in "iub":
        raise DataError(f"{path}: label pixels of type {array.dtype} are not supported; use integers")
    if array.size == 0:
        raise DataError(f"{path}: the label map has no voxels")
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise DataError(f"{path}: the label map has negative values (min {low}); labels must be 0, 1, 2, ...")
    for dtype in (np.uint8, np.uint16, np.int32, np.int64):
        if high <= np.iinfo(dtype).max:
            return array.astype(dtype, copy=False)
    return array.astype(np.int64)  # pragma: no cover - unreachable, int64 holds everything above


def _is_colour(image: sitk.Image) -> bool:
    components = image.GetNumberOfComponentsPerPixel()
    integer = image.GetPixelID() in (sitk.sitkVectorUInt8, sitk.sitkVectorUInt16, sitk.sitkVectorInt8,
                                     sitk.sitkVectorInt16)
    return integer and components in (2, 3, 4)


def _luminance(array: np.ndarray) -> np.ndarray:
    """Grey values from RGB(A) or grey+alpha pixels (last axis), keeping the integer type."""
    channels = array.shape[-1]
    if channels == 2:  # grey + alpha
        return np.ascontiguousarray(array[..., 0])
    grey = array[..., :3].astype(np.float32) @ _LUMINANCE.astype(np.float32)
    return np.clip(np.rint(grey), 0, np.iinfo(array.dtype).max).astype(array.dtype)


def _drop_trailing_unit_axis(geometry: Geometry) -> Geometry:
    """A 4D header with one time point describes a 3D image (as :func:`read_sitk` returns it)."""
    if geometry.dimension != 4 or geometry.size[3] != 1:
        return geometry
    direction = np.asarray(geometry.direction).reshape(4, 4)[:3, :3]
    return Geometry(geometry.size[:3], geometry.spacing[:3], geometry.origin[:3],
                    tuple(float(v) for v in direction.ravel()))


def _squeeze_4d(path: Path, image: sitk.Image) -> sitk.Image:
    size = image.GetSize()
    if size[3] != 1:
        raise DataError(
            f"{path}: is a 4D image with {size[3]} volumes (e.g. several modalities or time points); only "
            "single-channel 3D images are supported. Save the channel to use as its own 3D file"
        )
    return sitk.Extract(image, (size[0], size[1], size[2], 0), (0, 0, 0, 0))


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); replace it with the real image or remove it")


def _read_dicom_series(folder: Path) -> sitk.Image:
    try:
        series = series_ids(folder)
    except RuntimeError as exc:
        raise _unreadable(folder, exc) from None
    if not series:
        raise DataError(f"{folder}: no DICOM series found in this folder")
    if len(series) > 1:
        described = []
        for uid in series:
            count = len(series_files(folder, uid))
            described.append(f"{uid} ({count} files)")
        raise DataError(
            f"{folder}: holds {len(series)} DICOM series: {'; '.join(described)}. Put each series in its "
            "own folder and use one folder per case"
        )
    files = series_files(folder, series[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise _unreadable(folder, exc) from None
    if image.GetNumberOfComponentsPerPixel() > 1 and _is_colour(image):
        array = _luminance(sitk.GetArrayFromImage(image))
        grey = sitk.GetImageFromArray(array)
        grey.CopyInformation(image)
        image = grey
    return image


def _unreadable(path: Path, exc: Exception) -> DataError:
    return DataError(f"{path}: cannot be read as an image: {_short_reason(str(exc))}")


def _short_reason(message: str) -> str:
    """The useful line of a SimpleITK/ITK exception text."""
    if "Unable to determine ImageIO reader" in message:
        return "unknown or damaged file format"
    if "does not exist" in message:
        return "file not found"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "ERROR" in line:
            text = re.sub(r"^.*?ERROR:\s*", "", line)
            text = re.sub(r"^\w+\(0x[0-9a-fA-F]+\):\s*", "", text)
            if text:
                return text.rstrip(".:")
    return lines[-1] if lines else "unknown error"


def _check_nifti_complete(path: Path, image: sitk.Image) -> None:
    """ITK zero-fills a truncated NIfTI file without complaint; compare the byte count instead."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(352)
            if len(header) < 348:
                raise DataError(f"{path}: cannot be read as an image: the NIfTI header is incomplete")
            endian = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
            if struct.unpack(endian + "i", header[:4])[0] != 348:
                return  # NIfTI-2 or unusual header: trust ITK
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
            dims = struct.unpack(endian + "8h", header[40:56])
            voxels = int(np.prod([max(int(d), 1) for d in dims[1 : 1 + max(int(dims[0]), 1)]]))
            expected = vox_offset + voxels * max(bitpix, 8) // 8
            total = len(header)
            while chunk := stream.read(1 << 20):
                total += len(chunk)
    except (EOFError, OSError, gzip.BadGzipFile, struct.error) as exc:
        raise DataError(f"{path}: cannot be read as an image: damaged or truncated file ({exc})") from None
    if total < expected:
        raise DataError(
            f"{path}: cannot be read as an image: truncated file ({total} of {expected} bytes of pixel data "
            "and header); copy it again from its source"
        )


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on a few threads (SimpleITK and numpy release the GIL while
    decoding), results in input order.

    Args:
        fn: the function; exceptions propagate.
        items: inputs.
        workers: threads (default: up to 4, never more than the CPUs).
    """
    items = list(items)
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(items) < 4:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))
