"""Issue 14, item 13: the "Project and training cases" panel's decisions with a real ProjectLogic, a real
backend on loopback (uvicorn in a thread), slicer-core's real scene for the cases, and a recorded fake
of the Qt calls (fakeQt)."""

from __future__ import annotations

from conftest import importSlicer, pumpUntil
from fakeQt import FakeObject, installFakeQt
from SlicerTSKDLib.backend.backendLogic import checkBackend
from SlicerTSKDLib.train.projectLogic import LAST_PROJECT_SETTING, NO_CASE_SELECTION, NO_SEGMENTATION_FOR_PROJECT, ProjectLogic
from SlicerTSKDLib.session import SessionState
from SlicerTSKDLib.settingsStore import MemorySettings

LABELS = [{"value": 1, "name": "organ_a", "color": [0.85, 0.4, 0.31]}, {"value": 2, "name": "organ_b", "color": [0.5, 0.68, 0.5]}]


class Data:
    """The Images panel's selections."""

    def __init__(self) -> None:
        self.volume = self.segmentation = None
        self.volumeSelector, self.segmentationSelector = FakeObject(), FakeObject()

    def volumeNode(self):
        return self.volume

    def segmentationNode(self):
        return self.segmentation

    def roiNode(self):
        return None


class World:
    def __init__(self, monkeypatch, server, settings=None) -> None:
        installFakeQt(monkeypatch)
        importSlicer()
        from SlicerTSKDLib.train import projectWidget

        self.qt = __import__("qt")
        self.client = server.client()
        self.session = SessionState()
        self.errors = []
        self.session.errors.display = self.errors.append
        self.data = Data()
        self.settings = settings or MemorySettings()
        self.logic = ProjectLogic(self.settings)
        self.widget = projectWidget.ProjectWidget(FakeObject(), self.session, self.data, self.logic)
        self.changes = []
        self.session.projectChanged.connect(lambda project: self.changes.append(project and project["name"]))

    def connect(self) -> None:
        self.session.setConnection(self.client, checkBackend(self.client))
        pumpUntil(self.session)


def test_connecting_lists_the_projects_by_name_and_shows_the_one_shown_last(monkeypatch, serviceServer):
    client = serviceServer.client()
    spleen = client.create_project("spleen", LABELS)
    client.create_project("Liver", LABELS[:1])
    world = World(monkeypatch, serviceServer, MemorySettings({LAST_PROJECT_SETTING: spleen["id"]}))
    widget = world.widget
    assert not widget.refreshButton.enabled and not widget.newProjectButton.enabled and not widget.addCaseButton.enabled
    world.connect()
    assert widget.projectCombo.itemTexts() == ["Liver (0 cases, 0 labelled)", "spleen (0 cases, 0 labelled)"]
    assert widget.projectCombo.currentIndex == 1 and world.session.project["id"] == spleen["id"]
    assert widget.labelsLabel.text == "organ_a, organ_b" and widget.caseTable.rows == []
    assert widget.refreshButton.enabled and widget.newProjectButton.enabled and widget.addCaseButton.enabled
    widget.projectCombo.currentIndex = 0  # the user picks Liver
    pumpUntil(world.session)
    assert world.session.project["name"] == "Liver" and widget.labelsLabel.text == "organ_a"
    assert world.settings.value(LAST_PROJECT_SETTING) == world.session.project["id"]
    widget.refreshButton.trigger("clicked()")  # listing again keeps the choice, with no "no project" in between
    pumpUntil(world.session)
    assert world.session.project["name"] == "Liver" and None not in world.changes[world.changes.index("Liver"):]
    assert world.errors == []


def test_new_project_takes_the_segments_as_labels_and_is_shown(monkeypatch, serviceServer, slicerScene):
    from SlicerTSKDLib.selfTest import addPhantomToScene

    world = World(monkeypatch, serviceServer)
    world.connect()
    dialog = world.qt.QInputDialog
    world.widget.newProjectButton.trigger("clicked()")
    assert world.errors == [NO_SEGMENTATION_FOR_PROJECT] and dialog.asked == []  # nothing asked, nothing sent
    world.errors.clear()
    _, segmentation, _ = addPhantomToScene(slicerScene, "knee", seed=1)
    world.data.segmentation = segmentation
    dialog.replies = ["   "]  # blank: nothing created
    world.widget.onNewProject()
    assert dialog.asked[-1][2] == "Project name (labels: organ_a, organ_b):" and dialog.asked[-1][4] == "knee segmentation"
    pumpUntil(world.session)
    assert world.client.list_projects() == []
    dialog.replies = [" knees "]
    world.widget.onNewProject()
    pumpUntil(world.session)
    [project] = world.client.list_projects()
    assert project["name"] == "knees" and [(l["value"], l["name"]) for l in project["labels"]] == [
        (0, "background"), (1, "organ_a"), (2, "organ_b")]
    assert world.session.project["id"] == project["id"] and world.widget.labelsLabel.text == "organ_a, organ_b"
    assert world.widget.projectCombo.itemTexts() == ["knees (0 cases, 0 labelled)"] and world.errors == []


