"""The benchmark's parts without training: split, method configs, shared folders, table and plot."""

from __future__ import annotations

import csv
import os

import pytest

from tskd.data.dataset import load_dataset
from tskd.data.phantom import PhantomConfig, write_phantom_dataset
from tskd.errors import ConfigError
from tskd.pipeline.comparison.folders import link_tree
from tskd.pipeline.comparison.plot import plot_results
from tskd.pipeline.comparison.report import markdown_table, write_table_files
from tskd.pipeline.comparison.split import benchmark_split, load_or_make_split
from tskd.runconfig import resolve_config
from tskd.pipeline.comparison.methods import METHODS, available_methods, get_method, parse_methods
from tskd.pipeline.student_stage import supervised_budget


@pytest.fixture(scope="module")
def subjects_dataset(tmp_path_factory):
    """12 labelled 2D cases from 6 subjects (two frames each: s00_a, s00_b...) + 2 unlabelled."""
    root = tmp_path_factory.mktemp("subjects") / "data"
    write_phantom_dataset(root, cases=12, seed=3, unlabelled=2, config=PhantomConfig(size=(32, 32), structures=1))
    for folder in ("images", "labels", "unlabelled"):
        for path in sorted((root / folder).glob("case_*.nii.gz")):
            number = int(path.name[5:8])
            path.rename(path.with_name(f"s{number // 2:02d}_{'ab'[number % 2]}.nii.gz"))
    return load_dataset(root, subject_pattern=r"^(s\d\d)_")


def _subject(case_id: str) -> str:
    return case_id.split("_")[0]


def test_split_holds_out_whole_subjects_and_keeps_n_labelled(subjects_dataset):
    config = resolve_config(preset="tiny", overrides={"data": {"max_labelled": 3, "subject_pattern": r"^(s\d\d)_"}})
    split = benchmark_split(subjects_dataset, config, test_fraction=0.2)
    test_subjects = {_subject(c) for c in split["test"]}
    assert len(test_subjects) == 1 and len(split["test"]) == 2  # round(0.2 * 6 subjects) = 1 subject, 2 frames
    for part in ("train", "val", "unlabelled"):
        assert not test_subjects & {_subject(c) for c in split[part]}, part
    assert len(split["train"]) == 3
    assert not {_subject(c) for c in split["val"]} & {_subject(c) for c in split["train"] + split["unlabelled"]}
    labelled = {c.case_id for c in subjects_dataset.labelled}
    # every labelled training case beyond the 3 joins as unlabelled; no case is lost or doubled
    everything = split["train"] + split["val"] + split["unlabelled"] + split["test"]
    assert len(everything) == len(set(everything))
    assert labelled <= set(everything)
    assert benchmark_split(subjects_dataset, config, test_fraction=0.2) == split  # deterministic


def test_saved_split_is_reused_and_other_settings_are_refused(subjects_dataset, tmp_path):
    config = resolve_config(preset="tiny", overrides={"data": {"max_labelled": 3, "subject_pattern": r"^(s\d\d)_"}})
    first = load_or_make_split(tmp_path / "split.json", subjects_dataset, config, test_fraction=0.2)
    assert load_or_make_split(tmp_path / "split.json", subjects_dataset, config, test_fraction=0.2) == first
    with pytest.raises(ConfigError, match="max_labelled"):
        other = resolve_config(preset="tiny", overrides={"data": {"max_labelled": 4, "subject_pattern": r"^(s\d\d)_"}})
        load_or_make_split(tmp_path / "split.json", subjects_dataset, other, test_fraction=0.2)
    with pytest.raises(ConfigError, match="test_fraction"):
        load_or_make_split(tmp_path / "split.json", subjects_dataset, config, test_fraction=0.3)


def test_method_registry_and_parsing():
    assert available_methods() == ["tskd_train", "tskd", "tskd_no_synth", "labelled_only", "task_agnostic_kd", "mae"]
    assert parse_methods(" mae, tskd,mae ") == ["mae", "tskd"]
    with pytest.raises(ConfigError, match="unknown benchmark method 'bogus'.*labelled_only"):
        parse_methods("tskd,bogus")
    with pytest.raises(ConfigError, match="no method"):
        parse_methods(" , ")


def test_method_configs_follow_the_budget_rules():
    config = resolve_config(preset="cpu-small", base="none")
    d, f = config.distill.train.max_steps, config.finetune.train.max_steps

    no_synth, _ = get_method("tskd_no_synth").configure(config)
    assert no_synth.synthesis.enabled is False and no_synth.teacher == config.teacher and no_synth.data == config.data

    supervised, note = get_method("labelled_only").configure(config)
    budget = supervised_budget(supervised)
    assert budget.max_steps == d + f
    assert budget.lr == config.distill.train.lr
    assert str(d + f) in note

    mae, note = get_method("mae").configure(config)
    assert config.distill.student == "unet_small"
    assert mae.distill.student == "vit_tiny" and "MAE needs a ViT" in note
    assert mae.mae.train.max_steps == d
    vit = resolve_config(preset="cpu-small", overrides={"distill": {"student": "vit_nano"}})
    mae_vit, note_vit = get_method("mae").configure(vit)
    assert mae_vit.distill.student == "vit_nano" and note_vit == ""

    agnostic, note = get_method("task_agnostic_kd").configure(config)
    assert "NO foundation weights" in note
    assert agnostic.distill.train.best_metric == "min:val_feat_mse"
    assert [m.needs_teacher for m in METHODS.values()] == [True, True, True, False, False, False]

    as_run, note = get_method("tskd_train").configure(config)
    assert as_run == config and as_run.reference.enabled
    assert note == "as `tskd train` runs: " + ("synthesis on" if config.synthesis.enabled else "synthesis off") + \
        ", with the supervised reference"


