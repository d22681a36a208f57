"""``tskd teacher finetune --nproc 2`` and ``tskd train --nproc 2`` on phantoms: two CPU processes (gloo)
under torchrun; a teacher run stopped with Ctrl-C resumes, and ``tskd train`` with the same settings
continues that folder through every stage, with files written once, by rank 0.

One stopped and one resumed launch (each launch of torchrun costs its wrapper's, torchrun's and two
workers' imports): the resumed launch is the whole ``tskd train --nproc 2`` run, so the stop, the
resume and the two-process pipeline are tested with two launches instead of three."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tskd.cli.main import main
from tskd.progress import read_status_file
from tskd.runtime import OnnxSegmenter, StudentPackage, segment_volume

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
                PYTHONUNBUFFERED="1")


def _tskd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tskd", *args]


def _history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


#: the teacher's steps (``--max-steps`` caps every stage; the others are set to 4 in SMALL_RUN): the stop comes
#: at step 2 or a few later (status.json is written at most once a second), the rest of the steps are the margin,
#: and each costs the resumed run a step. At 32 px a step of the two processes took about 0.19 s at load 10
#: (2026-12-06; the stop came at step 8 and 9 of 40 in two runs); 60 leaves the margin for a faster machine,
#: where a second's delay in status.json is more steps
STOP_RUN_STEPS = 60
#: What the two-process run needs to show that every stage runs under torchrun, and no more: 32-pixel inputs
#: (``--input-size 32``), 4 steps for every stage but the teacher, a 4-image synthetic set in one or two
#: sampling rounds (the preset's 32 in rounds of 16 took some 14 s of rank 0), no reference student (the same
#: engine as the students already trained; it doubled the students' steps)
FOUR_STEPS = "{max_steps: 4, warmup_steps: 0, validate_every: 4, checkpoint_every: 4}"
SMALL_RUN = f"""\
synthesis: {{num_synthetic: 4, sample_batch_size: 8, train: {FOUR_STEPS}}}
distill: {{train: {FOUR_STEPS}}}
finetune: {{train: {FOUR_STEPS}}}
reference: {{enabled: false}}
"""


def test_stopped_two_process_teacher_resumes_and_train_finishes_every_stage(phantom_dataset, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "small.yaml"
    config.write_text(SMALL_RUN, encoding="utf-8")
    settings = ["--preset", "tiny", "--max-steps", str(STOP_RUN_STEPS), "--input-size", "32", "--config", str(config),
                "--data", str(phantom_dataset), "--out", str(out)]
    cmd = _tskd("teacher", "finetune", "--nproc", "2", *settings)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        status = read_status_file(out / "status.json") or {}
        if status.get("stages", {}).get("teacher", {}).get("step", 0) >= 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGINT)  # as Ctrl-C: the wrapper passes it on once to the workers
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-4000:]
    latest = torch.load(out / "teacher" / "checkpoints" / "latest.pt", weights_only=False)
    assert 2 <= latest["step"] < STOP_RUN_STEPS and latest["num_processes"] == 2
    assert not (out / "teacher" / "stage.json").exists()

    # another process count is refused with a clear message ...
    assert main(["teacher", "finetune", *settings]) == 2
    # ... the same one continues from the checkpoint: here ``tskd train``, which goes on through every stage
    done = subprocess.run(_tskd("train", "--nproc", "2", *settings), capture_output=True, text=True, timeout=900,
                          env=_env())
    assert done.returncode == 0, done.stderr[-4000:]
    log = (out / "log.txt").read_text(encoding="utf-8")
    assert f"resuming from step {latest['step']}" in log
    final = torch.load(out / "teacher" / "checkpoints" / "final.pt", weights_only=False)
    assert final["step"] == STOP_RUN_STEPS
    steps = [r["step"] for r in _history(out / "teacher" / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == STOP_RUN_STEPS  # once, by rank 0
    assert json.loads((out / "teacher" / "stage.json").read_text(encoding="utf-8"))["steps"] == STOP_RUN_STEPS

    assert done.stdout.count("finished in") == 1  # the summary table is printed by rank 0 only
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["processes"] == 2
    for folder in ("synthesis", "student/distill", "student/finetune"):
        history = _history(out / folder / "metrics.jsonl")
        assert [r["step"] for r in history if r["kind"] == "train"] == [4], folder  # once, by rank 0
        assert json.loads((out / folder / "stage.json").read_text(encoding="utf-8"))["steps"] == 4
    # each run's stages line once (rank 0 logs, rank 1 does not): the stopped launch and the refused
    # one-process run name the teacher's stages, the resumed ``tskd train`` launch every stage
    assert log.count("stages data, teacher\n") == 2 and log.count("stages data, teacher, synthesis") == 1
    assert "[rank 1]" not in log
    assert "2 processes" in log
    package = StudentPackage.load(out / "run.tskd.zip")
    volume = np.random.default_rng(0).normal(size=(3, 64, 64)).astype(np.float32)
    labels = segment_volume(OnnxSegmenter(package), volume)
    assert labels.shape == volume.shape and set(np.unique(labels)) <= {0, 1, 2, 3}
    assert summary["stages"]["package"]["validation"]["n_cases"] == 2
    assert package.input_size == 32 and "reference" not in summary["stages"]
