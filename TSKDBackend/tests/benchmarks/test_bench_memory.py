"""The memory benchmark's measuring helper reports real peaks, and the benchmark runs end to end
on small sizes (``--quick``). Figures themselves are never asserted: see docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SRC = Path(__file__).resolve().parents[2] / "src"


def _peak(code: str) -> dict:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "peak_rss.py"), "--", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_peak_rss_sees_a_short_allocation_and_not_the_parents_memory():
    # 300 MB touched for a moment, then freed: the kernel's high-water mark still shows it
    big = _peak("import time; b = bytearray(300 << 20); del b; time.sleep(0.3); print('ok')")
    small = _peak("print('ok')")
    assert big["stdout"].strip() == "ok" and big["returncode"] == 0
    assert big["peak_rss_bytes"] > small["peak_rss_bytes"] + (280 << 20)
    assert small["peak_rss_bytes"] < 100 << 20  # not charged with this (pytest) process's memory
    assert _peak("import sys; sys.exit(3)")["returncode"] == 3


@pytest.mark.slow
def test_quick_benchmark_writes_its_results(tmp_path):
    out = tmp_path / "memory.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_memory.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(SRC)})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["quick"] is True
    for mode in ("ct", "percentile"):
        run = results["predict"]["runs"][mode]
        assert run["peak_rss_bytes"] > 50 << 20 and run["output_bytes"] > 0 and run["seconds"] > 0
    stream = results["transfer_set"]
    assert stream["items"] == 256 and stream["shards_opened"] >= 4 and stream["disk_bytes"] > 10 << 20
    assert "under 4 GiB" in done.stdout
