"""Run a command and report its peak memory: ``python peak_rss.py -- CMD ...`` prints JSON.

Peak RSS is the kernel's high-water mark of the command (``ru_maxrss`` from ``wait4``). Linux
charges a child with the high-water mark of the process it was forked from, so this helper is
kept small (standard library and psutil only): started from a benchmark that holds torch in
memory, the command would otherwise inherit hundreds of MiB it never used. The command's process
tree is also polled every 20 ms for ``RssAnon`` (anonymous memory, not file-backed pages).

Output: ``{"peak_rss_bytes", "polled_peak_rss_bytes", "peak_rss_anon_bytes", "seconds",
"returncode", "stdout", "stderr_tail"}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _rss_anon(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_measured(cmd: list[str], *, interval_s: float = 0.02) -> dict:
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        root = psutil.Process(proc.pid)
        peak_rss = peak_anon = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                returncode = os.waitstatus_to_exitcode(status)
                proc.returncode = returncode
                break
            rss = anon = 0
            try:
                for p in [root] + root.children(recursive=True):
                    try:
                        rss += p.memory_info().rss
                        anon += _rss_anon(p.pid)
                    except psutil.NoSuchProcess:
                        continue
            except psutil.NoSuchProcess:
                pass
            peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
            time.sleep(interval_s)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return {"peak_rss_bytes": max(usage.ru_maxrss * 1024, peak_rss), "polled_peak_rss_bytes": peak_rss,
            "peak_rss_anon_bytes": peak_anon, "seconds": round(seconds, 2), "returncode": returncode,
            "stdout": stdout, "stderr_tail": stderr[-4000:]}


def main() -> int:
    args = sys.argv[1:]
    if not args or args[0] != "--" or len(args) < 2:
        print("usage: python peak_rss.py -- CMD [ARGS...]", file=sys.stderr)
        return 2
    print(json.dumps(run_measured(args[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
