"""Checking an uploaded case with the data layer before it is accepted.

An image must be readable, single-channel, 2D or 3D like the project's other cases, and hold
finite numbers; a label must be an integer map that overlays its image voxel for voxel (Slicer's
cropped ``.seg.nrrd`` is pasted onto the image grid; segment names are matched to the project's
label names) and use only the label values the project declares. The accepted files are the ones
stored: ``.nii.gz`` images are kept byte for byte, other formats are converted to ``.nii.gz``;
labels are always rewritten on the image's grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tskd.data.align import align_label_to_image
from tskd.data.image import Geometry, Image, image_suffix, read_image, write_image
from tskd.data.labels import LabelTable
from tskd.data.readers import read_sitk_image
from tskd.data.seg_nrrd import match_segments
from tskd.data.util import message_without_path
from tskd.errors import DataError
from tskd.service.errors import Unprocessable
from tskd.service.uploads import ReceivedFile

__all__ = ["CheckedCase", "check_case", "read_upload_image"]

logger = logging.getLogger(__name__)

STORED_SUFFIX = ".nii.gz"


@dataclass
class CheckedCase:
    """An uploaded case that passed every check, ready to be moved into the dataset.

    Args:
        image_path: the image file to store (``.nii.gz``).
        label_path: the label file to store (``.nii.gz``), or None.
        geometry: the image's geometry.
        pixel_type: numpy dtype name of the image's pixels.
        label_values: label values present in the label map (None without a label).
        source_format: the uploaded image's file ending.
    """

    image_path: Path
    label_path: Path | None
    geometry: Geometry
    pixel_type: str
    label_values: list[int] | None
    source_format: str


def _problem(upload: ReceivedFile, exc: DataError) -> Unprocessable:
    """The data layer's message with the temporary path replaced by the client's file name."""
    text = message_without_path(str(exc), upload.path).replace(str(upload.path), upload.filename)
    return Unprocessable(f"'{upload.field}' file {upload.filename!r}: {text}")


def read_upload_image(upload: ReceivedFile) -> Image:
    """Read an uploaded image and check that it can be segmented (2D/3D, finite values).

    Raises:
        Unprocessable: unreadable, damaged, multi-channel, 4D or non-finite image.
    """
    try:
        image = read_image(upload.path, kind="image")
    except DataError as exc:
        raise _problem(upload, exc) from None
    if image.array.ndim not in (2, 3):
        raise Unprocessable(
            f"'{upload.field}' file {upload.filename!r} has {image.array.ndim} dimensions; send a 2D or 3D image"
        )
    if image.array.dtype.kind == "f" and not np.all(np.isfinite(image.array)):
        raise Unprocessable(
            f"'{upload.field}' file {upload.filename!r} contains NaN or infinite values; fix the image first"
        )
    return image


def _read_label(upload: ReceivedFile, image: Image, table: LabelTable) -> Image:
    try:
        label = read_sitk_image(upload.path, "label", label_table=table)
        # only Slicer segmentations may be cropped to their segments' extent (as the data layer says)
        label = align_label_to_image(label, image.geometry, allow_subregion=bool(label.metadata.get("segments")))
    except DataError as exc:
        raise _problem(upload, exc) from None
    segments = label.metadata.get("segments")
    if segments:  # Slicer numbers segments per file: match them to the project's labels by name
        _, remaps = match_segments({"case": segments}, declared=table)
        remap = remaps.get("case")
        if remap:
            array = label.array.copy()
            for old, new in remap.items():
                array[label.array == old] = new
            label = Image(array, label.geometry, label.path, label.metadata)
    return label


def _undeclared(upload: ReceivedFile, values: list[int], table: LabelTable, segments: list | None) -> Unprocessable:
    declared = ", ".join(f"{label.value} {label.name}" for label in table)
    names = ""
    if segments:
        unknown = [s["name"] for s in segments if table.value_of(str(s["name"])) is None]
        if unknown:
            names = f" (segments {', '.join(repr(n) for n in unknown)} match no project label name)"
    return Unprocessable(
        f"'{upload.field}' file {upload.filename!r} uses label values {values} that the project does not declare"
        f"{names}; the project's labels are: {declared}. Add the labels to the project or fix the label map"
    )


def check_case(
    image_upload: ReceivedFile,
    label_upload: ReceivedFile | None,
    *,
    table: LabelTable,
    dimension: int | None,
) -> CheckedCase:
    """Check an uploaded image (and label) and prepare the files to store, next to the uploads.

    Args:
        image_upload: the received image file.
        label_upload: the received label file, or None for an unlabelled case.
        table: the project's labels; label maps may use only these values.
        dimension: 2 or 3 when the project already holds cases (a new one must match), else None.

    Returns:
        The checked case; its files live in the upload folder until they are moved into place.

    Raises:
        Unprocessable: any check failed; the message names the file and what is wrong.
    """
    image = read_upload_image(image_upload)
    if dimension is not None and image.array.ndim != dimension:
        raise Unprocessable(
            f"'image' file {image_upload.filename!r} is {image.array.ndim}D but the project's cases are "
            f"{dimension}D; a project holds either 2D or 3D images"
        )
    folder = image_upload.path.parent
    source = image_suffix(image_upload.filename)
    if source == STORED_SUFFIX:
        stored_image = image_upload.path
    else:
        stored_image = write_image(image, folder / f"stored-image{STORED_SUFFIX}")
    stored_label, values = None, None
    if label_upload is not None:
        label = _read_label(label_upload, image, table)
        values = [int(v) for v in np.unique(label.array)]
        undeclared = table.check_values(values)
        if undeclared:
            raise _undeclared(label_upload, undeclared, table, label.metadata.get("segments"))
        stored_label = write_image(Image(label.array, image.geometry), folder / f"stored-label{STORED_SUFFIX}")
    return CheckedCase(
        image_path=stored_image,
        label_path=stored_label,
        geometry=image.geometry,
        pixel_type=str(image.array.dtype),
        label_values=values,
        source_format=source,
    )
