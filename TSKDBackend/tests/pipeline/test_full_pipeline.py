"""The whole pipeline on phantoms, as ``tskd demo`` runs it: every artifact, the exported student's
Dice on held-out phantoms, and resuming after the process is killed mid-distillation.

The run is the session's shared one (``shared_run`` in tests/conftest.py: the tiny preset with about
half its steps), made once for this module and the others that read a finished run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tskd.data.image import read_image
from tskd.pipeline.demo import format_demo
from tskd.pipeline.run import run_stages
from tskd.progress import NullProgress, read_status_file
from tskd.runtime import OnnxSegmenter, StudentPackage, segment_volume

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(shared_run):
    """The session's shared tiny run (tests/conftest.py): ``run_demo`` with about half the tiny preset's steps."""
    return shared_run.workdir, shared_run.result


def test_every_artifact_is_written(demo):
    workdir, result = demo
    run = workdir / "run"
    for path in ("config.yaml", "split.json", "prepared/images.npy", "teacher/teacher.json",
                 "synthesis/model/diffusion.json", "transfer_set/index.jsonl", "transfer_set/grid.png",
                 "student/distill/student.pt", "student/finetune/student.pt", "package/model.onnx",
                 "package/tskd-model.json", "run.tskd.zip", "report/report.md", "report/loss_curves.png",
                 "summary.json", "log.txt"):
        assert (run / path).is_file(), path
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))["cases"]
    assert not set(split["train"]) & set(split["val"])
    status = read_status_file(run / "status.json")
    assert status["latest"]["state"] == "done"
    meta = json.loads((run / "package" / "tskd-model.json").read_text(encoding="utf-8"))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    chosen = summary["chosen"]
    assert meta["comparison"]["chosen"] == chosen and chosen in ("distilled", "reference")
    assert (run / "student/reference/student.pt").is_file()  # both candidates were trained
    if chosen == "distilled":  # a labels-only model has no teacher to describe
        assert meta["teacher"]["has_foundation_weights"] is False
    else:
        assert meta["teacher"] is None
    assert meta["run_teacher"]["has_foundation_weights"] is False  # the run's teacher, either way
    assert meta["onnx"]["argmax_agreement"] >= 0.9999
    assert [label["name"] for label in meta["labels"]] == ["background", "organ_a", "organ_b", "lesion"]
    assert "no foundation weights" in (run / "report" / "report.md").read_text(encoding="utf-8")
    table = format_demo(result)
    assert "Held-out test phantoms" in table and "package" in table


def test_exported_student_segments_held_out_phantoms(demo):
    workdir, result = demo
    assert result["test"]["cases"] == 4
    assert result["test"]["summary"]["mean_dice"] >= 0.85
    # the same numbers, recomputed here from the files the demo wrote
    package = StudentPackage.load(workdir / "run" / "run.tskd.zip")
    model = OnnxSegmenter(package)
    image = read_image(workdir / "test" / "images" / "case_000.nii.gz")
    label = read_image(workdir / "test" / "labels" / "case_000.nii.gz", kind="label").array
    prediction = segment_volume(model, image.array)
    written = read_image(workdir / "predictions" / "case_000.nii.gz")
    np.testing.assert_array_equal(written.array, prediction)
    assert written.geometry.mismatch(image.geometry) is None
    dice = [2 * ((prediction == v) & (label == v)).sum() / ((prediction == v).sum() + (label == v).sum())
            for v in (1, 2, 3)]
    assert np.mean(dice) >= 0.8


def test_killed_during_distillation_resumes_to_the_same_student(shared_run, tmp_path):
    workdir = shared_run.workdir
    run = tmp_path / "run"
    shutil.copytree(workdir / "run", run, ignore=shutil.ignore_patterns(
        "student", "package", "report", "export.json", "summary.json", "*.tskd.zip", "status.json"))
    cmd = [sys.executable, "-m", "tskd", "train", "--data", str(workdir / "data"), "--out", str(run),
           "--preset", "tiny", "--config", str(shared_run.config_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    latest = run / "student" / "distill" / "checkpoints" / "latest.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.is_file() and torch.load(latest, weights_only=False)["step"] >= 40:  # of 100
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "student" / "distill" / "stage.json").exists()

    # the same run again, up to the end of distillation (the later stages are tested above)
    summary = run_stages(workdir / "data", run, shared_run.config,
                         stages=("data", "teacher", "synthesis", "distill"), progress=NullProgress())
    assert summary["stages"]["distill"]["metrics"]["val_dice"] > 0.5
    log = (run / "log.txt").read_text(encoding="utf-8")
    assert "distill: resuming from step" in log
    resumed = torch.load(run / "student" / "distill" / "student.pt", weights_only=False)["state_dict"]
    original = torch.load(workdir / "run" / "student" / "distill" / "student.pt", weights_only=False)["state_dict"]
    for key in original:
        assert torch.allclose(resumed[key], original[key], atol=1e-6), key
