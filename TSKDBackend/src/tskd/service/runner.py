"""Run one worker command and record its exit code in a file (standard library only).

The service starts every job as ``python runner.py --exit-file FILE -- COMMAND...`` in a new
process session. The runner waits for the command and writes ``{"exit_code": N, "finished": T}``
to FILE atomically, so that a server restarted while the job ran (or after it ended) still learns
how it ended. SIGTERM and SIGINT are passed on to the command.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Sequence

__all__ = ["main", "write_exit_file"]


def write_exit_file(path: str, exit_code: int) -> None:
    """Write the exit record through a temporary file and a rename."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        json.dump({"exit_code": int(exit_code), "finished": time.time()}, stream)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run a tskd worker command and record its exit code")
    parser.add_argument("--exit-file", required=True, help="where to write the exit code (JSON)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        print(f"tskd: error: cannot start the worker command {command[0]!r}: {exc}", file=sys.stderr, flush=True)
        write_exit_file(args.exit_file, 127)
        return 127

    def forward(signum: int, frame: object) -> None:
        try:
            child.send_signal(signum)
        except OSError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for old platforms
            continue
    write_exit_file(args.exit_file, code)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
