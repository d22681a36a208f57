"""TeacherConfig: defaults, nested LoRA section, strict checking."""

from __future__ import annotations

import pytest

from tskd.errors import ConfigError
from tskd.teacher.config import LoraConfig, TeacherConfig


def test_defaults_and_round_trip(tmp_path):
    config = TeacherConfig()
    assert config.base == "none" and not config.uses_foundation_weights
    assert config.resolved_architecture() == "small"
    assert config.lora == LoraConfig(rank=4, alpha=4.0, dropout=0.0, targets=("qkv",))
    path = tmp_path / "teacher.yaml"
    changed = config.replace(base="/models/sam_vit_b_01ec64.pth", lora={"rank": 8, "targets": ["qkv", "proj"]})
    changed.to_yaml(path)
    again = TeacherConfig.from_yaml(path)
    assert again == changed and again.lora.targets == ("qkv", "proj") and again.lora.rank == 8
    assert again.uses_foundation_weights and again.resolved_architecture() == "auto"


@pytest.mark.parametrize(
    "data,pattern",
    [
        ({"input_size": 250}, "multiple of 16"),
        ({"architecture": "vit_x"}, "architecture 'vit_x'"),
        ({"prompt_mode": "points"}, "prompt_mode"),
        ({"lora": {"rank": 0}}, "lora.rank"),
        ({"lora": {"targets": []}}, "lora.targets"),
        ({"lora": {"rnak": 4}}, "unknown field"),
        ({"dice_weight": 0, "ce_weight": 0}, "not both 0"),
        ({"train": {"grad_accum_steps": 0}}, "grad_accum_steps"),
    ],
)
def test_bad_values_are_config_errors(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        TeacherConfig.from_dict(data, source="run.yaml: teacher")
