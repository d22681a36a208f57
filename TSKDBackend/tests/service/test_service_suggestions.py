"""``GET /projects/{id}/suggestions``: computed in the background (202 while computing), cached per
model, cases, top and teacher (a repeat does not compute again), and its 404/409 answers. The model
is the fixture worker's real student package (a threshold network), scored by the real
:func:`tskd.suggest.suggest`."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from SlicerTSKDLib.backend.client import TSKDClientError

from tests.service.helpers import add_cases, project_labels, wait_state
from tskd.errors import DataError
from tskd.service import suggestions as suggestions_module


@pytest.fixture
def calls(monkeypatch):
    """Count (and optionally hold back) the computations of the server under test (it runs in this process)."""
    real = suggestions_module.run_suggest
    record = {"count": 0, "gate": None, "error": None}

    def counting(*args, **kwargs):
        record["count"] += 1
        if record["gate"] is not None:
            assert record["gate"].wait(30), "the test never released the computation"
        if record["error"] is not None:
            raise record["error"]
        return real(*args, **kwargs)

    monkeypatch.setattr(suggestions_module, "run_suggest", counting)
    return record


def trained(server, project, phantom_files):
    """Two labelled cases, one unlabelled (case_002), and a finished job's model."""
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=2)
    image, _ = phantom_files["case_002"]
    client.upload_case(project["id"], "case_002", str(image))
    job = client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 2, "step_s": 0.01}})
    done = wait_state(client, job["id"], ("done", "failed"))
    assert done["state"] == "done", done
    return done["model_id"]


