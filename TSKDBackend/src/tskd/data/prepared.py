"""2D training slices on disk: normalised, resized, memory-mapped.

:func:`prepare_slices` turns volumes (and 2D images) into a folder of fixed-size 2D slices::

    prepared/
      images.npy   float16 (N, S, S)  normalised intensities
      labels.npy   uint8   (N, S, S)  class values; 255 everywhere for unlabelled slices
      index.json   per slice: case_id, slice_index, labelled, original 2D shape; plus the spec,
                   the normalization spec, the slice axis, the number of classes and a fingerprint

Each volume is normalised as a whole (exactly as inference will do it), cut along the slice axis
(:mod:`tskd.preprocess.slicing`) and each slice resized to ``S x S`` (bilinear for images, nearest
for labels, :mod:`tskd.preprocess.resize`). The work streams: two passes over the cases (one to
count slices, fit the normalization and fingerprint the data; one to write), holding one volume at
a time plus the output memory maps. The folder is written under a temporary name and renamed at
the end, so an interrupted run leaves nothing half-written; a complete folder whose fingerprint
matches (same spec, same cases, same voxels) is reused as it is.

:class:`PreparedSlices` opens such a folder (memory-mapped) and :class:`SliceDataset` serves its
slices to PyTorch, optionally augmented (see :mod:`tskd.data.augment` for the seeding rule).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from tskd.config import ConfigBase
from tskd.data.augment import sample_seed
from tskd.data.image import Image
from tskd.errors import DataError
from tskd.preprocess import (
    NormalizationFitter,
    NormalizationSpec,
    apply_normalization,
    choose_slice_axis,
    resize_bilinear,
    resize_nearest,
    slices_along,
)
from tskd.progress import ProgressEvent

__all__ = ["PreparedSpec", "PreparedSlices", "SliceDataset", "prepare_slices", "UNLABELLED_VALUE"]

logger = logging.getLogger(__name__)

#: Label value stored for every pixel of an unlabelled slice.
UNLABELLED_VALUE = 255
_FORMAT = "tskd-prepared"
_VERSION = 1
_CHUNK = 32  # slices resized at once

CaseTuple = Tuple[str, Image, Optional[Image]]
Cases = Union[Iterable[CaseTuple], Callable[[], Iterable[CaseTuple]]]


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
    """

    input_size: int = 256
    slice_axis: Optional[int] = None
    normalization: Literal["auto", "ct", "percentile", "none"] = "auto"
    keep_empty_fraction: float = 0.1
    min_foreground_pixels: int = 1

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ValueError(f"input_size must be at least 8 pixels, got {self.input_size}")
        if self.slice_axis is not None and self.slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1, 2 or null (automatic), got {self.slice_axis}")
        if not 0.0 <= self.keep_empty_fraction <= 1.0:
            raise ValueError(f"keep_empty_fraction must be between 0 and 1, got {self.keep_empty_fraction}")
        if self.min_foreground_pixels < 1:
            raise ValueError(f"min_foreground_pixels must be at least 1, got {self.min_foreground_pixels}")


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
    where = image.path or case_id
    if image.dimension not in (2, 3):
        raise DataError(f"{where}: only 2D and 3D images can be sliced, got {image.dimension} dimensions")
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
        normalization: use this spec instead of fitting one on the labelled images.
        num_classes: number of classes including background; default: largest label value + 1.
        progress: called with a :class:`~tskd.progress.ProgressEvent` (stage ``"prepare"``) after
            each case is written.

    Returns:
        The opened :class:`PreparedSlices`.

    Raises:
        DataError: shapes differ, labels are not integers, a label value is too large, or no slice
            is left to write.
    """
    spec = spec or PreparedSpec()
    out_dir = Path(out_dir)
    fresh = _passes(cases)

    # Pass 1: validate, choose the axis, count slices, fit the normalization, fingerprint.
    axis = spec.slice_axis
    fitters = {
        True: NormalizationFitter(spec.normalization),
        False: NormalizationFitter(spec.normalization),
    }
    records: list[dict[str, Any]] = []
    max_label = 0
    for position, item in enumerate(fresh()):
        case_id, image, label = _check_case(item, position)
        if any(r["case_id"] == case_id for r in records):
            raise DataError(f"case id '{case_id}' appears twice; case ids must be unique")
        if axis is None and image.dimension == 3:
            axis = choose_slice_axis(image.geometry.spacing, image.geometry.size)
            logger.info("slicing along numpy axis %d (chosen from case '%s', spacing %s)", axis, case_id, image.geometry.spacing)
        use_axis = axis if axis is not None else 0
        count = slices_along(image.array, use_axis).shape[0]
        if label is not None:
            label_slices = slices_along(label.array, use_axis)
            foreground = (label_slices > 0).reshape(count, -1).sum(axis=1)
            kept = [
                i
                for i in range(count)
                if foreground[i] >= spec.min_foreground_pixels or _keep_empty(case_id, i, spec.keep_empty_fraction)
            ]
            max_label = max(max_label, int(label.array.max()))
            if int(label.array.min()) < 0:
                raise DataError(f"{label.path or case_id}: negative label values; labels must be 0..K-1")
        else:
            kept = list(range(count))
        if normalization is None:
            fitters[label is not None].add(image.array, None if label is None else label.array)
        records.append(
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
    if not records:
        raise DataError("no cases to prepare: the case list is empty")
    axis = axis if axis is not None else 0
    if num_classes is None:
        num_classes = max(max_label + 1, 2)
    elif max_label >= num_classes:
        raise DataError(f"label value {max_label} found but num_classes is {num_classes}; check the label maps")
    if num_classes > UNLABELLED_VALUE:
        raise DataError(f"{num_classes} classes cannot be stored in uint8 labels (at most {UNLABELLED_VALUE})")
    total = sum(len(r["kept"]) for r in records)
    if total == 0:
        raise DataError("no slices to write: every slice was empty and keep_empty_fraction dropped them all")

    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "version": _VERSION,
                "spec": spec.to_dict(),
                "normalization": normalization.to_dict() if normalization else None,
                "num_classes": num_classes,
                "axis": axis,
                "cases": [[r["case_id"], r["labelled"], r["digest"]] for r in records],
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    if _fingerprint_of(out_dir) == fingerprint:
        logger.info("reusing prepared slices in %s (same spec and cases)", out_dir)
        return PreparedSlices(out_dir)

    if normalization is None:
        fitter = fitters[True] if fitters[True].count else fitters[False]
        normalization = fitter.result()
    logger.info("normalization: %s (%s)", normalization.mode, normalization.note)

    # Pass 2: normalise, slice, resize and write into a temporary folder.
    size = spec.input_size
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.float16, shape=(total, size, size))
        labels = np.lib.format.open_memmap(tmp / "labels.npy", mode="w+", dtype=np.uint8, shape=(total, size, size))
        slice_records: list[dict[str, Any]] = []
        offset = 0
        seen = 0
        for position, item in enumerate(fresh()):
            case_id, image, label = _check_case(item, position)
            if position >= len(records) or records[position]["case_id"] != case_id:
                raise DataError(f"the cases changed between the two passes (case '{case_id}'); pass a list or a function")
            record = records[position]
            kept = np.asarray(record["kept"], dtype=np.int64)
            record["first"] = offset
            if kept.size:
                normalised = apply_normalization(image.array, normalization)
                image_slices = slices_along(normalised, axis)
                label_slices = slices_along(label.array, axis) if label is not None else None
                for start in range(0, kept.size, _CHUNK):
                    chunk = kept[start : start + _CHUNK]
                    stop = offset + chunk.size
                    resized = resize_bilinear(image_slices[chunk], (size, size))
                    images[offset:stop] = np.clip(resized, -65000.0, 65000.0).astype(np.float16)
                    if label_slices is not None:
                        labels[offset:stop] = resize_nearest(label_slices[chunk], (size, size)).astype(np.uint8)
                    else:
                        labels[offset:stop] = UNLABELLED_VALUE
                    offset = stop
                h, w = image_slices.shape[1:]
                slice_records.extend(
                    {"case_id": case_id, "slice_index": int(i), "labelled": label is not None, "shape": [int(h), int(w)]}
                    for i in kept
                )
                del normalised, image_slices, label_slices
            record["stop"] = offset
            seen += 1
            if progress is not None:
                progress(ProgressEvent(stage="prepare", step=seen, total=len(records), message=""))
        if seen != len(records) or offset != total:
            raise DataError(f"the cases changed between the two passes ({seen} of {len(records)} cases seen)")
        images.flush()
        labels.flush()
        del images, labels
        index = {
            "format": _FORMAT,
            "version": _VERSION,
            "fingerprint": fingerprint,
            "spec": spec.to_dict(),
            "normalization": normalization.to_dict(),
            "slice_axis": axis,
            "input_size": size,
            "num_classes": num_classes,
            "num_slices": total,
            "cases": [
                {k: r[k] for k in ("case_id", "labelled", "shape", "spacing", "num_slices", "first", "stop")}
                for r in records
            ],
            "slices": slice_records,
        }
        (tmp / "index.json").write_text(json.dumps(index), encoding="utf-8")
        _replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("prepared %d slices of %d cases in %s", total, len(records), out_dir)
    return PreparedSlices(out_dir)


def _fingerprint_of(folder: Path) -> str | None:
    try:
        index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not ((folder / "images.npy").is_file() and (folder / "labels.npy").is_file()):
        return None
    return index.get("fingerprint")


def _replace_folder(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class PreparedSlices:
    """A prepared-slices folder, memory-mapped read-only.

    Args:
        folder: a folder written by :func:`prepare_slices`.

    Raises:
        DataError: the folder is missing or incomplete.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        index_path = self.folder / "index.json"
        try:
            self.index: dict[str, Any] = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{index_path}: not a readable prepared-slices index ({exc}); prepare the slices again") from exc
        if self.index.get("format") != _FORMAT:
            raise DataError(f"{index_path}: not a prepared-slices index; prepare the slices again")
        self._images: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._open()
        self._labelled = np.array([s["labelled"] for s in self.slices], dtype=bool)
        self._case_of = np.array([s["case_id"] for s in self.slices], dtype=object)

    def _open(self) -> None:
        shape = (len(self), self.input_size, self.input_size)
        for name in ("images", "labels"):
            path = self.folder / f"{name}.npy"
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: cannot be read ({exc}); prepare the slices again") from exc
            if array.shape != shape:
                raise DataError(f"{path}: shape {array.shape} does not match index.json {shape}; prepare the slices again")
            setattr(self, f"_{name}", array)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the memory maps
        state = dict(self.__dict__)
        state["_images"] = state["_labels"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return int(self.index["num_slices"])

    @property
    def images(self) -> np.ndarray:
        """float16 memory map ``(N, S, S)``."""
        return self._images

    @property
    def labels(self) -> np.ndarray:
        """uint8 memory map ``(N, S, S)``; 255 for unlabelled slices."""
        return self._labels

    @property
    def slices(self) -> list[dict[str, Any]]:
        """Per slice: ``case_id``, ``slice_index``, ``labelled``, ``shape`` (original ``[h, w]``)."""
        return self.index["slices"]

    @property
    def cases(self) -> list[dict[str, Any]]:
        """Per case: ``case_id``, ``labelled``, ``shape``, ``spacing``, ``num_slices``, ``first``, ``stop``."""
        return self.index["cases"]

    @property
    def case_ids(self) -> list[str]:
        return [c["case_id"] for c in self.cases]

    @property
    def num_classes(self) -> int:
        return int(self.index["num_classes"])

    @property
    def normalization(self) -> NormalizationSpec:
        return NormalizationSpec.from_dict(self.index["normalization"])

    @property
    def slice_axis(self) -> int:
        return int(self.index["slice_axis"])

    @property
    def input_size(self) -> int:
        return int(self.index["input_size"])

    @property
    def spec(self) -> PreparedSpec:
        return PreparedSpec.from_dict(self.index["spec"], source=str(self.folder / "index.json"))

    @property
    def fingerprint(self) -> str:
        return str(self.index["fingerprint"])

    def indices(self, case_ids: Iterable[str] | None = None, labelled: bool | None = None) -> np.ndarray:
        """Slice indices (int64, ascending) of the given cases and/or labelled state.

        Args:
            case_ids: keep slices of these cases only (None: all cases).
            labelled: True for labelled slices only, False for unlabelled only, None for both.
        """
        keep = np.ones(len(self), dtype=bool)
        if case_ids is not None:
            wanted = set(case_ids)
            unknown = wanted - set(self.case_ids)
            if unknown:
                raise ValueError(f"unknown case id(s) {sorted(unknown)}; prepared cases: {self.case_ids}")
            keep &= np.isin(self._case_of, list(wanted))
        if labelled is not None:
            keep &= self._labelled == bool(labelled)
        return np.flatnonzero(keep).astype(np.int64)

    def is_labelled(self, index: int) -> bool:
        return bool(self._labelled[index])


class SliceDataset(torch.utils.data.Dataset):
    """Prepared slices as a PyTorch dataset, optionally augmented.

    An item is ``{"image": float32 (1, S, S), "label": int64 (S, S), "labelled": bool tensor,
    "index": int}`` where ``index`` is the slice's index in the prepared folder. Unlabelled slices
    have an all-zero label and ``labelled`` False.

    Every augmentation is drawn from one per-sample seed, so a resumed run sees exactly the samples
    an uninterrupted run would have seen. Three ways to give that seed:

    * :meth:`sample` ``(position, seed)`` uses the caller's seed as it is. This is what
      :class:`tskd.engine.DrawDataset` calls, with the seed of each draw of the engine's
      ``StepBatchSampler`` (a function of run seed and draw number): the engine's way.
    * ``dataset[(position, epoch)]``: the seed is ``sample_seed(seed, epoch, index)``.
    * ``dataset[position]``: the same with the epoch last given to :meth:`set_epoch` (call it
      before each epoch; DataLoader workers must not be persistent, so they copy the new epoch).

    Args:
        prepared: the :class:`PreparedSlices` (or its folder).
        indices: which prepared slices this dataset serves (position ``p`` serves ``indices[p]``);
            None serves all.
        augment: a callable ``augment(sample, rng_seed) -> sample`` (see
            :func:`tskd.data.augment.build_augmentation`), or None.
        seed: the run's seed, mixed into every augmentation seed.
    """

    def __init__(
        self,
        prepared: PreparedSlices | str | Path,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        augment: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        self.prepared = prepared if isinstance(prepared, PreparedSlices) else PreparedSlices(prepared)
        if indices is None:
            indices = np.arange(len(self.prepared))
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(self.prepared)):
            raise ValueError(f"indices must lie in [0, {len(self.prepared)}), got {self.indices.min()}..{self.indices.max()}")
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` in the augmentation seeds of the following items."""
        if epoch < 0:
            raise ValueError(f"epoch must not be negative, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(item, (tuple, list)):
            position, epoch = int(item[0]), int(item[1])
        else:
            position, epoch = int(item), self.epoch
        index = int(self.indices[position])
        return self._item(index, sample_seed(self.seed, epoch, index))

    def sample(self, position: int, seed: int) -> dict[str, Any]:
        """The item at ``position``, augmented with exactly the random numbers of ``seed``.

        Args:
            position: position in this dataset (``0..len-1``).
            seed: augmentation seed in ``[0, 2**32)``, e.g. the engine's per-draw seed.
        """
        return self._item(int(self.indices[int(position)]), int(seed))

    def _item(self, index: int, seed: int) -> dict[str, Any]:
        labelled = self.prepared.is_labelled(index)
        image = torch.from_numpy(np.asarray(self.prepared.images[index], dtype=np.float32)[None])
        if labelled:
            label = torch.from_numpy(np.asarray(self.prepared.labels[index], dtype=np.int64))
        else:
            label = torch.zeros(image.shape[1:], dtype=torch.int64)
        sample: dict[str, Any] = {"image": image, "label": label, "labelled": torch.tensor(labelled), "index": index}
        if self.augment is not None:
            sample = self.augment(sample, seed)
        return sample
