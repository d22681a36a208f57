"""Training jobs with the fixture worker (fake_train.py keeps the ``tskd train`` contract):
queue, progress, models, cancel (process tree really gone), failures, resume, dataset snapshots."""

from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import psutil
import pytest
from SlicerTSKDLib.backend.client import TSKDClientError

from tests.service.helpers import add_cases, wait_state
from tskd.data.image import read_image
from tskd.preprocess import NormalizationSpec, apply_normalization


def fake(**settings):
    return {"fake": settings}


def run_dir(server, job_id):
    return server.workspace / "jobs" / job_id / "run"


def test_job_runs_to_a_model(server, project, phantom_files, tmp_path):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=2)
    job = client.start_job(project["id"], preset="tiny", settings=fake(steps=5, step_s=0.02))
    assert job["state"] in ("queued", "running") and job["cases"] == 2 and job["preset"] == "tiny"
    done = wait_state(client, job["id"], ("done", "failed"))
    assert done["state"] == "done", done
    assert done["exit_code"] == 0 and done["attempts"] == 1 and done["error"] is None
    assert done["progress"]["stage"] == "fake" and done["progress"]["step"] == 5 and done["progress"]["total"] == 5
    assert done["progress"]["state"] == "done" and done["progress"]["metrics"] == {"val_dice": 0.5}
    assert "done" in done["log_tail"] and "step 5/5" in done["log_tail"]
    assert done["model_id"]
    assert done["comparison"] is None  # a package without the comparison (older tskd) still registers
    # the worker got the real contract's arguments
    seen = json.loads((run_dir(server, job["id"]) / "seen.json").read_text(encoding="utf-8"))
    assert seen["images"] == ["case_000.nii.gz", "case_001.nii.gz"] and seen["preset"] == "tiny"

    models = client.list_models(project["id"])
    assert [m["id"] for m in models] == [done["model_id"]]
    assert models[0]["metrics"] == {"val_dice": 0.5} and models[0]["input"]["size"] == 32
    assert {f["name"] for f in models[0]["files"]} == {"model.onnx", "tskd-model.json"}
    assert models[0]["kind"] is None and models[0]["comparison"] is None
    model = client.get_model(done["model_id"])
    assert model["metadata"]["format"] == "tskd-student" and model["job_id"] == job["id"]

    archive = client.download_model(done["model_id"], str(tmp_path / "student.tskd.zip"))
    with zipfile.ZipFile(archive) as zipped:
        assert sorted(zipped.namelist()) == ["model.onnx", "tskd-model.json"]
        assert json.loads(zipped.read("tskd-model.json"))["labels"][1]["name"] == "organ_a"

    log = client.download_job_log(job["id"], str(tmp_path / "log.txt"))
    text = open(log).read()
    assert "fake training: 2 images, starting at step 0" in text and "attempt 1" in text


def test_job_status_says_which_student_was_exported(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=2)
    line = ("the distilled student was not better than training on the labels alone (0.890 vs 0.930), so the "
            "labels-only student was exported")
    comparison = {"distilled": {"val_dice": 0.89}, "reference": {"val_dice": 0.93}, "chosen": "reference",
                  "decided_on": "validation", "val_subjects": 4, "warning": None, "verdict": line,
                  "foundation_weights": True}
    job = client.start_job(project["id"], preset="tiny", settings=fake(steps=2, step_s=0.01, comparison=comparison))
    done = wait_state(client, job["id"], ("done", "failed"))
    assert done["state"] == "done", done
    assert done["comparison"]["chosen"] == "reference" and done["comparison"]["verdict"] == line
    assert done["comparison"]["reference"] == {"val_dice": 0.93} and done["comparison"]["distilled"]["val_dice"] == 0.89
    assert "foundation_weights" not in done["comparison"]  # the documented fields only
    [model] = client.list_models(project["id"])
    assert model["kind"] == "reference" and model["comparison"]["verdict"] == line
    assert model["base"] is None  # trained on the labels alone: no foundation model went into it
    assert client.get_model(done["model_id"])["metadata"]["kind"] == "reference"


