"""``tskd batch``: the batch file is checked up front, tasks run in subprocesses (here a fake
``tskd train`` interpreter, so these tests are fast), one failure or crash does not stop the
others, and the outcome table and summary files say what happened."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tskd.cli.main import main
from tskd.errors import ConfigError
from tskd.pipeline.batch import error_from_log, format_batch_table, run_batch, task_state
from tskd.pipeline.batch_config import load_batch_file

# Stands in for `python -m tskd train --data D --out O --preset P --config C [--nproc N]`:
# data 'ok*' finishes (writes config.yaml + summary.json), 'usererror' fails like tskd does,
# 'crash' raises, 'slow' trains until SIGTERM (then exits 130 like a stopped tskd), 'oom' is killed by SIGKILL.
FAKE_PYTHON = f"""#!{sys.executable}
import json, os, shutil, signal, sys
from pathlib import Path
args = sys.argv[sys.argv.index("train") + 1:]
opt = dict(zip(args[::2], args[1::2]))
data, out = Path(opt["--data"]).name, Path(opt["--out"])
print("fake tskd train", " ".join(args), flush=True)
if data.startswith("ok"):
    shutil.copy(opt["--config"], out / "config.yaml")
    (out / "summary.json").write_text(json.dumps({{"stages": {{"package": {{
        "archive": str(out / "run.tskd.zip"), "validation": {{"mean_dice": 0.875}}}}}}}}))
    (out / "calls.txt").open("a").write(" ".join(args) + "\\n")
    sys.exit(0)
if data == "usererror":
    print("tskd: error: " + opt["--data"] + ": not found; give a dataset folder", file=sys.stderr)
    sys.exit(2)
if data == "crash":
    raise RuntimeError("CUDA error: an illegal memory access was encountered")
