"""Images with their geometry, read and written with SimpleITK: the data layer's public face for
single images.

The types and suffix rules (:class:`Geometry`, :class:`Image`, ``image_suffix``...) live in
:mod:`tskd.data.image_types` and are re-exported here; the format details of reading live in
:mod:`tskd.data.readers`, DICOM series probing in :mod:`tskd.data.dicom`, Slicer segmentations
in :mod:`tskd.data.seg_nrrd`. Each sits on a floor below this module, none imports it back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tskd.atomic import atomic_write
from tskd.data.image_types import (
    IMAGE_SUFFIXES,
    RASTER_SUFFIXES,
    Geometry,
    Image,
    image_suffix,
    is_image_path,
)
from tskd.data.readers import read_sitk_image
from tskd.data.seg_nrrd import write_seg_nrrd
from tskd.errors import DataError

__all__ = [
    "Geometry",
    "Image",
    "IMAGE_SUFFIXES",
    "RASTER_SUFFIXES",
    "image_suffix",
    "is_image_path",
    "read_image",
    "write_image",
]


def read_image(path: str | Path, *, kind: str = "image") -> Image:
    """Read an image or label file (or a DICOM series folder) with its geometry.

    Args:
        path: a file with a suffix in :data:`IMAGE_SUFFIXES`, or a folder holding one DICOM series.
        kind: ``"image"`` turns colour pixels into grey (luminance); ``"label"`` folds colour masks to
            integer labels (see :func:`tskd.data.labels.fold_label_array`) and keeps integers exact.

    Raises:
        DataError: the file is missing, empty, not an image, or cannot be decoded.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); replace it with the real image or remove it")
    return read_sitk_image(path, kind=kind)


def write_image(image: Image, path: str | Path, *, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` atomically (a temporary file in the same folder, then a rename).

    The format follows the suffix. Returns the path written.
    """
    path = Path(path)
    suffix = image_suffix(path)
    if not suffix or suffix == ".dcm":
        raise DataError(f"{path}: cannot write this format; use .nii.gz, .nrrd, .seg.nrrd, .mha or .png")
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        if suffix == ".seg.nrrd":
            write_seg_nrrd(image, tmp)
        else:
            array = image.array
            if suffix in RASTER_SUFFIXES and array.dtype not in (np.uint8, np.uint16):
                if array.min() < 0 or array.max() > 65535 or not np.array_equal(array, np.rint(array)):
                    raise DataError(
                        f"{path}: only whole values 0..65535 can be stored in {suffix}; use .nii.gz or .nrrd"
                    )
                array = array.astype(np.uint16 if array.max() > 255 else np.uint8)
            sitk.WriteImage(Image(array, image.geometry).to_sitk(), str(tmp), useCompression=compress)

    if suffix == ".mhd":  # the header names its pixel file, so the pair is written in place, not renamed
        write(path)
        return path
    return atomic_write(path, write, suffix=f".tmp{suffix}")  # the temporary name keeps the format's suffix
