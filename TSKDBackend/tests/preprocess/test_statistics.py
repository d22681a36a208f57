"""Whole-volume statistics computed once: exact percentiles and moments, and a resolved spec that
normalises any part of a volume exactly as the whole volume is normalised."""

from __future__ import annotations

import numpy as np
import pytest

from tskd.preprocess import NormalizationSpec, apply_normalization, resolve_normalization
from tskd.preprocess import statistics
from tskd.preprocess.statistics import clipped_moments, intensity_statistics, percentiles

QS = [0.0, 0.5, 13.7, 50.0, 99.5, 100.0]


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                                   np.float32, np.float64])
def test_percentiles_and_moments_match_numpy(dtype):
    rng = np.random.default_rng(0)
    low = 0 if np.dtype(dtype).kind == "u" else -100
    array = rng.integers(low, 120, size=(5, 7, 9)).astype(dtype)
    np.testing.assert_allclose(percentiles(array, QS), np.percentile(array, QS), rtol=1e-12, atol=1e-12)
    lower, upper = np.percentile(array, [2, 98])
    clipped = np.clip(array.astype(np.float64), lower, upper)
    np.testing.assert_allclose(clipped_moments(array, lower, upper), (clipped.mean(), clipped.std()), rtol=1e-12)


def test_blocks_cover_large_and_strided_arrays(monkeypatch):
    monkeypatch.setattr(statistics, "BLOCK_ELEMENTS", 50)  # many small blocks
    rng = np.random.default_rng(1)
    for array in (rng.normal(0, 50, (11, 9, 8)).astype(np.float32), rng.integers(-3000, 3000, (11, 9, 8)),
                  rng.integers(-30, 30, (12, 9, 8)).astype(np.int16)[::2, :, ::-1]):
        lower, upper, mean, std = intensity_statistics(array, 1.0, 99.0)
        ref_low, ref_high = np.percentile(array, [1.0, 99.0])
        clipped = np.clip(array.astype(np.float64), ref_low, ref_high)
        np.testing.assert_allclose([lower, upper, mean, std], [ref_low, ref_high, clipped.mean(), clipped.std()],
                                   rtol=1e-10)


def test_wide_integer_ranges_fall_back_to_sorting():
    array = np.array([0, 1, 2, 10**9, -(10**9)], dtype=np.int64)
    np.testing.assert_allclose(percentiles(array, [25, 50, 75]), np.percentile(array, [25, 50, 75]))


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_resolved_spec_normalises_parts_exactly_like_the_whole(dtype):
    rng = np.random.default_rng(2)
    volume = (rng.normal(100, 40, size=(9, 14, 17)) * (1 if dtype != np.uint8 else 0.5)).clip(0, 250).astype(dtype)
    spec = NormalizationSpec(mode="percentile", p_low=0.5, p_high=99.5)
    whole = apply_normalization(volume, spec)
    resolved = resolve_normalization(volume, spec)
    assert resolved.resolved and not spec.resolved and resolved.mode == "percentile"
    assert resolved.p_low == spec.p_low and "statistics of a 9x14x17 array" in resolved.note
    for part in (np.s_[3], np.s_[:, 5], np.s_[:, :, 16], np.s_[2:7, 1:9, 4:15], np.s_[...]):
        np.testing.assert_array_equal(apply_normalization(volume[part], resolved), whole[part])
    # resolving a resolved, 'ct' or 'none' spec changes nothing
    assert resolve_normalization(volume[0], resolved) is resolved
    ct = NormalizationSpec(mode="ct", lower=-100.0, upper=200.0, mean=50.0, std=30.0)
    assert resolve_normalization(volume, ct) is ct
    # the resolved spec survives JSON and still gives the same numbers
    again = NormalizationSpec.from_dict(resolved.to_dict())
    np.testing.assert_array_equal(apply_normalization(volume[4], again), whole[4])


def test_resolved_spec_validation():
    with pytest.raises(ValueError, match="or none of them"):
        NormalizationSpec(mode="percentile", lower=0.0, upper=1.0)
    with pytest.raises(ValueError, match="std > 0"):
        NormalizationSpec(mode="percentile", lower=0.0, upper=1.0, mean=0.5, std=0.0)
    constant = resolve_normalization(np.full((3, 4), 7, np.int16), NormalizationSpec())
    assert constant.lower == constant.upper == 7.0 and constant.std == 1.0
