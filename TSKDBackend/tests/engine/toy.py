"""A tiny learnable problem for engine tests: 2-class segmentation of bright squares."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class SquaresDataset(torch.utils.data.Dataset):
    """Images with a bright square; label 1 inside. ``sample(index, seed)`` adds seeded noise."""

    def __init__(self, n: int = 32, size: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.images = np.zeros((n, 1, size, size), np.float32)
        self.labels = np.zeros((n, size, size), np.int64)
        for i in range(n):
            y, x = rng.integers(0, size - 6, 2)
            self.labels[i, y : y + 6, x : x + 6] = 1
            self.images[i, 0] = self.labels[i] * 2.0 - 1.0
        self.seen: list[int] = []

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int, seed: int) -> dict:
        self.seen.append(index)
        noise = np.random.default_rng(seed).normal(0, 0.5, self.images[index].shape).astype(np.float32)
        return {"image": torch.from_numpy(self.images[index] + noise), "label": torch.from_numpy(self.labels[index])}


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.1), nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SquaresTask:
    def __init__(self, val: SquaresDataset | None = None) -> None:
        self.val = val

    def training_step(self, model, batch):
        logits = model(batch["image"])
        loss = nn.functional.cross_entropy(logits, batch["label"])
        return loss, {"ce": float(loss.detach())}

    def validate(self, model):
        if self.val is None:
            return {}
        x = torch.from_numpy(self.val.images)
        pred = model(x).argmax(1).numpy()
        ref = self.val.labels
        inter = ((pred == 1) & (ref == 1)).sum()
        return {"val_dice": float(2 * inter / ((pred == 1).sum() + (ref == 1).sum() + 1e-8))}
