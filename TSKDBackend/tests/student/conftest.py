"""Tiny synthetic segmentation data for the student tests: bright discs on a noisy background."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import one_torch_thread
import torch.nn.functional as F


def make_discs(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, 1, size, size)`` and labels ``(n, size, size)`` (1 inside one random disc)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, labels = [], []
    for _ in range(n):
        cy, cx = (torch.rand(2, generator=g) * size * 0.5 + size * 0.25).tolist()
        r = float(torch.rand(1, generator=g)) * size * 0.15 + size * 0.1
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).long()
        images.append(mask.float() + 0.2 * torch.randn(size, size, generator=g))
        labels.append(mask)
    return torch.stack(images).unsqueeze(1), torch.stack(labels)


def teacher_probs(images: torch.Tensor, size: int) -> torch.Tensor:
    """A fixed "teacher": class probabilities ``(n, 2, size, size)`` from the smoothed image."""
    smooth = F.avg_pool2d(images, 3, stride=1, padding=1)
    fg = torch.sigmoid(10 * (F.interpolate(smooth, size=(size, size), mode="bilinear", align_corners=False) - 0.5))
    return torch.cat([1 - fg, fg], dim=1)


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models run far faster on one thread than on two contended ones; restored afterwards."""
    with one_torch_thread():
        yield


@pytest.fixture()
def disc_batch() -> dict[str, torch.Tensor]:
    images, labels = make_discs(8)
    return {
        "image": images,
        "label": labels,
        "labelled": torch.tensor([True, True, False, False, False, False, False, False]),
        "soft": teacher_probs(images, 16).half(),  # teacher at half the student's resolution, stored float16
    }


@pytest.fixture()
def discs():
    """The :func:`make_discs` factory, for tests that need more than one set."""
    return make_discs