if data == "slow":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(130))  # tskd: checkpoint saved, stopped
    print("training", flush=True)
    import time
    time.sleep(60)
    sys.exit(0)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def fake_python(tmp_path):
    path = tmp_path / "fake-python"
    path.write_text(FAKE_PYTHON, encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _batch(tmp_path, tasks, **top):
    return _write(tmp_path, {"output_root": "runs", "defaults": {"preset": "tiny"}, "tasks": tasks, **top})


@pytest.mark.parametrize("task, message", [
    ({"name": "a", "data": "d", "lr": 1}, r"task 1 \('a'\): unknown field\(s\) 'lr' in 'BatchTask'"),
    ({"data": "d"}, r"task 1: field 'name' is missing"),
    ({"name": "a b", "data": "d"}, r"task 1 \('a b'\): field 'name'"),
    ({"name": "a"}, r"task 1 \('a'\): field 'data' is missing"),
    ({"name": "a", "data": "d", "nproc": "four"}, r"task 1 \('a'\): field 'nproc': expected an integer"),
    ({"name": "a", "data": "d", "nproc": 0}, r"field 'nproc' must be at least 1"),
    ({"name": "a", "data": "d", "preset": "huge"}, r"task 1 \('a'\): unknown preset 'huge'"),
    ({"name": "a", "data": "d", "config": {"teacher": {"lr": 1}}}, r"task 1 \('a'\): .*unknown field\(s\) 'lr'"),
    ({"name": "a", "data": "d", "config": {"distill": {"train": {"batch_size": "big"}}}},
     r"task 1 \('a'\).*batch_size.*expected an integer"),
    ({"name": "a", "data": "d", "subject_pattern": "(("}, r"field 'subject_pattern': not a regular expression"),
    ({"name": "a", "data": "d", "config": "teacher.lr=1"}, r"task 1 \('a'\): field 'config': expected a mapping"),
])
def test_every_task_is_checked_before_anything_runs(tmp_path, task, message):
    ok = {"name": "first", "data": "d"}
    with pytest.raises(ConfigError, match=message.replace("task 1", "task 2")):
        load_batch_file(_batch(tmp_path, [ok, task]))


def test_file_level_problems(tmp_path):
    with pytest.raises(ConfigError, match="lists no task"):
        load_batch_file(_batch(tmp_path, []))
    with pytest.raises(ConfigError, match=r"task 2 \('a'\): field 'name': 'a' is already the name of task 1"):
        load_batch_file(_batch(tmp_path, [{"name": "a", "data": "d"}, {"name": "a", "data": "e"}]))
    with pytest.raises(ConfigError, match="'out' is missing and the file has no 'output_root'"):
        load_batch_file(_write(tmp_path, {"tasks": [{"name": "a", "data": "d"}]}))
    with pytest.raises(ConfigError, match="share the run folder"):
        load_batch_file(_batch(tmp_path, [{"name": "a", "data": "d"}, {"name": "b", "data": "d", "out": "runs/a"}]))
    with pytest.raises(ConfigError, match="unknown field.*'task'"):
        load_batch_file(_write(tmp_path, {"task": []}))


def test_tasks_resolve_to_full_configs_with_paths_relative_to_the_file(tmp_path):
    path = _batch(tmp_path, [
        {"name": "a", "data": "data/a", "max_steps": 3, "seed": 5, "nproc": 2,
         "config": {"synthesis": {"enabled": False}}, "subject_pattern": "^(s\\d+)"},
        {"name": "b", "data": "/abs/b", "out": "elsewhere/b", "preset": "cpu-small", "base": "none"},
    ], defaults={"preset": "tiny", "config": {"distill": {"train": {"lr": 0.01}}}})
    items, summary_dir = load_batch_file(path)
    a, b = items
    assert summary_dir == tmp_path / "runs"
    assert a.out == tmp_path / "runs" / "a" and a.task.data == str(tmp_path / "data" / "a")
    assert b.out == tmp_path / "elsewhere" / "b" and b.task.data == "/abs/b"
    assert a.config.teacher.train.max_steps == 3 and a.config.seed == 5 and a.config.teacher.train.seed == 5
    assert a.config.synthesis.enabled is False and a.config.data.subject_pattern == "^(s\\d+)"
    assert a.config.distill.train.lr == b.config.distill.train.lr == 0.01  # defaults merge into each task
    assert a.config.teacher.architecture == "tiny" and b.config.teacher.base == "none"


def test_one_failure_or_crash_does_not_stop_the_others(tmp_path, fake_python, capsys):
    path = _batch(tmp_path, [
        {"name": "first", "data": "ok1"}, {"name": "user", "data": "usererror"}, {"name": "crash", "data": "crash"},
        {"name": "oom", "data": "oom"}, {"name": "last", "data": "ok2", "nproc": 2},
    ])
    items, _ = load_batch_file(path)
    outcomes = run_batch(items, python=fake_python)
    assert [o.status for o in outcomes] == ["done", "failed", "failed", "failed", "done"]
    assert outcomes[1].error == f"{tmp_path / 'usererror'}: not found; give a dataset folder"
    assert outcomes[2].error == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert outcomes[3].error == "killed by SIGKILL (out of memory?)"
    assert outcomes[0].dice == 0.875 and outcomes[0].package.endswith("run.tskd.zip")
    calls = (tmp_path / "runs" / "last" / "calls.txt").read_text(encoding="utf-8")
    assert "--nproc 2" in calls and f"--config {tmp_path / 'runs' / 'last' / 'batch-config.yaml'}" in calls
    assert "fake tskd train" in (tmp_path / "runs" / "user" / "batch.log").read_text(encoding="utf-8")
    table = format_batch_table(outcomes)
    assert "killed by SIGKILL" in table and "2 done, 3 failed" in table

    # the same batch again: the finished tasks are skipped, without a subprocess
    items, _ = load_batch_file(path)
    assert [task_state(i) for i in items] == ["done", "new", "new", "new", "done"]
    again = run_batch(items[:1], python=fake_python)
    assert again[0].status == "skipped" and again[0].dice == 0.875
    assert (tmp_path / "runs" / "first" / "calls.txt").read_text(encoding="utf-8").count("\n") == 1


def test_cli_writes_the_summary_and_exits_1_when_a_task_failed(tmp_path, fake_python, monkeypatch, capsys):
    import tskd.pipeline.batch as batch

    monkeypatch.setattr(batch.sys, "executable", fake_python)
    path = _batch(tmp_path, [{"name": "good", "data": "ok"}, {"name": "bad", "data": "usererror"}])
    assert main(["batch", str(path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^good\s+done\s+\d+ s\s+0\.875", out, re.M) and re.search(r"^bad\s+failed", out, re.M)
    assert "1 done, 1 failed" in out
    summary = json.loads((tmp_path / "runs" / "batch_summary.json").read_text(encoding="utf-8"))
    assert [(t["name"], t["status"]) for t in summary["tasks"]] == [("good", "done"), ("bad", "failed")]
    assert "not found" in summary["tasks"][1]["error"]
    assert "| bad | failed |" in (tmp_path / "runs" / "batch_summary.md").read_text(encoding="utf-8")
    assert main(["batch", str(path), "--only", "good"]) == 0
    assert re.search(r"^good\s+skipped", capsys.readouterr().out, re.M)
    assert main(["batch", str(path), "--only", "nope"]) == 2
    assert main(["batch", str(path), "--dry-run"]) == 0
    assert "[2/2] bad: new" in capsys.readouterr().out


def test_a_changed_task_is_not_skipped(tmp_path, fake_python):
    items, _ = load_batch_file(_batch(tmp_path, [{"name": "a", "data": "ok"}]))
    run_batch(items, python=fake_python)
    items, _ = load_batch_file(_batch(tmp_path, [{"name": "a", "data": "ok", "max_steps": 7}]))
    assert task_state(items[0]) == "conflict"  # tskd train will refuse the folder with a clear message


def test_error_lines():
    text = "progress\n[rank 1] tskd: error: the main process (rank 0) failed: DataError: x\ntskd: error: x\n"
    assert error_from_log(text.replace("[rank 1] ", ""), 2) == "x"
    assert error_from_log("tskd: error: the main process (rank 0) failed: DataError: x\n", 1).endswith("DataError: x")
    assert error_from_log("", -signal.SIGSEGV) == "killed by SIGSEGV"
    assert error_from_log("something\n", 3) == "tskd train exited with code 3"
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\ntorch.OutOfMemoryError: CUDA out of memory.\n'
    assert error_from_log(trace, 1) == "torch.OutOfMemoryError: CUDA out of memory."


@pytest.mark.slow
def test_real_batch_on_phantoms(phantom_dataset, tmp_path, monkeypatch, capsys):
    src = str(Path(__file__).resolve().parents[2] / "src")
    monkeypatch.setenv("PYTHONPATH", src)  # the task subprocesses import this checkout's tskd
    path = _write(tmp_path, {
        "output_root": str(tmp_path / "runs"),
        # 2 steps per stage, 32-pixel inputs, no labels-only reference: the task's run is plumbing here, not
        # learning (the reference and the choice are tested in test_reference.py)
        "defaults": {"preset": "tiny", "max_steps": 2, "config": {
            "synthesis": {"enabled": False}, "reference": {"enabled": False},
            "data": {"prepared": {"input_size": 32}}, "teacher": {"input_size": 32}}},
        # one real task is enough here (each costs a whole tskd train process); the order and the
        # per-task settings of several tasks are tested above with the fake python
        "tasks": [{"name": "broken", "data": str(tmp_path / "no-such-folder")},
                  {"name": "one", "data": str(phantom_dataset), "seed": 1}],
    })
    assert main(["batch", str(path)]) == 1
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "runs" / "batch_summary.json").read_text(encoding="utf-8"))
    tasks = {t["name"]: t for t in summary["tasks"]}
    assert [t["status"] for t in summary["tasks"]] == ["failed", "done"]  # a failure does not stop the batch
    assert tasks["broken"]["error"] == f"{tmp_path / 'no-such-folder'}: not found; give a dataset folder or a manifest file"
    assert Path(tasks["one"]["package"]).is_file() and 0.0 <= tasks["one"]["dice"] <= 1.0
    assert (tmp_path / "runs" / "one" / "package" / "model.onnx").is_file()
    assert re.search(r"^broken\s+failed\s+\d+ s\s+n/a\s+.*no-such-folder: not found", out, re.M)

    # again: the finished task is skipped (no training), the broken one fails again
    assert main(["batch", str(path)]) == 1
    again = json.loads((tmp_path / "runs" / "batch_summary.json").read_text(encoding="utf-8"))["tasks"]
    assert [t["status"] for t in again] == ["failed", "skipped"]
    assert again[1]["dice"] == tasks["one"]["dice"] and again[1]["seconds"] == 0.0


def test_ctrl_c_stops_the_running_task_and_the_batch(tmp_path, fake_python):
    import os
    import threading
    import time

    items, _ = load_batch_file(_batch(tmp_path, [{"name": "slow", "data": "slow"}, {"name": "next", "data": "ok"}]))
    log = tmp_path / "runs" / "slow" / "batch.log"

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (log.is_file() and "training" in log.read_text(encoding="utf-8")):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C in the terminal

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job
    thread = threading.Thread(target=interrupt)
    thread.start()
    outcomes = run_batch(items, python=fake_python)
    thread.join()
    assert [o.status for o in outcomes] == ["stopped", "not run"]
    assert outcomes[0].seconds < 30 and not (tmp_path / "runs" / "next").exists()
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
