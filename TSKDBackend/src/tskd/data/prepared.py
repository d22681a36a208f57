"""2D training slices on disk: normalised, resized, memory-mapped.

:func:`prepare_slices` turns volumes (and 2D images) into a folder of fixed-size 2D slices::

    prepared/
      images.npy   float16 (N, S, S)  normalised intensities
      labels.npy   uint8   (N, S, S)  class values; 255 everywhere for unlabelled slices
      neighbours.npy float16 (N, 2c, S, S)  only with ``context_slices`` c > 0: each slice's c
                   neighbours on either side, in slice order (see :class:`PreparedSpec`)
      index.json   per slice: case_id, slice_index, labelled, original 2D shape; per case: its
                   shape, spacing and slice range; plus the spec, the normalization spec, the slice
                   axis, the number of classes and a fingerprint

Each volume is normalised as a whole (exactly as inference will do it), cut along the slice axis
(:mod:`tskd.preprocess.slicing`) and each slice resized to ``S x S`` (bilinear for images, nearest
for labels, :mod:`tskd.preprocess.resize`). The work streams: two passes over the cases (one to
count slices, fit the normalization and fingerprint the data; one to write), holding one volume at
a time plus the output memory maps. The folder is written under a temporary name and renamed at
the end, so an interrupted run leaves nothing half-written; a complete folder whose fingerprint
matches (same spec, same cases, same voxels) is reused as it is.

The reading side, :class:`PreparedSlices` and :class:`SliceDataset`, lives in
:mod:`tskd.data.slice_dataset` and is re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple, Union

import numpy as np

from tskd.atomic import replace_folder
from tskd.data.config import PreparedSpec
from tskd.data.image import Image
from tskd.data.slice_dataset import (
    PREPARED_FORMAT,
    PREPARED_VERSION,
    UNLABELLED_VALUE,
    PreparedSlices,
    SliceDataset,
)
from tskd.errors import DataError
from tskd.preprocess import (
    NormalizationFitter,
    NormalizationSpec,
    apply_normalization,
    choose_slice_axis,
    context_positions,
    resize_bilinear,
    resize_nearest,
    slices_along,
)
from tskd.progress import ProgressEvent

__all__ = ["PreparedSpec", "PreparedSlices", "SliceDataset", "prepare_slices", "UNLABELLED_VALUE"]

logger = logging.getLogger(__name__)

_CHUNK = 32  # slices resized at once

CaseTuple = Tuple[str, Image, Optional[Image]]
Cases = Union[Iterable[CaseTuple], Callable[[], Iterable[CaseTuple]]]


@dataclass
class _Scan:
    """What the first pass learns: slice axis, kept slices per case, label range, fitters."""

    axis: Optional[int]
    records: list = field(default_factory=list)
    max_label: int = 0
    largest_side: int = 0
    labelled_fitter: Optional[NormalizationFitter] = None
    unlabelled_fitter: Optional[NormalizationFitter] = None

    @property
    def total(self) -> int:
        return sum(len(r["kept"]) for r in self.records)


def _passes(cases: Cases) -> Callable[[], Iterable[CaseTuple]]:
    """A function giving a fresh iteration over ``cases`` for each pass."""
    if callable(cases):
        return cases
    if isinstance(cases, Sequence):
        return lambda: cases
    materialised = list(cases)  # a one-shot iterator: keep its items for the second pass
    logger.debug("prepare_slices got a one-shot iterator; holding its %d cases in memory", len(materialised))
    return lambda: materialised


def _keep_empty(case_id: str, index: int, fraction: float) -> bool:
    digest = hashlib.blake2b(f"{case_id}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < fraction


def _check_case(item: Any, position: int) -> CaseTuple:
    if not isinstance(item, (tuple, list)) or len(item) != 3:
        raise ValueError(f"case {position}: expected (case_id, image, label or None), got {type(item).__name__}")
    case_id, image, label = item
    if not isinstance(case_id, str) or not case_id:
        raise ValueError(f"case {position}: case_id must be a non-empty string, got {case_id!r}")
    if not isinstance(image, Image) or (label is not None and not isinstance(label, Image)):
        raise ValueError(f"case '{case_id}': image and label must be tskd.data.image.Image objects")
    if image.dimension not in (2, 3):
        raise DataError(
            f"{image.path or case_id}: only 2D and 3D images can be sliced, got {image.dimension} dimensions"
        )
    if label is not None:
        if label.array.shape != image.array.shape:
            raise DataError(
                f"{label.path or case_id}: label shape {label.array.shape} differs from image shape "
                f"{image.array.shape}; resample the label onto its image"
            )
        label = _integer_label(label, case_id)
    return case_id, image, label


def _integer_label(label: Image, case_id: str) -> Image:
    """The label with an integer array; float labels are accepted when every value is a whole number."""
    array = label.array
    if np.issubdtype(array.dtype, np.integer):
        return label
    if np.issubdtype(array.dtype, np.bool_):
        return Image(array.astype(np.uint8), label.geometry, label.path, label.metadata)
    if np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all() and np.array_equal(array, np.round(array)):
        return Image(array.astype(np.int64), label.geometry, label.path, label.metadata)
    raise DataError(
        f"{label.path or case_id}: label values must be whole numbers (class values), got {array.dtype} "
        "with fractional values; is this an image rather than a label map?"
    )


def _digest(image: Image, label: Image | None) -> str:
    h = hashlib.blake2b(digest_size=16)
    for array in (image.array,) + ((label.array,) if label is not None else ()):
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).data)
    h.update(json.dumps(image.geometry.to_dict()).encode())
    return h.hexdigest()


def _scan(cases: Iterable[CaseTuple], spec: PreparedSpec, fit: bool) -> _Scan:
    """Pass 1: validate the cases, choose the axis, pick the kept slices, feed the fitters."""
    scan = _Scan(axis=spec.slice_axis)
    if fit:
        scan.labelled_fitter = NormalizationFitter(spec.normalization)
        scan.unlabelled_fitter = NormalizationFitter(spec.normalization)
    seen: set[str] = set()
    for position, item in enumerate(cases):
        case_id, image, label = _check_case(item, position)
        if case_id in seen:
            raise DataError(f"case id '{case_id}' appears twice; case ids must be unique")
        seen.add(case_id)
        if scan.axis is None and image.dimension == 3:
            scan.axis = choose_slice_axis(image.geometry.spacing, image.geometry.size)
            logger.info(
                "slicing along numpy axis %d (chosen from case '%s', spacing %s)",
                scan.axis, case_id, image.geometry.spacing,
            )
        axis = scan.axis if scan.axis is not None else 0
        along = slices_along(image.array, axis)
        count = along.shape[0]
        scan.largest_side = max(scan.largest_side, *along.shape[1:])
        kept = list(range(count))
        if label is not None:
            if int(label.array.min()) < 0:
                raise DataError(f"{label.path or case_id}: negative label values; labels must be 0..K-1")
            scan.max_label = max(scan.max_label, int(label.array.max()))
            foreground = (slices_along(label.array, axis) > 0).reshape(count, -1).sum(axis=1)
            kept = [
                i
                for i in range(count)
                if foreground[i] >= spec.min_foreground_pixels or _keep_empty(case_id, i, spec.keep_empty_fraction)
            ]
        if fit:
            fitter = scan.labelled_fitter if label is not None else scan.unlabelled_fitter
            fitter.add(image.array, None if label is None else label.array)
        scan.records.append(
            {
                "case_id": case_id,
                "labelled": label is not None,
                "shape": list(image.array.shape),
                "spacing": list(image.geometry.spacing),
                "num_slices": count,
                "kept": kept,
                "digest": _digest(image, label),
            }
        )
    return scan


def _write(
    cases: Iterable[CaseTuple],
    scan: _Scan,
    folder: Path,
    size: int,
    normalization: NormalizationSpec,
    progress: Callable[[ProgressEvent], None] | None,
    context: int = 0,
) -> list[dict[str, Any]]:
    """Pass 2: normalise, slice, resize and write into ``folder``; returns the per-slice records."""
    total, axis, records = scan.total, scan.axis, scan.records
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.float16, shape=(total, size, size))
    neighbours = None
    if context:
        neighbours = np.lib.format.open_memmap(folder / "neighbours.npy", mode="w+", dtype=np.float16,
                                               shape=(total, 2 * context, size, size))
    labels = np.lib.format.open_memmap(folder / "labels.npy", mode="w+", dtype=np.uint8, shape=(total, size, size))
    slice_records: list[dict[str, Any]] = []
    offset = 0
    seen = 0
    for position, item in enumerate(cases):
        case_id, image, label = _check_case(item, position)
        if position >= len(records) or records[position]["case_id"] != case_id:
            raise DataError(f"the cases changed between the two passes (case '{case_id}'); pass a list or a function")
        record = records[position]
        kept = np.asarray(record["kept"], dtype=np.int64)
        record["first"] = offset
        if kept.size:
            image_slices = slices_along(apply_normalization(image.array, normalization), axis)
            label_slices = slices_along(label.array, axis) if label is not None else None
            for start in range(0, kept.size, _CHUNK):
                chunk = kept[start : start + _CHUNK]
                stop = offset + chunk.size
                resized = resize_bilinear(image_slices[chunk], (size, size))
                images[offset:stop] = np.clip(resized, -65000.0, 65000.0).astype(np.float16)
                if neighbours is not None:
                    around = np.delete(context_positions(chunk, image_slices.shape[0], context), context, axis=1)
                    moved = resize_bilinear(image_slices[around.reshape(-1)], (size, size))
                    neighbours[offset:stop] = np.clip(moved, -65000.0, 65000.0).astype(np.float16).reshape(
                        chunk.size, 2 * context, size, size)
                if label_slices is not None:
                    labels[offset:stop] = resize_nearest(label_slices[chunk], (size, size)).astype(np.uint8)
                else:
                    labels[offset:stop] = UNLABELLED_VALUE
                offset = stop
            shape = [int(n) for n in image_slices.shape[1:]]
            slice_records.extend(
                {"case_id": case_id, "slice_index": int(i), "labelled": label is not None, "shape": shape} for i in kept
            )
            del image_slices, label_slices
        record["stop"] = offset
        seen += 1
        if progress is not None:
            progress(ProgressEvent(stage="prepare", step=seen, total=len(records)))
    if seen != len(records) or offset != total:
        raise DataError(f"the cases changed between the two passes ({seen} of {len(records)} cases seen)")
    images.flush()
    labels.flush()
    if neighbours is not None:
        neighbours.flush()
    return slice_records


def prepare_slices(
    cases: Cases,
    out_dir: str | Path,
    spec: PreparedSpec | None = None,
    *,
    normalization: NormalizationSpec | None = None,
    num_classes: int | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> PreparedSlices:
    """Write (or reuse) the prepared 2D slices of ``cases`` in ``out_dir``.

    Args:
        cases: ``(case_id, image, label or None)`` tuples: a list, or a function returning a fresh
            iterable (e.g. a generator reading files), so that only one volume is in memory at a
            time. A one-shot iterator is read into memory once. Labels hold class values
            ``0..K-1`` (0 = background) and share the image's shape.
        out_dir: the folder to create (replaced when its fingerprint differs).
        spec: slicing settings (defaults: :class:`PreparedSpec`).
        normalization: use this spec instead of fitting one on the labelled images (the
            unlabelled ones when there are none).
        num_classes: number of classes including background; default: largest label value + 1.
        progress: called with a :class:`~tskd.progress.ProgressEvent` (stage ``"prepare"``) after
            each case is written.

    Returns:
        The opened :class:`PreparedSlices`.

    Raises:
        DataError: shapes differ, labels are not whole numbers, a label value is too large, or no
            slice is left to write.
    """
    spec = spec or PreparedSpec()
    out_dir = Path(out_dir)
    fresh = _passes(cases)
    scan = _scan(fresh(), spec, fit=normalization is None)
    if not scan.records:
        raise DataError("no cases to prepare: the case list is empty")
    scan.axis = scan.axis if scan.axis is not None else 0
    context = spec.context_slices if any(len(r["shape"]) == 3 for r in scan.records) else 0
    if context != spec.context_slices:
        logger.info("2D images have no neighbouring slices: prepared without context_slices")
    if num_classes is None:
        num_classes = max(scan.max_label + 1, 2)
    elif scan.max_label >= num_classes:
        raise DataError(f"label value {scan.max_label} found but num_classes is {num_classes}; check the label maps")
    if num_classes > UNLABELLED_VALUE:
        raise DataError(f"{num_classes} classes cannot be stored in uint8 labels (at most {UNLABELLED_VALUE})")
    if scan.total == 0:
        raise DataError("no slices to write: every slice was empty and keep_empty_fraction dropped them all")

    identity = {
        "version": PREPARED_VERSION,
        "spec": _identity_spec(spec, context),
        "normalization": normalization.to_dict() if normalization else None,
        "num_classes": num_classes,
        "axis": scan.axis,
        "cases": [[r["case_id"], r["labelled"], r["digest"]] for r in scan.records],
    }
    size = spec.planned_size(scan.largest_side)
    if size != spec.input_size:
        logger.info("slices are written at %d pixels (largest in-plane side %d, fit_to_data, at most %d)",
                    size, scan.largest_side, spec.input_size)
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    if _fingerprint_of(out_dir) == fingerprint:
        logger.info("reusing prepared slices in %s (same spec and cases)", out_dir)
        return PreparedSlices(out_dir)

    if normalization is None:
        fitter = scan.labelled_fitter if scan.labelled_fitter.count else scan.unlabelled_fitter
        normalization = fitter.result()
    logger.info("normalization: %s (%s)", normalization.mode, normalization.note)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        slice_records = _write(fresh(), scan, tmp, size, normalization, progress, context)
        keys = ("case_id", "labelled", "shape", "spacing", "num_slices", "first", "stop")
        index = {
            "format": PREPARED_FORMAT,
            "version": PREPARED_VERSION,
            "fingerprint": fingerprint,
            "spec": spec.to_dict(),
            "normalization": normalization.to_dict(),
            "slice_axis": scan.axis,
            "input_size": size,
            "context_slices": context,
            "num_classes": num_classes,
            "num_slices": scan.total,
            "cases": [{k: r[k] for k in keys} for r in scan.records],
            "slices": slice_records,
        }
        (tmp / "index.json").write_text(json.dumps(index), encoding="utf-8")
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("prepared %d slices of %d cases in %s", scan.total, len(scan.records), out_dir)
    return PreparedSlices(out_dir)


def _identity_spec(spec: PreparedSpec, context: int) -> dict[str, Any]:
    """The spec as the fingerprint sees it: with the ``context_slices`` used (0 for 2D images), left
    out when 0, so that folders prepared before the setting existed keep their fingerprint (and
    their runs resume)."""
    out = spec.to_dict()
    out.pop("context_slices", None)
    if context:
        out["context_slices"] = context
    return out


def _fingerprint_of(folder: Path) -> str | None:
    try:
        index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not ((folder / "images.npy").is_file() and (folder / "labels.npy").is_file()):
        return None
    if index.get("context_slices") and not (folder / "neighbours.npy").is_file():
        return None
    return index.get("fingerprint")