def get(server, project_id, **query):
    """The raw answer: (status, Retry-After header, body)."""
    text = "&".join(f"{k}={v}" for k, v in query.items())
    url = f"{server.url}/api/v1/projects/{project_id}/suggestions" + (f"?{text}" if text else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers.get("Retry-After"), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Retry-After"), json.loads(exc.read())


def wait_done(client, project_id, timeout=60.0, retry=False, **kwargs):
    deadline = time.monotonic() + timeout
    answer = client.suggestions(project_id, retry=retry, **kwargs)
    while True:
        if answer["status"] != "computing":
            return answer
        assert time.monotonic() < deadline, f"still computing after {timeout} s: {answer}"
        time.sleep(0.05)
        answer = client.suggestions(project_id, **kwargs)


def cache_files(server, project_id):
    return sorted((server.workspace / "projects" / project_id / "suggestions").glob("*.json"))


def test_computing_then_ranked_suggestions_then_cached(server, project, phantom_files, calls):
    model_id = trained(server, project, phantom_files)
    calls["gate"] = threading.Event()
    status, retry, body = get(server, project["id"])
    assert status == 202 and retry == "2"
    assert body["status"] == "computing" and body["model_id"] == model_id and body["result"] is None
    assert body["case_names"] == ["case_002"] and body["top"] == 10 and body["teacher"] is True
    again = get(server, project["id"])  # while it runs: the same computation, not a second one
    assert again[0] == 202 and again[2]["requested"] == body["requested"]
    calls["gate"].set()

    client = server.client()
    done = wait_done(client, project["id"])
    assert done["status"] == "done" and done["error"] is None and done["finished"]
    result = done["result"]
    assert result["format"] == "tskd-suggestions" and result["model"] == model_id
    assert result["teacher"]["used"] is False  # the fixture worker trains no teacher
    entries = result["suggestions"]
    assert 1 <= len(entries) <= 3  # one unlabelled case, at most max_per_case (3) of its slices
    assert [e["rank"] for e in entries] == list(range(1, len(entries) + 1))
    depth = client.get_case(project["id"], "case_002")["size"][2]  # (i, j, k): slices along k
    for entry in entries:
        assert entry["case"] == "case_002" and entry["axis"] == 0 and 0 <= entry["slice"] < depth
        assert 0.0 <= entry["score"] <= 1.0 and entry["why"] and entry["disagreement"] is None
    assert len({e["slice"] for e in entries}) == len(entries)
    assert [c["case"] for c in result["cases"]] == ["case_002"] and result["cases"][0]["num_slices"] == depth
    assert calls["count"] == 1

    [cached] = cache_files(server, project["id"])
    stamp = cached.stat().st_mtime_ns
    status, retry, repeat = get(server, project["id"])
    assert status == 200 and retry is None and repeat == done  # the cached answer, not a new computation
    assert calls["count"] == 1 and cached.stat().st_mtime_ns == stamp

    one = client.suggestions(project["id"], top=1)  # another top: cut from the same computation
    assert one["status"] == "done" and one["top"] == 1 and one["result"]["config"]["top"] == 1
    assert one["result"]["suggestions"] == entries[:1] and calls["count"] == 1
    student = wait_done(client, project["id"], top=2, teacher=False)  # without the teacher: its own computation
    assert student["status"] == "done" and student["teacher"] is False
    assert student["result"]["suggestions"] == entries[:2]  # the fixture's run has no teacher: the same ranking
    assert calls["count"] == 2 and len(cache_files(server, project["id"])) == 2

    # a new unlabelled case changes the fingerprint: computed again, both cases ranked
    image, _ = phantom_files["case_000"]
    client.upload_case(project["id"], "new_scan", str(image))
    grown = wait_done(client, project["id"])
    assert grown["fingerprint"] != done["fingerprint"] and grown["case_names"] == ["case_002", "new_scan"]
    assert {c["case"] for c in grown["result"]["cases"]} == {"case_002", "new_scan"}
    assert calls["count"] == 3


def test_failure_is_reported_and_retry_computes_again(server, project, phantom_files, calls):
    trained(server, project, phantom_files)
    calls["error"] = DataError("case_002.nii.gz: cannot be read; upload it again")
    client = server.client()
    failed = wait_done(client, project["id"])
    assert failed["status"] == "failed" and failed["result"] is None
    assert failed["error"] == "case_002.nii.gz: cannot be read; upload it again"
    assert client.suggestions(project["id"])["status"] == "failed" and calls["count"] == 1  # cached too

    calls["error"] = RuntimeError("out of memory")
    assert client.suggestions(project["id"], retry=False)["status"] == "failed" and calls["count"] == 1
    crashed = wait_done(client, project["id"], retry=True)
    assert crashed["status"] == "failed" and "RuntimeError: out of memory" in crashed["error"]
    assert "log" in crashed["error"] and calls["count"] == 2

    calls["error"] = None
    assert client.suggestions(project["id"], retry=True)["status"] == "computing"
    done = wait_done(client, project["id"])
    assert done["status"] == "done" and calls["count"] == 3
    assert client.suggestions(project["id"], retry=True) == done and calls["count"] == 3  # a result is kept


def test_unknown_project_or_model_is_404(server, project, phantom_files, calls):
    client = server.client()
    with pytest.raises(TSKDClientError) as err:
        client.suggestions("0123456789ab")
    assert err.value.status == 404 and "no project" in err.value.message
    model_id = trained(server, project, phantom_files)
    with pytest.raises(TSKDClientError) as err:
        client.suggestions(project["id"], model_id="fedcba987654")
    assert err.value.status == 404 and "no model" in err.value.message
    other = client.create_project("other", project_labels())
    with pytest.raises(TSKDClientError) as err:
        client.suggestions(other["id"], model_id=model_id)
    assert err.value.status == 404 and f"not a model of project {other['id']}" in err.value.message
    status, _, body = get(server, project["id"], top=0)
    assert status == 422 and body["code"] == "invalid" and "top" in body["detail"]
    assert calls["count"] == 0


def test_no_model_or_nothing_unlabelled_is_409(server, project, phantom_files, calls):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=2)
    with pytest.raises(TSKDClientError) as err:
        client.suggestions(project["id"])
    assert err.value.status == 409 and "no trained model yet" in err.value.message
    job = client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 2, "step_s": 0.01}})
    assert wait_state(client, job["id"], ("done", "failed"))["state"] == "done"
    with pytest.raises(TSKDClientError) as err:  # every case is labelled
        client.suggestions(project["id"])
    assert err.value.status == 409 and "no unlabelled case" in err.value.message
    assert "without a label" in err.value.message and calls["count"] == 0


