from __future__ import annotations

import json

import numpy as np
import pytest

from tskd.preprocess import NormalizationSpec, apply_normalization, fit_normalization, looks_like_ct


def _ct_volume(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    volume = np.full((8, 32, 32), -1000.0) + rng.normal(0, 10, (8, 32, 32))
    volume[:, 6:26, 6:26] = 40 + rng.normal(0, 15, (8, 20, 20))
    label = np.zeros(volume.shape, dtype=np.uint8)
    label[:, 10:20, 10:20] = 1
    volume[label == 1] = 150 + rng.normal(0, 20, int(label.sum()))
    return np.round(volume).astype(np.int16), label


def test_spec_json_round_trip_gives_same_output():
    volume, label = _ct_volume(0)
    spec = fit_normalization([volume], [label])
    again = NormalizationSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    np.testing.assert_array_equal(apply_normalization(volume, spec), apply_normalization(volume, again))
    pct = NormalizationSpec(mode="percentile", p_low=1.0, p_high=99.0)
    assert NormalizationSpec.from_dict(json.loads(json.dumps(pct.to_dict()))) == pct


def test_ct_fit_uses_foreground_window_and_stats():
    volumes, labels = zip(*(_ct_volume(s) for s in range(3)))
    spec = fit_normalization(volumes, labels)
    assert spec.mode == "ct"
    # window around the foreground (150 +- 20 HU), mean/std of clipped foreground
    assert 80 < spec.lower < 120 and 180 < spec.upper < 220
    assert abs(spec.mean - 150) < 3 and 15 < spec.std < 25
    out = apply_normalization(volumes[0], spec)
    assert out.dtype == np.float32 and out.shape == volumes[0].shape
    fg = out[labels[0] == 1]
    assert abs(fg.mean()) < 0.1 and 0.8 < fg.std() < 1.1
    assert out.min() == pytest.approx((spec.lower - spec.mean) / spec.std, rel=1e-5)
    # deterministic
    assert fit_normalization(volumes, labels) == spec


def test_auto_detects_non_ct_as_percentile():
    rng = np.random.default_rng(1)
    mr = rng.gamma(2.0, 100.0, size=(6, 20, 20)).astype(np.float32)
    spec = fit_normalization([mr])
    assert spec.mode == "percentile"
    assert not looks_like_ct(float(mr.min()), mr.ravel())
    assert fit_normalization([mr], modality="ct").mode == "ct"
    assert fit_normalization([mr], modality="none").mode == "none"


def test_percentile_uses_whole_array_statistics():
    rng = np.random.default_rng(2)
    volume = rng.normal(100, 20, size=(10, 16, 16)).astype(np.float32)
    volume[0, 0, 0] = 1e6  # outlier clipped away
    spec = NormalizationSpec(mode="percentile", p_low=0.5, p_high=99.5)
    out = apply_normalization(volume, spec)
    low, high = np.percentile(volume, [0.5, 99.5])
    clipped = np.clip(volume.astype(np.float64), low, high)
    expected = (clipped - clipped.mean()) / clipped.std()
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert abs(float(out.mean())) < 1e-4 and abs(float(out.std()) - 1) < 1e-4
    # a slice normalised on its own differs: statistics come from the array passed in
    assert not np.allclose(apply_normalization(volume[3], spec), out[3])
    # the input is never modified
    assert volume[0, 0, 0] == 1e6


def test_none_and_constant_images():
    x = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = apply_normalization(x, NormalizationSpec(mode="none"))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)
    flat = apply_normalization(np.full((4, 4), 7.0), NormalizationSpec())
    np.testing.assert_array_equal(flat, np.zeros((4, 4), np.float32))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "zscore"}, "mode"),
        ({"mode": "ct", "lower": 0.0, "upper": 1.0, "mean": 0.0}, "finite"),
        ({"mode": "ct", "lower": 2.0, "upper": 1.0, "mean": 0.0, "std": 1.0}, "lower < upper"),
        ({"p_low": 50.0, "p_high": 10.0}, "percentiles"),
    ],
)
def test_invalid_specs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NormalizationSpec(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown"):
        NormalizationSpec.from_dict({"mode": "none", "window": 3})
