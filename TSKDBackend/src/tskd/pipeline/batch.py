"""``tskd batch``: many datasets/tasks in one command, each one ``tskd train`` on its own run folder.

Each task runs as ``python -m tskd train ...`` in its own subprocess (its output appended to
``RUN/batch.log``), so a crash, an out-of-memory kill or a hung GPU in one task cannot take down
the others or the batch; it is resumable like any ``tskd train`` (a finished task with the same
settings is skipped, a half-finished one resumes). A failed task's one-line error is recorded and
the batch goes on. The outcome of every task is summarised in a table, ``batch_summary.json`` and
``batch_summary.md``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tskd.atomic import write_json, write_text
from tskd.config import load_yaml, save_yaml
from tskd.processes import kill_process_tree
from tskd.log import warn_from_signal_handler
from tskd.pipeline.batch_config import PlannedTask
from tskd.pipeline.run_folder import RunFolder, read_json

__all__ = [
    "TaskOutcome",
    "task_state",
    "train_command",
    "error_from_log",
    "run_batch",
    "format_batch_table",
    "write_batch_summary",
    "TASK_CONFIG",
    "TASK_LOG",
]

logger = logging.getLogger(__name__)

#: Written into each task's run folder: the task's resolved config, given to ``tskd train --config``.
TASK_CONFIG = "batch-config.yaml"
#: Each task's console output (appended on every attempt), in its run folder.
TASK_LOG = "batch.log"


@dataclass
class TaskOutcome:
    """What happened to one task.

    Attributes:
        name: the task's name.
        status: ``done``, ``skipped`` (already done with the same settings), ``failed``,
            ``stopped`` (interrupted; rerun to resume) or ``not run`` (the batch was stopped first).
        seconds: wall time of this attempt.
        out: the run folder.
        dice: mean Dice of the exported student on the validation volumes (or its slice Dice).
        package: the student package (``.tskd.zip``) when the task is done.
        error: why it failed.
        log: the task's console output file.
    """

    name: str
    status: str
    seconds: float = 0.0
    out: str = ""
    dice: float | None = None
    package: str | None = None
    error: str | None = None
    log: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def task_state(item: PlannedTask) -> str:
    """``done`` (finished, same settings), ``resume`` (a run folder with the same settings), ``new``,
    or ``conflict`` (the folder holds a run with other settings: running it fails with a message)."""
    run = RunFolder(item.out)
    if not run.config.is_file():
        return "new"
    try:
        same = load_yaml(run.config) == item.config.to_dict()
    except Exception:  # a damaged config.yaml: let tskd train report it
        return "conflict"
    if not same:
        return "conflict"
    if run.summary.is_file():
        try:
            if read_json(run.summary).get("stages", {}).get("package"):
                return "done"
        except ValueError:
            pass
    return "resume"


def train_command(item: PlannedTask, config_file: Path, *, python: str | None = None) -> list[str]:
    """The ``tskd train`` command line of a task whose resolved config is in ``config_file``."""
    cmd = [python or sys.executable, "-m", "tskd", "train", "--data", item.task.data, "--out", str(item.out),
           "--preset", item.task.preset, "--config", str(config_file)]
    if item.task.nproc and item.task.nproc > 1:
        cmd += ["--nproc", str(item.task.nproc)]
    return cmd


_ERROR_LINE = re.compile(r"^tskd: error: (.*)$")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)[\w]*): ?(.*)$")


def error_from_log(text: str, returncode: int) -> str:
    """The one-line reason a ``tskd train`` subprocess failed, from its console output.

    Prefers tskd's own ``tskd: error: ...`` line (a rank's echo of rank 0's failure only when
    nothing better is there), then the last line of a Python traceback (``Type: message``), then
    the signal that killed it, then the exit code.
    """
    lines = [line.rstrip() for line in text.splitlines()]
    errors = [m.group(1) for m in map(_ERROR_LINE.match, lines) if m]
    if errors:
        own = [e for e in errors if "the main process (rank 0) failed" not in e]
        return (own or errors)[-1]
    if "Traceback (most recent call last):" in text:
        for line in reversed(lines):
            match = _EXCEPTION_LINE.match(line)
            if match:
                return f"{match.group(1)}: {match.group(3)}".rstrip(": ")
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"tskd train exited with code {returncode}"


def _finished(item: PlannedTask, outcome: TaskOutcome) -> TaskOutcome:
    summary = read_json(RunFolder(item.out).summary)
    package = summary.get("stages", {}).get("package") or {}
    validation = package.get("validation") or {}
    dice = validation.get("mean_dice")
    if dice is None:
        dice = summary.get("stages", {}).get("finetune", {}).get("metrics", {}).get("val_dice")
    outcome.dice = float(dice) if isinstance(dice, (int, float)) else None
    outcome.package = package.get("archive") or package.get("folder")
    return outcome


class _Stopper:
    """SIGINT/SIGTERM during a batch: pass one SIGTERM to the running task, a second kills it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.requests = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.requests += 1
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.requests == 1:
            self.proc.send_signal(signal.SIGTERM)
            warn_from_signal_handler(logger, "%s: stopping the running task after a checkpoint; press Ctrl-C again "
                                     "to kill it", signal.Signals(signum).name)
        else:
            kill_process_tree(self.proc.pid)


