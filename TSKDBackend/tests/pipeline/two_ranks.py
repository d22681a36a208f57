"""The one two-process training that test_train_nproc.py and test_distributed_stage.py read (a session
fixture, ``two_rank_run``, in conftest.py): starting torchrun and its workers costs more than these short
stages, so one run answers for all of them.

``tskd train --nproc 2`` on the phantoms with a short config: the teacher trains 6 steps in global batches of
8 (the run test_distributed_stage.py compares with one process), distillation 30, the rest 4. The run is
stopped with Ctrl-C (SIGINT to the ``--nproc`` wrapper) once distillation is under way, a 1-process run of
the same command is refused, and the same command resumes it to the end. The workers' teacher stage is
recorded by ``rank_recorder/sitecustomize.py`` (the samples each rank loaded, its metrics).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SRC = Path(__file__).resolve().parents[2] / "src"
RECORDER = Path(__file__).with_name("rank_recorder")

TEACHER_STEPS = 6
#: the stopped stage's steps: the stop comes at step 2 or a few later (status.json is written at most once a
#: second), the rest is the margin for a fast machine; each costs the resumed run a step
DISTILL_STEPS = 30
OTHER_STEPS = 4
_SHORT = {"max_steps": OTHER_STEPS, "warmup_steps": 0, "validate_every": OTHER_STEPS, "checkpoint_every": OTHER_STEPS}
SETTINGS: dict[str, Any] = {
    "teacher": {"train": {"max_steps": TEACHER_STEPS, "batch_size": 8, "warmup_steps": 1, "validate_every": 3,
                          "checkpoint_every": 3, "log_every": 1, "device": "cpu"}},
    "synthesis": {"train": dict(_SHORT)},
    "distill": {"train": {"max_steps": DISTILL_STEPS}},
    "mae": {"train": dict(_SHORT)},
    "finetune": {"train": dict(_SHORT)},
}


@dataclass
class TwoRankRun:
    """What the tests read: the run folder, the stop and the resumed run's outcome."""

    out: Path
    config_file: Path
    cmd: list[str]
    stop_returncode: int
    stop_stderr: str
    stopped_checkpoint: dict[str, Any]  # distill's latest.pt right after the stop (without the weights)
    distill_stage_json_after_stop: bool
    one_process_exit_code: int  # the same command without --nproc, on the stopped run
    resumed: subprocess.CompletedProcess
    records: Path  # the workers' rank{R}_{pid}.json


def _env(records: Path) -> dict[str, str]:
    path = [str(SRC), str(RECORDER), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p), PYTHONUNBUFFERED="1",
                TSKD_TEST_RANK_RECORDS=str(records))


def run_two_ranks(data: Path, root: Path) -> TwoRankRun:
    import torch

    from tskd.cli.main import main
    from tskd.progress import read_status_file

    out, records = root / "run", root / "records"
    records.mkdir(parents=True)
    config_file = root / "settings.yaml"
    config_file.write_text(yaml.safe_dump(SETTINGS), encoding="utf-8")
    cmd = [sys.executable, "-m", "tskd", "train", "--nproc", "2", "--preset", "tiny", "--config", str(config_file),
           "--data", str(data), "--out", str(out)]
    env = _env(records)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        status = read_status_file(out / "status.json") or {}
        if status.get("stages", {}).get("distill", {}).get("step", 0) >= 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGINT)  # as Ctrl-C: the wrapper passes it on once to the workers
    _, stop_stderr = proc.communicate(timeout=300)
    latest = out / "student" / "distill" / "checkpoints" / "latest.pt"
    checkpoint = torch.load(latest, weights_only=False) if latest.exists() else {}
    stopped = {k: checkpoint[k] for k in ("step", "num_processes") if k in checkpoint}
    stage_json = (out / "student" / "distill" / "stage.json").exists()
    one_process = main(cmd[3:4] + cmd[6:])  # without --nproc 2: another process count, refused
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    return TwoRankRun(out=out, config_file=config_file, cmd=cmd, stop_returncode=proc.returncode,
                      stop_stderr=stop_stderr, stopped_checkpoint=stopped, distill_stage_json_after_stop=stage_json,
                      one_process_exit_code=one_process, resumed=resumed, records=records)


def rank_records(run: TwoRankRun) -> dict[int, dict[str, Any]]:
    """rank -> the record of the one worker process of that rank that trained the teacher."""
    found: dict[int, list[dict[str, Any]]] = {}
    for path in sorted(run.records.glob("rank*_*.json")):
        rank = int(path.name[4:].split("_")[0])
        found.setdefault(rank, []).append(json.loads(path.read_text(encoding="utf-8")))
    assert sorted(found) == [0, 1] and all(len(v) == 1 for v in found.values()), found.keys()
    return {rank: items[0] for rank, items in found.items()}
