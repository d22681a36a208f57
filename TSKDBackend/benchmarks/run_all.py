"""Run every benchmark script of this folder, one after another, each in its own process.

Discovers the ``bench_*.py`` files next to this script (the known ones first, in the order
inference, teacher, diffusion, service, memory, slicer_segment; any others after them by name),
runs each with ``--quick`` passed through to the scripts that accept it, and ends with a summary:
which script ran how long, whether it succeeded, and where its JSON went (the ``wrote <path>`` line
the scripts print, else the ``results/*.json`` files it changed).

Usage (from the repository root; ``make bench`` calls it)::

    python TSKDBackend/benchmarks/run_all.py [--quick] [--only teacher diffusion] [--skip service] [--list]

The exit status is non-zero when a script failed; the others still run. Every script prints its
own table. Run on a quiet machine: other processes distort every number.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "TSKDBackend" / "src"
RESULTS_DIR = HERE / "results"
ORDER = ("inference", "teacher", "diffusion", "service", "memory", "slicer_segment")
_WROTE = re.compile(r"^wrote (.+\.json)\s*$")


def discover(folder: Path = HERE) -> dict[str, Path]:
    """Benchmark scripts by short name (``bench_teacher.py`` -> ``teacher``), in running order."""
    found = {path.stem[len("bench_"):]: path for path in folder.glob("bench_*.py") if path.is_file()}
    known = [name for name in ORDER if name in found]
    return {name: found[name] for name in known + sorted(set(found) - set(known))}


def accepts_quick(script: Path) -> bool:
    """Whether the script defines a ``--quick`` option (read from its source, nothing imported)."""
    return re.search(r"""["']--quick["']""", script.read_text(encoding="utf-8")) is not None


def _json_files() -> dict[Path, float]:
    return {path: path.stat().st_mtime for path in RESULTS_DIR.glob("*.json")} if RESULTS_DIR.is_dir() else {}


def run_script(script: Path, quick: bool) -> dict:
    """Run one script, echoing its output; returns status, seconds, the command and its JSON files."""
    command = [sys.executable, str(script)] + (["--quick"] if quick and accepts_quick(script) else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
               PYTHONUNBUFFERED="1")
    before = _json_files()
    start = time.perf_counter()
    wrote: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        for line in process.stdout or ():
            sys.stdout.write(line)
            sys.stdout.flush()
            match = _WROTE.match(line.strip())
            if match:
                wrote.append(match.group(1))
    seconds = time.perf_counter() - start
    if not wrote:
        wrote = [str(path) for path, mtime in _json_files().items() if before.get(path) != mtime]
    return {"returncode": process.returncode, "seconds": seconds, "command": command, "json": wrote}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to the scripts that accept it")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (e.g. teacher diffusion)")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="leave these out")
    parser.add_argument("--list", action="store_true", help="list the scripts found and exit")
    args = parser.parse_args(argv)
    scripts = discover()
    unknown = sorted(set(args.only or []).union(args.skip) - set(scripts))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; found: {', '.join(scripts)}")
    chosen = {name: path for name, path in scripts.items()
              if (args.only is None or name in args.only) and name not in args.skip}
    if args.list:
        for name, path in scripts.items():
            print(f"{name:<16} {path.name}{'' if accepts_quick(path) else '  (no --quick)'}")
        return 0
    summary = {}
    for index, (name, path) in enumerate(chosen.items(), 1):
        quick_note = "" if not args.quick or accepts_quick(path) else " (it has no --quick: full run)"
        print(f"\n=== [{index}/{len(chosen)}] {path.name}{quick_note}", flush=True)
        summary[name] = run_script(path, args.quick)
    print("\n=== summary")
    failed = 0
    for name, result in summary.items():
        status = "ok" if result["returncode"] == 0 else f"FAILED (exit {result['returncode']})"
        failed += result["returncode"] != 0
        where = ", ".join(result["json"]) or "no JSON written"
        print(f"{name:<16} {status:<18} {result['seconds']:8.0f} s  {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
