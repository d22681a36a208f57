"""The SLURM examples: valid shell, the right torchrun command line, and requeue after SIGTERM.

SLURM itself is not needed: ``srun``, ``scontrol`` and the environment's ``python``/``tskd`` are
small fakes on ``PATH`` that record how they were called.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "slurm"
SCRIPTS = ("train_1node.sbatch", "train_multinode.sbatch")

# Records its arguments, then runs until SIGTERM and exits like tskd does after a checkpoint.
FAKE_TRAINER = """#!/bin/bash
echo "$(basename "$0") $*" >> "$CALLS"
trap 'echo "$(basename "$0") got TERM" >> "$CALLS"; exit 130' TERM
if [ "${FAKE_RUN_SECONDS:-0}" = "0" ]; then exit 0; fi
for _ in $(seq 1 $((FAKE_RUN_SECONDS * 10))); do sleep 0.1; done
exit 0
"""
FAKE_SRUN = """#!/bin/bash
echo "srun $*" >> "$CALLS"
while [[ "$1" == --* ]]; do shift; done
exec "$@"
"""
FAKE_SCONTROL = """#!/bin/bash
echo "scontrol $*" >> "$CALLS"
if [ "$1 $2" = "show hostnames" ]; then printf 'gpu07\\ngpu08\\n'; fi
"""


@pytest.mark.parametrize("name", SCRIPTS)
def test_shell_syntax(name):
    done = subprocess.run(["bash", "-n", str(EXAMPLES / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _fake_cluster(tmp_path: Path) -> dict[str, str]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, text in (("python", FAKE_TRAINER), ("tskd", FAKE_TRAINER), ("srun", FAKE_SRUN),
                       ("scontrol", FAKE_SCONTROL)):
        path = venv / "bin" / name
        path.write_text(text, encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    (venv / "bin" / "activate").write_text(f'export PATH="{venv / "bin"}:$PATH"\n', encoding="utf-8")
    return dict(os.environ, VENV=str(venv), CALLS=str(tmp_path / "calls.txt"), DATA="/shared/d", RUN="/shared/r",
                SLURM_JOB_ID="77", SLURM_JOB_NODELIST="gpu[07-08]", SLURM_JOB_NUM_NODES="2",
                SLURM_GPUS_ON_NODE="4", SLURM_CPUS_PER_TASK="32", PATH=f"{venv / 'bin'}:{os.environ['PATH']}")


def test_multinode_runs_one_torchrun_per_node_with_the_first_host_as_rendezvous(tmp_path):
    env = _fake_cluster(tmp_path)
    done = subprocess.run(["bash", str(EXAMPLES / "train_multinode.sbatch")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls.txt").read_text(encoding="utf-8").splitlines()
    assert calls[0] == 'scontrol show hostnames gpu[07-08]'
    python = next(c for c in calls if c.startswith("python "))
    assert ("-m torch.distributed.run --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d "
            "--rdzv_endpoint gpu07:29500 --rdzv_id tskd-77 -m tskd train --data /shared/d --out /shared/r") in python
    assert not any("requeue" in c for c in calls)


@pytest.mark.parametrize("name", SCRIPTS)
def test_sigterm_stops_training_and_requeues_the_job(tmp_path, name):
    env = dict(_fake_cluster(tmp_path), FAKE_RUN_SECONDS="30")
    proc = subprocess.Popen(["bash", str(EXAMPLES / name)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    calls = tmp_path / "calls.txt"
    deadline = time.monotonic() + 30
    trainer = "tskd train" if name == "train_1node.sbatch" else "python -m torch.distributed.run"
    while time.monotonic() < deadline and trainer not in (calls.read_text(encoding="utf-8") if calls.exists() else ""):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what --signal=B:TERM@120 sends before the time limit
    out, err = proc.communicate(timeout=30)
    text = calls.read_text(encoding="utf-8")
    assert "got TERM" in text, (out, err)
    assert text.splitlines()[-1] == "scontrol requeue 77"
    assert proc.returncode == 130
    if name == "train_1node.sbatch":
        assert "tskd train --data /shared/d --out /shared/r --preset gpu" in text and "--nproc 4" in text
