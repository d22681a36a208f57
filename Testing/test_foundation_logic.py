"""The Train panel's "Foundation model" chooser against a real backend on loopback: choices (in the
backend's order for its device: no GPU, LiteMedSAM first; a GPU, MedSAM first; then "None"), the
choice saved in the project and sent with the job, the download flow (progress, cancel, resume) through the backend's fetch route from a loopback file server, the
import flow (upload with progress, refusals with the backend's message), and which foundation model
a job and a model were distilled from. No test reaches the internet."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "TSKDBackend"))  # the backend's test helpers (tests.service, tests.foundation)

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from SlicerTSKDLib.backend.client import TSKDClientError  # noqa: E402
from SlicerTSKDLib.train.foundationLogic import (  # noqa: E402
    NONE,
    NONE_TITLE,
    FoundationLogic,
    WeightsDownload,
    WeightsImport,
    downloadCandidates,
    downloadTitle,
    foundationChoices,
    initialChoice,
)
from SlicerTSKDLib.session import userMessage  # noqa: E402
from SlicerTSKDLib.train.jobDisplayLogic import jobDisplay, modelTitle  # noqa: E402

SAM_B = "/sam_vit_b_01ec64.pth"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.foundation.loopback import make_tiny_files

    return make_tiny_files(tmp_path_factory.mktemp("tiny_sam"))


@pytest.fixture
def backend(tmp_path, monkeypatch, tiny):
    """A real backend (uvicorn on a free loopback port) whose catalog's SAM ViT-B is a 3 MiB test file on
    a loopback mirror (bigger than the downloader's 1 MiB chunks, so progress shows); workers are the
    service tests' fixture worker. Yields (server, file server, SHA-256 of the SAM ViT-B file)."""
    import hashlib
    import os

    from tests.foundation.loopback import catalog_data, guard_urlopen, patch_catalog, serve_files
    from tests.service.helpers import FAKE_TRAIN_COMMAND, ServerThread
    from tskd.service.settings import ServiceSettings

    from tskd.foundation import resolve

    monkeypatch.delenv("TSKD_FOUNDATION_MIRROR", raising=False)
    guard_urlopen(monkeypatch)
    monkeypatch.setattr(resolve, "has_gpu", lambda: False)  # the backend's device, whatever this machine has
    weights = os.urandom(3 << 20)
    sha = hashlib.sha256(weights).hexdigest()
    data = catalog_data(tiny)
    for entry in data["models"]:
        if entry["name"] == "sam-vit-b":  # same name and file name, the test file's size and hash
            entry["sources"] = [{"kind": "url", "url": "https://dl.fbaipublicfiles.com/segment_anything" + SAM_B,
                                 "file": SAM_B[1:], "size": len(weights), "sha256": sha}]
    patch_catalog(monkeypatch, data)
    with serve_files() as files:
        files.files[SAM_B] = weights
        server = ServerThread(ServiceSettings(
            workspace=tmp_path / "ws", weights_cache=tmp_path / "weights", foundation_mirror=files.url,
            train_command=list(FAKE_TRAIN_COMMAND), check_job_settings=False, scheduler_interval_s=0.1,
            cancel_grace_s=2.0))
        try:
            yield server, files, sha
        finally:
            server.stop()


def _project_with_a_case(client, tmp_path):
    from tests.service.helpers import PHANTOM, project_labels
    from tskd.data.image import write_image
    from tskd.data.phantom import make_phantom

    project = client.create_project("p", project_labels(), settings={"preset": "tiny"})
    image, label = make_phantom(PHANTOM, 0)
    client.upload_case(project["id"], "case_000", str(write_image(image, tmp_path / "i.nii.gz")),
                       str(write_image(label, tmp_path / "l.nii.gz")))
    return client.get_project(project["id"])


def _until_finished(download, timeout=60.0):
    deadline = time.monotonic() + timeout
    status = download.poll()
    while not status.finished:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
        status = download.poll()
    return status


def test_nothing_on_the_backend_offers_only_none_and_the_downloads_in_the_backends_order(backend, monkeypatch):
    from tskd.foundation import resolve

    server, _, sha = backend
    rows = FoundationLogic(server.client()).checkpoints()
    choices = foundationChoices(rows)
    assert [(c.value, c.title) for c in choices] == [(NONE, NONE_TITLE)]
    assert initialChoice(choices, {"settings": {"base": "sam-vit-b"}}) == NONE  # saved but gone: not offered
    assert [r["name"] for r in downloadCandidates(rows)] == ["litemedsam", "medsam-vit-b"]  # no GPU
    assert downloadTitle(downloadCandidates(rows)) == "Download LiteMedSAM / MedSAM"
    monkeypatch.setattr(resolve, "has_gpu", lambda: True)
    rows = FoundationLogic(server.client()).checkpoints()
    assert downloadTitle(downloadCandidates(rows)) == "Download MedSAM / LiteMedSAM"


def test_the_default_is_litemedsam_without_a_gpu_and_medsam_with_one(backend, monkeypatch):
    from tskd.foundation import resolve
    from tskd.foundation.cache import CachedWeights, WeightsCache

    server, _, _ = backend
    cache = WeightsCache(server.settings.weights_cache)
    cache.root.mkdir(parents=True, exist_ok=True)
    for name, file, architecture in (("litemedsam", "lite_medsam.pth", "litemedsam"),
                                     ("medsam-vit-b", "medsam.pth", "medsam")):
        (cache.root / file).write_bytes(name.encode() * 10)
        cache.record(CachedWeights(name=name, path=file, sha256=name[0] * 64, size=10 * len(name),
                                   architecture=architecture, origin="import", catalog=name))
    logic = FoundationLogic(server.client())
    choices = foundationChoices(logic.checkpoints())
    assert [c.value for c in choices] == ["litemedsam", "medsam-vit-b", NONE]
    assert initialChoice(choices, {"settings": {}}) == "litemedsam"
    assert initialChoice(choices, {"settings": {"base": "medsam-vit-b"}}) == "medsam-vit-b"  # the project's choice
    monkeypatch.setattr(resolve, "has_gpu", lambda: True)
    choices = foundationChoices(logic.checkpoints())
    assert [c.value for c in choices] == ["medsam-vit-b", "litemedsam", NONE]
    assert initialChoice(choices, {"settings": {}}) == "medsam-vit-b"


def test_download_with_progress_cancel_and_resume(backend, tiny):
    server, files, sha = backend
    client = server.client()
    files.slow[SAM_B] = 0.05  # 64 KiB every 50 ms: the download takes a while
    download = WeightsDownload(client, "sam-vit-b")
    status = download.start()
    assert not status.finished
    deadline = time.monotonic() + 30
    while not (status.fraction or 0) > 0:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
        status = download.poll()
    assert "Downloading Segment Anything ViT-B" in status.text and " of " in status.text and 0 < status.fraction < 1
    status = download.cancel()
    assert status.finished and not status.ok and "cancelled" in status.text
    kept = client.get_checkpoint("sam-vit-b")["fetch"]["done_bytes"]
    files.slow.clear()
    download.start()
    status = _until_finished(download)
    assert status.ok and status.fraction == 1.0 and "verified" in status.text, status
    assert [r for p, r in files.requests if p == SAM_B][-1] == "bytes={}-".format(kept)  # resumed
    rows = client.list_checkpoints()
    choices = foundationChoices(rows)
    assert [c.value for c in choices] == ["sam-vit-b", NONE] and sha in choices[0].tooltip
    assert initialChoice(choices, {"settings": {}}) == "sam-vit-b"
    assert [r["name"] for r in downloadCandidates(rows)] == ["litemedsam", "medsam-vit-b"]


def test_a_failed_download_says_why(backend):
    server, files, sha = backend
    del files.files[SAM_B]
    download = WeightsDownload(server.client(), "sam-vit-b")
    download.start()
    status = _until_finished(download)
    assert not status.ok and status.text.startswith("Download of Segment Anything ViT-B (Meta) failed:") and "HTTP 404" in status.text


def test_import_with_progress_and_refusals_in_the_backends_words(backend, tiny, tmp_path):
    server, _, sha = backend
    client = server.client()
    upload = WeightsImport(client, str(tiny.official_pth), name="hospital-sam")
    assert upload.fraction is None
    row = upload.run()
    assert upload.fraction == 1.0
    assert row["name"] == "hospital-sam" and row["state"] == "verified" and row["sha256"] == tiny.sha256
    assert [c.value for c in foundationChoices(client.list_checkpoints())] == ["hospital-sam", NONE]
    junk = tmp_path / "medsam_vit_b.pth"
    junk.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(TSKDClientError) as err:
        WeightsImport(client, str(junk)).run()
    message = userMessage(err.value)
    assert err.value.status == 422 and "medsam_vit_b.pth" in message and "Traceback" not in message


def test_the_choice_is_saved_in_the_project_and_sent_with_the_job(backend, tiny, tmp_path):
    server, _, sha = backend
    client = server.client()
    WeightsDownload(client, "sam-vit-b").start()
    assert _until_finished(WeightsDownload(client, "sam-vit-b")).ok
    project = _project_with_a_case(client, tmp_path)
    logic = FoundationLogic(client)
    job = logic.startJob(project, "tiny", "sam-vit-b")
    assert job["base"] == "sam-vit-b" and job["base_sha256"] == sha
    project = client.get_project(project["id"])
    assert project["settings"] == {"preset": "tiny", "base": "sam-vit-b"}  # other settings kept
    assert initialChoice(foundationChoices(client.list_checkpoints()), project) == "sam-vit-b"
    done = client.wait_for_job(job["id"], timeout=60, poll_interval=0.1)
    assert done["state"] == "done", done
    seen = json.loads((server.workspace / "jobs" / job["id"] / "run" / "seen.json").read_text())
    assert seen["base"] == str(server.settings.weights_cache / SAM_B[1:])  # the worker got the weights
    assert jobDisplay(done).foundationText == "sam-vit-b (SHA-256 {}...)".format(sha[:12])
    assert modelTitle(client.list_models(project["id"])[0]).endswith(" - from sam-vit-b")
    # "None" is a choice too: saved, and the job trains from scratch
    scratch = logic.startJob(project, "tiny", NONE)
    assert scratch["base"] is None and client.get_project(project["id"])["settings"]["base"] == NONE
    assert jobDisplay(scratch).foundationText.startswith("none: teacher trained from scratch")
    done = client.wait_for_job(scratch["id"], timeout=60, poll_interval=0.1)
    assert modelTitle(client.list_models(project["id"])[-1]).endswith(" - no foundation model")


def test_a_downloaded_foundation_model_is_chosen_and_saved_instead_of_none(backend, tiny, tmp_path, monkeypatch):
    """Issue 32, item 12: the project's saved "None" (saved with every start) no longer wins over a model
    the user has just downloaded or imported: the chooser shows it and the project's choice becomes it."""
    from conftest import pumpUntil
    from fakeQt import FakeObject, installFakeQt
    from SlicerTSKDLib.backend.backendLogic import checkBackend
    from SlicerTSKDLib.session import SessionState
    from SlicerTSKDLib.train.trainingLogic import TrainingLogic

    installFakeQt(monkeypatch)
    from SlicerTSKDLib.train import trainingWidget

    server, _, _ = backend
    client = server.client()
    project = _project_with_a_case(client, tmp_path)
    FoundationLogic(client).saveChoice(project, NONE)  # an earlier start from scratch saved "None"
    session = SessionState()
    errors = []
    session.errors.display = errors.append
    logic = TrainingLogic()
    widget = trainingWidget.TrainingWidget(FakeObject(), session, logic)
    session.setConnection(client, checkBackend(client))
    pumpUntil(session)
    session.setProject(client.get_project(project["id"]))
    pumpUntil(session)
    assert widget.foundationCombo.currentData == NONE and widget.downloadButton.visible
    # the test mirror serves SAM ViT-B only (the button offers MedSAM first). The start request is slowed
    # down, so that the weights timer fires (each pump) while it is on its way: a status asked for before
    # the backend queued the fetch reads "missing", and the panel used to take that for a failed download
    # and stop following it (about one run in three without the delay)
    class SlowStart(WeightsDownload):
        def start(self):
            time.sleep(0.5)
            return super().start()

    monkeypatch.setattr(logic, "startDownload",
                        lambda client: setattr(logic, "download", SlowStart(client, "sam-vit-b")) or logic.download)
    widget.downloadButton.trigger("clicked()")
    pumpUntil(session, lambda: logic.download is None and not session.tasks.pending(), timers=[widget.weightsTimer])
    pumpUntil(session)
    assert errors == [] and widget.foundationCombo.currentData == "sam-vit-b"
    assert client.get_project(project["id"])["settings"]["base"] == "sam-vit-b"
    assert session.project["settings"]["base"] == "sam-vit-b"
    widget.foundationCombo.setCurrentIndex(widget.foundationCombo.itemTexts().index(NONE_TITLE))
    widget.onFoundationChosen(widget.foundationCombo.currentIndex)  # the user may still choose None
    pumpUntil(session)
    session.setProject(client.get_project(project["id"]))
    pumpUntil(session)
    assert widget.foundationCombo.currentData == NONE  # and it stays None: only a new download changes it
    upload = logic.startImport(client, str(tiny.official_pth))
    row = upload.run()
    widget._onImported(row)  # what the import's worker task delivers
    pumpUntil(session)
    assert widget.foundationCombo.currentData == row["name"] == client.get_project(project["id"])["settings"]["base"]
