"""RunFolder.check_or_save_config: same settings resume, other settings are refused, and a run made
before a setting existed resumes when the setting keeps its default."""

from __future__ import annotations

import pytest

from tskd.config.base import load_yaml, save_yaml
from tskd.errors import ConfigError
from tskd.runconfig import PipelineConfig, resolve_config
from tskd.pipeline.run_folder import RunFolder


def _without(saved: dict, *path: str) -> dict:
    node = saved
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return saved


def test_a_setting_an_older_version_did_not_have_is_accepted_at_its_default(tmp_path):
    run, config = RunFolder(tmp_path / "run"), resolve_config(preset="cpu-small")
    run.check_or_save_config(config)
    # as tskd 0.1 wrote it: no soft-Dice distillation weight, no reference section
    old = _without(_without(load_yaml(run.config), "distill", "w_kd_dice"), "reference")
    save_yaml(old, run.config)
    assert config.distill.w_kd_dice == PipelineConfig().distill.w_kd_dice  # the preset keeps the default
    run.check_or_save_config(config)
    assert load_yaml(run.config) == config.to_dict()  # the file is completed


def test_a_missing_setting_with_another_value_and_a_changed_one_are_refused(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.check_or_save_config(resolve_config(preset="cpu-small"))
    save_yaml(_without(load_yaml(run.config), "distill", "w_kd_dice"), run.config)
    other = resolve_config(preset="cpu-small", overrides={"distill": {"w_kd_dice": 0.0}})
    with pytest.raises(ConfigError, match=r"different settings \(differences in: distill.w_kd_dice\)"):
        run.check_or_save_config(other)
    changed = resolve_config(preset="cpu-small", overrides={"teacher": {"input_size": 64}})
    with pytest.raises(ConfigError, match="teacher.input_size"):
        run.check_or_save_config(changed)


def test_the_default_preset_fits_small_data_and_an_explicit_size_is_exact():
    default = resolve_config()
    assert default.data.prepared.fit_to_data is True and default.data.prepared.input_size == 128
    explicit = resolve_config(input_size=96)
    assert explicit.data.prepared.fit_to_data is False
    assert explicit.data.prepared.input_size == 96 and explicit.teacher.input_size == 96
