from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from tskd.config import ConfigBase, deep_merge
from tskd.errors import ConfigError


@dataclass
class Inner(ConfigBase):
    rank: int = 4
    targets: tuple[str, ...] = ("qkv",)


@dataclass
class Outer(ConfigBase):
    lr: float = 1e-3
    mode: Literal["a", "b"] = "a"
    base: Optional[str] = None
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_nested_override():
    cfg = Outer.from_dict({"lr": 1, "inner": {"rank": 8}})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.inner.rank == 8 and cfg.inner.targets == ("qkv",)
    assert cfg.mode == "a" and cfg.base is None


def test_round_trip_through_yaml(tmp_path):
    cfg = Outer.from_dict({"mode": "b", "base": "x.pth", "inner": {"targets": ["q", "v"]}})
    cfg.to_yaml(tmp_path / "c.yaml")
    again = Outer.from_yaml(tmp_path / "c.yaml")
    assert again == cfg
    assert again.inner.targets == ("q", "v")


def test_yaml_scientific_notation_string_is_a_number():
    assert Outer.from_dict({"lr": "1e-4"}).lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "data, words",
    [
        ({"lr_rate": 1}, ["unknown field", "lr_rate", "known fields"]),
        ({"mode": "c"}, ["mode", "'c'", "'a'"]),
        ({"inner": {"rank": "four"}}, ["rank", "integer"]),
        ({"inner": {"rnk": 2}}, ["rnk", "Inner"]),
    ],
)
def test_bad_fields_are_named(data, words):
    with pytest.raises(ConfigError) as info:
        Outer.from_dict(data, source="my.yaml")
    message = str(info.value)
    assert "my.yaml" in message
    for word in words:
        assert word in message


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Outer.from_yaml(tmp_path / "nope.yaml")


def test_replace_checks_values():
    cfg = Outer()
    assert cfg.replace(lr=0.5).lr == 0.5
    with pytest.raises(ConfigError):
        cfg.replace(mode="z")


def test_deep_merge_keeps_untouched_keys():
    merged = deep_merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}})
    assert merged == {"a": {"x": 1, "y": 3}, "b": 1}


@dataclass
class Stage(ConfigBase):
    inner: Inner = field(default_factory=lambda: Inner(rank=16, targets=("a", "b")))


def test_partial_nested_section_keeps_the_fields_own_defaults():
    cfg = Stage.from_dict({"inner": {"rank": 2}})
    assert cfg.inner.rank == 2
    assert cfg.inner.targets == ("a", "b")  # Stage's default for the section, not Inner's
