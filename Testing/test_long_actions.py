"""Issue 32, item 10: long actions have Cancel and a moving progress bar: case uploads, label-next case
downloads, the student's download inside "Segment volume", the backend's prediction (which used to stop at
20 %) and the weights import. Transfers against a real backend on loopback (uvicorn in a thread); the
panels on the recorded fake Qt."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from conftest import importSlicer, pumpUntil
from fakeQt import FakeObject, installFakeQt
from SlicerTSKDLib.backend.client import TSKDTransferAborted
from SlicerTSKDLib.session import SessionState

LABELS = [{"value": 1, "name": "organ_a", "color": [0.85, 0.4, 0.31]},
          {"value": 2, "name": "organ_b", "color": [0.5, 0.68, 0.5]}]


def trainedProject(client, tmp_path):
    from tests.service.helpers import PHANTOM, project_labels, wait_state
    from tskd.data.image import write_image
    from tskd.data.phantom import make_phantom

    project = client.create_project("long", project_labels())
    for index in range(2):
        image, label = make_phantom(PHANTOM, index)
        client.upload_case(project["id"], "case_{:03d}".format(index), str(write_image(image, tmp_path / "i{}.nii.gz".format(index))),
                           str(write_image(label, tmp_path / "l{}.nii.gz".format(index))))
    job = client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 2, "step_s": 0.01}})
    done = wait_state(client, job["id"], ("done", "failed"))
    assert done["state"] == "done", done
    return project, client.list_models(project["id"])[0]


def test_transfers_report_progress_and_stop_on_cancel(serviceServer, tmp_path):
    client = serviceServer.client()
    project, model = trainedProject(client, tmp_path)
    big = tmp_path / "big.nii.gz"
    big.write_bytes(os.urandom(6 << 20))  # six 1 MiB chunks
    sent = []
    with pytest.raises(TSKDTransferAborted):
        client.upload_case(project["id"], "big", str(big), progress=lambda done, total: sent.append((done, total)),
                           cancel=lambda: len(sent) >= 3)
    assert len(sent) == 3 and sent[0][0] < sent[-1][0] < sent[-1][1]
    assert "big" not in [case["name"] for case in client.list_cases(project["id"])]

    received = []
    path = client.download_case_image(project["id"], "case_000", str(tmp_path / "down.nii.gz"),
                                      progress=lambda done, total: received.append((done, total)))
    assert os.path.isfile(path) and received[-1] == (os.path.getsize(path), os.path.getsize(path))
    with pytest.raises(TSKDTransferAborted):
        client.download_model(model["id"], str(tmp_path / "m.zip"), cancel=lambda: True)
    assert not (tmp_path / "m.zip").exists()
    model_progress = []
    client.download_model(model["id"], str(tmp_path / "m.zip"), progress=lambda d, t: model_progress.append((d, t)))
    assert model_progress and model_progress[-1][0] == model_progress[-1][1] == os.path.getsize(tmp_path / "m.zip")

    fractions = []
    client.predict(model["id"], str(tmp_path / "down.nii.gz"), str(tmp_path / "pred.nii.gz"),
                   progress=fractions.append)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and any(0.5 < f < 1.0 or f == 1.0 for f in fractions)
    assert any(f <= 0.5 for f in fractions)  # the image sent, then the label map received

    from SlicerTSKDLib.train.foundationLogic import WeightsImport

    upload = WeightsImport(client, str(big))
    upload.cancel()
    with pytest.raises(TSKDTransferAborted):
        upload.run()
    assert upload.cancelled


def test_the_backends_prediction_bar_goes_to_the_end(monkeypatch, tmp_path, slicerScene, serviceServer):
    """Segment volume on the backend: the bar moves past the written file (20 %) to 100 %."""
    from SlicerTSKDLib.segment.segmentationLogic import ModelCache, SegmentationLogic
    from SlicerTSKDLib.selfTest import addPhantomToScene
    from test_pairing import Data

    client = serviceServer.client()
    project, model = trainedProject(client, tmp_path)
    installFakeQt(monkeypatch)
    importSlicer()
    from SlicerTSKDLib.segment import segmentationWidget

    volume, _, _ = addPhantomToScene(slicerScene, "ct", seed=2, shape=(8, 32, 32), withSegmentation=False)
    logic = SegmentationLogic(str(tmp_path), ModelCache(str(tmp_path / "models")), None,
                              runtimeImportable=lambda d: None, onnxAvailable=lambda: False)  # backend segments
    session = SessionState()
    errors = []
    session.errors.display = errors.append
    session.client, session.project = client, project
    data = Data(volume, None)
    widget = segmentationWidget.SegmentationWidget(FakeObject(), session, data, None, logic)
    widget._showModels([model], model["id"])
    widget.segmentButton.trigger("clicked()")
    task = widget.task
    seen = []
    pumpUntil(session, lambda: task.done and not seen.append(task.progress))
    assert errors == [] and task.progress == 1.0 and max(p for p in seen if p is not None) == 1.0
    assert widget.statusLabel.text.startswith("Done: ") and data.segmentationNode() is not None


class Blocking:
    """A client whose transfers run until cancelled (as a slow network would)."""

    server_url = "http://127.0.0.1:9"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.calls = []

    def _wait(self, name, cancel, progress):
        self.calls.append(name)
        self.started.set()
        sent = 0
        while not cancel():
            sent += 1
            if progress is not None:
                progress(min(sent, 99), 100)
            threading.Event().wait(0.01)
        raise TSKDTransferAborted("the {} was cancelled".format(name))

    def upload_case(self, projectId, name, imagePath, labelPath=None, replace=False, cancel=None, progress=None):
        return self._wait("upload", cancel, progress)

    def download_case_image(self, projectId, name, dest, cancel=None, progress=None):
        return self._wait("download", cancel, progress)

    def download_model(self, modelId, dest, cancel=None, progress=None):
        return self._wait("model download", cancel, progress)

    def list_cases(self, projectId):
        return []


def test_case_upload_and_case_download_have_cancel_with_progress(monkeypatch, tmp_path, slicerScene):
    installFakeQt(monkeypatch)
    importSlicer()
    from SlicerTSKDLib.segment.labelNext import LabelNextLogic, SuggestionRow
    from SlicerTSKDLib.segment.labelNextWidget import LabelNextWidget
    from SlicerTSKDLib.selfTest import addPhantomToScene
    from SlicerTSKDLib.train import projectWidget
    from SlicerTSKDLib.train.projectLogic import ProjectLogic
    from test_pairing import Data

    volume, segmentation, _ = addPhantomToScene(slicerScene, "ct", seed=1)
    session = SessionState()
    errors = []
    session.errors.display = errors.append
    session.client, session.project = Blocking(), {"id": "p1", "labels": LABELS}
    panel = projectWidget.ProjectWidget(FakeObject(), session, Data(volume, segmentation), ProjectLogic())
    panel.addCaseButton.trigger("clicked()")
    assert session.client.started.wait(10) and panel.cancelUploadButton.enabled and not panel.addCaseButton.enabled
    pumpUntil(session, lambda: panel._uploadTask.progress is not None and panel._uploadTask.progress > 0.5,
              timers=[panel.progressTimer])
    assert panel.statusLabel.text.startswith("Uploading 'ct'... ")
    panel.cancelUploadButton.trigger("clicked()")
    pumpUntil(session)
    assert panel.statusLabel.text == "Cancelled." and errors == [] and panel.addCaseButton.enabled
    assert not panel.cancelUploadButton.enabled

    session.client = Blocking()
    data = Data(None, None)
    widget = LabelNextWidget(FakeObject(), session, data, LabelNextLogic(str(tmp_path / "cases")),
                             currentModel=lambda: {"id": "m1"}, segment=lambda: None)
    widget._projectId = "p1"
    widget.rows = [SuggestionRow(1, "not_here", 0, 0, 0.5, "why")]
    widget.onRowClicked(0)
    assert session.client.started.wait(10) and widget.cancelButton.enabled
    pumpUntil(session, lambda: widget.transfer.progress, timers=[widget.progressTimer])
    assert widget.statusLabel.text.startswith("Downloading case 'not_here' from the backend... ")
    widget.cancelButton.trigger("clicked()")
    pumpUntil(session)
    assert widget.statusLabel.text == "The case 'not_here' was not downloaded." and errors == []
    assert not widget.cancelButton.enabled and data.volumeNode() is None


def test_the_students_download_inside_segment_volume_can_be_cancelled(monkeypatch, tmp_path, slicerScene):
    from SlicerTSKDLib.segment.segmentationLogic import ModelCache, SegmentationLogic
    from SlicerTSKDLib.selfTest import addPhantomToScene
    from test_pairing import Data

    installFakeQt(monkeypatch)
    importSlicer()
    from SlicerTSKDLib.segment import segmentationWidget

    volume, _, _ = addPhantomToScene(slicerScene, "ct", seed=1, withSegmentation=False)
    logic = SegmentationLogic(str(tmp_path), ModelCache(str(tmp_path / "models")), None,
                              runtimeImportable=lambda d: None, onnxAvailable=lambda: True)
    session = SessionState()
    errors = []
    session.errors.display = errors.append
    session.client, session.project = Blocking(), {"id": "p1"}
    widget = segmentationWidget.SegmentationWidget(FakeObject(), session, Data(volume, None), None, logic)
    widget._showModels([{"id": "m1", "created": "2026-12-01T10:00", "labels": LABELS}], "m1")
    widget.segmentButton.trigger("clicked()")
    assert session.client.started.wait(10) and widget.cancelButton.enabled
    pumpUntil(session, lambda: (widget.task.progress or 0) > 0.05, timers=[widget.progressTimer])
    assert 0 < widget.task.progress <= 0.3 and widget.progressBar.value > 0  # the download's share of the bar
    widget.cancelButton.trigger("clicked()")
    pumpUntil(session)
    assert widget.statusLabel.text == "Segmentation cancelled." and errors == [] and widget.segmentButton.enabled
    assert not logic.cache.has("m1") and np is not None
