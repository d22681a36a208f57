"""Helpers shared by the benchmark scripts of this folder (not a benchmark itself: ``run_all.py``
runs ``bench_*.py`` only).

* :func:`machine_info` - CPU model, cores, RAM, load, library versions (without importing torch,
  so a parent process that only schedules work stays light);
* :func:`timed` - median / minimum seconds of a callable after warm-up calls;
* :func:`peak_rss_mib` - the process's peak resident memory so far;
* :func:`run_worker` / :func:`worker_reply` - one configuration in a fresh Python process whose
  peak memory is its own;
* :func:`write_results` - the JSON file under ``results/``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "HERE",
    "REPO",
    "RESULTS_DIR",
    "machine_info",
    "timed",
    "summarise",
    "peak_rss_mib",
    "run_worker",
    "worker_reply",
    "parse_reply",
    "write_results",
    "now",
]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS_DIR = HERE / "results"
SRC = REPO / "TSKDBackend" / "src"
_REPLY = "BENCH_RESULT "
if str(SRC) not in sys.path:  # the scripts run from a checkout without installing the package
    sys.path.insert(0, str(SRC))


def now() -> str:
    """Local time stamp for the ``created`` field."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _physical_cores() -> int:
    from tskd.runtime import physical_cores  # numpy only: cheap to import

    return physical_cores()


def machine_info(threads: int | None = None, gpus: list[str] | None = None) -> dict[str, Any]:
    """Where the numbers were measured.

    Args:
        threads: CPU threads torch was given (``None``: not set by the benchmark).
        gpus: names of the GPUs used (from ``torch.cuda.get_device_name``), empty without one.
    """
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "threads": threads,
        "ram_gib": _ram_gib(),
        "gpus": list(gpus or []),
        "load_average_1_5_15min": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "transformers": _version("transformers"),
        "diffusers": _version("diffusers"),
        "numpy": _version("numpy"),
    }


def machine_line(results: dict[str, Any]) -> str:
    """The first line of a printed table: machine, library and load, and the run's mode flags."""
    machine = results["machine"]
    gpus = "; " + ", ".join(machine["gpus"]) if machine["gpus"] else ""
    flags = (" [quick]" if results["quick"] else "") + (" [smoke]" if results["smoke"] else "")
    return (f"{machine['cpu']} ({machine['physical_cores']} physical cores, {machine['threads']} threads, "
            f"{machine['ram_gib']} GiB){gpus}; torch {machine['torch']}; load {machine['load_average_1_5_15min']}"
            f"{flags}")


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Seconds per call of ``fn`` (which must finish its work, e.g. synchronise a GPU, before returning).

    Returns:
        ``median_s``, ``min_s``, ``times_s`` (every timed call), ``repeats`` and ``warmup``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return summarise(times, warmup)


def summarise(times: list[float], warmup: int) -> dict[str, Any]:
    """``median_s``, ``min_s``, ``times_s``, ``repeats``, ``warmup`` of measured seconds."""
    ordered = sorted(times)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {"median_s": median, "min_s": ordered[0], "times_s": list(times), "repeats": len(times),
            "warmup": warmup}


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (``getrusage``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def worker_reply(result: dict[str, Any]) -> None:
    """Called by a worker process: hand ``result`` to the parent (one marked line on stdout)."""
    print(_REPLY + json.dumps(result), flush=True)


def parse_reply(stdout: str) -> dict[str, Any] | None:
    """The result a worker handed over with :func:`worker_reply` (its last one), or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(_REPLY):
            return json.loads(line[len(_REPLY):])
    return None


def run_worker(script: Path, spec: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
    """Run ``script --worker <spec as JSON>`` in a fresh interpreter and return its reply.

    The worker's stderr passes through (progress stays visible). A worker that fails, is killed
    (e.g. out of memory) or times out gives ``{"error": ...}`` instead of stopping the benchmark.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))
    command = [sys.executable, str(script), "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    reply = parse_reply(done.stdout)
    if reply is not None:
        return reply
    if done.returncode < 0:
        return {"error": f"killed by signal {-done.returncode} (out of memory?)"}
    return {"error": f"exit status {done.returncode} without a result"}


def write_results(results: dict[str, Any], out: Path) -> Path:
    """Write ``results`` as indented JSON to ``out`` (folders created) and return the path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return out