def test_adding_cases_uploads_them_names_them_uniquely_and_counts_them(monkeypatch, serviceServer, slicerScene):
    from SlicerTSKDLib.selfTest import addPhantomToScene

    project = serviceServer.client().create_project("phantoms", LABELS)
    world = World(monkeypatch, serviceServer)
    world.connect()
    widget = world.widget
    widget.addCase()
    assert world.errors == [NO_CASE_SELECTION] and world.client.list_cases(project["id"]) == []
    world.errors.clear()
    volume, segmentation, _ = addPhantomToScene(slicerScene, "CT 1", seed=3)
    world.data.volume, world.data.segmentation = volume, segmentation
    widget.addCaseButton.trigger("clicked()")
    assert widget.statusLabel.text == "Writing and uploading 'CT_1'..." and not widget.addCaseButton.enabled
    assert widget.progressTimer.active
    pumpUntil(world.session, timers=[widget.progressTimer])
    assert world.errors == [] and widget.statusLabel.text == "Added case 'CT_1'." and not widget.progressTimer.active
    assert [row[:2] for row in widget.caseTable.tableTexts()] == [["CT_1", "labelled"]] and widget.addCaseButton.enabled
    assert world.session.project["labelled_cases"] == 1 and world.session.project["cases"] == 1  # for the Train panel
    widget.caseNameEdit.text = "CT 1"  # the same name again: a second case, not a replacement
    widget.addCase()
    pumpUntil(world.session)
    assert [row[0] for row in widget.caseTable.tableTexts()] == ["CT_1", "CT_1_2"] and widget.caseNameEdit.text == ""
    case = world.client.get_case(project["id"], "CT_1_2")
    assert case["labelled"] and list(case["size"]) == [56, 48, 24]

    # segments that are not the project's labels: the reason is shown, nothing is uploaded
    segmentation.GetSegmentation().GetNthSegment(1).SetName("tumour")
    widget.addCase()
    pumpUntil(world.session)
    assert len(world.errors) == 1 and "'tumour' are not labels of this project (its labels: organ_a, organ_b)" in world.errors[0]
    assert len(world.client.list_cases(project["id"])) == 2

    # delete: asked first; No keeps the case
    box = world.qt.QMessageBox
    widget.caseTable.selectedRow = 1
    box.replies = [box.No]
    widget.deleteCaseButton.trigger("clicked()")
    assert box.asked[-1][2] == "Delete the case 'CT_1_2' from the project?"
    pumpUntil(world.session)
    assert len(world.client.list_cases(project["id"])) == 2
    box.replies = [box.Yes]
    widget.onDeleteCase()
    pumpUntil(world.session)
    assert [c["name"] for c in world.client.list_cases(project["id"])] == ["CT_1"]
    assert widget.caseTable.tableTexts()[0][0] == "CT_1" and len(widget.caseTable.rows) == 1
    assert world.session.project["cases"] == 1


def test_a_refusal_of_the_backend_is_shown_in_its_words_and_the_case_is_not_added(monkeypatch, serviceServer, slicerScene):
    from SlicerTSKDLib.selfTest import addPhantomToScene

    project = serviceServer.client().create_project("phantoms", LABELS)
    world = World(monkeypatch, serviceServer)
    world.connect()
    volume, segmentation, _ = addPhantomToScene(slicerScene, "ct", seed=4)
    world.data.volume, world.data.segmentation = volume, segmentation
    serviceServer.client().delete_project(project["id"])  # gone on the server meanwhile
    world.widget.addCase()
    pumpUntil(world.session)
    assert world.widget.statusLabel.text == "The case was not added." and world.widget.addCaseButton.enabled
    assert len(world.errors) == 1 and project["id"] in world.errors[0] and "Unexpected error" not in world.errors[0]
