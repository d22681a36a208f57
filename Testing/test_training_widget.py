"""Issue 14, item 13: the Train panel's decisions with a real TrainingLogic, a real backend on loopback
(uvicorn in a thread; its jobs run the service tests' fixture worker, which keeps the ``tskd train``
contract in a second) and a recorded fake of the Qt calls (fakeQt). The Segment panel's model list is
built on the same session, to see what a finished job gives it."""

from __future__ import annotations

from conftest import pumpUntil
from fakeQt import FakeObject, installFakeQt
from SlicerTSKDLib.backend.backendLogic import checkBackend
from SlicerTSKDLib.train.foundationLogic import NONE, NONE_TITLE
from SlicerTSKDLib.session import SessionState
from SlicerTSKDLib.train.trainingLogic import NO_LABELLED_CASES, TrainingLogic

VERDICT = ("the distilled student was not better than training on the labels alone (0.890 vs 0.930), so the "
           "labels-only student was exported")


def comparison(chosen: str) -> dict:
    return {"distilled": {"val_dice": 0.89}, "reference": {"val_dice": 0.93}, "chosen": chosen,
            "decided_on": "validation", "val_subjects": 4, "warning": None,
            "verdict": VERDICT if chosen == "reference" else "distillation added 0.04 Dice"}


class World:
    def __init__(self, monkeypatch, server, segmentPanel: bool = False) -> None:
        installFakeQt(monkeypatch)
        from SlicerTSKDLib.train import trainingWidget

        self.client = server.client()
        self.session = SessionState()
        self.errors, self.ready = [], []
        self.session.errors.display = self.errors.append
        self.session.modelReady.connect(self.ready.append)
        self.logic = TrainingLogic()
        self.widget = trainingWidget.TrainingWidget(FakeObject(), self.session, self.logic)
        self.models = None
        if segmentPanel:
            self.models = self._segmentPanel(monkeypatch, server)

    def _segmentPanel(self, monkeypatch, server):
        from conftest import importSlicer

        importSlicer()
        from SlicerTSKDLib.segment import segmentationWidget
        from SlicerTSKDLib.segment.segmentationLogic import ModelCache, SegmentationLogic

        data = type("Data", (), {"volumeSelector": FakeObject(), "segmentationSelector": FakeObject(),
                                 "volumeNode": lambda self: None, "roiNode": lambda self: None,
                                 "segmentationNode": lambda self: None})()
        logic = SegmentationLogic(str(server.workspace), ModelCache(str(server.workspace / "cache")), None,
                                  runtimeImportable=lambda moduleDir: None, onnxAvailable=lambda: False)
        return segmentationWidget.SegmentationWidget(FakeObject(), self.session, data, None, logic)

    def connect(self) -> None:
        self.session.setConnection(self.client, checkBackend(self.client))
        pumpUntil(self.session)

    def choose(self, project) -> None:
        self.session.setProject(project)
        pumpUntil(self.session)

    def untilFinished(self, timeout: float = 120.0) -> None:
        pumpUntil(self.session, lambda: self.logic.jobId is None and not self.session.tasks.pending(), timeout,
                  timers=[self.widget.timer])


def addCases(client, projectId, tmp_path, count=2):
    from tests.service.helpers import PHANTOM
    from tskd.data.image import write_image
    from tskd.data.phantom import make_phantom

    for index in range(count):
        image, label = make_phantom(PHANTOM, index)
        client.upload_case(projectId, "case_{:03d}".format(index),
                           str(write_image(image, tmp_path / "i{}.nii.gz".format(index))),
                           str(write_image(label, tmp_path / "l{}.nii.gz".format(index))))


def newProject(client, name="p"):
    from tests.service.helpers import project_labels

    return client.create_project(name, project_labels())


