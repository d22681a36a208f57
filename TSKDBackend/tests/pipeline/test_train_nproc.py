"""``tskd train --nproc 2`` on phantoms: two CPU processes (gloo) under torchrun finish the pipeline, files
are written once, and a stopped run resumes. All of it read from the one two-process run of
tests/pipeline/two_ranks.py (the ``two_rank_run`` fixture), which test_distributed_stage.py reads too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.pipeline.two_ranks import DISTILL_STEPS, OTHER_STEPS, TEACHER_STEPS
from tskd.runtime import OnnxSegmenter, StudentPackage, segment_volume

pytestmark = pytest.mark.slow


def _history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_train_with_two_processes(two_rank_run):
    run, done = two_rank_run.out, two_rank_run.resumed
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("finished in") == 1  # the summary table is printed by rank 0 only
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["processes"] == 2
    for folder, steps in (("teacher", TEACHER_STEPS), ("synthesis", OTHER_STEPS), ("student/distill", DISTILL_STEPS),
                          ("student/finetune", OTHER_STEPS)):
        history = [r["step"] for r in _history(run / folder / "metrics.jsonl") if r["kind"] == "train"]
        # once, by rank 0: the tiny preset logs every 10 steps and at the end, the teacher here every step
        expected = list(range(1, steps + 1)) if folder == "teacher" else sorted({*range(10, steps + 1, 10), steps})
        assert history == expected, folder
        assert json.loads((run / folder / "stage.json").read_text(encoding="utf-8"))["steps"] == steps
    log = (run / "log.txt").read_text(encoding="utf-8")
    # one line per start: the stopped run, the refused 1-process run, the resumed run; none from rank 1
    assert log.count("stages data, teacher") == 3 and "[rank 1]" not in log
    assert log.count("2 processes") == 2
    package = StudentPackage.load(run / "run.tskd.zip")
    volume = np.random.default_rng(0).normal(size=(3, 64, 64)).astype(np.float32)
    labels = segment_volume(OnnxSegmenter(package), volume)
    assert labels.shape == volume.shape and set(np.unique(labels)) <= {0, 1, 2, 3}
    assert summary["stages"]["package"]["validation"]["n_cases"] == 2


def test_stopped_two_process_run_resumes(two_rank_run):
    out = two_rank_run.out
    assert two_rank_run.stop_returncode == 130, two_rank_run.stop_stderr[-4000:]
    stopped = two_rank_run.stopped_checkpoint
    assert 2 <= stopped["step"] < DISTILL_STEPS and stopped["num_processes"] == 2
    assert not two_rank_run.distill_stage_json_after_stop

    # another process count is refused with a clear message ...
    assert two_rank_run.one_process_exit_code == 2
    # ... the same one continues from the checkpoint
    assert two_rank_run.resumed.returncode == 0, two_rank_run.resumed.stderr[-4000:]
    assert f"resuming from step {stopped['step']}" in (out / "log.txt").read_text(encoding="utf-8")
    final = torch.load(out / "student" / "distill" / "checkpoints" / "final.pt", weights_only=False)
    assert final["step"] == DISTILL_STEPS
    steps = [r["step"] for r in _history(out / "student" / "distill" / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == DISTILL_STEPS
