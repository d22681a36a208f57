"""Checking an uploaded case with the data layer before it is accepted.

An image must be readable, single-channel, 2D or 3D like the project's other cases, and hold
finite numbers; a label must be an integer map that overlays its image voxel for voxel (Slicer's
cropped ``.seg.nrrd`` is pasted onto the image grid; segment names are matched to the project's
label names) and use only the label values the project declares. The accepted files are the ones
stored: ``.nii.gz`` images are kept byte for byte, other formats are converted to ``.nii.gz``;
labels are always rewritten on the image's grid.

Before any pixel is decoded, the file's header is read on its own: an image or label whose check
would take more memory than the server's ``--max-image-mb`` is refused (413; a few hundred
kilobytes of gzip can declare gigabytes of zeros), and so is a NRRD or MetaImage header that points
at a detached data file (which would make the server read a file of its own disk as the pixels).
The memory is the true peak, not the decoded size: a check holds ITK's buffer and numpy's copy at
once (:func:`check_peak_bytes`, measured factors). One upload is checked at a time, so the
server's memory for checks stays under ``--max-image-mb`` however many clients upload at once.
"""

from __future__ import annotations

import gzip
import logging
import re
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tskd.data.align import align_label_to_image
from tskd.data.image import Geometry, Image, image_suffix, read_image, write_image
from tskd.data.labels import LabelTable
from tskd.data.readers import read_image_info, read_sitk_image
from tskd.data.seg_nrrd import match_segments
from tskd.data.cases import message_without_path
from tskd.errors import DataError
from tskd.service.errors import PayloadTooLarge, Unprocessable
from tskd.service.uploads import ReceivedFile

__all__ = ["CheckedCase", "check_case", "check_upload_header", "check_peak_bytes", "declared_bytes", "read_upload_image"]

logger = logging.getLogger(__name__)

STORED_SUFFIX = ".nii.gz"
#: the default of ``ServiceSettings.max_image_mb``, in bytes (for callers that pass no limit)
DEFAULT_MAX_IMAGE_BYTES = 1536 << 20
#: peak memory of a check per decoded byte (see :func:`check_peak_bytes`)
IMAGE_PEAK_FACTOR = 2.3
LABEL_PEAK_FACTOR = 2.9
FLOAT_LABEL_PEAK_FACTOR = 3.6
#: one upload is decoded at a time, so the server's memory for checks stays under one check's peak
_CHECK_LOCK = threading.Lock()
_TEXT_HEADER_BYTES = 1 << 20  # NRRD / MetaImage text headers are read this far at most
_NIFTI_FLOATS = {16: "f4", 64: "f8", 32: "c8", 1792: "c16"}  # NIfTI datatype code -> numpy kind+size


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


def _megabytes(size: int) -> str:
    value = size / (1024 * 1024)
    return f"{value:,.0f} MiB" if value >= 1000 else f"{value:.3g} MiB"


def _component_bytes(pixel_type: str) -> int:
    """Bytes per value of a SimpleITK pixel type name (``"16-bit signed integer"``...); 8 if unknown."""
    found = re.search(r"(\d+)-bit", pixel_type)
    size = int(found.group(1)) // 8 if found else 8
    return max(size, 1) * (2 if "complex" in pixel_type else 1)


def _detached_data_file(upload: ReceivedFile) -> str | None:
    """The data file a NRRD (``data file:``) or MetaImage (``ElementDataFile``) header points at,
    when it is not the upload itself; None for other formats and for attached data."""
    suffix = image_suffix(upload.filename)
    if suffix not in (".nrrd", ".seg.nrrd", ".mha"):
        return None
    with open(upload.path, "rb") as stream:
        head = stream.read(_TEXT_HEADER_BYTES)
    if suffix == ".mha":
        found = re.search(rb"^[ \t]*ElementDataFile[ \t]*[=:][ \t]*([^\r\n]*)", head, re.MULTILINE | re.IGNORECASE)
        if found is None:
            return None if len(head) < _TEXT_HEADER_BYTES else "(none within the first MiB)"
        value = found.group(1).strip().decode("latin-1")
        return None if value.upper() == "LOCAL" else value
    end = re.search(rb"\r?\n\r?\n", head)
    text = head[: end.start()] if end else head
    found = re.search(rb"^[ \t]*data[ \t]?file[ \t]*:(?!=)[ \t]*([^\r\n]*)", text, re.MULTILINE | re.IGNORECASE)
    if found is not None:
        return found.group(1).strip().decode("latin-1") or "(empty)"
    if end is None and len(head) >= _TEXT_HEADER_BYTES:
        return "(the header does not end within its first MiB)"
    return None


