"""The supervised reference of every run: the distilled student and the labels-only student are both
exported and scored on the validation volumes, and the better one becomes the run's model.

Each run is made cheap and its outcome deterministic by the learning rates: a learning rate of 1e-7
trains nothing, so the student it governs stays at its random initialisation (Dice near 0) while the
other one learns the phantoms in a few dozen steps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tskd.errors import ConfigError
from tskd.pipeline.choice import compare_students, verdict
from tskd.runconfig import resolve_config
from tskd.pipeline.comparison.methods import get_method
from tskd.pipeline.run import COMPARISON_KEYS, format_summary, run_stages
from tskd.pipeline.run_folder import read_json
from tskd.progress import NullProgress
from tskd.pipeline.comparison.runner import _train_seconds
from tskd.pipeline.data_stage import load_prepared_data
from tskd.pipeline.run_folder import RunFolder
from tskd.pipeline.stage import StageContext
from tskd.pipeline.student_stage import run_reference_stage
from tskd.runtime import OnnxSegmenter, StudentPackage
from tskd.student.ensemble import StudentEnsemble
from tskd.student.storage import load_student

FROZEN = 1e-7  # a learning rate that leaves a student at its random initialisation


def _config(*, distill: dict, finetune: dict, reference: dict | None = None, val_fraction: float = 0.25,
            weights: dict | None = None):
    overrides = {
        "data": {"val_fraction": val_fraction, "augment": {"affine_prob": 0.0}},  # phantoms learn faster unwarped
        "teacher": {"train": {"max_steps": 1, "warmup_steps": 0, "validate_every": 1, "checkpoint_every": 1}},
        "synthesis": {"enabled": False},
        "distill": {"train": {"warmup_steps": 0, "validate_every": 1000, "checkpoint_every": 1000, **distill},
                    **(weights or {})},
        "finetune": {"train": {"warmup_steps": 0, "validate_every": 1000, "checkpoint_every": 1000, **finetune}},
    }
    if reference is not None:
        overrides["reference"] = reference
    return resolve_config(preset="tiny", overrides=overrides, base="none", input_size=32)


def _meta(run):
    return json.loads((run / "package" / "tskd-model.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_a_worse_distilled_student_exports_the_reference(phantom_dataset, tmp_path):
    # distillation copies a teacher trained for one step (w_sup 0: nothing but the garbage teacher),
    # then fine-tuning cannot move it; the reference trains 41 steps at the distill rate
    config = _config(distill={"max_steps": 40, "lr": 3e-3}, finetune={"max_steps": 1, "lr": FROZEN},
                     weights={"w_sup": 0.0})
    run = tmp_path / "run"
    summary = run_stages(phantom_dataset, run, config, progress=NullProgress())

    assert set(COMPARISON_KEYS) <= set(summary)
    assert summary["chosen"] == "reference"
    d, r = summary["distilled"]["val_dice"], summary["reference"]["val_dice"]
    assert r > 0.5 and d < r - 0.3
    # the phantoms' 8 labelled cases leave 2 validation subjects: fewer than the default 3
    assert summary["val_subjects"] == 2
    assert summary["decided_on"] == "too_few_validation_subjects"
    assert "only 2 validation subjects" in summary["warning"]
    assert summary["verdict"].startswith("the distilled student was not better than training on the labels alone")
    assert "a foundation model (MedSAM) is what makes distillation pay" in summary["verdict"]
    assert "too few to be sure" in summary["verdict"]
    # the reference stage ran with the labelled-only budget: distill + finetune steps
    assert read_json(run / "student" / "reference" / "stage.json")["steps"] == 41
    assert (run / "student" / "reference" / "checkpoints").is_dir()

    # the exported package is the reference's, scored as the package is scored
    exported = read_json(run / "export.json")
    assert exported["validation"]["mean_dice"] == pytest.approx(r)
    assert read_json(run / "candidates" / "reference.json")["validation"]["mean_dice"] == pytest.approx(r)
    assert read_json(run / "candidates" / "distilled.json")["validation"]["mean_dice"] == pytest.approx(d)
    meta = _meta(run)
    assert meta["kind"] == "reference" and meta["teacher"] is None
    assert meta["metrics"]["val_dice"] == pytest.approx(r)
    assert meta["comparison"]["chosen"] == "reference"
    assert meta["comparison"]["verdict"] == summary["verdict"]
    package = StudentPackage.load(run / "run.tskd.zip")
    assert package.kind == "reference" and package.comparison["reference"]["val_dice"] == pytest.approx(r)

    # summary.json, the report and the console table say the same line
    assert read_json(run / "summary.json")["chosen"] == "reference"
    report = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert summary["verdict"] in report and "labels only (reference)" in report
    table = format_summary(summary)
    assert f"exported: {summary['verdict']}" in table and "reference" in table and "warning: only 2" in table

    # running again resumes: nothing is trained or exported again, the answer is the same
    again = run_stages(phantom_dataset, run, config, progress=NullProgress())
    assert again["chosen"] == "reference" and again["reference"] == summary["reference"]


@pytest.mark.slow
def test_a_better_distilled_student_is_exported(phantom_dataset, tmp_path):
    # the reference trains at the distill rate, here one that trains nothing; the distilled student
    # learns in fine-tuning at a normal rate
    config = _config(distill={"max_steps": 1, "lr": FROZEN}, finetune={"max_steps": 40, "lr": 3e-3},
                     reference={"min_val_subjects": 2})
    run = tmp_path / "run"
    summary = run_stages(phantom_dataset, run, config, progress=NullProgress())

    assert summary["chosen"] == "distilled" and summary["decided_on"] == "validation"
    assert summary["warning"] is None
    d, r = summary["distilled"]["val_dice"], summary["reference"]["val_dice"]
    assert d > 0.5 and r < d - 0.3
    assert summary["verdict"] == (f"TS-KD student {d:.3f} vs labels only {r:.3f}: distillation from a teacher "
                                  f"without foundation weights added {d - r:+.3f} Dice")
    meta = _meta(run)
    assert meta["kind"] == "distilled" and meta["teacher"]["architecture"] == "tiny"
    assert meta["comparison"]["distilled"]["val_dice"] == pytest.approx(d)
    assert meta["metrics"]["val_dice"] == pytest.approx(d)
    assert read_json(run / "summary.json")["verdict"] == summary["verdict"]


def test_without_validation_or_reference_the_run_says_so(phantom_dataset, tmp_path):
    tiny = {"max_steps": 2, "lr": 1e-3}
    config = _config(distill=tiny, finetune=tiny, val_fraction=0.0)
    summary = run_stages(phantom_dataset, tmp_path / "noval", config, progress=NullProgress())
    assert summary["chosen"] == "distilled" and summary["decided_on"] == "no_validation"
    assert summary["distilled"] == {"val_dice": None} and summary["reference"] == {"val_dice": None}
    assert "no validation subject" in summary["warning"]
    assert "without a check" in summary["verdict"]
    assert _meta(tmp_path / "noval")["comparison"]["decided_on"] == "no_validation"

    off = _config(distill=tiny, finetune=tiny, reference={"enabled": False})
    summary = run_stages(phantom_dataset, tmp_path / "off", off, progress=NullProgress())
    assert summary["chosen"] == "distilled" and summary["decided_on"] == "reference_disabled"
    assert summary["reference"] is None and "reference" not in summary["stages"]
    assert not (tmp_path / "off" / "student" / "reference").exists()
    assert _meta(tmp_path / "off")["kind"] == "distilled"


def test_the_choice_rule_and_its_line():
    tie = compare_students({"mean_dice": 0.9}, {"mean_dice": 0.9}, val_subjects=5)
    assert tie["chosen"] == "distilled" and tie["decided_on"] == "validation"
    won = compare_students({"mean_dice": 0.95}, {"mean_dice": 0.93}, val_subjects=4, foundation_weights=True)
    assert won["verdict"] == "TS-KD student 0.950 vs labels only 0.930: the foundation model added +0.020 Dice"
    lost = compare_students({"mean_dice": 0.89}, {"mean_dice": 0.93}, val_subjects=3, foundation_weights=True)
    assert lost["chosen"] == "reference" and lost["warning"] is None
    assert lost["verdict"] == ("the distilled student was not better than training on the labels alone "
                               "(0.890 vs 0.930), so the labels-only student was exported")
    one = compare_students({"mean_dice": 0.5}, {"mean_dice": 0.6}, val_subjects=1)
    assert one["decided_on"] == "too_few_validation_subjects" and "only 1 validation subject:" in one["warning"]
    assert verdict(one) == one["verdict"]
    nan = compare_students({"mean_dice": float("nan")}, {"mean_dice": 0.6}, val_subjects=3)
    assert nan["decided_on"] == "no_validation" and nan["chosen"] == "distilled"
    with pytest.raises(ValueError, match="val_subjects"):
        compare_students({}, {}, val_subjects=-1)


def test_labelled_only_is_the_reference_stage():
    config = resolve_config(preset="cpu-small", base="none")
    method_config, note = get_method("labelled_only").configure(config)
    assert method_config == config  # it runs the reference stage with the run's own settings
    assert str(config.distill.train.max_steps + config.finetune.train.max_steps) in note
    assert "ensemble" not in note
    with pytest.raises(ConfigError, match="members must be between 1 and 8, got 0"):
        resolve_config(preset="cpu-small", base="none", overrides={"reference": {"members": 0}})
    members = resolve_config(preset="cpu-small", base="none", overrides={"reference": {"members": 3}})
    assert get_method("labelled_only").configure(members)[1].endswith("an ensemble of 3 such students "
                                                                      "(reference.members)")
    # the benchmark's TS-KD rows score the distilled student itself
    assert get_method("tskd").configure(config)[0].reference.enabled is False
    assert get_method("tskd_no_synth").configure(config)[0].reference.enabled is False


def test_an_ensembled_reference_trains_each_member_and_exports_their_mean(phantom_dataset, tmp_path):
    # the distilled student copies a one-step teacher (w_sup 0) and cannot move in fine-tuning, so the
    # reference (two members of 31 steps each at the distill rate) is exported
    config = _config(distill={"max_steps": 30, "lr": 3e-3}, finetune={"max_steps": 1, "lr": FROZEN},
                     weights={"w_sup": 0.0}, reference={"members": 2, "min_val_subjects": 2})
    run = tmp_path / "run"
    summary = run_stages(phantom_dataset, run, config, progress=NullProgress())

    folders = [run / "student" / "reference", run / "student" / "reference" / "members" / "1"]
    stages = [read_json(folder / "stage.json") for folder in folders]
    assert [s["stage"] for s in stages] == ["reference 1/2", "reference 2/2"] and all(s["steps"] == 31 for s in stages)
    first, second = (load_student(folder / "student.pt") for folder in folders)
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert summary["chosen"] == "reference" and summary["reference"]["val_dice"] > 0.5
    assert summary["stages"]["reference"]["members"] == 2
    assert summary["stages"]["reference"]["parameters"] == sum(p.numel() for m in (first, second)
                                                               for p in m.parameters())
    assert "labels only, an ensemble of 2, val Dice" in format_summary(summary)
    total, per_stage = _train_seconds(RunFolder(run))  # the benchmark's training minutes count every member
    assert per_stage["student/reference/members/1"] == stages[1]["seconds"]
    assert total == pytest.approx(sum(per_stage.values()), abs=0.2)

    meta = _meta(run)
    assert meta["kind"] == "reference" and meta["student"]["architecture"] == "ensemble"
    package = StudentPackage.load(run / "package")
    x = np.random.default_rng(0).normal(size=(3, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        mean = sum(torch.softmax(m(torch.from_numpy(x)), 1) for m in (first, second)) / 2
    logits = OnnxSegmenter(package, threads=1).logits(x)
    np.testing.assert_allclose(np.exp(logits), mean.numpy(), atol=1e-4)

    # an update starts each member from the previous run's member of the same index
    member = run_reference_stage(RunFolder(run), load_prepared_data(RunFolder(run)), _config(
        distill={"max_steps": 2, "lr": FROZEN}, finetune={"max_steps": 1, "lr": FROZEN},
        reference={"members": 2}), StageContext(), folder=tmp_path / "update",
        start_from=folders[0] / "student.pt")
    assert isinstance(member, StudentEnsemble)
    for new, old in zip(member.members, (first, second)):
        for a, b in zip(new.state_dict().values(), old.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-4)  # three steps at a learning rate of 1e-7 move nothing
