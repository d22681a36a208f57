"""``tskd benchmark`` end to end on tiny phantoms: all five methods, a failing one, resume without
retraining, and 2D data through the command line."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os

import pytest
import torch

from tskd.cli.main import main
from tskd.data.phantom import PhantomConfig, write_phantom_dataset
from tskd.engine.trainer import Trainer
from tskd.pipeline.comparison import methods as methods_module
from tskd.pipeline.comparison import run_benchmark
from tskd.runconfig import resolve_config
from tskd.pipeline.run_folder import read_json
from tskd.progress import NullProgress

ALL = ["tskd", "tskd_no_synth", "labelled_only", "task_agnostic_kd", "mae"]

#: The smallest settings that still run every code path: 32-pixel inputs, a ViT-nano student (so
#: the MAE baseline needs no switch), a 2-image synthetic set, 3 steps per stage.
TINY = {
    "data": {"max_labelled": 2, "prepared": {"input_size": 32}},
    "teacher": {"input_size": 32},
    "distill": {"student": "vit_nano"},
    "synthesis": {"image_size": 16, "num_synthetic": 2, "sampling_steps": 2, "sample_batch_size": 2},
}


@pytest.fixture(scope="module")
def small_phantoms(tmp_path_factory):
    """8 labelled + 2 unlabelled 32x32x8 phantom volumes with two foreground classes."""
    return write_phantom_dataset(tmp_path_factory.mktemp("bench") / "data", cases=8, seed=2, unlabelled=2,
                                 config=PhantomConfig(size=(32, 32, 8), spacing=(1.0, 1.0, 3.0), structures=2))


def _mtimes(root, pattern):
    return {str(p): p.stat().st_mtime_ns for p in root.glob(pattern)}


def _boom(*args, **kwargs):
    raise RuntimeError("boom: labelled_only was made to fail")


@pytest.mark.slow
def test_benchmark_runs_every_method_keeps_failures_and_resumes(small_phantoms, tmp_path, monkeypatch):
    torch.manual_seed(0)
    config = resolve_config(preset="tiny", max_steps=3, overrides=TINY)
    out = tmp_path / "bench"
    failing = dataclasses.replace(methods_module.METHODS["labelled_only"], model_stages=_boom)
    with monkeypatch.context() as patch:
        patch.setitem(methods_module.METHODS, "labelled_only", failing)
        first = run_benchmark(small_phantoms, out, config, methods=ALL, progress=NullProgress())

    by_name = {r["method"]: r for r in first["results"]}
    assert [r["method"] for r in first["results"]] == ALL + ["teacher (reference)"]
    teacher = by_name["teacher (reference)"]
    assert teacher["status"] == "done" and teacher["student"] == "tiny" and "NO foundation weights" in teacher["note"]
    assert math.isfinite(teacher["test"]["mean_dice"]) and teacher["test"]["n_cases"] == by_name["tskd"]["test"]["n_cases"]
    assert by_name["labelled_only"]["status"] == "failed"
    assert "RuntimeError: boom" in by_name["labelled_only"]["error"]
    for name in ("tskd", "tskd_no_synth", "task_agnostic_kd", "mae"):
        result = by_name[name]
        assert result["status"] == "done", result.get("error")
        assert math.isfinite(result["test"]["mean_dice"]) and 0.0 <= result["test"]["mean_dice"] <= 1.0
        assert result["student"] == "vit_nano" and result["parameters"] > 0 and result["ms_per_slice"] > 0
    # the split: test subjects never reach a run folder; the shared stages are hard links
    split = read_json(out / "split.json")["cases"]
    assert split["test"] and len(split["train"]) == 2
    for name in ("tskd", "mae"):
        prepared = read_json(out / "runs" / name / "prepared" / "index.json")
        seen = {s["case_id"] for s in prepared["slices"]}
        assert not seen & set(split["test"])
        assert seen == set(split["train"] + split["val"] + split["unlabelled"])
    shared_weights = out / "shared" / "teacher" / "model.safetensors"
    assert os.stat(out / "runs" / "tskd_no_synth" / "teacher" / "model.safetensors").st_ino == shared_weights.stat().st_ino
    assert not (out / "runs" / "mae" / "teacher").exists()
    assert by_name["tskd"]["test"]["n_cases"] == len(split["test"])
    assert "transfer set" in by_name["tskd"]["note"]

    # the table: markdown, CSV and JSON with the failure in them; a PNG plot
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| method | student | parameters | ms / slice | test Dice (mean ± sd) |" in markdown
    assert "FAILED: RuntimeError: boom" in markdown
    with open(out / "results.csv", newline="") as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    assert list(rows) == ALL + ["teacher (reference)"]
    assert {"dice_organ_a", "dice_organ_b", "hd95_mm", "assd_mm", "ms_per_slice", "parameters"} <= set(rows["tskd"])
    assert rows["labelled_only"]["error"].startswith("RuntimeError")
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [r["method"] for r in saved["rows"]] == ALL + ["teacher (reference)"]
    assert saved["split"]["test"] == len(split["test"])
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"

    # run again: the failed method runs now, finished ones are not trained again
    before = _mtimes(out / "runs", "*/student/*/stage.json")
    second = run_benchmark(small_phantoms, out, config, methods=ALL, progress=NullProgress())
    assert all(r["status"] == "done" for r in second["results"])
    assert math.isfinite(second["results"][2]["test"]["mean_dice"])
    after = _mtimes(out / "runs", "*/student/*/stage.json")
    assert {k: v for k, v in after.items() if "labelled_only" not in k} == before
    assert any("labelled_only" in k for k in after)

    # a method whose result file is gone is evaluated again from its run folder, without training
    (out / "runs" / "tskd" / "benchmark_result.json").unlink()
    monkeypatch.setattr(Trainer, "fit", lambda self: (_ for _ in ()).throw(AssertionError("trained again")))
    third = run_benchmark(small_phantoms, out, config, methods=ALL, progress=NullProgress())
    assert [r["status"] for r in third["results"]] == ["done"] * 6
    assert third["results"][0]["test"]["mean_dice"] == pytest.approx(second["results"][0]["test"]["mean_dice"])


def test_benchmark_command_on_2d_images(tmp_path, capsys):
    data = write_phantom_dataset(tmp_path / "data2d", cases=8, seed=4,
                                 config=PhantomConfig(size=(40, 32), spacing=(0.5, 0.5), structures=1))
    out = tmp_path / "bench2d"
    torch.manual_seed(0)
    code = main(["benchmark", "--data", str(data), "--labelled", "3", "--methods", "labelled_only", "--out",
                 str(out), "--preset", "tiny", "--max-steps", "3", "--input-size", "32", "--test-fraction", "0.25"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| labelled_only | unet_small |" in printed
    result = read_json(out / "runs" / "labelled_only" / "benchmark_result.json")
    assert result["test"]["n_cases"] == 2 == len(read_json(out / "split.json")["cases"]["test"])
    assert math.isfinite(result["test"]["mean_dice"])
    assert result["test"]["mean_hd95_mm"] is None or result["test"]["mean_hd95_mm"] >= 0
    # the labelled-only budget: distill + finetune steps (3 + 3 with --max-steps 3)
    assert read_json(out / "runs" / "labelled_only" / "student" / "reference" / "stage.json")["steps"] == 6
    assert [line for line in (out / "results.csv").read_text(encoding="utf-8").splitlines()][1].startswith("labelled_only,done,")


@pytest.mark.slow
def test_tskd_train_method_measures_what_a_default_run_exports(tmp_path):
    data = write_phantom_dataset(tmp_path / "data2d", cases=8, seed=5,
                                 config=PhantomConfig(size=(40, 32), spacing=(0.5, 0.5), structures=1))
    config = resolve_config(preset="tiny", max_steps=3, overrides={"data": {"max_labelled": 3,
                                                                             "prepared": {"input_size": 32}},
                                                                    "teacher": {"input_size": 32}})
    torch.manual_seed(0)
    result = run_benchmark(data, tmp_path / "bench", config, methods=["tskd_train"], test_fraction=0.25,
                           progress=NullProgress())
    row = result["results"][0]
    assert row["method"] == "tskd_train" and row["status"] == "done", row.get("error")
    run = tmp_path / "bench" / "runs" / "tskd_train"
    summary = read_json(run / "summary.json")
    # the row is the run's exported choice, with its verdict line, and its time includes the reference
    assert row["chosen"] == summary["chosen"] in ("distilled", "reference")
    assert row["verdict"] == summary["verdict"] and summary["verdict"] in row["note"]
    assert row["note"].startswith("as `tskd train` runs: ")
    assert {"teacher", "student/distill", "student/finetune", "student/reference"} <= set(row["stage_seconds"])
    assert row["train_seconds"] == pytest.approx(sum(row["stage_seconds"].values()), abs=0.5)
    assert read_json(run / "package" / "tskd-model.json")["kind"] == summary["chosen"]