def test_connecting_fills_the_choosers_and_start_needs_a_labelled_case(monkeypatch, serviceServer):
    monkeypatch.setattr("tskd.foundation.resolve.has_gpu", lambda: False)  # the download offered for a CPU backend
    world = World(monkeypatch, serviceServer)
    widget = world.widget
    assert not widget.startButton.enabled and not widget.downloadButton.enabled and widget.presetCombo.items == []
    world.connect()
    titles = widget.presetCombo.itemTexts()
    assert titles[0] == "Quick (cpu-small)" and "Preset: tiny" in titles and widget.presetCombo.currentData == "cpu-small"
    assert "Meant for a GPU" in widget.presetCombo.itemTips[1]  # the test backend has no GPU
    assert widget.foundationCombo.items == [(NONE_TITLE, NONE)] and widget.foundationNote.visible  # nothing on the backend
    assert widget.downloadButton.visible and widget.downloadButton.text == "Download LiteMedSAM / MedSAM"  # no GPU: LiteMedSAM first
    assert widget.downloadButton.enabled and widget.importButton.enabled and not widget.weightsBar.visible

    project = newProject(world.client)  # no case yet: labelled_cases is 0
    world.choose(project)
    assert widget.startButton.enabled and not widget.cancelButton.enabled and not widget.resumeButton.enabled
    assert widget.headline.text == "No training running."
    widget.startButton.trigger("clicked()")
    assert widget.headline.text == NO_LABELLED_CASES
    assert not world.session.tasks.pending() and world.client.list_jobs(project["id"]) == [] and world.errors == []

    # counts that are out of date: the backend refuses, in its own words, and nothing runs
    world.session.project = dict(project, labelled_cases=1)
    widget.onStart()
    pumpUntil(world.session)
    assert world.errors == ["the project has no labelled case yet; upload at least one image with its label"]
    assert world.logic.jobId is None and widget.startButton.enabled and world.client.list_jobs(project["id"]) == []


def test_start_follows_the_job_to_its_model_and_the_model_list_shows_it(monkeypatch, serviceServer, tmp_path):
    world = World(monkeypatch, serviceServer, segmentPanel=True)
    widget = world.widget
    world.connect()
    project = newProject(world.client)
    addCases(world.client, project["id"], tmp_path)
    world.choose(world.client.get_project(project["id"]))
    widget.startButton.trigger("clicked()")
    pumpUntil(world.session, lambda: world.logic.jobId is not None)
    assert not widget.startButton.enabled and widget.cancelButton.enabled and widget.timer.active
    [job] = world.client.list_jobs(project["id"])
    assert job["preset"] == "cpu-small" and job["base"] is None  # the chosen quality; "None" foundation model
    assert world.client.get_project(project["id"])["settings"]["base"] == NONE  # the choice is kept in the project
    world.untilFinished()
    assert widget.headline.text == "Training finished: the new model is ready. Validation Dice 0.50."
    assert widget.stageBars["fake"].value == 1000 and widget.diceLabel.text == "0.50" and "done" in widget.logView.plainText
    assert not widget.timer.active and widget.startButton.enabled and not widget.cancelButton.enabled
    model = world.client.list_models(project["id"])[0]
    assert world.ready == [model["id"]] and world.errors == []
    pumpUntil(world.session)  # the Segment panel lists the project's models again
    assert world.models.modelCombo.itemTexts() == ["{} - threshold - Dice 0.50 - no foundation model".format(
        model["created"][:16].replace("T", " "))]


def test_a_finished_job_shows_the_runs_verdict_and_the_model_list_names_each_kind(monkeypatch, serviceServer, tmp_path):
    world = World(monkeypatch, serviceServer, segmentPanel=True)
    world.connect()
    project = newProject(world.client)
    addCases(world.client, project["id"], tmp_path)
    for chosen in ("distilled", "reference"):  # started elsewhere (another Slicer, a script): followed when chosen
        world.client.start_job(project["id"], preset="tiny",
                               settings={"fake": {"steps": 3, "step_s": 0.2, "comparison": comparison(chosen)}})
        world.choose(world.client.get_project(project["id"]))
        assert world.logic.jobId is not None and world.widget.cancelButton.enabled
        world.untilFinished()
    assert world.widget.headline.text == ("Training finished: the new model is ready. The distilled student was not "
                                          "better than training on the labels alone (0.890 vs 0.930), so the "
                                          "labels-only student was exported.")
    pumpUntil(world.session)
    titles = world.models.modelCombo.itemTexts()
    assert len(titles) == 2 and len(world.ready) == 2 and world.errors == []
    assert sorted(t.split(" - ")[1] for t in titles) == ["TS-KD threshold", "labels only threshold"]
    assert any(t.endswith("no teacher") for t in titles)


