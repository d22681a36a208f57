"""The learning-rate schedule: warm-up values, decay shape and end points, edge cases, bad settings."""

from __future__ import annotations

import math

import pytest
import torch

from tskd.engine import EngineConfig
from tskd.engine.schedule import build_scheduler, lr_factor
from tskd.errors import ConfigError


def factors(steps, **settings):
    return [lr_factor(step, **settings) for step in steps]


def test_warmup_rises_linearly_to_the_base_rate():
    settings = dict(max_steps=100, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    assert factors(range(5), **settings) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decay_runs_from_one_to_the_floor_and_stays_there(schedule):
    settings = dict(max_steps=110, warmup_steps=10, schedule=schedule, min_lr_ratio=0.01)
    values = factors(range(10, 121), **settings)
    assert values[0] == pytest.approx(1.0)  # the first step after warm-up: full rate
    assert lr_factor(110, **settings) == pytest.approx(0.01)  # max_steps: the floor
    assert lr_factor(500, **settings) == pytest.approx(0.01)  # beyond it: still the floor
    assert all(a >= b for a, b in zip(values, values[1:]))  # never rises
    assert min(values) == pytest.approx(0.01)


def test_cosine_and_linear_shapes():
    common = dict(max_steps=100, warmup_steps=0, min_lr_ratio=0.0)
    # half-way both are at half the rate; at a quarter the cosine is at (1 + cos(pi / 4)) / 2
    assert lr_factor(50, schedule="cosine", **common) == pytest.approx(0.5)
    assert lr_factor(50, schedule="linear", **common) == pytest.approx(0.5)
    assert lr_factor(25, schedule="cosine", **common) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert lr_factor(25, schedule="linear", **common) == pytest.approx(0.75)
    # the floor scales the decay: min + (1 - min) * decay
    assert lr_factor(50, schedule="linear", max_steps=100, warmup_steps=0, min_lr_ratio=0.2) == pytest.approx(0.6)


def test_constant_is_one_after_warmup():
    settings = dict(max_steps=20, warmup_steps=2, schedule="constant", min_lr_ratio=0.01)
    assert factors(range(25), **settings) == pytest.approx([0.5] + [1.0] * 24)


def test_no_warmup_starts_at_the_full_rate():
    settings = dict(max_steps=10, warmup_steps=0, schedule="linear", min_lr_ratio=0.0)
    assert factors(range(11), **settings) == pytest.approx([1 - s / 10 for s in range(11)])


def test_a_one_step_run():
    # trains its only step at the full rate; the scheduler then sits at the floor
    assert lr_factor(0, max_steps=1, warmup_steps=0, schedule="cosine", min_lr_ratio=0.05) == pytest.approx(1.0)
    assert lr_factor(1, max_steps=1, warmup_steps=0, schedule="cosine", min_lr_ratio=0.05) == pytest.approx(0.05)
    # a warm-up longer than the run: the run ends while still warming up
    assert lr_factor(0, max_steps=1, warmup_steps=4, schedule="cosine", min_lr_ratio=0.05) == pytest.approx(0.25)


def test_scheduler_sets_the_optimiser_rate_step_by_step():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    settings = dict(max_steps=8, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    scheduler = build_scheduler(optimizer, **settings)
    seen = []
    for _ in range(9):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5 * f for f in factors(range(9), **settings)])
    assert seen[-1] == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_steps": 0}, "max_steps must be at least 1"),
        ({"warmup_steps": -1}, "warmup_steps must be 0 or more"),
        ({"schedule": "step"}, "unknown schedule 'step'"),
        ({"min_lr_ratio": -0.1}, r"min_lr_ratio must lie in \[0, 1\]"),
        ({"min_lr_ratio": 1.5}, r"min_lr_ratio must lie in \[0, 1\]"),
    ],
)
def test_bad_settings_raise(changes, message):
    settings = dict(max_steps=10, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    settings.update(changes)
    with pytest.raises(ValueError, match=message):
        lr_factor(0, **settings)
    with pytest.raises(ValueError, match=message):  # at once, not at the first decayed step
        build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), **settings)


def test_engine_config_refuses_bad_schedule_settings():
    with pytest.raises(ConfigError, match="warmup_steps"):
        EngineConfig.from_dict({"warmup_steps": -5})
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        EngineConfig.from_dict({"min_lr_ratio": 2.0})
