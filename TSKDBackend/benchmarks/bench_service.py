"""Benchmark of ``tskd serve``: status-poll latency under load and upload throughput.

Starts a real server (``python -m tskd serve`` on a free loopback port, in a temporary workspace)
whose jobs run a small stand-in worker that rewrites ``status.json`` ten times a second, then:

1. status polls: for each number of concurrent pollers (separate processes, each using the Slicer
   client, one HTTP connection per request like the Slicer module), poll ``GET /jobs/{id}`` as fast
   as possible for a few seconds; report requests per second and latency p50 / p99;
2. uploads: upload a ~100 MB ``.nii.gz`` volume (float32 noise, which gzip cannot shrink) several
   times; report MB/s end to end (streaming to disk, reading and checking the image, storing it).

Prints a table and writes ``benchmarks/results/service.json``::

    python TSKDBackend/benchmarks/bench_service.py [--pollers 1 4 16] [--seconds 5] [--upload-mb 100] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "SlicerTSKD"))
sys.path.insert(0, str(REPO / "TSKDBackend" / "src"))

from SlicerTSKDLib.backend.client import TSKDClient  # noqa: E402

WORKER = textwrap.dedent('''
    import argparse, sys, time
    from pathlib import Path
    from tskd.progress import ProgressEvent, StatusFileProgress
    parser = argparse.ArgumentParser()
    for flag in ("--data", "--out", "--preset", "--config", "--cancel-file", "--base"):
        parser.add_argument(flag)
    args = parser.parse_args()
    progress = StatusFileProgress(Path(args.out) / "status.json", min_interval_s=0.0)
    for step in range(10 ** 6):
        if Path(args.cancel_file).exists():
            sys.exit(130)
        progress(ProgressEvent("bench", step, 10 ** 6, metrics={"loss": 1.0 / (step + 1)}))
        print("step", step, flush=True)
        time.sleep(0.1)
''')


def _poller(url: str, job_id: str, seconds: float, queue: multiprocessing.Queue) -> None:
    client = TSKDClient(url, timeout=30)
    latencies, errors = [], 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        start = time.perf_counter()
        try:
            client.job_status(job_id)
            latencies.append(time.perf_counter() - start)
        except Exception:  # counted, not raised: the benchmark measures the service under load
            errors += 1
    queue.put((latencies, errors))


def bench_polls(url: str, job_id: str, pollers: int, seconds: float) -> dict:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_poller, args=(url, job_id, seconds, queue)) for _ in range(pollers)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join()
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(err for _, err in results)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * (len(latencies) - 1)))] * 1000 if latencies else float("nan")

    return {"pollers": pollers, "seconds": seconds, "requests": len(latencies), "errors": errors,
            "requests_per_s": len(latencies) / seconds, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "max_ms": latencies[-1] * 1000 if latencies else float("nan")}


def make_volume(path: Path, megabytes: float) -> Path:
    import numpy as np

    from tskd.data.image import Geometry, Image, write_image

    slices = max(1, int(megabytes * 1024 * 1024 / (256 * 256 * 4)))
    array = np.random.default_rng(0).normal(100.0, 20.0, size=(slices, 256, 256)).astype(np.float32)
    return write_image(Image(array, Geometry.default(array.shape, (0.8, 0.8, 1.0))), path)


def make_case(folder: Path) -> tuple[Path, Path]:
    """A small labelled case for the polled job (the stand-in worker does not read it)."""
    import numpy as np

    from tskd.data.image import Geometry, Image, write_image

    geometry = Geometry.default((4, 16, 16))
    image = write_image(Image(np.ones((4, 16, 16), np.float32), geometry), folder / "case.nii.gz")
    label = write_image(Image(np.zeros((4, 16, 16), np.uint8), geometry), folder / "case-label.nii.gz")
    return image, label


def bench_uploads(client: TSKDClient, volume: Path, repeats: int) -> dict:
    project = client.create_project(f"upload-bench-{time.time_ns()}", [{"value": 1, "name": "x"}])
    size_mb = volume.stat().st_size / (1024 * 1024)
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        client.upload_case(project["id"], f"volume_{index}", str(volume))
        times.append(time.perf_counter() - start)
    best, median = min(times), statistics.median(times)
    return {"file_mb": size_mb, "repeats": repeats, "seconds": times, "best_mb_per_s": size_mb / best,
            "median_mb_per_s": size_mb / median}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pollers", type=int, nargs="+", default=None, help="default: 1 4 16 (--quick: 1 4)")
    parser.add_argument("--seconds", type=float, default=None, help="default: 5 (--quick: 2)")
    parser.add_argument("--upload-mb", type=float, default=None, help="default: 100 (--quick: 20)")
    parser.add_argument("--upload-repeats", type=int, default=None, help="default: 3 (--quick: 1)")
    parser.add_argument("--quick", action="store_true", help="shorter defaults (numbers are rougher)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "service.json")
    args = parser.parse_args()
    defaults = ([1, 4], 2.0, 20.0, 1) if args.quick else ([1, 4, 16], 5.0, 100.0, 3)
    for name, value in zip(("pollers", "seconds", "upload_mb", "upload_repeats"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)

    with tempfile.TemporaryDirectory(prefix="tskd-bench-") as tmp:
        tmp_path = Path(tmp)
        worker = tmp_path / "worker.py"
        worker.write_text(WORKER, encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "TSKDBackend" / "src"),
                                                          os.environ.get("PYTHONPATH", "")]))
        server_log = open(tmp_path / "server.log", "wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "tskd", "serve", "--workspace", str(tmp_path / "ws"), "--port", "0",
             "--max-upload-mb", str(max(args.upload_mb * 2, 64)), "--cancel-grace-s", "2",
             "--train-command", f"{sys.executable} {worker}"],
            stdout=subprocess.PIPE, stderr=server_log, text=True, env=env,
        )
        try:
            line = server.stdout.readline() if server.stdout else ""
            url = line.split("listening on ", 1)[1].split(";")[0]
            client = TSKDClient(url, timeout=60, transfer_timeout=1200)
            project = client.create_project("poll-bench", [{"value": 1, "name": "x"}])
            image, label = make_case(tmp_path)
            client.upload_case(project["id"], "c", str(image), str(label))
            job = client.start_job(project["id"], preset="tiny")  # the stand-in worker ignores the preset
            while client.job_status(job["id"])["state"] != "running":
                time.sleep(0.1)
            polls = []
            for pollers in args.pollers:
                result = bench_polls(url, job["id"], pollers, args.seconds)
                polls.append(result)
                print(f"  {pollers:3d} pollers: {result['requests_per_s']:7.0f} req/s  p50 {result['p50_ms']:6.1f} ms  "
                      f"p99 {result['p99_ms']:6.1f} ms  errors {result['errors']}", flush=True)
            client.cancel_job(job["id"])
            big = make_volume(tmp_path / "big.nii.gz", args.upload_mb)
            upload = bench_uploads(client, big, args.upload_repeats)
        finally:
            server.terminate()
            server.wait(timeout=60)
            server_log.close()

    results = {
        "benchmark": "service",
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "status_polls": polls,
        "upload": upload,
        "quick": args.quick,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print()
    print("status polls (GET /api/v1/jobs/{id}, one connection per request, loopback)")
    print(f"{'pollers':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    for row in polls:
        print(f"{row['pollers']:>8} {row['requests_per_s']:>8.0f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
              f"{row['max_ms']:>8.1f} {row['errors']:>7}")
    print()
    print(f"upload of a {upload['file_mb']:.0f} MB .nii.gz (stream + check + store): "
          f"best {upload['best_mb_per_s']:.1f} MB/s, "
          f"median {upload['median_mb_per_s']:.1f} MB/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
