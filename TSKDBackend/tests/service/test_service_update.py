"""A training job that updates an earlier job's model (``update_from``): the worker is told the previous
run folder, the job and the model list record the lineage, and bad ``update_from`` values are refused.

The Slicer client has no ``update_from`` argument yet, so the requests go through its one request helper.
"""

from __future__ import annotations

import pytest
from SlicerTSKDLib.backend.client import TSKDClientError

from tests.service.helpers import add_cases, wait_state


def _start(client, project_id, **body):
    body.setdefault("settings", {"fake": {"steps": 2, "step_s": 0.01}})
    return client._request("POST", f"/projects/{project_id}/jobs", json_body={"preset": "tiny", **body})


def _run(server, job_id):
    return server.workspace / "jobs" / job_id / "run"


def test_an_update_job_continues_the_previous_run_and_the_model_list_shows_it(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=2)
    first = wait_state(client, _start(client, project["id"])["id"], ("done", "failed"))
    assert first["state"] == "done" and first["update_from"] is None
    image, label = phantom_files["case_002"]  # the clinician labelled one more case
    client.upload_case(project["id"], "case_002", str(image), str(label))

    job = _start(client, project["id"], update_from=first["model_id"])
    assert job["update_from"] == first["id"]
    assert job["settings"] == {"fake": {"steps": 2, "step_s": 0.01}}  # the server's paths stay on the server
    done = wait_state(client, job["id"], ("done", "failed"))
    assert done["state"] == "done", done
    config = (server.workspace / "jobs" / job["id"] / "settings.yaml").read_text(encoding="utf-8")
    assert f"from_run: {_run(server, first['id'])}" in config  # what tskd train --config reads

    models = {m["job_id"]: m for m in client.list_models(project["id"])}
    assert models[first["id"]]["lineage"] is None
    assert models[job["id"]]["lineage"] == {
        "updated_from_job": first["id"], "updated_from_model": first["model_id"], "added_cases": ["case_002"],
        "removed_cases": [], "labelled_before": 2, "labelled_now": 3}
    assert client.get_model(done["model_id"])["lineage"]["updated_from_model"] == first["model_id"]
    # a job id names the same model
    again = _start(client, project["id"], update_from=first["id"])
    assert again["update_from"] == first["id"]
    wait_state(client, again["id"], ("done", "failed"))


def test_bad_update_from_is_refused(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=2)
    with pytest.raises(TSKDClientError) as unknown:
        _start(client, project["id"], update_from="0123456789ab")
    assert unknown.value.status == 404 and "update_from: no model or job" in str(unknown.value)
    with pytest.raises(TSKDClientError) as path:
        _start(client, project["id"], settings={"update": {"from_run": "/somewhere"}})
    assert path.value.status == 422 and "give update_from" in str(path.value)

    running = _start(client, project["id"], settings={"fake": {"steps": 200, "step_s": 0.05}})
    with pytest.raises(TSKDClientError) as unfinished:
        _start(client, project["id"], update_from=running["id"])
    assert unfinished.value.status == 409 and "has no finished run (it is running)" in str(unfinished.value) or "(it is queued)" in str(unfinished.value)
    client.cancel_job(running["id"])
    wait_state(client, running["id"], ("cancelled", "failed"))

    other = client.create_project("others", project["labels"])
    add_cases(client, other["id"], phantom_files, count=1)
    theirs = wait_state(client, _start(client, other["id"])["id"], ("done", "failed"))
    with pytest.raises(TSKDClientError) as foreign:
        _start(client, project["id"], update_from=theirs["model_id"])
    assert foreign.value.status == 409 and "belongs to another project" in str(foreign.value)
