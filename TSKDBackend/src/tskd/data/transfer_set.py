"""The transfer set on disk: images with the teacher's soft labels and where each came from.

Layout of the folder::

    meta.json          image size, number of classes, soft-label dtype
    index.jsonl        one line per item, in item order: shard, row, provenance
    rejected.jsonl     synthetic seeds the quality gate dropped (so a resumed run skips them)
    shards/000000/     images.npy   float16 (n, S, S)     normalised intensities
                       soft.npy     float16 (n, K, S, S)  teacher probabilities (or uint8, see below)
                       labels.npy   uint8   (n, S, S)     hard label, 255 = none
                       items.json   the shard's provenance lines (for crash recovery)

Items are buffered and written a shard at a time (``shard_size`` items, or fewer on ``flush``):
the shard's files go into a temporary folder that is renamed into place, and only then are its
lines appended to ``index.jsonl``. ``index.jsonl`` is the list of items: a reader never sees a
half-written shard, and a crash loses at most the items not yet flushed. When a writer opens an
existing folder it finishes what a crash interrupted (drops temporary folders and a torn last
line, indexes a renamed shard whose lines were not appended) and reports which synthetic seeds
are already stored or rejected, so generation continues where it stopped.

Soft labels are stored as float16 probabilities by default (absolute error at most 2.5e-4 per
value). ``soft_dtype="uint8"`` halves the size: probabilities are rounded to multiples of 1/255
(error at most 2e-3) and renormalised to sum to one per pixel when read.

Provenance fields: ``source`` (``real_labelled``, ``real_unlabelled`` or ``synthetic``), ``seed``
and ``model`` (the diffusion model's id) for synthetic items, ``case_id`` and ``slice_index`` for
real ones.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tskd.errors import DataError
from tskd.data import transfer_set_files as files
from tskd.data.transfer_set_files import NO_LABEL, SOURCES
from tskd.data.transfer_set_writer import TransferSetWriter

__all__ = ["TransferSet", "TransferSetWriter", "TransferSetDataset", "TransferItem", "SOURCES", "NO_LABEL"]

logger = logging.getLogger(__name__)


@dataclass
class TransferItem:
    """One item, decoded.

    Args:
        image: float32 ``(S, S)`` normalised intensities.
        soft: float32 ``(K, S, S)`` teacher probabilities.
        label: int64 ``(S, S)`` hard label, or ``None``.
        provenance: the item's index line (``source``, ``seed``, ``model``, ``case_id``, ``slice_index``).
    """

    image: np.ndarray
    soft: np.ndarray
    label: np.ndarray | None
    provenance: dict[str, Any]



class TransferSet:
    """Reads a transfer set folder; shards are memory-mapped on first use, never all at once.

    Args:
        folder: the transfer set folder.
        max_open_shards: shards kept memory-mapped at a time (least recently used are closed).

    Raises:
        DataError: the folder is not a transfer set.
    """

    def __init__(self, folder: str | Path, *, max_open_shards: int = 16) -> None:
        self.folder = Path(folder)
        meta = files.read_meta(self.folder)
        self.image_size = int(meta["image_size"])
        self.num_classes = int(meta["num_classes"])
        self.soft_dtype = str(meta["soft_dtype"])
        self._lines = files.read_jsonl(self.folder / "index.jsonl", repair=False)
        self.max_open_shards = max(1, int(max_open_shards))
        self._open: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self.shards_opened = 0  # how many times a shard was memory-mapped (for tests and tuning)

    def __len__(self) -> int:
        return len(self._lines)

    def provenance(self, index: int) -> dict[str, Any]:
        """The index line of item ``index`` (a copy)."""
        return dict(self._lines[self._check(index)])

    def counts(self) -> dict[str, int]:
        """Items per source."""
        counts = Counter(line["source"] for line in self._lines)
        return {source: counts.get(source, 0) for source in SOURCES}

    def indices(self, source: str) -> list[int]:
        """Indices of the items from ``source``."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        return [i for i, line in enumerate(self._lines) if line["source"] == source]

    def seeds(self) -> list[int]:
        """Seeds of the synthetic items, in item order."""
        return [int(line["seed"]) for line in self._lines if line["source"] == "synthetic"]

    def __getitem__(self, index: int) -> TransferItem:
        line = self._lines[self._check(index)]
        arrays = self._shard(int(line["shard"]))
        row = int(line["row"])
        label = np.asarray(arrays["labels"][row])
        return TransferItem(
            image=np.asarray(arrays["images"][row], dtype=np.float32),
            soft=self._decode_soft(np.asarray(arrays["soft"][row])),
            label=None if (label == NO_LABEL).all() else label.astype(np.int64),
            provenance=dict(line),
        )

    def dataset(self) -> TransferSetDataset:
        """A torch ``Dataset`` view (see :class:`TransferSetDataset`)."""
        return TransferSetDataset(self)

    def close(self) -> None:
        """Drops the memory maps."""
        self._open.clear()

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps would be pickled as whole arrays: a DataLoader worker re-opens what it needs.
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()
        return state

    def _check(self, index: int) -> int:
        n = len(self._lines)
        if not -n <= index < n:
            raise IndexError(f"item {index} out of range for a transfer set of {n} items")
        return index % n

    def _decode_soft(self, soft: np.ndarray) -> np.ndarray:
        if self.soft_dtype == "uint8":
            probs = soft.astype(np.float32) / 255.0
            return probs / np.maximum(probs.sum(axis=0, keepdims=True), 1e-6)
        return soft.astype(np.float32)

    def _shard(self, shard: int) -> dict[str, np.ndarray]:
        arrays = self._open.get(shard)
        if arrays is not None:
            self._open.move_to_end(shard)
            return arrays
        folder = self.folder / "shards" / f"{shard:06d}"
        try:
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                      for name in ("images", "soft", "labels")}
        except (OSError, ValueError) as exc:
            raise DataError(f"{folder}: transfer set shard unreadable ({exc}); delete {self.folder} to rebuild it") from exc
        self.shards_opened += 1
        self._open[shard] = arrays
        while len(self._open) > self.max_open_shards:
            self._open.popitem(last=False)
        return arrays


