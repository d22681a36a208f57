"""``tskd demo``'s own options: --slices (thinner phantoms, for a foundation teacher's encoder), --base
(the teacher's foundation weights, resolved as ``tskd train`` resolves them) and the refusal to reuse
phantoms made with other settings. The whole demo, trained, is the suite's shared run (tests/conftest.py)."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from tskd.cli.main import build_parser, main
from tskd.errors import ConfigError
from tskd.pipeline import demo as demo_module
from tskd.runconfig import resolve_config


class _StopAfterData(Exception):
    """Raised in place of the pipeline: these tests are about what comes before it."""


@pytest.fixture
def no_pipeline(monkeypatch):
    seen = {}

    def fake_run_stages(data, run_dir, config, **kwargs):
        seen.update(data=data, run_dir=run_dir, config=config)
        raise _StopAfterData

    monkeypatch.setattr(demo_module, "run_stages", fake_run_stages)
    return seen


def test_slices_makes_thinner_phantoms_and_a_changed_setting_is_refused(tmp_path, no_pipeline):
    config = resolve_config(preset="tiny")
    with pytest.raises(_StopAfterData):
        demo_module.run_demo(tmp_path / "demo", config, cases=2, unlabelled=1, test_cases=1, slices=12)
    for name in ("data/images/case_000.nii.gz", "data/unlabelled/case_002.nii.gz", "test/images/case_000.nii.gz"):
        assert sitk.ReadImage(str(tmp_path / "demo" / name)).GetSize() == (64, 64, 12), name
    # the same settings again: the phantoms are reused (the pipeline is reached again)
    with pytest.raises(_StopAfterData):
        demo_module.run_demo(tmp_path / "demo", config, cases=2, unlabelled=1, test_cases=1, slices=12)
    # other slices or cases in the same folder: a specific error before any training
    with pytest.raises(ConfigError, match=r"size \[64, 64, 12\] \(asked: \[64, 64, 32\]\).*another --workdir"):
        demo_module.run_demo(tmp_path / "demo", config, cases=2, unlabelled=1, test_cases=1)
    with pytest.raises(ConfigError, match=r"cases 2 \(asked: 3\)"):
        demo_module.run_demo(tmp_path / "demo", config, cases=3, unlabelled=1, test_cases=1, slices=12)


def test_cli_passes_base_and_slices_to_the_demo(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_run_demo(workdir, config, *, cases, slices):
        seen.update(workdir=workdir, config=config, cases=cases, slices=slices)
        raise ConfigError("stop here")

    monkeypatch.setattr(demo_module, "run_demo", fake_run_demo)
    weights = tmp_path / "lite_medsam.pth"
    weights.write_bytes(b"not read by this test")
    code = main(["demo", "--workdir", str(tmp_path / "d"), "--base", str(weights), "--slices", "12",
                 "--cases", "3"])
    assert code != 0 and "stop here" in capsys.readouterr().err
    assert seen["slices"] == 12 and seen["cases"] == 3
    assert seen["config"].teacher.base == str(weights)
    assert seen["config"].distill.train.max_steps == 200  # the tiny preset, the demo's default


def test_cli_rejects_too_few_slices_and_an_unknown_base(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["demo", "--slices", "4"])
    assert exit_info.value.code == 2
    assert "--slices must be at least 8" in capsys.readouterr().err
    code = main(["demo", "--workdir", str(tmp_path / "d"), "--base", "no-such-model"])
    assert code != 0
    err = capsys.readouterr().err
    assert "--base no-such-model" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_a_foundation_teacher_gets_the_demo_settings_under_the_users_config(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(demo_module, "run_demo", lambda workdir, config, **kw: seen.append(config) or {})
    monkeypatch.setattr(demo_module, "format_demo", lambda result: "")
    weights = tmp_path / "lite_medsam.pth"
    weights.write_bytes(b"x")
    assert main(["demo", "--workdir", str(tmp_path / "a"), "--base", "none"]) == 0
    assert main(["demo", "--workdir", str(tmp_path / "b"), "--base", str(weights)]) == 0
    own = tmp_path / "own.yaml"
    own.write_text("teacher: {train: {max_steps: 9, lr: 0.002}}\n", encoding="utf-8")
    assert main(["demo", "--workdir", str(tmp_path / "c"), "--base", str(weights), "--config", str(own)]) == 0
    scratch, foundation, with_own = (config.teacher for config in seen)
    # the small teacher keeps the tiny preset's settings
    assert (scratch.architecture, scratch.model_input_size, scratch.stage_train.max_steps) == ("tiny", 64, 300)
    assert scratch.train.lr == pytest.approx(4e-3)
    # foundation weights: their own architecture, LiteMedSAM's 256 px, a short and gentle schedule
    assert foundation.base == str(weights) and foundation.architecture == "auto"
    assert foundation.model_input_size == 256 and foundation.stage_train.max_steps == 60
    assert foundation.train.lr == pytest.approx(1e-3)
    assert seen[1].synthesis.num_synthetic == 16 and seen[0].synthesis.num_synthetic == 32
    # the user's --config wins: their steps and rate (the demo's step count steps aside)
    assert with_own.stage_train.max_steps == 9 and with_own.train.lr == pytest.approx(2e-3)
    assert with_own.model_input_size == 256
    # the layer itself: FOUNDATION_DEMO is not changed by a user's file
    assert demo_module.foundation_settings({"teacher": {"train": {"max_steps": 5}}})["teacher"]["train"] == {
        "lr": 1e-3, "max_steps": 5}
    assert demo_module.FOUNDATION_DEMO["teacher"]["foundation_max_steps"] == 60


def test_the_closing_table_names_the_foundation_weights_or_their_absence():
    from tskd.pipeline.run import format_summary

    def summary(**teacher):
        return {"run": "r", "stages": {"teacher": {"folder": "r/teacher", "metrics": {"val_dice": 0.8},
                                                   "architecture": "litemedsam", **teacher}},
                "verdict": "labels-only student (val Dice 0.900 vs distilled 0.890)"}

    table = format_summary(summary(has_foundation_weights=True, base="lite_medsam.pth",
                                   base_sha256="79d8c9dca6db4d69d3f9", encoder="frozen"))
    assert "litemedsam (lite_medsam.pth, sha256 79d8c9dca6db, encoder frozen), val Dice 0.800" in table
    assert "exported: labels-only student (val Dice 0.900 vs distilled 0.890)" in table
    assert "NO foundation weights" in format_summary(summary(has_foundation_weights=False, base=None))