def test_server_side_prediction(server, project, phantom_files, tmp_path):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    job = wait_state(client, client.start_job(project["id"], preset="tiny", settings=fake(steps=1, step_s=0))["id"], ("done", "failed"))
    image_path = phantom_files["case_002"][0]
    result = client.predict(job["model_id"], str(image_path), str(tmp_path / "pred.nii.gz"))
    label, image = read_image(result, kind="label"), read_image(image_path)
    assert label.array.shape == image.array.shape
    assert label.geometry.mismatch(image.geometry) is None
    # the fixture student labels 1 where the normalised intensity is positive (32 x 32 slices: no resizing)
    expected = apply_normalization(image.array, NormalizationSpec(mode="percentile")) > 0
    np.testing.assert_array_equal(label.array, expected.astype(np.uint8))
    deadline = time.monotonic() + 10  # the answer's temporary folder goes once the answer is sent
    while list((server.workspace / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list((server.workspace / "tmp").iterdir()) == []
    with pytest.raises(TSKDClientError) as err:
        bad = tmp_path / "bad.nii.gz"
        bad.write_bytes(b"junk")
        client.predict(job["model_id"], str(bad), str(tmp_path / "never.nii.gz"))
    assert err.value.status == 422 and "cannot be read as an image" in err.value.message
    assert not (tmp_path / "never.nii.gz").exists()


def test_server_side_prediction_in_an_roi_equals_the_slicer_runtime(server, project, phantom_files, tmp_path):
    """Issue 14, item 14: the predict route's ``roi`` gives what ``tskd.runtime`` gives inside Slicer
    (the box cropped and resized, the rest 0), so the result does not depend on where it ran."""
    from SlicerTSKDLib.segment.segmentationLogic import ModelCache, segmentArray

    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    job = wait_state(client, client.start_job(project["id"], preset="tiny", settings=fake(steps=1, step_s=0, size=16))["id"],
                     ("done", "failed"))
    image_path = phantom_files["case_002"][0]
    image = read_image(image_path)
    roi = ((1, 6), (3, 27), (5, 21))  # (k, j, i); 24 x 16 in-plane, resized to the student's 16 px
    result = client.predict(job["model_id"], str(image_path), str(tmp_path / "pred.nii.gz"), roi=roi)
    label = read_image(result, kind="label")
    assert label.geometry.mismatch(image.geometry) is None
    cache = ModelCache(str(tmp_path / "models"))
    cache.download(client, job["model_id"])
    here = segmentArray(cache.model(job["model_id"]), np.array(image.array), roi)
    np.testing.assert_array_equal(label.array, here)
    inside = np.zeros(image.array.shape, bool)
    inside[1:6, 3:27, 5:21] = True
    assert label.array[inside].any() and not label.array[~inside].any()
    # masking a whole-image answer afterwards (what the module did) is not the same thing
    whole = read_image(client.predict(job["model_id"], str(image_path), str(tmp_path / "whole.nii.gz")), kind="label")
    assert not np.array_equal(np.where(inside, whole.array, 0), here)
    for bad, why in (("1:6,3:27", "roi needs 3"), ("1:6,3:x,5:21", "not a whole number"), ("1:6,3:27,40:50", "does not fit")):
        with pytest.raises(TSKDClientError) as err:
            client._request("POST", f"/models/{job['model_id']}/predict", dest_path=str(tmp_path / "never.nii.gz"),
                            form=_predictForm(image_path, bad))
        assert err.value.status == 400 and why in err.value.message, err.value.message
    assert not (tmp_path / "never.nii.gz").exists()


def _predictForm(image_path, roi_text):
    from SlicerTSKDLib.backend.client import _MultipartBody

    return _MultipartBody([("roi", roi_text)], [("image", str(image_path))])


def test_a_job_needs_labelled_cases_and_known_names(server, project, phantom_files):
    client = server.client()
    with pytest.raises(TSKDClientError) as err:
        client.start_job(project["id"], preset="tiny")
    assert err.value.status == 409 and "no labelled case" in err.value.message
    add_cases(client, project["id"], phantom_files, count=1)
    with pytest.raises(TSKDClientError) as err:
        client.start_job(project["id"], preset="tiny", base="sam_vit_b.pth")
    assert err.value.status == 409 and "no checkpoint named 'sam_vit_b.pth'" in err.value.message
    with pytest.raises(TSKDClientError) as err:
        client.start_job("0123456789ab")
    assert err.value.status == 404
    assert client.list_jobs(project["id"]) == []
    assert list((server.workspace / "jobs").iterdir()) == []


def test_preset_from_the_project_settings_and_unknown_presets(server, phantom_files):
    from tskd.config import available_presets

    client = server.client()
    project = client.create_project("p", [{"value": 1, "name": "organ_a"}, {"value": 2, "name": "organ_b"}],
                                    settings={"preset": "tiny"})
    add_cases(client, project["id"], phantom_files, count=1)
    job = client.start_job(project["id"], settings=fake(steps=1, step_s=0))
    assert job["preset"] == "tiny"
    assert wait_state(client, job["id"], ("done", "failed"))["state"] == "done"
    assert json.loads((run_dir(server, job["id"]) / "seen.json").read_text(encoding="utf-8"))["preset"] == "tiny"
    with pytest.raises(TSKDClientError) as err:
        client.start_job(project["id"], preset="no-such-preset")
    assert err.value.status == 422
    assert err.value.message == f"preset: unknown preset 'no-such-preset'; available presets: {', '.join(available_presets())}"


def test_base_checkpoint_is_passed_to_the_worker(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    (server.workspace / "checkpoints" / "medsam_vit_b.pth").write_bytes(b"weights")
    job = client.start_job(project["id"], preset="tiny", base="medsam_vit_b.pth", settings=fake(steps=1, step_s=0))
    assert wait_state(client, job["id"], ("done", "failed"))["state"] == "done"
    seen = json.loads((run_dir(server, job["id"]) / "seen.json").read_text(encoding="utf-8"))
    assert seen["base"] == str(server.workspace / "checkpoints" / "medsam_vit_b.pth")


def test_user_error_and_crash_are_failures_with_a_message(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    refused = client.start_job(project["id"], preset="tiny", settings=fake(error="data: no labelled case usable"))
    status = wait_state(client, refused["id"], ("failed", "done"))
    assert status["state"] == "failed" and status["exit_code"] == 2
    assert status["error"] == "data: no labelled case usable"
    crash = client.start_job(project["id"], preset="tiny", settings=fake(steps=1, step_s=0, exit=3))
    status = wait_state(client, crash["id"], ("failed", "done"))
    assert status["state"] == "failed" and status["exit_code"] == 3 and "crashed (exit code 3)" in status["error"]
    assert status["model_id"] is None and client.list_models(project["id"]) == []


def forced_job(client, project_id, **body):
    """POST /projects/{id}/jobs with ``force: true`` (the Slicer client sends it from its own button)."""
    return client._request("POST", f"/projects/{project_id}/jobs", json_body={"preset": "tiny", **body, "force": True})


def test_jobs_queue_one_at_a_time(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    first = client.start_job(project["id"], preset="tiny", settings=fake(steps=20, step_s=0.05))
    second = forced_job(client, project["id"], settings=fake(steps=1, step_s=0))
    wait_state(client, first["id"], ("running",))
    time.sleep(0.3)
    assert client.job_status(second["id"])["state"] == "queued"
    cancelled = client.cancel_job(second["id"])  # a queued job is cancelled at once
    assert cancelled["state"] == "cancelled"
    assert wait_state(client, first["id"], ("done",))["state"] == "done"
    assert client.job_status(second["id"])["state"] == "cancelled"
    assert not (run_dir(server, second["id"]) / "seen.json").exists()  # it never started
    assert [j["id"] for j in client.list_jobs(project["id"])] == [first["id"], second["id"]]


def test_cancel_then_resume_continues_from_the_checkpoint(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    job = client.start_job(project["id"], preset="tiny", settings=fake(steps=40, step_s=0.05))
    running = wait_state(client, job["id"], ("running",))
    while (running["progress"] or {}).get("step", 0) < 3:
        running = client.job_status(job["id"])
    answer = client.cancel_job(job["id"])
    assert answer["cancel_requested"] is True
    cancelled = wait_state(client, job["id"], ("cancelled",))
    assert cancelled["exit_code"] == 130 and cancelled["progress"]["state"] == "cancelled"
    stopped_at = json.loads((run_dir(server, job["id"]) / "checkpoint.json").read_text(encoding="utf-8"))["step"]
    assert 3 <= stopped_at < 40
    with pytest.raises(TSKDClientError) as err:
        client.cancel_job(job["id"])
    assert err.value.status == 409

    resumed = client.resume_job(job["id"])
    assert resumed["state"] in ("queued", "running") and resumed["cancel_requested"] is False
    done = wait_state(client, job["id"], ("done", "failed"))
    assert done["state"] == "done" and done["attempts"] == 2
    log = (server.workspace / "jobs" / job["id"] / "output.txt").read_text(encoding="utf-8")
    assert f"starting at step {stopped_at}" in log and "attempt 2" in log
    with pytest.raises(TSKDClientError) as err:
        client.resume_job(job["id"])
    assert err.value.status == 409 and "finished" in err.value.message


def test_cancel_kills_a_stubborn_worker_tree(make_server, phantom_files):
    server = make_server(cancel_grace_s=1.0)
    client = server.client()
    project = client.create_project("p", [{"value": 1, "name": "organ_a"}, {"value": 2, "name": "organ_b"}])
    add_cases(client, project["id"], phantom_files, count=1)
    job = client.start_job(project["id"], preset="tiny", settings=fake(steps=1000, step_s=0.05, ignore_cancel=True, spawn_child=True))
    wait_state(client, job["id"], ("running",))
    child_file = run_dir(server, job["id"]) / "child.pid"
    deadline = time.monotonic() + 30
    while not child_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = json.loads((run_dir(server, job["id"]) / "seen.json").read_text(encoding="utf-8"))
    pids = [int(child_file.read_text(encoding="utf-8")), seen["pid"]]
    row = server.service.db.query_one("SELECT pid FROM jobs WHERE id = ?", (job["id"],))
    pids.append(row["pid"])  # the runner
    assert all(psutil.pid_exists(pid) for pid in pids)
    client.cancel_job(job["id"])
    status = wait_state(client, job["id"], ("cancelled", "failed"), timeout=30)
    assert status["state"] == "cancelled"
    for pid in pids:  # the runner, the worker and the worker's own child: all gone
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid


def test_jobs_train_on_a_snapshot(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=2)
    job = client.start_job(project["id"], preset="tiny", settings=fake(steps=10, step_s=0.05))
    client.delete_case(project["id"], "case_000")
    image, label = phantom_files["case_002"]
    client.upload_case(project["id"], "case_002", str(image), str(label))
    client.upload_case(project["id"], "case_001", str(image), replace=True)
    assert wait_state(client, job["id"], ("done", "failed"))["state"] == "done"
    seen = json.loads((run_dir(server, job["id"]) / "seen.json").read_text(encoding="utf-8"))
    assert seen["images"] == ["case_000.nii.gz", "case_001.nii.gz"]
    assert seen["labels"] == ["case_000.nii.gz", "case_001.nii.gz"]
    snapshot = server.workspace / "jobs" / job["id"] / "dataset"
    assert (snapshot / "images" / "case_001.nii.gz").read_bytes() == phantom_files["case_001"][0].read_bytes()


def test_a_project_with_active_jobs_is_not_deleted(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    job = client.start_job(project["id"], preset="tiny", settings=fake(steps=100, step_s=0.05))
    with pytest.raises(TSKDClientError) as err:
        client.delete_project(project["id"])
    assert err.value.status == 409 and job["id"] in err.value.message
    client.cancel_job(job["id"])
    wait_state(client, job["id"], ("cancelled",))
    client.delete_project(project["id"])
    assert not (server.workspace / "jobs" / job["id"]).exists()
    with pytest.raises(TSKDClientError) as err:
        client.job_status(job["id"])
    assert err.value.status == 404


def test_labels_in_use_cannot_be_removed(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    with pytest.raises(TSKDClientError) as err:
        client.update_project(project["id"], labels=[{"value": 1, "name": "organ_a"}])
    assert err.value.status == 409 and "values [2] are used by case 'case_000'" in err.value.message
    assert [label["value"] for label in client.get_project(project["id"])["labels"]] == [0, 1, 2]


def test_job_settings_are_checked_against_the_pipeline_config_when_the_job_is_created(make_server, phantom_files):
    server = make_server(check_job_settings=True)
    client = server.client()
    project = client.create_project("p", [{"value": 1, "name": "organ_a"}, {"value": 2, "name": "organ_b"}])
    add_cases(client, project["id"], phantom_files, count=1)
    bad = [
        ({"distill": {"train": {"max_stepz": 3}}}, "field 'distill': field 'train': unknown field(s) 'max_stepz'"),
        ({"bogus": 1}, "unknown field(s) 'bogus' in 'PipelineConfig'"),
        ({"distill": {"student": "no_such"}}, "field 'distill': unknown student 'no_such'"),
        ({"teacher": {"train": {"lr": "fast"}}}, "field 'teacher': field 'train': field 'lr'"),
        ({"data": {"prepared": {"input_size": 3}}}, "input_size must be at least 8 pixels"),
    ]
    for settings, expected in bad:
        with pytest.raises(TSKDClientError) as err:
            client.start_job(project["id"], preset="tiny", settings=settings)
        assert err.value.status == 422 and expected in err.value.message, (settings, err.value.message)
        assert err.value.message.startswith("settings: ")
    assert client.list_jobs(project["id"]) == []  # nothing was queued, no job folder left
    assert not (server.workspace / "jobs").exists() or not any((server.workspace / "jobs").iterdir())
    # valid settings are accepted and reach the worker as its --config file
    job = client.start_job(project["id"], preset="tiny", settings={"distill": {"train": {"max_steps": 7}}})
    assert job["state"] in ("queued", "running", "done", "failed")
    assert job["settings"] == {"distill": {"train": {"max_steps": 7}}}


# -- one job at a time per project, unless forced (issue 34, item 5) -------------------------------
def test_a_second_active_job_in_the_project_is_refused_unless_forced(server, project, phantom_files):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    first = client.start_job(project["id"], preset="tiny", settings=fake(steps=40, step_s=0.05))
    with pytest.raises(TSKDClientError) as err:  # the double click
        client.start_job(project["id"], preset="tiny", settings=fake(steps=1, step_s=0))
    assert err.value.status == 409
    assert f"job {first['id']} of this project is" in err.value.message and "force: true" in err.value.message
    assert [j["id"] for j in client.list_jobs(project["id"])] == [first["id"]]  # nothing queued, nothing left
    assert sorted(p.name for p in (server.workspace / "jobs").iterdir()) == [first["id"]]
    other = client.create_project("other", project["labels"])  # another project is not held back
    add_cases(client, other["id"], phantom_files, count=1)
    theirs = client.start_job(other["id"], preset="tiny", settings=fake(steps=1, step_s=0))
    forced = forced_job(client, project["id"], settings=fake(steps=1, step_s=0))
    assert forced["state"] in ("queued", "running")
    client.cancel_job(first["id"])
    for job in (first, forced, theirs):
        wait_state(client, job["id"], ("done", "cancelled", "failed"))
    again = client.start_job(project["id"], preset="tiny", settings=fake(steps=1, step_s=0))  # none active now
    assert wait_state(client, again["id"], ("done", "failed"))["state"] == "done"


def test_two_requests_at_once_queue_one_job(server, project, phantom_files):
    import threading

    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    barrier, answers = threading.Barrier(4), []

    def click():
        barrier.wait()
        try:
            answers.append(client.start_job(project["id"], preset="tiny", settings=fake(steps=20, step_s=0.05))["id"])
        except TSKDClientError as exc:
            answers.append(exc.status)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers, key=str).count(409) == 3, answers
    assert len(client.list_jobs(project["id"])) == 1
    client.cancel_job(client.list_jobs(project["id"])[0]["id"])


def test_an_update_with_no_new_or_changed_case_is_refused(server, project, phantom_files, tmp_path):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=2)
    first = wait_state(client, client.start_job(project["id"], preset="tiny", settings=fake(steps=1, step_s=0))["id"],
                       ("done", "failed"))
    assert first["state"] == "done", first
    with pytest.raises(TSKDClientError) as err:
        client.start_job(project["id"], preset="tiny", settings=fake(steps=1, step_s=0), update_from=first["model_id"])
    assert err.value.status == 409
    assert "no new or changed case since" in err.value.message and "an update would learn nothing new" in err.value.message
    assert len(client.list_jobs(project["id"])) == 1
    forced = forced_job(client, project["id"], settings=fake(steps=1, step_s=0), update_from=first["model_id"])
    assert wait_state(client, forced["id"], ("done", "failed"))["state"] == "done"
    # a corrected label (same case name, new content) is a change
    image, label = phantom_files["case_000"]
    corrected = read_image(label)
    corrected.array[corrected.array == 1] = 0
    from tskd.data.image import write_image

    write_image(corrected, tmp_path / "corrected.nii.gz")
    client.upload_case(project["id"], "case_000", str(image), str(tmp_path / "corrected.nii.gz"), replace=True)
    update = client.start_job(project["id"], preset="tiny", settings=fake(steps=1, step_s=0),
                              update_from=first["model_id"])
    assert wait_state(client, update["id"], ("done", "failed"))["state"] == "done"
