"""Concurrency: two clients uploading and polling at once; a burst of status polls (eight pollers
as fast as they can for three seconds, loopback only) while a job runs: every answer stays correct
and the server keeps answering others. Timings are measured by benchmarks/bench_service.py, not here."""

from __future__ import annotations

import threading
import time

from tests.service.helpers import add_cases, project_labels, wait_state


def test_two_clients_upload_and_poll_at_once(server, phantom_files):
    errors: list[BaseException] = []
    results: dict[str, list] = {}

    def work(tag: str) -> None:
        try:
            client = server.client()
            project = client.create_project(f"project-{tag}", project_labels())
            for name, (image, label) in phantom_files.items():
                client.upload_case(project["id"], f"{tag}-{name}", str(image), str(label))
                client.list_cases(project["id"])
            job = client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 5, "step_s": 0.02}})
            status = client.wait_for_job(job["id"], timeout=60, poll_interval=0.02)
            results[tag] = [project["id"], status, client.list_cases(project["id"])]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(tag,)) for tag in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for tag in ("a", "b"):
        project_id, status, cases = results[tag]
        assert status["state"] == "done" and status["model_id"]
        assert [c["name"] for c in cases] == [f"{tag}-case_000", f"{tag}-case_001", f"{tag}-case_002"]
        assert all(c["labelled"] for c in cases)
    assert server.service.db.integrity_check() == "ok"


def test_burst_of_status_polls(server, phantom_files):
    client = server.client(timeout=10)
    project = client.create_project("p", project_labels())
    add_cases(client, project["id"], phantom_files, count=1)
    job = client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 60, "step_s": 0.05}})
    wait_state(client, job["id"], ("running",))
    latencies: list[float] = []
    steps: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    stop_at = time.monotonic() + 3.0
    lock = threading.Lock()

    def poll(worker: int) -> None:
        own = server.client(timeout=10)
        mine: list[int] = []
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            try:
                status = own.job_status(job["id"])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return
            with lock:
                latencies.append(time.perf_counter() - start)
            if status["id"] != job["id"] or status["state"] not in ("running", "done"):
                errors.append(AssertionError(f"wrong answer: {status}"))
                return
            mine.append((status["progress"] or {}).get("step", 0))
        steps[worker] = mine

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    health_latency = []
    while time.monotonic() < stop_at:  # the server stays responsive to others meanwhile
        start = time.perf_counter()
        assert client.health()["status"] == "ok"
        health_latency.append(time.perf_counter() - start)
        time.sleep(0.2)
    for thread in threads:
        thread.join(timeout=30)
    # every poll was answered correctly within the client's timeout, and so was the health check
    assert not errors, errors[:3]
    assert len(latencies) >= 100 and len(health_latency) >= 5 and len(steps) == len(threads)
    for seen in steps.values():  # each poller saw the job's progress move forward, never back
        assert seen == sorted(seen) and seen[-1] > seen[0]
    assert wait_state(client, job["id"], ("done", "failed"))["state"] == "done"
