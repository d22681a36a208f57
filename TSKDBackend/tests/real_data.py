"""Small readers of the real datasets in ``../shared/data`` shared by several test modules."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from PIL import Image
from tests.conftest import shared_dataset


def hc18_pairs(count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``count`` HC18 images (uint8 ``(H, W)``) with their head masks (bool), spread evenly over the
    sorted file names (every ``len // count``-th file). Skips the test when the data is absent."""
    root = shared_dataset("hc18")
    images = sorted((root / "images").glob("*.png"))
    for path in images[:: len(images) // count][:count]:
        image = np.asarray(Image.open(path).convert("L"))
        mask = np.asarray(Image.open(root / "masks" / path.name))
        yield image, (mask[..., 0] if mask.ndim == 3 else mask) > 127
