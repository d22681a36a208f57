"""Building a transfer set on disk, a shard at a time, resumable after a crash.

See :mod:`tskd.data.transfer_set` for the folder layout and what a crash can lose.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tskd.errors import DataError
from tskd.data import transfer_set_files as files

__all__ = ["TransferSetWriter"]

logger = logging.getLogger(__name__)


class TransferSetWriter:
    """Appends items to a transfer set folder, a shard at a time; resumes an existing folder.

    Args:
        folder: the transfer set folder (created when missing).
        image_size: ``S``.
        num_classes: ``K`` (with background).
        shard_size: items per shard.
        soft_dtype: ``float16`` or ``uint8`` (see the module notes).

    Raises:
        DataError: the folder holds a transfer set with another image size, class count or dtype.
    """

    def __init__(self, folder: str | Path, *, image_size: int, num_classes: int, shard_size: int = 64,
                 soft_dtype: str = "float16") -> None:
        if image_size < 1 or not 2 <= num_classes < files.NO_LABEL or shard_size < 1:
            raise ValueError(f"need image_size >= 1, 2 <= num_classes < 255, shard_size >= 1; got "
                             f"{image_size}, {num_classes}, {shard_size}")
        if soft_dtype not in files.SOFT_DTYPES:
            raise ValueError(f"soft_dtype must be one of {files.SOFT_DTYPES}, got {soft_dtype!r}")
        self.folder = Path(folder)
        self.image_size = int(image_size)
        self.num_classes = int(num_classes)
        self.shard_size = int(shard_size)
        self.soft_dtype = soft_dtype
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]] = []
        self._pending_rejects: list[dict[str, Any]] = []
        self._open_meta()
        self._lines = files.recover(self.folder)
        self._next_shard = 1 + max((int(p.name) for p in files.shard_dirs(self.folder)), default=-1)
        self._rejected = files.read_jsonl(self.folder / "rejected.jsonl", repair=True)
        if self._lines:
            logger.info("resuming transfer set %s with %d items", self.folder, len(self._lines))

    # -- what is stored -------------------------------------------------------------------------
    def __len__(self) -> int:
        """Items stored, flushed or not."""
        return len(self._lines) + len(self._pending)

    def counts(self) -> dict[str, int]:
        """Items per source (flushed and pending)."""
        counts = Counter(line["source"] for line in self._lines)
        counts.update(p[3]["source"] for p in self._pending)
        return {source: counts.get(source, 0) for source in files.SOURCES}

    def stored_seeds(self, model: str | None = None) -> set[int]:
        """Seeds of the synthetic items stored (of ``model`` only, when given)."""
        lines = self._lines + [p[3] for p in self._pending]
        return {int(line["seed"]) for line in lines
                if line["source"] == "synthetic" and (model is None or line.get("model") == model)}

    def rejected_seeds(self, model: str | None = None) -> set[int]:
        """Seeds the quality gate dropped (of ``model`` only, when given)."""
        rows = self._rejected + self._pending_rejects
        return {int(r["seed"]) for r in rows if model is None or r.get("model") == model}

    def missing_seeds(self, seeds: Iterable[int], model: str | None = None) -> list[int]:
        """The seeds of ``seeds`` neither stored nor rejected yet, in order."""
        done = self.stored_seeds(model) | self.rejected_seeds(model)
        return [int(s) for s in seeds if int(s) not in done]

    # -- adding ---------------------------------------------------------------------------------
    def add(self, image: np.ndarray, soft: np.ndarray, *, source: str, label: np.ndarray | None = None,
            seed: int | None = None, model: str | None = None, case_id: str | None = None,
            slice_index: int | None = None) -> None:
        """Buffers one item; a full shard is written at once.

        Args:
            image: ``(S, S)`` or ``(1, S, S)`` normalised intensities.
            soft: ``(K, S, S)`` teacher probabilities (sum to one over ``K``).
            source: one of ``real_labelled``, ``real_unlabelled``, ``synthetic``.
            label: ``(S, S)`` hard label with values ``0..K-1``, or ``None``.
            seed / model: for synthetic items (``seed`` required).
            case_id / slice_index: for real items.
        """
        if source not in files.SOURCES:
            raise ValueError(f"source must be one of {files.SOURCES}, got {source!r}")
        if source == "synthetic" and seed is None:
            raise ValueError("a synthetic item needs its seed")
        s, k = self.image_size, self.num_classes
        image = np.asarray(image, dtype=np.float32)
        if image.shape == (1, s, s):
            image = image[0]
        if image.shape != (s, s):
            raise ValueError(f"image must be ({s}, {s}) or (1, {s}, {s}), got {image.shape}")
        stored_image = image.astype(np.float16)
        if not np.isfinite(stored_image).all():
            raise ValueError("image holds NaN/inf values or values beyond float16 range")
        soft = np.asarray(soft, dtype=np.float32)
        if soft.shape != (k, s, s):
            raise ValueError(f"soft must be ({k}, {s}, {s}), got {soft.shape}")
        if not np.isfinite(soft).all() or soft.min() < -1e-4 or soft.max() > 1 + 1e-4:
            raise ValueError("soft must hold probabilities in [0, 1]")
        if np.abs(soft.sum(axis=0) - 1.0).max() > 1e-2:
            raise ValueError("soft probabilities must sum to one over the class axis")
        if label is None:
            stored_label = np.full((s, s), files.NO_LABEL, dtype=np.uint8)
        else:
            label = np.asarray(label)
            if label.shape != (s, s):
                raise ValueError(f"label must be ({s}, {s}), got {label.shape}")
            if label.min() < 0 or label.max() >= k:
                raise ValueError(f"label values must lie in 0..{k - 1}, got {label.min()}..{label.max()}")
            stored_label = label.astype(np.uint8)
        provenance = {
            "source": source,
            "seed": None if seed is None else int(seed),
            "model": model,
            "case_id": None if case_id is None else str(case_id),
            "slice_index": None if slice_index is None else int(slice_index),
        }
        self._pending.append((stored_image, self._encode_soft(soft), stored_label, provenance))
        if len(self._pending) >= self.shard_size:
            self.flush()

    def add_batch(self, images: np.ndarray, soft: np.ndarray, *, source: str,
                  labels: np.ndarray | None = None, seeds: Sequence[int] | None = None,
                  model: str | None = None, case_ids: Sequence[str] | None = None,
                  slice_indices: Sequence[int] | None = None) -> None:
        """:meth:`add` for ``n`` items: ``images (n, [1,] S, S)``, ``soft (n, K, S, S)``, ``labels (n, S, S)``."""
        for i in range(len(images)):
            self.add(
                images[i], soft[i], source=source,
                label=None if labels is None else labels[i],
                seed=None if seeds is None else seeds[i],
                model=model,
                case_id=None if case_ids is None else case_ids[i],
                slice_index=None if slice_indices is None else slice_indices[i],
            )

    def reject(self, seed: int, *, model: str | None = None, reason: str = "") -> None:
        """Records that the synthetic image of ``seed`` was dropped (written with the next shard)."""
        self._pending_rejects.append({"seed": int(seed), "model": model, "reason": reason})

    def flush(self) -> None:
        """Writes the buffered items as one shard (and the buffered rejections)."""
        if self._pending:
            self._write_shard()
        if self._pending_rejects:
            files.append_jsonl(self.folder / "rejected.jsonl", self._pending_rejects)
            self._rejected.extend(self._pending_rejects)
            self._pending_rejects = []

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> TransferSetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        # Buffered items are complete, so they are kept even when the caller failed.
        self.close()

    # -- internals ------------------------------------------------------------------------------
    def _encode_soft(self, soft: np.ndarray) -> np.ndarray:
        if self.soft_dtype == "uint8":
            return np.clip(np.rint(soft * 255.0), 0, 255).astype(np.uint8)
        return soft.astype(np.float16)

    def _open_meta(self) -> None:
        meta_path = self.folder / "meta.json"
        meta = {"format": files.FORMAT, "version": files.VERSION, "image_size": self.image_size,
                "num_classes": self.num_classes, "soft_dtype": self.soft_dtype}
        if meta_path.is_file():
            existing = files.read_meta(self.folder)
            for key in ("image_size", "num_classes", "soft_dtype"):
                if existing.get(key) != meta[key]:
                    raise DataError(
                        f"{meta_path}: the transfer set there has {key}={existing.get(key)!r}, this run "
                        f"needs {meta[key]!r}; delete {self.folder} to rebuild it"
                    )
            return
        (self.folder / "shards").mkdir(parents=True, exist_ok=True)
        files.write_atomic(meta_path, json.dumps(meta, indent=2))

    def _write_shard(self) -> None:
        shard = self._next_shard
        name = f"{shard:06d}"
        final = self.folder / "shards" / name
        tmp = self.folder / "shards" / f"{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        images, softs, labels, provenance = zip(*self._pending)
        for file, array in (("images.npy", images), ("soft.npy", softs), ("labels.npy", labels)):
            with open(tmp / file, "wb") as handle:
                np.save(handle, np.stack(array), allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
        lines = [dict(p, shard=shard, row=row) for row, p in enumerate(provenance)]
        files.write_atomic(tmp / "items.json", json.dumps(lines))
        tmp.rename(final)
        files.append_jsonl(self.folder / "index.jsonl", lines)
        self._lines.extend(lines)
        self._next_shard += 1
        self._pending = []
        logger.debug("wrote transfer set shard %s (%d items)", final, len(lines))
