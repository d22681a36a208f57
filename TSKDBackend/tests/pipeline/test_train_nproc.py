"""``tskd train --nproc 2`` and ``tskd teacher finetune --nproc 2`` on phantoms: two CPU processes
(gloo) under torchrun finish the pipeline, files are written once, and a stopped run resumes."""

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


#: What the two-process run needs to show that every stage runs under torchrun, and no more: 32-pixel inputs,
#: a 4-image synthetic set in one or two sampling rounds (the preset's 32 in rounds of 16 took some 14 s of rank 0),
#: no reference student (the same engine as the students already trained; it doubled the students' steps)
SMALL_RUN = """\
synthesis: {num_synthetic: 4, sample_batch_size: 8}
reference: {enabled: false}
"""


def test_train_with_two_processes(phantom_dataset, tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "small.yaml"
    config.write_text(SMALL_RUN, encoding="utf-8")
    done = subprocess.run(_tskd("train", "--nproc", "2", "--preset", "tiny", "--max-steps", "4", "--input-size", "32",
                                "--config", str(config), "--data", str(phantom_dataset), "--out", str(run)),
                          capture_output=True, text=True, timeout=900, env=_env())
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("finished in") == 1  # the summary table is printed by rank 0 only
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["processes"] == 2
    for folder in ("teacher", "synthesis", "student/distill", "student/finetune"):
        history = _history(run / folder / "metrics.jsonl")
        assert [r["step"] for r in history if r["kind"] == "train"] == [4], folder  # once, by rank 0
        assert json.loads((run / folder / "stage.json").read_text(encoding="utf-8"))["steps"] == 4
    log = (run / "log.txt").read_text(encoding="utf-8")
    assert log.count("stages data, teacher") == 1 and "[rank 1]" not in log
    assert "2 processes" in log
    package = StudentPackage.load(run / "run.tskd.zip")
    volume = np.random.default_rng(0).normal(size=(3, 64, 64)).astype(np.float32)
    labels = segment_volume(OnnxSegmenter(package), volume)
    assert labels.shape == volume.shape and set(np.unique(labels)) <= {0, 1, 2, 3}
    assert summary["stages"]["package"]["validation"]["n_cases"] == 2
    assert package.input_size == 32 and "reference" not in summary["stages"]


#: the stopped run's teacher steps: the stop comes at step 2 or a few later (status.json is written at most once a
#: second; a tiny-teacher step of the two processes takes about 0.5 s on a 2-core CPU, some 0.1 s on a fast one),
#: the rest of the steps are the margin, and each costs the resumed run a step (60 took some 30 s of the test)
STOP_RUN_STEPS = 40  # a stop seen at step 10 under load 10 (2026-12-06) still leaves 30 steps


def test_stopped_two_process_run_resumes(phantom_dataset, tmp_path):
    out = tmp_path / "run"
    cmd = _tskd("teacher", "finetune", "--nproc", "2", "--preset", "tiny", "--max-steps", str(STOP_RUN_STEPS),
                "--data", str(phantom_dataset), "--out", str(out))
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
    assert main(cmd[3:5] + cmd[7:]) == 2
    # ... the same one continues from the checkpoint
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env())
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"resuming from step {latest['step']}" in (out / "log.txt").read_text(encoding="utf-8")
    final = torch.load(out / "teacher" / "checkpoints" / "final.pt", weights_only=False)
    assert final["step"] == STOP_RUN_STEPS
    steps = [r["step"] for r in _history(out / "teacher" / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == STOP_RUN_STEPS
