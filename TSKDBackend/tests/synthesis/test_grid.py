from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tskd.synthesis.grid import grid_size, save_grid


def test_grid_png_has_the_expected_size_and_content(tmp_path, blobs):
    real, real_labels = blobs(5, 16, seed=0)
    synthetic, labels = blobs(3, 24, seed=1)
    path = save_grid(real, synthetic[:, 0], tmp_path / "report" / "grid.png", masks=labels,
                     columns=4, tile=32, pad=2, label_width=50)
    assert path.is_file()
    picture = Image.open(path)
    # 4 columns; real: 2 rows, synthetic: 1 row
    assert picture.size == (50 + 4 * 32 + 5 * 2, 3 * 32 + 4 * 2) == grid_size(5, 3, columns=4, tile=32, pad=2, label_width=50)
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    real_tile = pixels[2:34, 52:84]
    assert (real_tile[..., 0] == real_tile[..., 1]).all()  # real images without masks: grey
    assert real_tile.max() > 200 and real_tile.min() < 50  # bright disc on dark ground
    synthetic_tile = pixels[2 + 2 * 34: 2 + 2 * 34 + 32, 52:84]
    assert (synthetic_tile[..., 0] != synthetic_tile[..., 2]).any()  # mask tint on synthetic
    empty_slot = pixels[2 + 34: 2 + 34 + 32, 52 + 34 * 3: 52 + 34 * 3 + 32]
    assert (empty_slot == 255).all()  # 5 real images leave the last slot of row 2 empty


def test_grid_rejects_bad_shapes(tmp_path, blobs):
    images, _ = blobs(2, 8)
    with pytest.raises(ValueError, match="masks"):
        save_grid(images, images, tmp_path / "g.png", masks=np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="real_images"):
        save_grid(np.zeros((2, 2, 8, 8)), images, tmp_path / "g.png")
