from __future__ import annotations

import numpy as np
import pytest
import torch

from tskd.errors import ConfigError
from tskd.synthesis.config import DiffusionConfig, QualityGateConfig
from tskd.synthesis.intensity import IntensityMapping, decode_labels, encode_labels
from tskd.synthesis.unet import build_unet


def test_config_round_trip_and_nested_gate():
    cfg = DiffusionConfig.from_dict({"image_size": 32, "gate": {"max_entropy": 0.5}, "sampler": "dpm"})
    assert cfg.gate.max_entropy == 0.5 and cfg.gate.thumbnail_size == 32
    assert DiffusionConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"attention_levels": [True]}, "attention_levels"),
        ({"image_size": 30}, "multiple of 4"),
        ({"block_out_channels": [12, 24, 24]}, "norm_num_groups"),
        ({"sampler": "euler"}, "sampler"),
        ({"gate": {"duplicate_threshold": 1.5}}, "duplicate_threshold"),
    ],
)
def test_config_rejects_bad_values_with_the_field_named(bad, field):
    with pytest.raises(ConfigError, match=field):
        DiffusionConfig.from_dict(bad, source="test.yaml")


def test_intensity_mapping_clips_scales_and_inverts():
    mapping = IntensityMapping(clip=2.0)
    x = torch.tensor([-5.0, -2.0, -1.0, 0.0, 1.5, 2.0, 7.0])
    y = mapping.to_model(x)
    assert torch.allclose(y, torch.tensor([-1.0, -1.0, -0.5, 0.0, 0.75, 1.0, 1.0]))
    assert torch.allclose(mapping.from_model(y), x.clamp(-2, 2))
    assert IntensityMapping.from_dict(mapping.to_dict()) == mapping
    with pytest.raises(ValueError):
        IntensityMapping(clip=0.0)


def test_label_channels_encode_and_decode():
    labels = torch.tensor(np.random.default_rng(0).integers(0, 3, (2, 5, 5)))
    channels = encode_labels(labels, 3)
    assert channels.shape == (2, 3, 5, 5)
    assert set(channels.unique().tolist()) == {-1.0, 1.0}
    assert (channels == 1).sum(dim=1).eq(1).all()
    assert torch.equal(decode_labels(channels + 0.3 * torch.randn_like(channels)), labels)
    with pytest.raises(ValueError, match="0..2"):
        encode_labels(torch.full((1, 2, 2), 3), 3)


def test_unet_channels_follow_mode(tiny_config):
    unet = build_unet(tiny_config)
    assert unet.config.in_channels == 1 == unet.config.out_channels
    joint = build_unet(tiny_config.replace(mode="joint"), num_classes=3)
    assert joint.config.in_channels == 4 == joint.config.out_channels
    out = joint(torch.zeros(2, 4, 16, 16), torch.tensor([3, 50])).sample
    assert out.shape == (2, 4, 16, 16)
    assert joint.config.down_block_types == ("DownBlock2D", "AttnDownBlock2D")
    with pytest.raises(ValueError, match="num_classes"):
        build_unet(tiny_config.replace(mode="joint"))


def test_gate_config_defaults_are_valid():
    gate = QualityGateConfig()
    assert 0 < gate.duplicate_threshold <= 1 and 0 < gate.max_entropy <= 1