def test_the_cache_survives_a_restart(make_server, phantom_files, calls):
    server = make_server()
    project = server.client().create_project("phantoms", project_labels())
    model_id = trained(server, project, phantom_files)
    first = wait_done(server.client(), project["id"])
    assert first["status"] == "done" and calls["count"] == 1
    server.stop()
    again = make_server()  # the same workspace
    client = again.client()
    assert client.suggestions(project["id"]) == first  # from the file, at once
    assert client.suggestions(project["id"], model_id=model_id) == first  # the latest model is this one
    assert calls["count"] == 1


def test_a_project_deleted_while_computing_gets_no_files_back(server, project, phantom_files, calls):
    trained(server, project, phantom_files)
    calls["gate"] = threading.Event()
    client = server.client()
    assert client.suggestions(project["id"])["status"] == "computing"
    client.delete_project(project["id"])
    calls["gate"].set()
    deadline = time.monotonic() + 30
    while server.service.suggestions._running:
        assert time.monotonic() < deadline, "the computation did not end"
        time.sleep(0.05)
    assert not (server.workspace / "projects" / project["id"]).exists()
    assert not list((server.workspace / "tmp").iterdir())  # the computation's links are gone too


# -- in a worker process, from a bounded queue (issue 34, item 3) ----------------------------------
def test_scoring_runs_in_a_worker_process_not_in_the_server(server, project, phantom_files, monkeypatch):
    import tskd.suggest
    import tskd.suggest.suggestions

    def in_the_server(*args, **kwargs):
        raise AssertionError("the teacher and the student were loaded in the server process")

    monkeypatch.setattr(tskd.suggest, "suggest", in_the_server)  # the server runs in this test's process
    monkeypatch.setattr(tskd.suggest.suggestions, "suggest", in_the_server)
    trained(server, project, phantom_files)
    done = wait_done(server.client(), project["id"])
    assert done["status"] == "done", done
    assert [c["case"] for c in done["result"]["cases"]] == ["case_002"]
    assert str(server.workspace) not in json.dumps(done)  # the worker's paths stay on the server
    assert list((server.workspace / "tmp").iterdir()) == []


def test_a_worker_refusal_is_a_failed_answer_with_its_message(server, project, phantom_files):
    model_id = trained(server, project, phantom_files)
    [stored] = (server.workspace / "projects" / project["id"]).rglob("case_002*")  # damaged on disk
    stored.write_bytes(b"not an image")
    answer = wait_done(server.client(), project["id"])
    assert answer["status"] == "failed" and answer["model_id"] == model_id
    assert "none of the 1 cases could be read" in answer["error"] and "case_002" in answer["error"]
    assert "Traceback" not in answer["error"] and str(server.workspace) not in answer["error"]


def test_the_queue_is_bounded_503_with_retry_after(make_server, phantom_files, calls):
    server = make_server(max_queued_suggestions=1)
    client = server.client()
    project = client.create_project("p", [{"value": 1, "name": "a"}, {"value": 2, "name": "b"}])
    trained(server, project, phantom_files)
    calls["gate"] = threading.Event()
    assert get(server, project["id"])[0] == 202  # one computation, held
    status, retry, body = get(server, project["id"], teacher="false")  # another key: no room
    assert status == 503 and retry == "10", body
    assert body["code"] == "busy" and "ask again" in body["detail"]
    calls["gate"].set()
    assert wait_done(client, project["id"])["status"] == "done"
    assert wait_done(client, project["id"], teacher=False)["status"] == "done"  # room again
    assert calls["count"] == 2
