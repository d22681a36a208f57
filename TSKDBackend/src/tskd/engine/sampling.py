"""Deterministic, step-addressable sampling.

The sample drawn at any position of training is a pure function of ``(seed, draw number)``, so a
run resumed from a checkpoint at step ``s`` sees exactly what an uninterrupted run would have seen,
and runs with different process counts (same global batch) see the same samples at each step.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
from torch.utils.data import Dataset, Sampler

__all__ = ["StepBatchSampler", "DrawDataset", "draw_seed"]


def draw_seed(seed: int, draw: int) -> int:
    """A well-mixed 31-bit seed for the ``draw``-th sample of a run."""
    mixed = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(draw)]).generate_state(1)[0]
    return int(mixed) & 0x7FFFFFFF


class StepBatchSampler(Sampler[list]):
    """Yields micro-batches of ``(dataset index, draw seed)`` pairs from ``start_step`` to ``max_steps``.

    The dataset is visited in epochs; each epoch is a permutation seeded by ``(seed, epoch)``.
    Step ``s`` consists of the draws ``s * batch_size ... (s + 1) * batch_size - 1`` split into
    ``grad_accum_steps`` micro-batches.

    Args:
        dataset_size: number of samples to draw from (indices ``0..dataset_size-1``).
        batch_size: global samples per optimiser step.
        grad_accum_steps: micro-batches per step.
        max_steps / start_step: the step range to yield.
        seed: run seed.
        indices: optional subset/ordering of dataset indices to draw from instead of ``range``.
    """

    def __init__(
        self,
        *,
        dataset_size: int,
        batch_size: int,
        grad_accum_steps: int = 1,
        max_steps: int,
        start_step: int = 0,
        seed: int = 0,
        indices: Sequence[int] | None = None,
    ) -> None:
        if dataset_size < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.pool = np.asarray(indices if indices is not None else np.arange(dataset_size), dtype=np.int64)
        self.batch_size = batch_size // grad_accum_steps  # micro-batch: what accelerate splits
        self.grad_accum_steps = grad_accum_steps
        self.global_batch = batch_size
        self.max_steps = max_steps
        self.start_step = start_step
        self.seed = seed
        self.drop_last = True
        self._perm_cache: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            rng = np.random.default_rng(np.random.SeedSequence([int(self.seed) & 0xFFFFFFFF, 7919, epoch]))
            self._perm_cache = {epoch: self.pool[rng.permutation(len(self.pool))]}
        return self._perm_cache[epoch]

    def draw_index(self, draw: int) -> int:
        epoch, position = divmod(draw, len(self.pool))
        return int(self._permutation(epoch)[position])

    def __iter__(self) -> Iterator[list]:
        for step in range(self.start_step, self.max_steps):
            first = step * self.global_batch
            for micro in range(self.grad_accum_steps):
                start = first + micro * self.batch_size
                yield [(self.draw_index(d), draw_seed(self.seed, d)) for d in range(start, start + self.batch_size)]

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step) * self.grad_accum_steps


class DrawDataset(Dataset):
    """Adapts a dataset to ``(index, seed)`` keys.

    A dataset with a ``sample(index, seed)`` method (e.g. one that augments) gets the draw's seed;
    any other dataset is indexed plainly.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._sample = getattr(dataset, "sample", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if self._sample is not None:
            return self._sample(index, seed)
        return self.dataset[index]
