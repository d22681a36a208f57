"""Tiny data and configs shared by the synthesis tests."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import one_torch_thread

from tskd.synthesis.config import DiffusionConfig


def make_blobs(n: int, size: int = 16, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 1, S, S)`` of one bright disc on a dark background (z-scored) and labels ``(n, S, S)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, 1, size, size), np.float32)
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        radius = rng.uniform(size * 0.15, size * 0.3)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
        image = np.where(disc, 1.0, 0.0) + rng.normal(0, 0.05, (size, size))
        images[i, 0] = (image - image.mean()) / image.std()
        labels[i] = disc
    return images, labels


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models run fastest on one thread; two threads on a shared, busy 2-core machine spin
    against each other (measured: this folder takes 10 s on one thread, over 2 min on two)."""
    with one_torch_thread():
        yield


@pytest.fixture
def tiny_config() -> DiffusionConfig:
    return DiffusionConfig(
        image_size=16,
        block_out_channels=(16, 32),
        attention_levels=(False, True),
        norm_num_groups=8,
        num_train_timesteps=100,
        sampling_steps=5,
        sample_batch_size=4,
        val_images=4,
        val_timesteps=3,
    )


@pytest.fixture
def blobs():
    """The :func:`make_blobs` function (fixtures keep test modules free of conftest imports)."""
    return make_blobs