def test_link_tree_hard_links_and_skips(tmp_path):
    src = tmp_path / "src"
    (src / "checkpoints").mkdir(parents=True)
    (src / "checkpoints" / "latest.pt").write_bytes(b"x" * 10)
    (src / "sub").mkdir()
    (src / "sub" / "a.bin").write_bytes(b"abc")
    (src / "stage.json").write_text("{}", encoding="utf-8")
    dst = tmp_path / "dst" / "teacher"
    dst.parent.mkdir()
    link_tree(src, dst, skip=("checkpoints",))
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*")) == ["stage.json", "sub", "sub/a.bin"]
    assert os.stat(dst / "sub" / "a.bin").st_ino == os.stat(src / "sub" / "a.bin").st_ino
    assert not list(tmp_path.joinpath("dst").glob(".*tmp"))


def _result(method, dice, status="done", classes=("organ_a", "organ_b")):
    if status != "done":
        return {"method": method, "status": status, "error": "RuntimeError: boom | twice", "note": ""}
    per_class = {str(i + 1): {"name": name, "dice": dice - 0.1 * i, "dice_sd": 0.05} for i, name in enumerate(classes)}
    return {"method": method, "status": "done", "error": None, "note": "a note", "student": "unet_small",
            "parameters": 839684, "ms_per_slice": 3.25, "val_dice": 0.7, "train_seconds": 90.0,
            "test": {"n_cases": 4, "mean_dice": dice, "dice_sd": 0.04, "mean_hd95_mm": 3.5,
                     "mean_assd_mm": float("nan"), "per_class": per_class}}


def test_table_files_have_the_columns_and_keep_failures(tmp_path):
    results = [_result("tskd", 0.8), _result("labelled_only", 0.0, status="failed"), _result("mae", 0.6)]
    table = write_table_files(results, {"summary": {"data": "phantoms"}}, markdown=tmp_path / "r.md",
                              csv_path=tmp_path / "r.csv", json_path=tmp_path / "r.json")
    lines = table.splitlines()
    assert lines[0].startswith("| method | student | parameters | ms / slice | test Dice (mean ± sd) | Dice organ_a")
    assert "| tskd | unet_small | 839,684 | 3.25 | 0.800 ± 0.040 | 0.800 | 0.700 | 3.50 | n/a |" in table
    assert "FAILED: RuntimeError: boom \\| twice" in lines[3]
    text = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert text.startswith("- data: phantoms") and table in text
    with open(tmp_path / "r.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["method", "status", "student", "parameters", "ms_per_slice", "test_cases", "mean_dice",
                             "dice_sd", "dice_organ_a", "dice_organ_b", "hd95_mm", "assd_mm", "val_dice",
                             "train_minutes", "note", "error"]
    assert rows[1]["status"] == "failed" and rows[1]["error"].startswith("RuntimeError") and rows[1]["mean_dice"] == ""
    assert float(rows[2]["dice_organ_b"]) == pytest.approx(0.5)
    assert rows[0]["assd_mm"] == ""  # NaN is written as an empty cell
    assert "NaN" not in (tmp_path / "r.json").read_text(encoding="utf-8")
    single = markdown_table([_result("tskd", 0.8, classes=("head",))])
    assert "Dice head" not in single  # one class: the mean is the class


def test_plot_is_a_png(tmp_path):
    path = plot_results([_result("tskd", 0.8), _result("mae", 0.0, status="failed")], tmp_path / "p.png", title="t")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.parametrize("lora, words", [(None, "litemedsam from lite_medsam.pth (frozen encoder, decoder fine-tuned)"),
                                         ({"rank": 4}, "litemedsam from lite_medsam.pth + LoRA")])
def test_the_header_says_how_the_foundation_teacher_was_tuned(tmp_path, lora, words):
    import json

    from tskd.pipeline.comparison.folders import BenchmarkFolder
    from tskd.pipeline.comparison.runner import TimingSettings, _header

    folder = BenchmarkFolder(tmp_path / "bench")
    folder.shared.teacher.mkdir(parents=True)
    teacher = {"architecture": "litemedsam", "has_foundation_weights": True, "lora": lora,
               "base": {"path": "/cache/checkpoints/lite_medsam.pth"}}
    (folder.shared.teacher / "stage.json").write_text(json.dumps({"teacher": teacher}))
    split = {"train": ["a"], "val": ["b"], "unlabelled": [], "test": ["c"]}
    header = _header(folder, "data", resolve_config(preset="tiny"), split, 0.2, TimingSettings(), None)
    assert header["summary"]["teacher"] == words
