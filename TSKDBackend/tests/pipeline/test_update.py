"""Updating a previous run with new labels (``update.from_run``, ``tskd train --update-from``): the
checks on the previous run, the split that keeps the previous subjects' sides, the lineage, and the
acceptance test: an update starts from the previous student and finishes faster than a fresh run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tskd.cli.main import main
from tskd.config import save_yaml
from tskd.data.cases import Case
from tskd.data.labels import Label, LabelTable
from tskd.data.phantom import write_phantom_dataset
from tskd.errors import ConfigError, DataError
from tskd.pipeline.run import ALL_STAGES, format_summary, run_stages
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.pipeline.student_stage import _digest, warm_start_student
from tskd.pipeline.update import (
    PreviousRun,
    lineage,
    lineage_line,
    load_previous_run,
    stage_config,
    update_split,
)
from tskd.preprocess.normalization import NormalizationSpec
from tskd.progress import NullProgress
from tskd.runconfig import resolve_config, update_schedule
from tskd.pipeline.teacher_stage import warm_start_teacher
from tskd.student.networks import build_student
from tskd.data.transfer_set import TransferSet
from tskd.student.storage import load_student, save_student
from tskd.teacher.build import build_teacher
from tskd.teacher.storage import save_teacher


def _case(case_id: str, labelled: bool = True, subject: str | None = None) -> Case:
    return Case(case_id=case_id, subject_id=subject or case_id, image_path=Path(f"{case_id}.nii.gz"),
                label_path=Path(f"l_{case_id}.nii.gz") if labelled else None)


def _fake_finished_run(root: Path, config) -> Path:
    """The files a finished run has (contents only where load_previous_run reads them first)."""
    for name in ("split.json", "prepared/labels.json", "prepared/index.json", "teacher/stage.json",
                 "student/finetune/stage.json", "student/finetune/student.pt", "summary.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}", encoding="utf-8")
    save_yaml(config.to_dict(), root / "config.yaml")
    return root


# -- the previous run's checks ---------------------------------------------------------------------

def test_a_missing_or_unfinished_previous_run_is_refused(tmp_path):
    config = resolve_config(preset="tiny", base="none")
    with pytest.raises(ConfigError, match="is not a folder"):
        load_previous_run(tmp_path / "nowhere", config)
    unfinished = tmp_path / "unfinished"
    _fake_finished_run(unfinished, config)
    (unfinished / "student/finetune/stage.json").unlink()
    (unfinished / "summary.json").unlink()
    with pytest.raises(ConfigError, match=r"not a finished run \(missing student/finetune/stage.json, summary.json\)"):
        load_previous_run(unfinished, config)


@pytest.mark.parametrize("field, overrides", [
    ("teacher.architecture", {"teacher": {"architecture": "vit_b"}}),
    ("teacher.input_size", {"teacher": {"input_size": 128}}),
    ("teacher.lora", {"teacher": {"lora": {"rank": 16}}}),
    ("distill.student", {"distill": {"student": "vit_tiny"}}),
    ("data.prepared.normalization", {"data": {"prepared": {"normalization": "ct"}}}),
])
def test_settings_the_previous_weights_depend_on_must_stay(tmp_path, field, overrides):
    before = resolve_config(preset="tiny", base="none")
    previous = _fake_finished_run(tmp_path / "run", before)
    now = resolve_config(preset="tiny", base="none", overrides=overrides)
    with pytest.raises(ConfigError, match=rf"{field} is .* but .* in {previous}; .* must stay the same"):
        load_previous_run(previous, now)


def test_another_teacher_base_is_refused(tmp_path):
    previous = _fake_finished_run(tmp_path / "run", resolve_config(preset="tiny", base="none"))
    now = resolve_config(preset="tiny", base="none", overrides={})
    now.teacher.base = str(tmp_path / "sam_vit_b.pth")
    with pytest.raises(ConfigError, match="teacher.base is"):
        load_previous_run(previous, now)


def _previous(split: dict, labels: LabelTable | None = None) -> PreviousRun:
    config = resolve_config(preset="tiny", base="none")
    return PreviousRun(run=RunFolder(Path("/runs/first")), config=config, split=split,
                       labels=labels or LabelTable([Label(1, "organ")]), normalization=NormalizationSpec(mode="none"),
                       input_size=32, slice_axis=0)


def test_another_label_table_is_refused():
    previous = _previous({"train": [], "val": [], "unlabelled": []})
    previous.check_labels(LabelTable([Label(1, "organ")]), "data")  # the same table passes
    with pytest.raises(DataError, match="data: the label table .* differs from the one of the run being updated"):
        previous.check_labels(LabelTable([Label(1, "organ"), Label(2, "lesion")]), "data")


# -- split, lineage, schedule ----------------------------------------------------------------------

def test_update_split_keeps_the_previous_sides_and_splits_only_new_subjects():
    before = {"train": ["a", "b", "c"], "val": ["v"], "unlabelled": ["u"]}
    cases = [_case("a"), _case("b"), _case("v"), _case("v2", subject="v"),  # c was removed, v2 joins v's subject
             _case("u"),  # unlabelled before, labelled now: its subject trained
             _case("n1"), _case("n2"), _case("n3"), _case("n4"),  # new subjects
             _case("w", labelled=False)]
    config = resolve_config(preset="tiny", base="none", overrides={"data": {"val_fraction": 0.5}})
    split = update_split(cases, before, config)
    assert {"a", "b", "u"} <= set(split["train"]) and {"v", "v2"} <= set(split["val"])
    new = {"n1", "n2", "n3", "n4"}
    assert len(new & set(split["val"])) == 2 and len(new & set(split["train"])) == 2  # val_fraction 0.5
    assert "c" not in split["train"] + split["val"] and split["unlabelled"] == ["w"]
    assert split == update_split(cases, before, config)  # deterministic
    # one new subject cannot be split: it trains, the previous validation subjects stay
    single = update_split([_case("a"), _case("v"), _case("n1")], before, config)
    assert single == {"train": ["a", "n1"], "val": ["v"], "unlabelled": []}


def test_update_split_max_labelled_keeps_the_previous_training_cases_first():
    before = {"train": ["a", "b"], "val": ["v"], "unlabelled": []}
    config = resolve_config(preset="tiny", base="none", overrides={"data": {"max_labelled": 3}})
    split = update_split([_case("a"), _case("b"), _case("v"), _case("x", subject="a"), _case("y", subject="b")],
                         before, config)
    assert {"a", "b"} <= set(split["train"]) and len(split["train"]) == 3
    assert len({"x", "y"} & set(split["unlabelled"])) == 1  # the label over the limit is not used


def test_lineage_lists_added_and_removed_cases():
    previous = _previous({"train": ["a", "b", "c"], "val": ["v"], "unlabelled": ["u"]})
    record = lineage(previous, {"train": ["a", "b", "u", "n"], "val": ["v"], "unlabelled": []})
    assert record == {"updated_from": "/runs/first", "added_cases": ["n", "u"], "removed_cases": ["c"],
                      "labelled_before": 4, "labelled_now": 5}
    assert lineage_line(record) == "/runs/first, 2 cases added, 1 removed (4 -> 5 labelled)"


def test_the_preset_says_how_short_an_update_is():
    config = resolve_config(preset="cpu-small", base="none")
    assert (config.update.teacher_steps, config.update.student_steps) == (0.3, 0.3)
    assert update_schedule(config) == {"teacher": 180, "distill": 180, "finetune": 120, "reference": 300}
    gpu = resolve_config(preset="gpu", base="none")
    assert update_schedule(gpu)["teacher"] == 2000
    with pytest.raises(ConfigError, match="teacher_steps"):
        resolve_config(preset="tiny", base="none", overrides={"update": {"teacher_steps": 0}})


def test_stage_config_takes_the_previous_geometry_and_the_short_schedule():
    config = resolve_config(preset="tiny", base="none")
    previous = _previous({"train": [], "val": [], "unlabelled": []})
    staged = stage_config(config, previous)
    assert staged.data.prepared.input_size == 32 and staged.data.prepared.slice_axis == 0
    assert staged.data.prepared.fit_to_data is False
    assert staged.teacher.train.max_steps == 90 and staged.distill.train.max_steps == 60
    assert staged.finetune.train.max_steps == 45 and staged.update.from_run == "/runs/first"
    assert staged.distill.train.validate_every <= 60 and staged.distill.mae_pretrain is False


# -- warm starts -----------------------------------------------------------------------------------

def test_warm_started_students_and_teachers_carry_the_previous_weights(tmp_path):
    torch.manual_seed(1)
    saved = save_student(build_student("unet_small", num_classes=3, input_size=32), tmp_path / "student.pt")
    torch.manual_seed(2)
    student = warm_start_student(build_student("unet_small", num_classes=3, input_size=32), saved)
    for name, value in load_student(saved).state_dict().items():
        assert torch.equal(student.state_dict()[name], value), name
    with pytest.raises(ConfigError, match="the previous student is .* this run's is"):
        warm_start_student(build_student("unet_small", num_classes=4, input_size=32), saved)

    config = resolve_config(preset="tiny", base="none", input_size=32).teacher
    torch.manual_seed(1)
    previous = build_teacher(config, 3)
    save_teacher(previous, tmp_path / "teacher", config)
    torch.manual_seed(2)
    teacher = build_teacher(config, 3)
    warm_start_teacher(teacher, tmp_path / "teacher")
    for name, value in previous.state_dict().items():
        assert torch.equal(teacher.state_dict()[name], value), name
    with pytest.raises(ConfigError, match="the previous teacher does not fit"):
        warm_start_teacher(build_teacher(config, 4), tmp_path / "teacher")


# -- the acceptance test: train, add labels, update ------------------------------------------------

def _config(**update):
    tiny = {"warmup_steps": 0, "log_every": 1}
    overrides = {
        "data": {"val_fraction": 0.25, "augment": {"affine_prob": 0.0}},  # phantoms learn faster unwarped
        "teacher": {"train": {"max_steps": 30, "validate_every": 30, "checkpoint_every": 30, **tiny}},
        # a 6-step diffusion model makes noise: the gate is off so that its images reach the transfer set
        "synthesis": {"num_synthetic": 4, "sampling_steps": 4, "sample_batch_size": 8,
                      "gate": {"duplicate_threshold": None, "min_std": 0.0, "max_saturated_fraction": 1.0,
                               "max_entropy": None},
                      "train": {"max_steps": 6, "validate_every": 6, "checkpoint_every": 6, **tiny}},
        "distill": {"train": {"max_steps": 30, "validate_every": 30, "checkpoint_every": 30, **tiny}},
        "finetune": {"train": {"max_steps": 20, "validate_every": 20, "checkpoint_every": 20, **tiny}},
    }
    if update:
        overrides["update"] = update
    return resolve_config(preset="tiny", overrides=overrides, base="none", input_size=32)


def _losses(folder: Path) -> list[float]:
    lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


def _steps(run: Path) -> int:
    return sum(read_json(run / f"{stage}/stage.json")["steps"] for stage in
               ("teacher", "student/distill", "student/finetune", "student/reference")
               ) + (read_json(run / "synthesis/stage.json").get("steps", 0) if (run / "synthesis").is_dir() else 0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A first run on 7 labelled phantoms (+1 unlabelled), an update after labelling that one and two
    new ones, and a fresh run on the same 10 labelled phantoms."""
    root = tmp_path_factory.mktemp("update")
    enlarged = write_phantom_dataset(root / "enlarged", cases=10, seed=3)
    first = root / "first"
    shutil.copytree(enlarged, first)
    (first / "unlabelled").mkdir()
    (first / "labels" / "case_007.nii.gz").unlink()
    (first / "images" / "case_007.nii.gz").rename(first / "unlabelled" / "case_007.nii.gz")
    for name in ("case_008", "case_009"):
        (first / "images" / f"{name}.nii.gz").unlink()
        (first / "labels" / f"{name}.nii.gz").unlink()
    # the first run without its export and report (an update starts from its students' weights, not its
    # package); the fresh run without its report (a run's "seconds" end before the report): the update
    # alone is asserted on whole
    run_stages(first, root / "run1", _config(), stages=[s for s in ALL_STAGES if s not in ("export", "report")],
               progress=NullProgress())
    update = run_stages(enlarged, root / "run2", _config(from_run=str(root / "run1")), progress=NullProgress())
    fresh = run_stages(enlarged, root / "fresh", _config(), stages=[s for s in ALL_STAGES if s != "report"],
                       progress=NullProgress())
    return root, update, fresh


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the first one builds the three runs (a few minutes; more on a busy machine)
def test_the_update_starts_from_the_previous_student(runs):
    root, _, _ = runs
    previous = load_student(root / "run1/student/finetune/student.pt")
    distill = root / "run2/student/distill"
    start = torch.load(distill / "checkpoints/latest.pt", map_location="cpu", weights_only=False)["fingerprint"]
    assert start["start_from"] == str(root / "run1/student/finetune/student.pt")
    assert start["start_weights"] == _digest(previous)  # the weights it started from, recorded by the stage
    # and it behaves like it: distillation's first loss is about where the previous run's ended (the
    # KD loss has a floor, the soft labels' entropy, so the gap to a fresh start is not large)...
    first_update, fresh = _losses(distill)[0], _losses(root / "fresh/student/distill")[0]
    assert first_update <= 1.1 * _losses(root / "run1/student/distill")[-1]
    assert first_update < 0.75 * fresh
    # ... and the reference (Dice + CE, which falls to near 0) starts far below a fresh one
    update, fresh = _losses(root / "run2/student/reference")[:3], _losses(root / "fresh/student/reference")[:3]
    assert update[0] < 0.5 * fresh[0] and sum(update) < 0.5 * sum(fresh)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the first one builds the three runs (a few minutes; more on a busy machine)
