"""The soak benchmark's short run (``bench_soak.py --quick``: 30 s of load, about 40 s in all): a real
``tskd serve`` under 8 polling and 2 uploading clients and a real training job, the server and the worker
killed with SIGKILL and the server restarted; every accepted case byte for byte after each restart, no
half-written file, the database's integrity check clean, no undeclared answer (issue 34)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SRC = BENCHMARKS.parent / "src"


@pytest.mark.serial  # a fixed 30 s: how many requests are served, how fast, depends on an idle machine
def test_the_short_soak_holds(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_soak.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    run = results["run"]
    assert run["violations"] == [] and run["failures"] == []
    outcomes = run["outcomes"]
    assert not [kind for kind in outcomes if kind.startswith(("unexpected", "undeclared"))], outcomes
    for refusal in ("refused_408", "refused_413", "refused_422"):  # trickling, oversized, corrupt uploads
        assert outcomes.get(refusal, 0) > 0, outcomes
    assert outcomes["ok"] > 300, outcomes
    assert run["kills"]["server"] >= 1 and run["kills"]["worker"] >= 1, run["restarts"]
    for restart in run["restarts"]:
        if restart["killed"] == "server":
            assert restart["integrity_check"] == "ok" and restart["problems"] == [], restart
    assert run["final_check"]["integrity_check"] == "ok" and run["final_check"]["problems"] == []
    assert run["cases_accepted"] >= 5 and run["final_check"]["cases_checked"] == run["cases_accepted"]
    assert run["rss_mib"]["start"] > 0 and run["rss_mib"]["end"] > 0
    assert run["latency_ms"]["poll"]["p50"] > 0
    assert "soak of tskd serve" in done.stdout and f"wrote {out}" in done.stdout


def test_the_soak_trains_with_the_service_tests_quick_settings() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_soak
    finally:
        sys.path.remove(str(BENCHMARKS))
    from tests.service.helpers import QUICK_TINY_SETTINGS

    assert bench_soak.QUICK_TINY_SETTINGS == QUICK_TINY_SETTINGS
