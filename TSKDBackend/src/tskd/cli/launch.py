"""``--nproc N``: run a training command in N processes on this machine.

The command re-launches itself under ``torch.distributed.run`` (torchrun)::

    python -m tskd.cli.torchrun --standalone --nproc_per_node N -m tskd <the same arguments, without --nproc>

(:mod:`tskd.cli.torchrun` is torchrun, quiet when it is stopped by a signal.)

and waits for it. Ctrl-C or SIGTERM is passed on once, as SIGTERM, to torchrun, which passes it
to the workers: they finish their step, save a checkpoint and stop (the same command then resumes).
A second Ctrl-C kills the workers at once. The exit code is the workers' own (rank 0's unless
another rank failed first with a different error), so ``tskd train --nproc 2`` exits like
``tskd train``: 0 done, 2 a user error, 130 stopped.

On CPUs the workers use gloo; on GPUs N should be the number of GPUs (one process per GPU: the
workers warn when there are more, see :func:`tskd.engine.distributed.init_distributed`). This process
never imports torch: it only waits, for hours maybe, and torch would cost it seconds and memory.
Several nodes need a launcher per node; see docs/distributed.md.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from tskd.processes import kill_process_tree
from tskd.errors import ConfigError

__all__ = ["strip_nproc", "torchrun_command", "relaunch", "record_exit_code", "EXIT_CODE_DIR_ENV"]

logger = logging.getLogger(__name__)

#: Environment variable naming the folder where each worker records its exit code (``rank<R>.code``).
EXIT_CODE_DIR_ENV = "TSKD_EXIT_CODE_DIR"
#: Seconds torchrun gives the workers to save a checkpoint after SIGTERM before it kills them.
SHUTDOWN_TIMEOUT_S = 300


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


def torchrun_command(argv: Sequence[str], nproc: int, *, python: str | None = None) -> list[str]:
    """The torchrun command line that runs ``tskd <argv>`` in ``nproc`` local processes."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    return [
        python or sys.executable, "-m", "tskd.cli.torchrun", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "tskd", *strip_nproc(argv),
    ]


def _worker_env(nproc: int, code_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    # torchrun would set one thread per worker; share this machine's cores between the workers instead
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SHUTDOWN_TIMEOUT_S))
    env[EXIT_CODE_DIR_ENV] = code_dir
    return env


def record_exit_code(code: int) -> None:
    """Called by a worker as it exits: write its exit code for :func:`relaunch` to forward."""
    folder = os.environ.get(EXIT_CODE_DIR_ENV)
    if not folder:
        return
    try:
        Path(folder, f"rank{int(os.environ.get('RANK', '0'))}.code").write_text(str(int(code)), encoding="utf-8")
    except (OSError, ValueError):
        logger.debug("could not record the exit code", exc_info=True)


def _worker_codes(folder: str) -> dict[int, int]:
    codes = {}
    for path in Path(folder).glob("rank*.code"):
        try:
            codes[int(path.stem[4:])] = int(path.read_text(encoding="utf-8").strip())
        except ValueError:
            continue
    return codes


def _exit_code(torchrun_code: int, codes: dict[int, int], stopped: bool) -> int:
    """The workers' outcome: an error other than "stopped" wins (lowest rank first), then 130."""
    failed = {rank: code for rank, code in sorted(codes.items()) if code != 0}
    errors = [code for code in failed.values() if code != 130]
    if errors:
        return errors[0]
    if failed or stopped:
        return 130
    return torchrun_code if torchrun_code >= 0 else 128 - torchrun_code


def relaunch(argv: Sequence[str], nproc: int) -> int:
    """Run ``tskd <argv>`` (``--nproc`` removed) under torchrun with ``nproc`` processes; its exit code.

    Raises:
        ConfigError: already running under a launcher, or ``nproc`` < 1.
    """
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError("--nproc starts the processes itself; under torchrun or accelerate launch leave it out")
    cmd = torchrun_command(argv, nproc)
    stops = 0

    with tempfile.TemporaryDirectory(prefix="tskd-ranks-") as code_dir:
        # its own session: a Ctrl-C in the terminal reaches only this process, which passes it on once
        proc = subprocess.Popen(cmd, env=_worker_env(nproc, code_dir), start_new_session=True)

        def handler(signum: int, frame: object) -> None:
            nonlocal stops
            stops += 1
            if stops == 1:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:  # the signal may have interrupted a write to stderr (reentrant call)
                    print(f"tskd: {signal.Signals(signum).name}: stopping the {nproc} processes after their current "
                          "step (checkpoint saved); press Ctrl-C again to kill them", file=sys.stderr, flush=True)
                except RuntimeError:
                    pass
            else:
                kill_process_tree(proc.pid)

        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, handler)
        try:
            returncode = proc.wait()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            if proc.poll() is None:
                kill_process_tree(proc.pid)
                proc.wait()
        return _exit_code(returncode, _worker_codes(code_dir), stops > 0)