def test_the_update_records_its_lineage_and_reuses_the_previous_split_and_synthesis(runs):
    root, update, _ = runs
    record = read_json(root / "run2/lineage.json")
    assert record["updated_from"] == str(root / "run1")
    assert record["added_cases"] == ["case_007", "case_008", "case_009"]
    assert record["removed_cases"] == [] and (record["labelled_before"], record["labelled_now"]) == (7, 10)
    assert update["lineage"] == record
    before, after = read_json(root / "run1/split.json")["cases"], read_json(root / "run2/split.json")["cases"]
    assert set(before["train"]) <= set(after["train"]) and set(before["val"]) <= set(after["val"])
    assert "case_007" in after["train"]  # unlabelled before, from a training subject
    # the diffusion model was copied, not trained; its synthetic images were labelled again
    assert not (root / "run2/synthesis/checkpoints").exists()
    assert read_json(root / "run2/synthesis/stage.json") == read_json(root / "run1/synthesis/stage.json")
    assert update["stages"]["synthesis"]["transfer_set"]["counts"]["synthetic"] == 4
    before, after = TransferSet(root / "run1/transfer_set"), TransferSet(root / "run2/transfer_set")
    assert after.seeds() == before.seeds()  # the same images, none sampled again
    first, again = before[before.indices("synthetic")[0]], after[after.indices("synthetic")[0]]
    assert np.array_equal(first.image, again.image)
    assert "updated from: " + str(root / "run1") + ", 3 cases added" in format_summary(update)
    report = (root / "run2/report/report.md").read_text(encoding="utf-8")
    assert f"Updated from {root / 'run1'}, 3 cases added" in report


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the first one builds the three runs (a few minutes; more on a busy machine)
def test_the_update_takes_fewer_steps_and_less_time_than_a_fresh_run(runs):
    root, update, fresh = runs
    assert _steps(root / "run2") < 0.5 * _steps(root / "fresh")
    assert update["seconds"] < fresh["seconds"]
    assert update["stages"]["package"]["validation"]["mean_dice"] > 0.5  # and it still segments


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the first one builds the three runs (a few minutes; more on a busy machine)
def test_updating_into_the_previous_folder_is_refused(runs):
    root, _, _ = runs
    with pytest.raises(ConfigError, match="this run's own folder"):
        run_stages(root / "enlarged", root / "run1", _config(from_run=str(root / "run1")), progress=NullProgress())


# The two command-line checks call the command's entry point in this process (``python -m tskd`` is
# ``sys.exit(main())``): a subprocess would only add seconds of imports; an uncaught exception (a
# traceback) would fail the test here as well.

def test_cli_update_from_a_missing_run_is_one_line_and_a_non_zero_exit(tmp_path, capsys):
    data = write_phantom_dataset(tmp_path / "data", cases=2, seed=0)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny", "--base", "none",
                 "--update-from", str(tmp_path / "no-such-run")])
    stderr = capsys.readouterr().err
    assert code != 0 and "Traceback" not in stderr
    assert f"tskd: error: update.from_run: {tmp_path / 'no-such-run'} is not a folder" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing was started


def test_cli_no_reuse_synthesis_needs_update_from(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--preset", "tiny", "--base", "none",
                 "--no-reuse-synthesis"])
    assert code != 0
    assert "--no-reuse-synthesis only applies with --update-from" in capsys.readouterr().err