class TransferSetDataset(Dataset):
    """Torch view of a :class:`TransferSet`.

    Each item is ``{"image": (1,S,S) float32 (see ``prepared``), "soft": (K,S,S) float32, "label": (S,S) int64,
    "labelled": bool, "index": int}``; ``label`` is all zeros when the item has no hard label
    (``labelled`` is then false).

    Args:
        transfer_set: the transfer set, or its folder.
        indices: the items to expose (all by default), e.g. ``transfer_set.indices("synthetic")``.
        prepared: the run's prepared slices. When they hold neighbouring slices (``context_slices``
            c > 0), ``image`` is the student's stacked input ``(2c + 1, S, S)``: a real slice between
            its prepared neighbours, a synthetic image (which has none) repeated ``2c + 1`` times.
    """

    def __init__(self, transfer_set: TransferSet | str | Path, indices: Sequence[int] | None = None,
                 *, prepared: Any = None) -> None:
        self.transfer_set = transfer_set if isinstance(transfer_set, TransferSet) else TransferSet(transfer_set)
        self.indices = list(range(len(self.transfer_set))) if indices is None else [int(i) for i in indices]
        self.prepared = prepared if prepared is not None and prepared.context_slices else None
        self._where: dict[tuple[str, int], int] = {}
        if self.prepared is not None:
            self._where = {(s["case_id"], int(s["slice_index"])): i for i, s in enumerate(self.prepared.slices)}

    def _image(self, item: TransferItem) -> np.ndarray:
        if self.prepared is None:
            return item.image[None].copy()
        index = item.provenance.get("slice_index")  # None for a synthetic image
        where = None if index is None else self._where.get((item.provenance.get("case_id"), int(index)))
        if where is None:
            return np.repeat(item.image[None], self.prepared.channels, axis=0).astype(np.float32)
        return self.prepared.stacked([where])[0]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        index = self.indices[position]
        item = self.transfer_set[index]
        labelled = item.label is not None
        label = item.label if labelled else np.zeros(item.image.shape, dtype=np.int64)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(self._image(item), dtype=np.float32)),
            "soft": torch.from_numpy(item.soft.copy()),
            "label": torch.from_numpy(label.copy()),
            "labelled": labelled,
            "index": index,
        }