def _run_one(item: PlannedTask, stopper: _Stopper, python: str | None) -> TaskOutcome:
    run = RunFolder(item.out)
    run.root.mkdir(parents=True, exist_ok=True)
    config_file = run.root / TASK_CONFIG
    save_yaml(item.config.to_dict(), config_file)
    log_path = run.root / TASK_LOG
    cmd = train_command(item, config_file, python=python)
    started = time.monotonic()
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"\n=== tskd batch, task {item.name}, {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n")
        log.flush()
        offset = log.tell()
        # its own session: signals reach the task only through the stopper (exactly once)
        stopper.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=dict(os.environ, PYTHONUNBUFFERED="1"))
        returncode = stopper.proc.wait()
        stopper.proc = None
    seconds = round(time.monotonic() - started, 1)
    outcome = TaskOutcome(name=item.name, status="done", seconds=seconds, out=str(item.out), log=str(log_path))
    if returncode == 0:
        return _finished(item, outcome)
    with log_path.open("r", encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        text = log.read()
    outcome.status = "stopped" if returncode == 130 or stopper.requests else "failed"
    outcome.error = error_from_log(text, returncode)
    return outcome


def run_batch(
    items: Sequence[PlannedTask],
    *,
    on_start: Callable[[int, PlannedTask, str], None] | None = None,
    on_done: Callable[[int, TaskOutcome], None] | None = None,
    python: str | None = None,
) -> list[TaskOutcome]:
    """Run ``items`` one after the other; return every task's outcome, in order.

    Args:
        items: planned tasks (see :func:`tskd.pipeline.batch_config.load_batch_file`).
        on_start: called with (position, task, state from :func:`task_state`) before each task.
        on_done: called with (position, outcome) after each task.
        python: the interpreter for the task subprocesses (default: this one).
    """
    stopper = _Stopper()
    outcomes: list[TaskOutcome] = []
    in_main = _in_main_thread()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    for sig in previous:
        signal.signal(sig, stopper)
    try:
        for position, item in enumerate(items, start=1):
            if stopper.requests:
                outcome = TaskOutcome(name=item.name, status="not run", out=str(item.out))
            else:
                state = task_state(item)
                if on_start is not None:
                    on_start(position, item, state)
                if state == "done":
                    outcome = _finished(item, TaskOutcome(name=item.name, status="skipped", out=str(item.out),
                                                          log=str(item.out / TASK_LOG)))
                else:
                    try:
                        outcome = _run_one(item, stopper, python)
                    except OSError as exc:  # e.g. the run folder cannot be created
                        outcome = TaskOutcome(name=item.name, status="failed", out=str(item.out),
                                              error=f"{type(exc).__name__}: {exc}")
            outcomes.append(outcome)
            if on_done is not None:
                on_done(position, outcome)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return outcomes


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _rows(outcomes: Sequence[TaskOutcome]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for o in outcomes:
        dice = f"{o.dice:.3f}" if o.dice is not None else "n/a"
        detail = o.package or "" if o.status in ("done", "skipped") else (o.error or "")
        rows.append((o.name, o.status, f"{o.seconds:.0f} s", dice, detail))
    return rows


_HEADER = ("task", "status", "duration", "val Dice", "package / error")


def format_batch_table(outcomes: Sequence[TaskOutcome]) -> str:
    """A plain-text table of the outcomes, with a closing count line."""
    rows = [_HEADER] + _rows(outcomes)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:4], widths)), row[4]]).rstrip() for row in rows]
    lines.insert(1, "  ".join(["-" * w for w in widths] + ["-" * len(_HEADER[4])]))
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)


def write_batch_summary(outcomes: Sequence[TaskOutcome], folder: str | Path, *, batch_file: str | Path) -> tuple[Path, Path]:
    """Write ``batch_summary.json`` and ``batch_summary.md`` into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"batch_file": str(batch_file), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "tasks": [o.to_dict() for o in outcomes]}
    json_path = write_json(folder / "batch_summary.json", data)
    md = [f"# Batch summary: {Path(batch_file).name}", "", f"Finished {data['finished']}.", "",
          "| " + " | ".join(_HEADER) + " |", "| --- | --- | --- | --- | --- |"]
    md += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _rows(outcomes)]
    md_path = folder / "batch_summary.md"
    write_text(md_path, "\n".join(md) + "\n")
    return json_path, md_path
