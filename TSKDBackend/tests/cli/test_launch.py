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