def test_cancel_then_resume_continues_the_same_job(monkeypatch, serviceServer, tmp_path):
    world = World(monkeypatch, serviceServer)
    widget = world.widget
    world.connect()
    project = newProject(world.client)
    addCases(world.client, project["id"], tmp_path, count=1)
    job = world.client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 200, "step_s": 0.05}})
    world.choose(world.client.get_project(project["id"]))
    pumpUntil(world.session, lambda: widget.headline.text.startswith("Training:"), 60, timers=[widget.timer])
    widget.cancelButton.trigger("clicked()")
    world.untilFinished()
    assert widget.headline.text == "Training was cancelled. Resume continues from the last checkpoint."
    assert world.logic.resumeId == job["id"] and widget.resumeButton.enabled and widget.startButton.enabled
    assert world.ready == []
    widget.resumeButton.trigger("clicked()")
    pumpUntil(world.session, lambda: world.logic.jobId == job["id"])
    assert not widget.resumeButton.enabled and widget.cancelButton.enabled
    world.widget.onCancel()  # stop it again: the test needs no 10 s of fake training
    world.untilFinished()
    assert world.client.job_status(job["id"])["attempts"] >= 2 and world.errors == []


def test_update_the_model_with_the_new_cases_sends_update_from(monkeypatch, serviceServer, tmp_path):
    """Issue 18: the update button applies once the project has a model; it continues the newest one
    (or the one chosen in the Segment panel) and the model list names where the new model came from."""
    from SlicerTSKDLib.train.updateLogic import NO_MODEL_YET, NO_NEW_CASES, UPDATE_TIP

    world = World(monkeypatch, serviceServer, segmentPanel=True)
    widget = world.widget
    assert widget.startButton.text == "Train from scratch" and not widget.updateButton.enabled
    world.connect()
    project = newProject(world.client)
    addCases(world.client, project["id"], tmp_path)
    world.choose(world.client.get_project(project["id"]))
    assert not widget.updateButton.enabled and widget.updateButton.toolTip == NO_MODEL_YET
    widget.updateButton.trigger("clicked()")  # disabled: nothing is sent
    assert not world.session.tasks.pending() and world.client.list_jobs(project["id"]) == []

    widget.presetCombo.setCurrentIndex(widget.presetCombo.itemTexts().index("Preset: tiny"))
    widget.startButton.trigger("clicked()")
    pumpUntil(world.session, lambda: world.logic.jobId is not None)
    assert not widget.updateButton.enabled  # a job runs
    world.untilFinished()
    pumpUntil(world.session)  # the models are listed again
    [first] = world.client.list_models(project["id"])
    # issue 32, item 5: nothing new since that model: the update is not offered, and says why
    assert not widget.updateButton.enabled and widget.updateButton.toolTip == NO_NEW_CASES
    assert widget.updateButton.text == "Update the model with the new cases"

    from tests.service.helpers import PHANTOM
    from tskd.data.image import write_image
    from tskd.data.phantom import make_phantom

    image, label = make_phantom(PHANTOM, 2)  # the clinician corrected one more case
    world.client.upload_case(project["id"], "case_002", str(write_image(image, tmp_path / "i2.nii.gz")),
                             str(write_image(label, tmp_path / "l2.nii.gz")))
    world.session.casesChanged.emit()  # as the Project panel does after an upload
    pumpUntil(world.session)
    assert widget.updateButton.enabled and widget.updateButton.toolTip == UPDATE_TIP
    assert widget.updateButton.text == "Update the model with 1 new case"
    widget.updateButton.trigger("clicked()")
    pumpUntil(world.session, lambda: world.logic.jobId is not None)
    job = world.client.job_status(world.logic.jobId)
    assert job["update_from"] == first["job_id"] and job["preset"] == "tiny" and job["base"] is None
    world.untilFinished()
    pumpUntil(world.session)
    models = {m["job_id"]: m for m in world.client.list_models(project["id"])}
    assert models[job["id"]]["lineage"]["updated_from_model"] == first["id"]
    assert models[job["id"]]["lineage"]["added_cases"] == ["case_002"] and world.errors == []
    newest = world.models.modelCombo.itemTexts()[0]
    assert newest.endswith(" - updated from {}, +1 case".format(first["created"][:16].replace("T", " ")))

    assert job["settings"] == {} and widget.reuseSynthesisCheck.checked  # synthesis reused by default
    widget.preferredModel = lambda: first["id"]  # chosen in the Segment panel: that one is updated
    widget.reuseSynthesisCheck.checked = False  # and its diffusion model trained again
    widget.onUpdate()
    pumpUntil(world.session, lambda: world.logic.jobId is not None)
    again = world.client.job_status(world.logic.jobId)
    assert again["update_from"] == first["job_id"] and again["settings"] == {"update": {"reuse_synthesis": False}}
    world.untilFinished()


