"""Reading prepared 2D slices: :class:`PreparedSlices` (memory-mapped folder) and
:class:`SliceDataset` (a PyTorch dataset over it, optionally augmented).

The folder is written by :func:`tskd.data.prepared.prepare_slices`; its layout is described there.
This module is the floor below the writer: it never imports :mod:`tskd.data.prepared`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from tskd.data.augment import sample_seed
from tskd.data.config import PreparedSpec
from tskd.errors import DataError
from tskd.preprocess import NormalizationSpec

__all__ = ["PreparedSlices", "SliceDataset", "UNLABELLED_VALUE", "PREPARED_FORMAT", "PREPARED_VERSION",
           "middle_slice"]

#: Label value stored for every pixel of an unlabelled slice.
UNLABELLED_VALUE = 255
#: ``format`` and ``version`` fields of ``index.json``.
PREPARED_FORMAT = "tskd-prepared"
PREPARED_VERSION = 1


def middle_slice(images: Any) -> Any:
    """``(B, 1, S, S)``: the slice itself of a student's stacked input ``(B, 2c + 1, S, S)`` (what a
    teacher, which sees single slices, is given); single-channel input is returned as it is."""
    channels = int(images.shape[1])
    return images if channels == 1 else images[:, channels // 2 : channels // 2 + 1]


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
            raise DataError(
                f"{index_path}: not a readable prepared-slices index ({exc}); prepare the slices again"
            ) from exc
        if self.index.get("format") != PREPARED_FORMAT:
            raise DataError(f"{index_path}: not a prepared-slices index; prepare the slices again")
        self._images: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._neighbours: np.ndarray | None = None
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
                raise DataError(
                    f"{path}: shape {array.shape} does not match index.json {shape}; prepare the slices again"
                )
            setattr(self, f"_{name}", array)
        if self.context_slices:
            path = self.folder / "neighbours.npy"
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: cannot be read ({exc}); prepare the slices again") from exc
            expected = (len(self), 2 * self.context_slices, self.input_size, self.input_size)
            if array.shape != expected:
                raise DataError(
                    f"{path}: shape {array.shape} does not match index.json {expected}; prepare the slices again"
                )
            self._neighbours = array

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the memory maps
        state = dict(self.__dict__)
        state["_images"] = state["_labels"] = state["_neighbours"] = None
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
    def context_slices(self) -> int:
        """``c``: neighbours on each side stored with every slice (0: single slices; folders written
        before the setting existed have none)."""
        return int(self.index.get("context_slices", 0))

    @property
    def channels(self) -> int:
        """The student's input channels, ``2c + 1``."""
        return 2 * self.context_slices + 1

    def stacked(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 ``(n, 2c + 1, S, S)``: each slice between its neighbours, in slice order (the
        student's input); ``(n, 1, S, S)`` without context."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        centre = np.asarray(self.images[indices], dtype=np.float32)[:, None]
        c = self.context_slices
        if not c:
            return centre
        around = np.asarray(self._neighbours[indices], dtype=np.float32)
        return np.concatenate([around[:, :c], centre, around[:, c:]], axis=1)

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
        """The :class:`~tskd.data.config.PreparedSpec` the slices were made with."""
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

    An item is ``{"image": float32 (1, S, S) (``stacked``: ``(2c + 1, S, S)``), "label": int64 (S, S),
    "labelled": bool tensor, "index": int}`` where ``index`` is the slice's index in the prepared folder. Unlabelled slices
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
        stacked: serve the student's input, each slice between its prepared neighbours
            (``(2c + 1, S, S)``, :meth:`PreparedSlices.stacked`); default the slice alone
            ``(1, S, S)``, what the teacher and the diffusion model see.
    """

    def __init__(
        self,
        prepared: PreparedSlices | str | Path,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        augment: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
        seed: int = 0,
        stacked: bool = False,
    ) -> None:
        self.prepared = prepared if isinstance(prepared, PreparedSlices) else PreparedSlices(prepared)
        if indices is None:
            indices = np.arange(len(self.prepared))
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(self.prepared)):
            raise ValueError(
                f"indices must lie in [0, {len(self.prepared)}), got {self.indices.min()}..{self.indices.max()}"
            )
        self.augment = augment
        self.seed = int(seed)
        self.stacked = bool(stacked)
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
        if self.stacked:
            image = torch.from_numpy(self.prepared.stacked([index])[0])
        else:
            image = torch.from_numpy(np.asarray(self.prepared.images[index], dtype=np.float32)[None])
        if labelled:
            label = torch.from_numpy(np.asarray(self.prepared.labels[index], dtype=np.int64))
        else:
            label = torch.zeros(image.shape[1:], dtype=torch.int64)
        sample: dict[str, Any] = {"image": image, "label": label, "labelled": torch.tensor(labelled), "index": index}
        if self.augment is not None:
            sample = self.augment(sample, seed)
        return sample
