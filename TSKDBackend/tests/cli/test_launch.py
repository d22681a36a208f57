"""``--nproc``: the torchrun command line, exit codes, and the one-process behaviour of the helpers."""

from __future__ import annotations

import sys

import pytest

from tskd.cli.launch import _exit_code, relaunch, strip_nproc, torchrun_command
from tskd.cli.main import build_parser
from tskd.engine.distributed import barrier, broadcast_object, on_main, process_info
from tskd.errors import ConfigError


def test_the_same_command_is_relaunched_under_torchrun_without_nproc():
    argv = ["-v", "train", "--data", "D", "--nproc", "4", "--out", "R", "--nproc=4", "--preset", "tiny"]
    assert strip_nproc(argv) == ["-v", "train", "--data", "D", "--out", "R", "--preset", "tiny"]
    cmd = torchrun_command(argv, 4, python="py")
    assert cmd[:6] == ["py", "-m", "tskd.cli.torchrun", "--standalone", "--nproc_per_node=4", "-m"]
    assert cmd[6:] == ["tskd", "-v", "train", "--data", "D", "--out", "R", "--preset", "tiny"]
    with pytest.raises(ConfigError, match="at least 1"):
        torchrun_command(argv, 0)


def test_training_commands_take_nproc_and_others_do_not():
    parser = build_parser()
    for argv in (["train", "--data", "D", "--out", "R"], ["teacher", "finetune", "--data", "D", "--out", "R"],
                 ["synth", "train", "--data", "D", "--out", "R"]):
        assert parser.parse_args(argv + ["--nproc", "2"]).nproc == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--nproc", "2"])


def test_exit_code_is_the_workers_own():
    assert _exit_code(0, {0: 0, 1: 0}, stopped=False) == 0
    assert _exit_code(1, {0: 2, 1: 1}, stopped=False) == 2  # rank 0's user error, not rank 1's echo of it
    assert _exit_code(1, {0: 130, 1: 2}, stopped=False) == 2  # a real error beats "stopped"
    assert _exit_code(1, {0: 130, 1: 130}, stopped=True) == 130
    assert _exit_code(1, {}, stopped=True) == 130
    assert _exit_code(1, {}, stopped=False) == 1  # a worker crashed before recording anything


def test_nproc_under_a_launcher_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="leave it out"):
        relaunch(["train"], 2)


def test_helpers_call_straight_through_in_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert process_info().is_main and not process_info().distributed
    assert on_main(lambda a, b=0: a + b, 1, b=2) == 3
    assert broadcast_object({"x": 1}) == {"x": 1}
    barrier()
    with pytest.raises(ZeroDivisionError):
        on_main(lambda: 1 / 0)
    assert sys.modules.get("torch.distributed") is None or not __import__("torch").distributed.is_initialized()


def test_the_launcher_waits_without_importing_torch(tmp_path):
    """``tskd train --nproc N`` only waits for torchrun (hours, maybe): torch would cost it seconds and memory.
    Its torchrun is replaced by a process that exits at once, in a fresh interpreter (this one has torch)."""
    import subprocess
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src"
    code = ("import subprocess, sys\n"
            "from tskd.cli import launch\n"
            "launch.torchrun_command = lambda argv, nproc: [sys.executable, '-c', 'pass']\n"
            "code = launch.relaunch(['train', '--data', 'D', '--out', 'R', '--nproc', '2'], 2)\n"
            "print(code, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "False"]


def test_more_processes_than_gpus_on_a_node_is_warned_by_its_first_worker(monkeypatch, caplog):
    import torch

    from tskd.engine import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for local_rank, local_processes, warned in (("0", "2", True), ("1", "2", False), ("0", "1", False)):
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_processes)
        caplog.clear()
        with caplog.at_level("WARNING", logger="tskd.engine.distributed"):
            distributed._warn_if_more_processes_than_gpus()
        assert ("2 processes on this machine but it has 1 GPU(s); use one process per GPU (--nproc 1)"
                in caplog.text) is warned, (local_rank, local_processes)
