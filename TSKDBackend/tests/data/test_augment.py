from __future__ import annotations

import numpy as np
import pytest
import torch

from tskd.data.augment import AugmentConfig, build_augmentation, sample_seed
from tskd.errors import ConfigError


def _sample(size=64):
    label = torch.zeros(size, size, dtype=torch.int64)
    label[14:34, 10:30] = 1
    label[30:52, 36:56] = 2
    label[20:26, 40:46] = 3
    return {"image": label[None].to(torch.float32), "label": label, "index": 7, "labelled": torch.tensor(True)}


def test_same_seed_same_output_different_seed_differs():
    sample = _sample()
    sample["image"] = sample["image"] + torch.linspace(0, 1, 64)[None, None, :]
    first = build_augmentation()(sample, 1234)
    second = build_augmentation()(sample, 1234)  # a fresh object, as in another worker process
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["label"], second["label"])
    others = [build_augmentation()(sample, seed)["image"] for seed in range(1, 6)]
    assert all(not torch.equal(first["image"], other) for other in others)
    assert first["image"].dtype == torch.float32 and first["image"].shape == (1, 64, 64)
    assert first["label"].dtype == torch.int64 and first["label"].shape == (64, 64)
    assert first["index"] == 7 and bool(first["labelled"])  # other keys pass through
    assert torch.equal(sample["label"], _sample()["label"])  # input untouched


def test_spatial_transform_keeps_image_and_label_aligned():
    augment = build_augmentation(
        AugmentConfig(affine_prob=1.0, rotate_deg=25.0, scale=0.2, translate=0.1, flip_prob=0.5,
                      intensity_prob=0.0, noise_prob=0.0, gamma_prob=0.0)
    )
    sample = _sample()
    moved = 0
    for seed in range(8):
        out = augment(sample, seed)
        agreement = (torch.round(out["image"][0]).long() == out["label"]).float().mean().item()
        assert agreement > 0.97, f"seed {seed}: image and label agree on {agreement:.1%} of pixels"
        assert set(out["label"].unique().tolist()) <= {0, 1, 2, 3}  # nearest: no new values
        moved += int(not torch.equal(out["label"], sample["label"]))
    assert moved >= 6


def test_intensity_transforms_leave_label_alone():
    augment = build_augmentation(
        AugmentConfig(affine_prob=0.0, intensity_prob=1.0, noise_prob=1.0, gamma_prob=1.0)
    )
    sample = _sample()
    out = augment(sample, 3)
    assert torch.equal(out["label"], sample["label"])
    assert not torch.allclose(out["image"], sample["image"])


def test_all_off_is_identity_and_numpy_input():
    augment = build_augmentation(
        AugmentConfig(affine_prob=0.0, flip_prob=0.0, intensity_prob=0.0, noise_prob=0.0, gamma_prob=0.0)
    )
    sample = {"image": np.random.default_rng(0).normal(size=(1, 20, 24)).astype(np.float32),
              "label": np.ones((20, 24), dtype=np.uint8)}
    out = augment(sample, 0)
    np.testing.assert_array_equal(out["image"].numpy(), sample["image"])
    assert out["label"].dtype == torch.int64 and int(out["label"].sum()) == 20 * 24


def test_unlabelled_zero_label_stays_zero():
    sample = _sample()
    sample["label"] = torch.zeros(64, 64, dtype=torch.int64)
    for seed in range(4):
        assert int(build_augmentation()(sample, seed)["label"].abs().sum()) == 0


def test_bad_arguments():
    with pytest.raises(ConfigError, match="affine_prob"):
        AugmentConfig.from_dict({"affine_prob": 1.5})
    with pytest.raises(ConfigError, match="gamma"):
        AugmentConfig.from_dict({"gamma": [2.0, 1.0]})
    augment = build_augmentation()
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        augment({"image": torch.zeros(8, 8), "label": torch.zeros(8, 8)}, 0)
    with pytest.raises(ValueError, match="label shape"):
        augment({"image": torch.zeros(1, 8, 8), "label": torch.zeros(8, 9)}, 0)


def test_stacked_channels_move_together():
    """A slice between its neighbours (2.5D input): every channel gets the same spatial transform,
    so a structure present in all channels stays aligned, and the single-slice draw is unchanged."""
    config = AugmentConfig(affine_prob=1.0, rotate_deg=30.0, scale=0.2, translate=0.1, intensity_prob=0.0,
                           noise_prob=0.0, gamma_prob=0.0)
    augment = build_augmentation(config)
    image = torch.zeros(1, 32, 32)
    image[0, 8:20, 10:24] = 1.0
    label = (image[0] > 0).to(torch.int64)
    single = augment({"image": image, "label": label}, 7)
    stacked = augment({"image": image.repeat(3, 1, 1), "label": label}, 7)
    assert stacked["image"].shape == (3, 32, 32)
    for channel in range(3):
        assert torch.allclose(stacked["image"][channel], single["image"][0])
    assert torch.equal(stacked["label"], single["label"]) and int(single["label"].sum()) > 50


def test_sample_seed():
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2)
    seeds = {sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}
    assert len(seeds) == 450 and all(0 <= s < 2**32 for s in seeds)
    with pytest.raises(ValueError):
        sample_seed(0, -1, 0)


def test_translation_only_moves_the_label_rigidly_within_the_range():
    augment = build_augmentation(
        AugmentConfig(affine_prob=1.0, rotate_deg=0.0, scale=0.0, translate=0.1,
                      intensity_prob=0.0, noise_prob=0.0, gamma_prob=0.0)
    )
    sample = _sample()
    before = torch.nonzero(sample["label"] == 1).float().mean(0)
    shifts = []
    for seed in range(12):
        out = augment(sample, seed)
        assert int((out["label"] == 1).sum()) == 400  # a 20x20 square, shifted, never resized
        shifts.append(torch.nonzero(out["label"] == 1).float().mean(0) - before)
    shifts = torch.stack(shifts)
    assert float(shifts.abs().max()) <= 0.1 * 64 + 0.5  # within the range, in pixels
    assert float(shifts.abs().max()) >= 2.0  # and it does move


def test_gamma_keeps_the_mean_and_standard_deviation():
    augment = build_augmentation(AugmentConfig(affine_prob=0.0, intensity_prob=0.0, noise_prob=0.0, gamma_prob=1.0))
    sample = _sample()
    sample["image"] = sample["image"] + torch.linspace(0, 1, 64)[None, None, :]
    changed = 0
    for seed in range(6):
        out = augment(sample, seed)["image"]
        assert abs(float(out.mean() - sample["image"].mean())) < 1e-4
        assert abs(float(out.std() - sample["image"].std())) < 1e-4
        changed += int(not torch.allclose(out, sample["image"], atol=1e-3))
    assert changed >= 5


def test_the_draws_of_one_transform_do_not_depend_on_the_others():
    # the same seed gives the same shift whether or not the intensity transforms are on
    spatial = AugmentConfig(affine_prob=1.0, intensity_prob=0.0, noise_prob=0.0, gamma_prob=0.0)
    both = AugmentConfig(affine_prob=1.0, intensity_prob=1.0, noise_prob=1.0, gamma_prob=1.0)
    sample = _sample()
    for seed in range(4):
        assert torch.equal(build_augmentation(spatial)(sample, seed)["label"],
                           build_augmentation(both)(sample, seed)["label"])