def declared_bytes(upload: ReceivedFile) -> tuple[int, bool, str]:
    """What an upload's header declares: (decoded bytes, floating-point values?, a readable
    description ``"512 x 512 x 300 voxels of 16-bit signed integer"``), no pixel read.

    Raises:
        Unprocessable: unreadable header, or a NRRD / MetaImage header naming a detached data file.
    """
    detached = _detached_data_file(upload)
    if detached is not None:
        raise Unprocessable(
            f"'{upload.field}' file {upload.filename!r} has a header that points at a separate data file "
            f"({detached!r}); the server reads pixels only from the uploaded file itself. Save the image as "
            "one file (e.g. .nrrd or .mha with the data inside, or .nii.gz) and send that"
        )
    try:
        info = read_image_info(upload.path)
    except DataError as exc:
        raise _problem(upload, exc) from None
    size = tuple(int(s) for s in info.geometry.size)
    decoded = int(np.prod(size, dtype=object)) * max(info.components, 1) * _component_bytes(info.pixel_type)
    value_type = info.pixel_type.replace("vector of ", "")
    per_voxel = f"{info.components} x {value_type}" if info.components > 1 else value_type
    return decoded, "float" in info.pixel_type or "complex" in info.pixel_type, \
        f"{' x '.join(map(str, size))} voxels of {per_voxel}"


def check_peak_bytes(decoded: int, *, label: bool, floating: bool) -> int:
    """The memory that checking (and storing) a file declaring ``decoded`` bytes takes at its peak.

    The factors are measured (``benchmarks/bench_upload_memory.py``, docs/benchmarks.md): ITK's
    buffer and numpy's copy of it make an image about 2.0-2.1 times its decoded size; a label
    2.1-2.6 times (its copy in the smallest integer type, the sorted copy that lists its values);
    a floating-point label 3.3 times (the rounded copy it is compared with). Each has ~10 % added.
    """
    factor = (FLOAT_LABEL_PEAK_FACTOR if floating else LABEL_PEAK_FACTOR) if label else IMAGE_PEAK_FACTOR
    return int(decoded * factor)