def test_a_double_click_on_train_or_update_starts_one_job(monkeypatch, serviceServer, tmp_path):
    """Issue 32, item 5: the buttons are disabled while a start is on its way; a second click sends nothing."""
    world = World(monkeypatch, serviceServer)
    widget = world.widget
    world.connect()
    project = newProject(world.client)
    addCases(world.client, project["id"], tmp_path)
    world.choose(world.client.get_project(project["id"]))
    widget.presetCombo.setCurrentIndex(widget.presetCombo.itemTexts().index("Preset: tiny"))
    widget.startButton.trigger("clicked()")
    assert not widget.startButton.enabled and not widget.updateButton.enabled and not widget.resumeButton.enabled
    widget.startButton.trigger("clicked()")  # the second click of a double click (Qt would not even deliver it)
    widget.onStart()
    pumpUntil(world.session, lambda: world.logic.jobId is not None)
    assert len(world.client.list_jobs(project["id"])) == 1
    world.untilFinished()
    pumpUntil(world.session)
    from tests.service.helpers import PHANTOM
    from tskd.data.image import write_image
    from tskd.data.phantom import make_phantom

    for index in (2, 3):
        image, label = make_phantom(PHANTOM, index)
        world.client.upload_case(project["id"], "case_{:03d}".format(index),
                                 str(write_image(image, tmp_path / "n{}.nii.gz".format(index))),
                                 str(write_image(label, tmp_path / "m{}.nii.gz".format(index))))
    world.session.casesChanged.emit()
    pumpUntil(world.session)
    assert widget.updateButton.text == "Update the model with 2 new cases" and widget.updateButton.enabled
    widget.updateButton.trigger("clicked()")
    widget.onUpdate()
    pumpUntil(world.session, lambda: world.logic.jobId is not None)
    assert len(world.client.list_jobs(project["id"])) == 2 and world.errors == []
    world.untilFinished()


def test_a_project_that_trains_already_is_followed_with_a_plain_message(monkeypatch):
    """Issue 32, item 5: the backend refuses a second active job of a project with 409 (its message may name
    request fields); the panel says so in plain words and follows the job that runs."""
    from SlicerTSKDLib.backend.client import TSKDClientError
    from SlicerTSKDLib.train.trainingLogic import ALREADY_TRAINING

    installFakeQt(monkeypatch)
    from SlicerTSKDLib.train import trainingWidget

    running = {"id": "j1", "project_id": "p1", "state": "running", "created": "2026-12-01T10:00:00.000Z",
               "preset": "tiny", "settings": {}, "base": None, "stages": {}, "log_tail": [], "progress": None,
               "model_id": None, "attempts": 1, "cancel_requested": False}

    class Client:
        server_url = "http://127.0.0.1:9"
        started = 0

        def start_job(self, *args, **kwargs):
            Client.started += 1
            raise TSKDClientError(409, "project p1 already has an active job (j1); send force: true to queue another")

        def list_jobs(self, projectId):
            return [running]

        def job_status(self, jobId):
            return running

        def list_models(self, projectId):
            return []

        def list_cases(self, projectId):
            return [{"name": "a", "labelled": True, "updated": "2026-12-01T09:00:00.000Z"}]

        def list_checkpoints(self):
            return []

        def update_project(self, *args, **kwargs):
            return {"id": "p1", "name": "p", "labelled_cases": 1, "settings": {}}

    session = SessionState()
    errors = []
    session.errors.display = errors.append
    logic = TrainingLogic()
    widget = trainingWidget.TrainingWidget(FakeObject(), session, logic)
    session.client = Client()
    session.project = {"id": "p1", "name": "p", "labelled_cases": 1, "settings": {}}
    monkeypatch.setattr(logic, "startJob", lambda client, project, preset, base: client.start_job())
    widget.onStart()
    pumpUntil(session, lambda: logic.jobId == "j1" and not session.tasks.pending())
    assert Client.started == 1 and errors == [] and logic.jobId == "j1"
    assert widget.headline.text.startswith(ALREADY_TRAINING + "\n")  # stays above the running job's status
    assert "force" not in widget.headline.text and widget.cancelButton.enabled
    assert not widget.startButton.enabled  # it follows the running job
