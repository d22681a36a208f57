from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tskd.preprocess import resize_bilinear, resize_nearest

SIZES = [(1, 1), (1, 5), (7, 3), (64, 64), (100, 37), (3, 300), (256, 256)]
OUT = [(1, 1), (2, 9), (13, 7), (64, 64), (128, 96), (256, 256), (600, 33)]


def _torch_resize(x: np.ndarray, out_hw, mode: str) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    kwargs = {"align_corners": False, "antialias": False} if mode == "bilinear" else {}
    return F.interpolate(t, size=tuple(out_hw), mode=mode, **kwargs)[0].numpy()


@pytest.mark.parametrize("in_hw", SIZES)
def test_bilinear_matches_torch(in_hw):
    rng = np.random.default_rng(sum(in_hw))
    x = rng.normal(0, 3, size=(3,) + in_hw).astype(np.float32)
    for out_hw in OUT:
        ours = resize_bilinear(x, out_hw)
        assert ours.shape == (3,) + out_hw and ours.dtype == np.float32
        np.testing.assert_allclose(ours, _torch_resize(x, out_hw, "bilinear"), atol=1e-5, rtol=0)


@pytest.mark.parametrize("in_hw", SIZES)
def test_nearest_matches_torch_exactly(in_hw):
    rng = np.random.default_rng(sum(in_hw) + 1)
    labels = rng.integers(0, 6, size=(2,) + in_hw).astype(np.uint8)
    for out_hw in OUT + [(in_hw[0] * 2, in_hw[1] * 2), (in_hw[0] * 3, in_hw[1])]:
        ours = resize_nearest(labels, out_hw)
        assert ours.dtype == np.uint8 and ours.shape == (2,) + tuple(out_hw)
        np.testing.assert_array_equal(ours, _torch_resize(labels, out_hw, "nearest").astype(np.uint8))


def test_shapes_dtypes_and_identity():
    x = np.arange(2 * 4 * 3 * 5, dtype=np.float64).reshape(2, 4, 3, 5)
    out = resize_bilinear(x, (3, 5))
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, x.astype(np.float32))
    out[...] = 0  # a copy, never a view of the input
    assert x.sum() > 0
    image = np.arange(12, dtype=np.int16).reshape(3, 4)
    assert resize_bilinear(image, (6, 8)).shape == (6, 8)
    np.testing.assert_array_equal(resize_nearest(image, (3, 4)), image)


@pytest.mark.parametrize("bad", [(0, 4), (4,), (4, 4, 4)])
def test_bad_output_size(bad):
    with pytest.raises(ValueError, match="out_hw|positive"):
        resize_bilinear(np.zeros((4, 4)), bad)


def test_one_dimensional_input_rejected():
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        resize_nearest(np.zeros(4), (2, 2))


@pytest.mark.serial  # a bound on seconds
def test_batch_resize_is_fast():
    x = np.random.default_rng(0).normal(size=(64, 512, 512)).astype(np.float32)
    start = time.perf_counter()
    out = resize_bilinear(x, (256, 256))
    elapsed = time.perf_counter() - start
    assert out.shape == (64, 256, 256)
    assert elapsed < 3.0, f"resizing 64 slices of 512x512 took {elapsed:.2f} s"