def check_upload_header(upload: ReceivedFile, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> int:
    """Check what an uploaded image or label declares, reading its header only (no pixels).

    Returns:
        The memory checking it will take at its peak (:func:`check_peak_bytes`).

    Raises:
        PayloadTooLarge: checking the file would take more than ``max_image_bytes`` of memory.
        Unprocessable: unreadable header, or a NRRD / MetaImage header naming a detached data file.
    """
    decoded, floating, described = declared_bytes(upload)
    peak = check_peak_bytes(decoded, label=upload.field == "label", floating=floating)
    if peak > max_image_bytes:
        raise PayloadTooLarge(
            f"'{upload.field}' file {upload.filename!r} declares {described}, which would decode to "
            f"{_megabytes(decoded)}; checking it would take about {_megabytes(peak)} of memory: more than the "
            f"server's limit of {_megabytes(max_image_bytes)} per image; the server's --max-image-mb option sets it"
        )
    return peak


def _nifti_has_non_finite(path: Path) -> bool:
    """True when a floating-point NIfTI file holds NaN or infinite voxels in its raw data.

    ITK reads such voxels as 0 from NIfTI (not from other formats), so the check on the decoded
    array never sees them; the raw values are read here in chunks, as the header describes them.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(540)
            for endian in ("<", ">"):
                sizeof_hdr = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else 0
                if sizeof_hdr in (348, 540):
                    break
            else:
                return False  # not a NIfTI header ITK would accept either
            if sizeof_hdr == 348:
                dims = struct.unpack(endian + "8h", header[40:56])
                datatype = struct.unpack(endian + "h", header[70:72])[0]
                offset = int(struct.unpack(endian + "f", header[108:112])[0])
            else:  # NIfTI-2
                datatype = struct.unpack(endian + "h", header[12:14])[0]
                dims = struct.unpack(endian + "8q", header[16:80])
                offset = int(struct.unpack(endian + "q", header[168:176])[0])
            kind = _NIFTI_FLOATS.get(int(datatype))
            if kind is None:
                return False
            dtype = np.dtype(endian + kind)
            count = 1
            for extent in dims[1 : 1 + max(min(int(dims[0]), 7), 1)]:
                count *= max(int(extent), 1)
            stream.seek(max(offset, sizeof_hdr))
            remaining = count * dtype.itemsize
            while remaining > 0:
                data = stream.read(min(dtype.itemsize << 20, remaining))
                usable = len(data) - len(data) % dtype.itemsize
                if usable <= 0:
                    return False  # truncated: the reader reports it
                if not np.all(np.isfinite(np.frombuffer(data[:usable], dtype=dtype))):
                    return True
                remaining -= len(data)
    except (OSError, EOFError, zlib.error, struct.error, ValueError):
        return False  # a damaged file is reported by the reader
    return False


def read_upload_image(upload: ReceivedFile, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> Image:
    """Read an uploaded image and check that it can be segmented (2D/3D, finite values).

    Its header is checked first (:func:`check_upload_header`), so an oversized volume is never
    decoded; one upload is decoded at a time (other callers wait).

    Raises:
        PayloadTooLarge: checking the image would take more than ``max_image_bytes`` of memory.
        Unprocessable: unreadable, damaged, multi-channel, 4D or non-finite image.
    """
    with _CHECK_LOCK:
        return _read_upload_image(upload, max_image_bytes)


def _read_upload_image(upload: ReceivedFile, max_image_bytes: int) -> Image:
    check_upload_header(upload, max_image_bytes)
    try:
        image = read_image(upload.path, kind="image")
    except DataError as exc:
        raise _problem(upload, exc) from None
    if image.array.ndim not in (2, 3):
        raise Unprocessable(
            f"'{upload.field}' file {upload.filename!r} has {image.array.ndim} dimensions; send a 2D or 3D image"
        )
    non_finite = image.array.dtype.kind == "f" and not np.all(np.isfinite(image.array))
    if not non_finite and image_suffix(upload.filename) in (".nii", ".nii.gz"):
        non_finite = _nifti_has_non_finite(upload.path)
    if non_finite:
        raise Unprocessable(
            f"'{upload.field}' file {upload.filename!r} contains NaN or infinite values; fix the image first"
        )
    return image


def _read_label(upload: ReceivedFile, geometry: Geometry, table: LabelTable) -> Image:
    try:
        label = read_sitk_image(upload.path, "label", label_table=table)
        # only Slicer segmentations may be cropped to their segments' extent (as the data layer says)
        label = align_label_to_image(label, geometry, allow_subregion=bool(label.metadata.get("segments")))
    except DataError as exc:
        raise _problem(upload, exc) from None
    if image_suffix(upload.filename) in (".nii", ".nii.gz") and _nifti_has_non_finite(upload.path):
        raise Unprocessable(f"'{upload.field}' file {upload.filename!r} contains NaN or infinite values; "
                            "a label map holds whole label numbers only")
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
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> CheckedCase:
    """Check an uploaded image (and label) and prepare the files to store, next to the uploads.

    Args:
        image_upload: the received image file.
        label_upload: the received label file, or None for an unlabelled case.
        table: the project's labels; label maps may use only these values.
        dimension: 2 or 3 when the project already holds cases (a new one must match), else None.
        max_image_bytes: the most memory checking the image or the label may take (the server's
            ``--max-image-mb``; see :func:`check_peak_bytes`).

    Returns:
        The checked case; its files live in the upload folder until they are moved into place.

    Raises:
        PayloadTooLarge: checking the image or the label would take more than ``max_image_bytes``.
        Unprocessable: any check failed; the message names the file and what is wrong.
    """
    with _CHECK_LOCK:  # one case decoded at a time: the server's memory for checks stays under one peak
        return _check_case(image_upload, label_upload, table=table, dimension=dimension,
                           max_image_bytes=max_image_bytes)


def _check_case(image_upload: ReceivedFile, label_upload: ReceivedFile | None, *, table: LabelTable,
                dimension: int | None, max_image_bytes: int) -> CheckedCase:
    if label_upload is not None:
        check_upload_header(label_upload, max_image_bytes)  # before the image is decoded
    image = _read_upload_image(image_upload, max_image_bytes)
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
    geometry, pixel_type = image.geometry, str(image.array.dtype)
    del image  # the label needs the image's grid only: its pixels are not held while the label is decoded
    stored_label, values = None, None
    if label_upload is not None:
        label = _read_label(label_upload, geometry, table)
        values = [int(v) for v in np.unique(label.array)]
        undeclared = table.check_values(values)
        if undeclared:
            raise _undeclared(label_upload, undeclared, table, label.metadata.get("segments"))
        stored_label = write_image(Image(label.array, geometry), folder / f"stored-label{STORED_SUFFIX}")
    return CheckedCase(
        image_path=stored_image,
        label_path=stored_label,
        geometry=geometry,
        pixel_type=pixel_type,
        label_values=values,
        source_format=source,
    )
