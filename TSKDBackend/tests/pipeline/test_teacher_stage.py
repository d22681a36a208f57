"""The teacher stage on phantoms: it learns, and a run killed mid-way resumes to the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tskd.cli.main import main
from tskd.data.image import read_image
from tskd.errors import ConfigError
from tskd.runconfig import resolve_config
from tskd.pipeline.run import run_stages
from tskd.progress import NullProgress


@pytest.mark.slow  # reads the session's shared tiny run (about a minute to build)
def test_teacher_learns_on_phantoms(shared_run, tmp_path):
    # the session's shared tiny run (tests/conftest.py): its teacher trained 150 steps, validated every 50
    run = shared_run.run
    history = [json.loads(line) for line in (run / "teacher" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    losses = [r["loss"] for r in history if r["kind"] == "train"]
    dice = [r["val_dice"] for r in history if r["kind"] == "validation"]
    assert losses[-1] < 0.7 * losses[0]
    assert len(dice) >= 3 and dice[-1] > dice[0] + 0.1  # Dice rises
    teacher = shared_run.result["run"]["stages"]["teacher"]
    assert teacher["has_foundation_weights"] is False
    log = (run / "log.txt").read_text(encoding="utf-8")
    assert "NO FOUNDATION WEIGHTS" in log
    assert (run / "teacher" / "teacher.json").is_file()

    # tskd teacher predict: a label map aligned with its input, labels from the task
    image = shared_run.data / "images" / "case_000.nii.gz"
    out = tmp_path / "pred.seg.nrrd"
    assert main(["teacher", "predict", "--teacher", str(run), "--input", str(image),
                 "--output", str(out), "--format", "seg.nrrd"]) == 0
    prediction = read_image(out, kind="label")
    source = read_image(image)
    assert prediction.geometry.mismatch(source.geometry) is None
    assert set(np.unique(prediction.array)) <= {0, 1, 2, 3}
    assert [s["name"] for s in prediction.metadata["segments"]][:1] == ["organ_a"]


def test_same_folder_with_other_settings_is_refused(phantom_dataset, tmp_path):
    config = resolve_config(preset="tiny", max_steps=2)
    run_stages(phantom_dataset, tmp_path / "run", config, stages=("data",), progress=NullProgress())
    with pytest.raises(ConfigError, match="different settings.*teacher.input_size"):
        run_stages(phantom_dataset, tmp_path / "run", resolve_config(preset="tiny", max_steps=2, input_size=32),
                   stages=("data",), progress=NullProgress())


def _finetune_cmd(data, out):
    return [sys.executable, "-m", "tskd", "teacher", "finetune", "--data", str(data), "--out", str(out),
            "--preset", "tiny", "--max-steps", "24", "--config", str(out.parent / "ckpt.yaml")]


def test_kill_and_resume_gives_the_same_teacher(phantom_dataset, tmp_path):
    # 24 steps, a checkpoint every 6, killed at 12 or later (after the 10 warm-up steps), resumed to 24
    (tmp_path / "ckpt.yaml").write_text("teacher:\n  train: {checkpoint_every: 6}\n", encoding="utf-8")
    full = tmp_path / "full"
    assert main(_finetune_cmd(phantom_dataset, full)[3:]) == 0

    cut = tmp_path / "cut"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_finetune_cmd(phantom_dataset, cut), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    latest = cut / "teacher" / "checkpoints" / "latest.pt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.is_file() and torch.load(latest, weights_only=False)["step"] >= 12:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "teacher" / "teacher.json").exists()

    assert main(_finetune_cmd(phantom_dataset, cut)[3:]) == 0
    a = load_file(full / "teacher" / "model.safetensors")
    b = load_file(cut / "teacher" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
